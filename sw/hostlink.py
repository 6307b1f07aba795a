"""The host side of the UART link to a board running `HostTop` (docs/interface.md, "Host link").

Frames, host to board: `A5 | cmd | seq | len (u16 LE) | payload | crc (u16, high byte first)`;
board to host: `5A | status | seq | len | payload | crc`. The CRC is CRC-16/CCITT-FALSE (poly
0x1021, init 0xFFFF, no reflection, no final xor) over everything after the sync byte; sent high
byte first, so the CRC over a whole frame including its CRC is 0 (the board checks that residue).

The link is stop-and-wait: the board answers every frame, ACK (status 0) or NAK (status = the
reason), and a NAKed frame has no effect. The host retries a NAKed frame, an unanswered one, and
one whose answer arrived corrupted, with the same sequence number; the board recognises a repeat
of the frame it last accepted and answers it again without acting twice (a READ repeat resends
the same words: the board drops delivered words only when a frame with a new number arrives).

`HostLink` is the driver; it talks to a `Transport` (pyserial through `SerialTransport`, the
cocotb UART model in sim/tb_host.py, or an in-memory fake in the tests). This module is plain
Python: the gateware imports the protocol constants from here.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from typing import Callable, Protocol, Sequence

from qjoule.errors import UserError

__all__ = ["HostLink", "LinkError", "Response", "SerialTransport", "Transport", "config_id", "crc16",
           "encode_frame", "open_serial", "parse_response", "run_images"]

PROTOCOL_VERSION = 1
SYNC_COMMAND = 0xA5
SYNC_RESPONSE = 0x5A
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF

CMD_WRITE = 0x01     # payload: 32-bit words (LE) for the accelerator's input stream
CMD_READ = 0x02      # payload: u16 most words wanted; answer: up to that many output-stream words
CMD_STATUS = 0x03    # no payload; answer: STATUS_FIELDS
CMD_RESET = 0x04     # no payload; resets the accelerator and empties the result buffer
COMMAND_NAMES = {CMD_WRITE: "write", CMD_READ: "read", CMD_STATUS: "status", CMD_RESET: "reset"}

ACK = 0x00
NAK_CRC = 0x01       # the CRC did not match
NAK_LENGTH = 0x02    # the length is not allowed for the command
NAK_COMMAND = 0x03   # unknown command
NAK_TIMEOUT = 0x04   # the line went quiet in the middle of a frame
NAK_FRAMING = 0x05   # a UART character had a bad stop bit
NAK_NAMES = {NAK_CRC: "crc", NAK_LENGTH: "length", NAK_COMMAND: "command", NAK_TIMEOUT: "timeout",
             NAK_FRAMING: "framing"}

#: Words of one WRITE payload or READ answer the board buffers unless built otherwise.
DEFAULT_MAX_WORDS = 256
#: STATUS answer: (field, byte offset, bytes), little-endian.
STATUS_FIELDS = (("version", 0, 1), ("layer", 1, 1), ("max_words", 2, 2), ("out_level", 4, 2),
                 ("out_depth", 6, 2), ("frames_ok", 8, 2), ("frames_nak", 10, 2), ("run_cycles", 12, 4),
                 ("config_id", 16, 4))
STATUS_BYTES = 20
#: bit 7 of the `layer` byte: a run is in progress.
STATUS_BUSY = 0x80


def crc16(data: bytes | Sequence[int], crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of `data` (check value: crc16(b"123456789") == 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def config_id(cfg) -> int:
    """32-bit fingerprint of an AccelConfig (CRC-32 of its JSON): the board reports the one it was
    built with in STATUS, so a host with another config is stopped before it sends anything."""
    return zlib.crc32(cfg.to_json().encode())


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One host-to-board frame."""
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"cmd and seq are bytes, got {cmd!r}, {seq!r}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 16-bit length field")
    body = bytes([cmd, seq]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([SYNC_COMMAND]) + body + crc16(body).to_bytes(2, "big")


def words_to_bytes(words: Sequence[int]) -> bytes:
    return b"".join(int(w).to_bytes(4, "little") for w in words)


def bytes_to_words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data) - len(data) % 4, 4)]


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    seq: int
    payload: bytes

    @property
    def ack(self) -> bool:
        return self.status == ACK

    @property
    def words(self) -> list[int]:
        return bytes_to_words(self.payload)


def encode_response(status: int, seq: int, payload: bytes = b"") -> bytes:
    """One board-to-host frame (what HostTop sends; used by the fakes in the tests)."""
    body = bytes([status, seq]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return bytes([SYNC_RESPONSE]) + body + crc16(body).to_bytes(2, "big")


def parse_response(data: bytes) -> tuple[Response | None, int]:
    """The first board-to-host frame in `data`: (response, bytes consumed).

    (None, n) with n > 0: n bytes of junk or a frame with a bad CRC were skipped; (None, 0): the
    frame is not complete yet."""
    start = data.find(bytes([SYNC_RESPONSE]))
    if start < 0:
        return None, len(data)
    if len(data) < start + 5:
        return None, start
    length = int.from_bytes(data[start + 3:start + 5], "little")
    end = start + 5 + length + 2
    if len(data) < end:
        return None, start
    if crc16(data[start + 1:end]) != 0:
        return None, start + 1  # a corrupted answer: resynchronise after its sync byte
    return Response(data[start + 1], data[start + 2], bytes(data[start + 5:end - 2])), end


def _bytes_missing(data: bytes) -> int:
    """How many more bytes the first answer in `data` needs at least (its header tells its length)."""
    start = data.find(bytes([SYNC_RESPONSE]))
    if start < 0 or len(data) < start + 5:
        return 7 - (len(data) - max(start, 0) if start >= 0 else 0)
    return max(1, start + 5 + int.from_bytes(data[start + 3:start + 5], "little") + 2 - len(data))


class Transport(Protocol):
    """A byte pipe to the board."""

    def write(self, data: bytes) -> None: ...

    def read(self, size: int, timeout: float) -> bytes:
        """Up to `size` bytes; fewer (maybe none) when the line is silent for `timeout` seconds."""

    def flush_input(self) -> None:
        """Drop bytes received and not yet read (before a retry)."""


class SerialTransport:
    """A pyserial port."""

    def __init__(self, port: str, baud: int):
        import serial

        try:
            self.serial = serial.Serial(port, baudrate=baud, timeout=0.1)
        except (serial.SerialException, OSError, ValueError) as e:
            reason = os.strerror(e.errno) if getattr(e, "errno", None) else (str(e) or e.__class__.__name__)
            raise UserError(f"cannot open serial port {port!r} at {baud} baud: {reason.splitlines()[0]}") from None

    def write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def read(self, size: int, timeout: float) -> bytes:
        self.serial.timeout = timeout
        return self.serial.read(size)

    def flush_input(self) -> None:
        self.serial.reset_input_buffer()

    def close(self) -> None:
        self.serial.close()


def open_serial(port: str, baud: int) -> SerialTransport:
    """The transport `qjoule run` uses (the tests replace this function with a fake board)."""
    return SerialTransport(port, baud)


class LinkError(UserError):
    """The board did not accept a frame after every retry."""


class HostLink:
    """Stop-and-wait driver: every frame is retried until it is ACKed (or `retries` run out)."""

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 8,
                 max_words: int = DEFAULT_MAX_WORDS, name: str = "board"):
        if timeout <= 0 or retries < 0 or max_words < 1:
            raise ValueError(f"bad link parameters: timeout={timeout!r}, retries={retries!r}, max_words={max_words!r}")
        self.transport, self.timeout, self.retries, self.max_words, self.name = transport, timeout, retries, max_words, name
        self.seq = 0
        self.frames = 0
        self.retried = 0                       # frames sent again
        self.naks: dict[str, int] = {}         # NAK reasons seen
        self.lost = 0                          # answers that never came or arrived corrupted
        self._pending = b""

    def transact(self, cmd: int, payload: bytes = b"") -> Response:
        """Send one frame (new sequence number) until the board ACKs it; its answer."""
        self.seq = (self.seq + 1) & 0xFF
        frame = encode_frame(cmd, self.seq, payload)
        self.frames += 1
        last = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                self.transport.flush_input()
                self._pending = b""
            self.transport.write(frame)
            response = self._await_answer()
            if response is None:
                self.lost += 1
                last = "no answer"
                continue
            if response.ack:
                return response
            reason = NAK_NAMES.get(response.status, f"status {response.status:#04x}")
            self.naks[reason] = self.naks.get(reason, 0) + 1
            last = f"NAK {reason}"
        raise LinkError(f"{self.name} did not accept a {COMMAND_NAMES.get(cmd, cmd)} frame after "
                        f"{self.retries + 1} tries (last: {last})")

    def _await_answer(self) -> Response | None:
        """The answer to the current frame: an ACK with its number, or any NAK (a NAK never has an
        effect, so retrying on one that belongs to an earlier frame is harmless). None when the
        line stays silent for `timeout` (the transport keeps the time: wall clock on a serial port,
        simulated cycles in a testbench) or only junk arrives."""
        junk_budget = 4 * (4 * self.max_words + 7) + 64
        while True:
            response, used = parse_response(self._pending)
            self._pending = self._pending[used:]
            if response is not None:
                if not response.ack or response.seq == self.seq:
                    return response
                continue  # a late ACK of an earlier frame
            junk_budget -= used
            if junk_budget < 0:
                return None
            if used:
                continue
            chunk = self.transport.read(_bytes_missing(self._pending), self.timeout)
            if not chunk:
                return None
            self._pending += chunk

    # -- commands --------------------------------------------------------------------------------

    def reset(self) -> None:
        self.transact(CMD_RESET)

    def status(self) -> dict[str, int]:
        payload = self.transact(CMD_STATUS).payload
        if len(payload) != STATUS_BYTES:
            raise LinkError(f"{self.name} sent a STATUS of {len(payload)} bytes, expected {STATUS_BYTES}")
        fields = {name: int.from_bytes(payload[at:at + n], "little") for name, at, n in STATUS_FIELDS}
        fields["busy"] = int(bool(fields["layer"] & STATUS_BUSY))
        fields["layer"] &= ~STATUS_BUSY & 0xFF
        return fields

    def write_words(self, words: Sequence[int], on_words: Callable[[int], None] | None = None) -> None:
        """Send words to the accelerator's input stream, `max_words` per frame; `on_words(n)` after each frame."""
        for i in range(0, len(words), self.max_words):
            chunk = words[i:i + self.max_words]
            self.transact(CMD_WRITE, words_to_bytes(chunk))
            if on_words is not None:
                on_words(len(chunk))

    def read_words(self, count: int, max_polls: int = 10000) -> list[int]:
        """`count` words of the accelerator's output stream, polling until they are all there
        (at most `max_polls` READs in a row that bring nothing)."""
        words: list[int] = []
        empty = 0
        while len(words) < count:
            want = min(count - len(words), self.max_words)
            got = self.transact(CMD_READ, want.to_bytes(2, "little")).words
            if len(got) > want:
                raise LinkError(f"{self.name} answered a READ of {want} words with {len(got)}")
            words += got
            empty = 0 if got else empty + 1
            if empty > max_polls:
                raise LinkError(f"{self.name} sent {len(words)} of {count} result words, then nothing "
                                f"for {max_polls} READs (is the accelerator stuck?)")
        return words

    def connect(self, cfg=None) -> dict[str, int]:
        """Reset the board and read its STATUS; with `cfg`, check the board was built for it."""
        self.reset()
        status = self.status()
        if status["version"] != PROTOCOL_VERSION:
            raise LinkError(f"{self.name} speaks host-link version {status['version']}, expected {PROTOCOL_VERSION}")
        if cfg is not None and status["config_id"] != config_id(cfg):
            raise LinkError(f"{self.name} was built for another accelerator config (id {status['config_id']:#010x}, "
                            f"this config is {config_id(cfg):#010x}); pass the accel.json it was built from")
        self.max_words = min(self.max_words, status["max_words"])
        return status


def run_images(link: HostLink, program, images, *, max_polls: int = 10000,
               on_words: Callable[[int], None] | None = None, on_image: Callable[[int], None] | None = None) -> list:
    """Load `program` (a qjoule.program.Program) once, then run each image: its words in, its
    output words back, decoded. Returns the logits (numpy int64 arrays), one per image.
    `on_words(n)` and `on_image(index)` report progress."""
    link.write_words(program.setup_words, on_words)
    n_out = program.output_word_count()
    results = []
    for index, image in enumerate(images):
        link.write_words(program.image_words(image), on_words)
        logits, _ = program.decode(link.read_words(n_out, max_polls))
        results.append(logits)
        if on_image is not None:
            on_image(index)
    return results
