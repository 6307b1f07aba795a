"""sw/hostlink: CRC and frames (against an independent CRC and the worked example of
docs/interface.md), the driver's retries against an in-memory board, and `qjoule run` end to end
on that board (the serial port replaced by the fake)."""

import binascii
import contextlib
import json

import numpy as np
import pytest

from qjoule.cli import main
from qjoule.config import variant
from qjoule.program import SECTION_IMAGE
from qjoule.sw import golden, hostlink, intmodel
from qjoule.sw.hostlink import (ACK, CMD_READ, CMD_RESET, CMD_STATUS, CMD_WRITE, NAK_CRC, NAK_LENGTH, SYNC_COMMAND,
                                HostLink, LinkError, config_id, crc16, encode_frame, encode_response, parse_response,
                                words_to_bytes)


# -- CRC and frames --------------------------------------------------------------------------------

def test_crc16_check_value_and_binascii():
    assert crc16(b"123456789") == 0x29B1          # the catalogued check value of CRC-16/CCITT-FALSE
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 1000):
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def test_worked_example_of_the_docs():
    # docs/interface.md, "Host link": READ of up to 20 words with sequence number 7, and an empty ACK
    assert encode_frame(CMD_READ, 7, (20).to_bytes(2, "little")) == bytes.fromhex("a5 02 07 02 00 14 00 c0 5b")
    assert encode_response(ACK, 7) == bytes.fromhex("5a 00 07 00 00 01 50")
    # the CRC over everything after the sync byte, CRC included, is 0 (what the board checks)
    assert crc16(bytes.fromhex("02 07 02 00 14 00 c0 5b")) == 0


def test_parse_response_skips_junk_and_bad_crc():
    good = encode_response(ACK, 3, words_to_bytes([1, 2]))
    bad = bytearray(encode_response(ACK, 2, b"\x00\x00\x00\x00"))
    bad[6] ^= 1
    stream = b"\x00\xff" + bytes(bad) + good
    found, rest = [], stream
    while rest:
        response, used = parse_response(rest)
        if response is None and used == 0:
            break
        rest = rest[used:]
        if response is not None:
            found.append(response)
    assert [(r.seq, r.words) for r in found] == [(3, [1, 2])] and rest == b""
    assert parse_response(good[:-1]) == (None, 0)


# -- an in-memory board ----------------------------------------------------------------------------

class FakeBoard:
    """What HostTop does, in Python: CRC check, ACK/NAK, repeat detection, READ from the front of
    the result buffer (dropped at the next new frame), and an 'accelerator' that answers each IMAGE
    section with the golden model's logits (other sections are skipped). Faults: `corrupt` flips a
    bit in the n-th frame written, `drop` loses the n-th answer."""

    def __init__(self, model=None, cfg=None, *, corrupt=(), drop=(), max_words=256, offset_logit=0):
        self.model, self.cfg = model, cfg
        self.corrupt, self.drop, self.max_words, self.offset_logit = set(corrupt), set(drop), max_words, offset_logit
        self.out = bytearray()
        self.frames_in = self.answers = 0
        self.accel_words: list[int] = []
        self.results: list[int] = []
        self.last_seq, self.last_count = None, 0
        self._section: list[int] = []

    # transport
    def write(self, data: bytes) -> None:
        data = bytearray(data)
        if self.frames_in in self.corrupt:
            data[len(data) // 2] ^= 0x04
        self.frames_in += 1
        answer = self._handle(bytes(data))
        if self.answers not in self.drop:
            self.out += answer
        self.answers += 1

    def read(self, size: int, timeout: float) -> bytes:
        data = bytes(self.out[:size])
        del self.out[:size]
        return data

    def flush_input(self) -> None:
        self.out.clear()

    # link
    def _handle(self, frame: bytes) -> bytes:
        if frame[0] != SYNC_COMMAND or crc16(frame[1:]) != 0:
            return encode_response(NAK_CRC, frame[2])
        cmd, seq, n, payload = frame[1], frame[2], int.from_bytes(frame[3:5], "little"), frame[5:-2]
        if cmd == CMD_WRITE and (n % 4 or n > 4 * self.max_words):
            return encode_response(NAK_LENGTH, seq)
        if cmd == CMD_RESET:
            self.results, self.last_seq, self.last_count, self._section = [], None, 0, []
            return encode_response(ACK, seq)
        repeat = seq == self.last_seq
        if not repeat:
            self.results = self.results[self.last_count:]
            self.last_seq, self.last_count = seq, 0
        if cmd == CMD_WRITE:
            if not repeat:
                for w in hostlink.bytes_to_words(payload):
                    self._accept(w)
            return encode_response(ACK, seq)
        if cmd == CMD_READ:
            if not repeat:
                self.last_count = min(int.from_bytes(payload, "little"), len(self.results), self.max_words)
            return encode_response(ACK, seq, words_to_bytes(self.results[:self.last_count]))
        status = bytearray(hostlink.STATUS_BYTES)
        status[0], status[2:4] = 1, self.max_words.to_bytes(2, "little")
        status[16:20] = (config_id(self.cfg) if self.cfg else 0).to_bytes(4, "little")
        return encode_response(ACK, seq, bytes(status))

    # accelerator: sections of the input stream
    def _accept(self, word: int) -> None:
        self.accel_words.append(word)
        self._section.append(word)
        kind, length = self._section[0] >> 24, self._section[0] & 0xFFFFFF
        if len(self._section) < 1 + length:
            return
        if kind == SECTION_IMAGE and self.model is not None:
            c, h, w = self.model.input_shape
            pixels = np.frombuffer(words_to_bytes(self._section[1:]), dtype=np.uint8)[:c * h * w]
            image = pixels.reshape(h, w, c).transpose(2, 0, 1)
            for logit in golden.run(self.model, image[None]).logits[0]:
                v = (int(logit) + self.offset_logit) & (1 << 64) - 1
                self.results += [v & 0xFFFFFFFF, v >> 32]
        self._section = []


# -- the driver ------------------------------------------------------------------------------------

def test_write_and_read_round_trip_in_frames_of_max_words():
    board = FakeBoard(max_words=4)
    link = HostLink(board, max_words=4)
    words = [SECTION_IMAGE << 24 | 0] + list(range(1, 10))   # a header, then words the fake just collects
    link.write_words(words)
    assert board.accel_words == words and link.frames == 3 and link.retried == 0


def test_corrupted_frame_is_retried_and_acts_once():
    board = FakeBoard(corrupt={1})
    link = HostLink(board)
    link.write_words(list(range(300)))   # frames 0 (256 words) and 1 (44 words, corrupted once)
    assert board.accel_words == list(range(300))
    assert link.naks == {"crc": 1} and link.retried == 1 and link.lost == 0


def test_lost_answers_are_retried_without_acting_twice():
    board = FakeBoard(drop={0, 2})
    board.results = [7, 8, 9]
    link = HostLink(board, timeout=0.01)
    link.write_words([11, 12])                       # answer 0 lost: the repeat is ACKed, not applied
    assert link.read_words(3) == [7, 8, 9]           # answer 2 lost: the repeat brings the same words
    assert board.accel_words == [11, 12]
    assert link.lost == 2 and link.retried == 2


def test_gives_up_in_one_line():
    class Silent:
        def write(self, data): pass
        def read(self, size, timeout): return b""
        def flush_input(self): pass

    link = HostLink(Silent(), timeout=0.01, retries=2, name="board on /dev/ttyUSB9")
    with pytest.raises(LinkError, match=r"^board on /dev/ttyUSB9 did not accept a status frame after 3 tries \(last: no answer\)$"):
        link.status()


def test_connect_refuses_a_board_built_for_another_config():
    board = FakeBoard(cfg=variant("tiny", q=4))
    with pytest.raises(LinkError, match="another accelerator config"):
        HostLink(board).connect(variant("tiny", q=2))
    assert HostLink(FakeBoard(cfg=variant("tiny", q=4), max_words=16)).connect(variant("tiny", q=4))["max_words"] == 16


# -- qjoule run --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    model = intmodel.random_model((1, 8, 8), 10, 1, 4, 4, seed=3)
    model.header["source"]["dataset"] = "digits"
    path = tmp_path_factory.mktemp("m") / "model.qjm"
    intmodel.save(model, path)
    return intmodel.load(path), path


def _patch_board(monkeypatch, board):
    opened = []

    def fake_open(port, baud):
        opened.append((port, baud))
        return board
    monkeypatch.setattr(hostlink, "open_serial", fake_open)
    return opened


def test_run_matches_and_writes_run_json(monkeypatch, tmp_path, digits_model):
    """--board: the board's config sized to the model, the one `qjoule synth --model` builds."""
    from qjoule.program import board_config_for_model

    model, path = digits_model
    cfg = board_config_for_model("ulx3s-85f", model)
    assert (cfg.name, cfg.q) == ("ulx3s", 4)
    board = FakeBoard(model, cfg, corrupt={3})
    opened = _patch_board(monkeypatch, board)
    assert main(["run", "--port", "/dev/ttyFAKE", "--model", str(path), "--board", "ulx3s-85f", "--images", "3",
                 "--first-image", "5", "--baud", "921600", "--out", str(tmp_path / "r")]) == 0
    assert opened == [("/dev/ttyFAKE", 921600)]
    result = json.loads((tmp_path / "r" / "run.json").read_text())
    from qjoule.sw import data
    ds = data.load("digits")
    expected = golden.run(model, ds.test_x[5:8]).logits
    assert result["match"] is True and result["images"] == 3 and result["retries"] == 1
    assert result["predictions"] == [int(np.argmax(row)) for row in expected]
    assert [row["logits"] for row in result["per_image"]] == expected.tolist()
    assert [row["label"] for row in result["per_image"]] == ds.test_y[5:8].tolist()
    assert result["board_status"]["config_id"] == config_id(cfg)


def test_run_reports_a_mismatch(monkeypatch, tmp_path, digits_model, capsys):
    """--config: the accel.json the bitstream was built from."""
    model, path = digits_model
    config = tmp_path / "accel.json"
    config.write_text(variant("tiny", q=4).to_json())
    _patch_board(monkeypatch, FakeBoard(model, variant("tiny", q=4), offset_logit=1))
    assert main(["run", "--port", "p", "--model", str(path), "--config", str(config), "--images", "1",
                 "--out", str(tmp_path / "r")]) == 1
    result = json.loads((tmp_path / "r" / "run.json").read_text())
    assert result["match"] is False and result["per_image"][0]["match"] is False
    assert "first mismatch: image 0" in capsys.readouterr().err


def test_run_bad_input_is_one_line(tmp_path, digits_model, capsys):
    _, path = digits_model
    cases = [
        (["--port", "/dev/ttyNOPE"], "cannot open serial port '/dev/ttyNOPE' at 115200 baud: No such file or directory"),
        (["--port", "p", "--images", "0"], "--images must be an integer >= 1, got '0'"),
        (["--port", "p", "--timeout", "-1"], "--timeout must be a number > 0, got '-1'"),
        (["--port", "p", "--first-image", "359", "--images", "2"], "images 359..360 are out of range"),
    ]
    for extra, message in cases:
        assert main(["run", "--model", str(path), "--board", "ulx3s-85f", "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    for argv, message in ((["--board", "de10"], "unknown board 'de10'; known: ulx3s-85f, icebreaker"),
                          ([], "one of the arguments --board --config is required")):
        with pytest.raises(SystemExit) if not argv else contextlib.nullcontext() as stop:
            assert main(["run", "--port", "p", "--model", str(path), "--out", str(tmp_path / "x"), *argv]) == 2
        if stop is not None:
            assert stop.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_run_a_mixed_precision_model_on_the_board_config(monkeypatch, tmp_path):
    """A per-layer-Q model runs on the board's config with the modes its layers need (the one
    `qjoule synth --model` builds); the logits are checked as for a uniform model."""
    from qjoule.program import board_config_for_model

    model = intmodel.random_model((1, 8, 8), 10, 1, 4, None, seed=5, q_per_layer=(4, 2, 8, 4))
    model.header["source"]["dataset"] = "digits"
    path = tmp_path / "mixed.qjm"
    intmodel.save(model, path)
    model = intmodel.load(path)
    cfg = board_config_for_model("ulx3s-85f", model)
    # each layer runs at max(q_in, q_w): 4, max(4, 2), max(2, 8), max(8, 4)
    assert cfg.mixed and cfg.modes == (4, 8)
    _patch_board(monkeypatch, FakeBoard(model, cfg))
    assert main(["run", "--port", "p", "--model", str(path), "--board", "ulx3s-85f", "--images", "2",
                 "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["match"] is True
