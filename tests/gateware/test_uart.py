# amaranth: UnusedElaboratable=no
"""UARTRx/UARTTx and the HostLink frame decoder in the Amaranth simulator.

The UART: loopback at two divisors, the line waveform of one character bit by bit, a bad stop bit,
an overrun. The link, fed bytes directly: a good WRITE reaches the word stream and is ACKed; a bad
CRC, a bad length, an unknown command and a frame cut short are NAKed with nothing reaching the
word stream; a repeated frame acts once; READ hands out result words and repeats them on a
repeated READ. Expected answers are built with qjoule.sw.hostlink (the host's own encoder).
(The linter line above: constructors refusing their arguments leave unused Elaboratables.)
"""

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from qjoule.gateware.host_top import HostLink, HostTop, crc16_update
from qjoule.gateware.uart import UARTRx, UARTTx, baud_divisor
from qjoule.sw.hostlink import (ACK, CMD_READ, CMD_STATUS, CMD_WRITE, NAK_COMMAND, NAK_CRC, NAK_LENGTH, NAK_TIMEOUT,
                                STATUS_FIELDS, crc16, encode_frame, encode_response, parse_response, words_to_bytes)


# -- UART ------------------------------------------------------------------------------------------

def _loopback(divisor, data, ready_pattern=None):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got, line = [], []

    async def source(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def sink(ctx):
        for _ in range((len(data) + 2) * 10 * divisor + 20):
            ctx.set(rx.o.ready, 1)
            valid, payload, level = ctx.get(rx.o.valid), ctx.get(rx.o.payload), ctx.get(tx.tx)
            line.append(level)
            await ctx.tick()
            if valid:
                got.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got, line


@pytest.mark.parametrize("divisor", [4, 7])
def test_loopback_back_to_back(divisor):
    data = [0x00, 0xFF, 0x55, 0xAA, 0xA5, 0x01, 0x80, 0x3C]
    got, _ = _loopback(divisor, data)
    assert got == data


def test_tx_waveform_one_character():
    # 0x35 = 0b00110101: start 0, data LSB first 1 0 1 0 1 1 0 0, stop 1, each for 5 cycles
    _, line = _loopback(5, [0x35])
    start = line.index(0)
    bits = [0, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    assert line[start:start + 50] == [b for b in bits for _ in range(5)]
    assert all(level == 1 for level in line[:start]) and all(level == 1 for level in line[start + 45:])


def _drive_line(divisor, levels_per_bit, ready=1):
    """Drive UARTRx's pin with `levels_per_bit` (one level per bit time); collect what comes out."""
    rx = UARTRx(divisor)
    out = {"bytes": [], "framing_error": 0, "overrun": 0}

    async def bench(ctx):
        ctx.set(rx.o.ready, ready)
        for level in levels_per_bit + [1] * 4:
            for _ in range(divisor):
                ctx.set(rx.rx, level)
                valid, payload = ctx.get(rx.o.valid), ctx.get(rx.o.payload)
                out["framing_error"] += ctx.get(rx.framing_error)
                out["overrun"] += ctx.get(rx.overrun)
                await ctx.tick()
                if valid and ready:
                    out["bytes"].append(payload)
        out["held"] = ctx.get(rx.o.payload) if ctx.get(rx.o.valid) else None

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def _char(byte, stop=1):
    return [0] + [byte >> i & 1 for i in range(8)] + [stop]


def test_rx_framing_error_drops_the_character_then_recovers():
    # a character with a low stop bit, the line low for two more bit times (a break), then a good one
    out = _drive_line(4, _char(0x5A, stop=0) + [0, 0, 1, 1] + _char(0xC3))
    assert out["framing_error"] == 1
    assert out["bytes"] == [0xC3]


def test_rx_overrun_keeps_the_first_byte():
    out = _drive_line(4, _char(0x11) + _char(0x22), ready=0)
    assert out["overrun"] == 1 and out["held"] == 0x11 and out["bytes"] == []


def test_baud_divisor():
    assert baud_divisor(25e6, 115200) == 217          # 25e6 / 115200 = 217.01
    assert baud_divisor(12e6, 115200) == 104          # 0.16% off
    with pytest.raises(ValueError, match="off by"):
        baud_divisor(1e6, 115200)                     # divisor 9: 3.5% off
    with pytest.raises(ValueError, match="too fast"):
        baud_divisor(1e6, 500000)
    with pytest.raises(ValueError, match="divisor must be"):
        UARTTx(3)


# -- CRC -------------------------------------------------------------------------------------------

def test_crc16_gateware_equals_host():
    from amaranth.sim import Simulator as Sim
    from amaranth.hdl import Signal

    crc, byte, nxt = Signal(16), Signal(8), Signal(16)
    m = Module()
    m.d.comb += nxt.eq(crc16_update(crc, byte))
    cases = [(0xFFFF, 0x31), (0x0000, 0x00), (0x1234, 0xA5), (0xFFFF, 0xFF), (0x8000, 0x80), (0x29B1, 0x5A)]

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(nxt) == crc16([b], c), (hex(c), hex(b))

    sim = Sim(m)
    sim.add_testbench(bench)
    sim.run()


# -- the frame decoder (HostLink) ------------------------------------------------------------------

IDLE = 60


def _run_link(frames, results=(), *, max_words=8, out_depth=16, byte_gap=2, ready_every=1):
    """Feed each frame's bytes (stop-and-wait: the next frame after the answer) into a HostLink;
    the word stream is ready one cycle in `ready_every`. Returns (answers, words that reached the
    accelerator side)."""
    link = HostLink(max_words=max_words, out_depth=out_depth, idle_cycles=IDLE, config_id=0x12345678)
    answers, words, tx_bytes = [], [], bytearray()
    state = {"done": False}

    async def feeder(ctx):
        for frame in frames:
            before = len(answers)
            for b in frame:
                ctx.set(link.rx.valid, 1)
                ctx.set(link.rx.payload, b)
                await ctx.tick()
                ctx.set(link.rx.valid, 0)
                await ctx.tick().repeat(byte_gap)
            for _ in range(10 * IDLE + 2000):
                if len(answers) > before:
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no answer to frame {frame.hex()}")
        state["done"] = True

    async def collector(ctx):
        pending = list(results)
        cycle = 0
        while not state["done"]:
            words_ready = int(cycle % ready_every == 0)
            cycle += 1
            ctx.set(link.tx.ready, 1)
            ctx.set(link.words.ready, words_ready)
            if pending:
                ctx.set(link.results.valid, 1)
                ctx.set(link.results.payload, pending[0])
            else:
                ctx.set(link.results.valid, 0)
            tx_valid, tx_byte = ctx.get(link.tx.valid), ctx.get(link.tx.payload)
            w_valid, w = ctx.get(link.words.valid), ctx.get(link.words.payload)
            r_ready = ctx.get(link.results.ready)
            await ctx.tick()
            if pending and r_ready:
                pending.pop(0)
            if w_valid and words_ready:
                words.append(w)
            if tx_valid:
                tx_bytes.append(tx_byte)
                response, used = parse_response(bytes(tx_bytes))
                if response is not None:
                    answers.append(response)
                    del tx_bytes[:used]

    sim = Simulator(link)
    sim.add_clock(1e-8)
    sim.add_testbench(feeder)
    sim.add_testbench(collector, background=True)
    sim.run()
    return answers, words


def _write(seq, words):
    return encode_frame(CMD_WRITE, seq, words_to_bytes(words))


def _corrupt(frame, index, mask=0x01):
    frame = bytearray(frame)
    frame[index] ^= mask
    return bytes(frame)


def test_good_write_reaches_the_accelerator_and_is_acked():
    words = [1, 0xDEADBEEF, 0x000000A5, 0xA5A5A5A5, 0xFFFFFFFF]
    answers, out = _run_link([_write(1, words)])
    assert out == words
    assert [(a.status, a.seq, a.payload) for a in answers] == [(ACK, 1, b"")]


def test_write_with_backpressure():
    words = list(range(100, 108))
    answers, out = _run_link([_write(3, words)], ready_every=3)
    assert out == words and answers[0].ack


@pytest.mark.parametrize("index", [1, 2, 5, 9, -1])   # cmd, seq, payload, payload, crc low byte
def test_bad_crc_is_nacked_and_has_no_effect(index):
    good = _write(7, [0x11111111, 0x22222222])
    answers, out = _run_link([_corrupt(good, index), good])
    assert out == [0x11111111, 0x22222222]          # only the retry's words
    assert answers[0].status in (NAK_CRC, NAK_COMMAND, NAK_LENGTH)
    if index in (5, 9, -1):                          # payload or CRC damaged: the CRC catches it
        assert answers[0].status == NAK_CRC and answers[0].seq == 7
    assert answers[1].ack and answers[1].seq == 7


@pytest.mark.parametrize("frame, reason", [
    (encode_frame(CMD_WRITE, 2, b"\x01\x02\x03"), NAK_LENGTH),            # not whole words
    (encode_frame(CMD_WRITE, 2, bytes(4 * 9)), NAK_LENGTH),                # more than max_words = 8
    (encode_frame(CMD_READ, 2, b""), NAK_LENGTH),                          # READ takes a u16
    (encode_frame(CMD_STATUS, 2, b"\x00"), NAK_LENGTH),
    (encode_frame(0x7E, 2, b""), NAK_COMMAND),
])
def test_bad_length_or_command_is_nacked_with_no_effect(frame, reason):
    answers, out = _run_link([frame, _write(3, [5])])
    assert out == [5]
    assert (answers[0].status, answers[0].payload) == (reason, b"")
    assert answers[1].ack


def test_frame_cut_short_times_out():
    good = _write(4, [9, 10])
    answers, out = _run_link([good[:8], good])
    assert [a.status for a in answers] == [NAK_TIMEOUT, ACK] and out == [9, 10]


def test_repeated_write_acts_once():
    frame = _write(5, [42, 43])
    answers, out = _run_link([frame, frame, _write(6, [44])])
    assert out == [42, 43, 44]
    assert [(a.status, a.seq) for a in answers] == [(ACK, 5), (ACK, 5), (ACK, 6)]


def test_read_hands_out_results_and_repeats_a_lost_answer():
    read = lambda seq, n: encode_frame(CMD_READ, seq, n.to_bytes(2, "little"))  # noqa: E731
    frames = [read(1, 2), read(1, 2), read(2, 5), read(3, 5)]
    answers, _ = _run_link(frames, results=[10, 11, 12])
    assert [a.words for a in answers] == [[10, 11], [10, 11], [12], []]
    assert all(a.ack for a in answers)
    # the answer's bytes are exactly what the host encoder makes of it
    assert encode_response(ACK, 1, words_to_bytes([10, 11])) == bytes([0x5A, 0, 1, 8, 0]) + words_to_bytes([10, 11]) + \
        crc16(bytes([0, 1, 8, 0]) + words_to_bytes([10, 11])).to_bytes(2, "big")


def test_read_is_limited_by_max_words():
    results = list(range(20))
    frames = [encode_frame(CMD_READ, s, (100).to_bytes(2, "little")) for s in (1, 2, 3)]
    answers, _ = _run_link(frames, results=results, max_words=8, out_depth=32)
    assert [a.words for a in answers] == [results[:8], results[8:16], results[16:]]


def test_status_fields():
    answers, _ = _run_link([_corrupt(_write(1, [1]), 6), encode_frame(CMD_STATUS, 2)], results=[7, 8, 9])
    payload = answers[1].payload   # the counts include this STATUS frame's own ACK
    fields = {name: int.from_bytes(payload[at:at + n], "little") for name, at, n in STATUS_FIELDS}
    assert fields == {"version": 1, "layer": 0, "max_words": 8, "out_level": 3, "out_depth": 16,
                      "frames_ok": 1, "frames_nak": 1, "run_cycles": 0, "config_id": 0x12345678}


def test_host_top_checks_its_arguments():
    from qjoule.config import variant
    cfg = variant("tiny", q=4)
    assert HostTop(cfg, clk_freq=25e6, baud=115200).divisor == 217
    with pytest.raises(ValueError, match="divisor or the clock"):
        HostTop(cfg)
    with pytest.raises(ValueError, match="divisor must be"):
        HostTop(cfg, divisor=2)
    with pytest.raises(TypeError, match="AccelConfig"):
        HostTop({"q": 4}, divisor=4)


@pytest.mark.parametrize("memory_pipeline", [0, 2])
def test_host_top_on_the_ulx3s_platform_takes_its_uart(yosys_env, memory_pipeline):
    # Elaborated by the amaranth-boards platform (no tools run): the divisor follows the 25 MHz
    # clock and the UART pins are the board's FTDI rx/tx. With memory_pipeline (the ulx3s
    # setting) the accelerator's flip-flops have an asynchronous reset, though the platform's
    # sync domain has no reset at all.
    import os
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    from qjoule.config import variant

    os.environ.setdefault("OPENFPGALOADER", "openFPGALoader")
    platform = ULX3S_85F_Platform()
    top = HostTop(variant("tiny", q=4, memory_pipeline=memory_pipeline), clk_freq=platform.default_clk_frequency,
                  baud=115200)
    plan = platform.build(top, name="host", do_build=False)
    lpf = plan.files["host.lpf"]
    assert top.divisor == 217
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1";' in lpf and 'LOCATE COMP "uart_0__tx__io" SITE "L4";' in lpf
    assert ("$adff" in plan.files["host.il"]) == bool(memory_pipeline)
