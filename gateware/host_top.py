"""The board top: a UART host link in front of the accelerator's two streams.

`HostLink` speaks the framed protocol of docs/interface.md ("Host link"; the constants come from
qjoule.sw.hostlink). It takes a whole frame into a buffer and checks its CRC (the CRC over the
frame including its CRC must be 0) before anything of it moves on, so a corrupted frame never
reaches the accelerator; it answers every frame with an ACK or a NAK naming the reason. After an
error (bad CRC, length or command, a framing error) it drops bytes until the line has been quiet
for `idle_cycles`, then NAKs: the rest of a damaged frame is never read as a new one. Words the
accelerator sends go into a circular result buffer; a READ answers with words from its front and
they are dropped only when the next frame with a new sequence number arrives, so a READ whose
answer was lost can be repeated and gets the same words.

`HostTop` wires UARTRx/UARTTx, the link and a `QjouleAccel` (which the link can reset).
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from amaranth.hdl import (Array, Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Mux, ResetInserter,
                          ResetSignal, Signal, Value, unsigned)
from amaranth.lib import io, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from qjoule.config import AccelConfig
from qjoule.program import WORD_BITS
from qjoule.sw.hostlink import (ACK, CMD_READ, CMD_RESET, CMD_STATUS, CMD_WRITE, CRC_INIT, CRC_POLY, DEFAULT_MAX_WORDS,
                                NAK_COMMAND, NAK_CRC, NAK_FRAMING, NAK_LENGTH, NAK_TIMEOUT, PROTOCOL_VERSION,
                                STATUS_BUSY, STATUS_BYTES, SYNC_COMMAND, SYNC_RESPONSE, config_id)

from .top import QjouleAccel
from .uart import UARTRx, UARTTx, check_divisor, baud_divisor

__all__ = ["HostLink", "HostTop", "crc16_update"]

STATUS_WORDS = STATUS_BYTES // 4
RESET_CYCLES = 4


def _crc16_taps() -> list[list[int]]:
    """For each bit of CRC-16/CCITT after one byte: the inputs it is the XOR of (0..15: CRC bits,
    16..23: byte bits). The CRC is linear over GF(2), so tracking sets of inputs is exact."""
    crc = [{i} for i in range(16)]
    for i in range(7, -1, -1):           # message bits MSB first
        feedback = crc[15] ^ {16 + i}
        crc = [set() if k == 0 else set(crc[k - 1]) for k in range(16)]
        for k in range(16):
            if CRC_POLY >> k & 1:
                crc[k] ^= feedback
    return [sorted(bit) for bit in crc]


_CRC16_TAPS = _crc16_taps()


def crc16_update(crc: Value, byte: Value) -> Value:
    """CRC-16/CCITT-FALSE register after one more byte: one XOR tree per bit."""
    inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
    return Cat(*[reduce(xor, [inputs[t] for t in taps]) for taps in _CRC16_TAPS])


class HostLink(wiring.Component):
    """Frame decoder, result buffer and answer encoder between two byte streams and the
    accelerator's word streams.

    Parameters: `max_words` (words of one WRITE payload or READ answer; the frame buffer's
    depth), `out_depth` (result buffer words, a power of two), `idle_cycles` (a frame with a gap
    this long is cut short; also the quiet time that ends the discarding after an error),
    `config_id` (reported in STATUS). `registered_paths` (the UP5K's and the ULX3S's Fmax): a
    READ's count (the least of the words asked for, the buffered words and max_words: compares
    on a subtraction) is
    registered a cycle before the answer, the result buffer's `ready` is a flip-flop, set
    while it had room for two words a cycle before (so it holds out_depth − 1 words), and a
    frame's length is checked from registers (states LENGTH, VERDICT) and its CRC a cycle after
    its last byte (CHECK), and the received byte is registered before the decode (every frame a
    cycle later).
    `registered_writes` (the ULX3S's Fmax): a payload word goes into the frame buffer a cycle
    after its last byte, from registers, not from the byte decode (the frame's CRC comes later).
    """

    def __init__(self, *, max_words: int = DEFAULT_MAX_WORDS, out_depth: int = 512, idle_cycles: int,
                 config_id: int = 0, registered_paths: bool = False, registered_writes: bool = False):
        if not isinstance(max_words, int) or not 1 <= max_words <= 0x3FFF:
            raise ValueError(f"max_words must be 1..16383 (the payload length is 16 bits), not {max_words!r}")
        if not isinstance(out_depth, int) or out_depth < 2 or out_depth & (out_depth - 1) or out_depth > 1 << 15:
            raise ValueError(f"out_depth must be a power of two in 2..32768, not {out_depth!r}")
        if not isinstance(idle_cycles, int) or idle_cycles < 2:
            raise ValueError(f"idle_cycles must be an integer >= 2, not {idle_cycles!r}")
        if not isinstance(config_id, int) or not 0 <= config_id < 1 << 32:
            raise ValueError(f"config_id must be a 32-bit unsigned integer, not {config_id!r}")
        self._max_words, self._out_depth, self._idle_cycles, self._config_id = max_words, out_depth, idle_cycles, config_id
        self._registered_paths, self._registered_writes = registered_paths, registered_writes
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),                            # a framing error from the UART
            "tx": Out(stream.Signature(8)),
            "words": Out(stream.Signature(WORD_BITS)),    # to the accelerator's input stream
            "results": In(stream.Signature(WORD_BITS)),   # from its output stream
            "accel_reset": Out(1),
            "accel_busy": In(1),
            "accel_layer": In(7),
            "accel_run_cycles": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        MW, OD = self._max_words, self._out_depth

        m.submodules.inbuf = inbuf = memory.Memory(shape=WORD_BITS, depth=MW, init=[])
        in_wr, in_rd = inbuf.write_port(), inbuf.read_port()
        m.submodules.outbuf = outbuf = memory.Memory(shape=WORD_BITS, depth=OD, init=[])
        out_wr, out_rd = outbuf.write_port(), outbuf.read_port()

        # -- result buffer: words from `base` (oldest not yet delivered) to `wr_ptr` ---------------
        ptr_bits = exact_log2(OD) + 1
        wr_ptr, base, level = Signal(ptr_bits), Signal(ptr_bits), Signal(ptr_bits)
        last_count = Signal(range(MW + 1))   # words the last READ answered with (delivered at the next frame)
        clearing = Signal()
        ready = (level != OD) & ~clearing
        if self._registered_paths:
            room = Signal()
            m.d.sync += room.eq(level < OD - 1)   # (at most one word arrives per cycle)
            ready = room & ~clearing
        m.d.comb += [level.eq(wr_ptr - base),
                     self.results.ready.eq(ready),
                     out_wr.addr.eq(wr_ptr[:-1]), out_wr.data.eq(self.results.payload),
                     out_wr.en.eq(self.results.valid & self.results.ready)]
        with m.If(self.results.valid & self.results.ready):
            m.d.sync += wr_ptr.eq(wr_ptr + 1)

        # -- receiving ---------------------------------------------------------------------------
        byte, got, rx_error = self.rx.payload, self.rx.valid, self.rx_error
        m.d.comb += self.rx.ready.eq(1)   # bytes outside a frame (or while answering) are dropped
        if self._registered_paths:
            # (both boards' Fmax) the byte and the UART's flags are registered before the decode:
            # the UART's bit timer and the frame decoder had been one path of 9 logic levels
            byte_q, got_q, error_q = Signal(8, name="rx_byte"), Signal(name="rx_got"), Signal(name="rx_error_q")
            m.d.sync += [byte_q.eq(byte), got_q.eq(got), error_q.eq(rx_error)]
            byte, got, rx_error = byte_q, got_q, error_q
        cmd, seq, length = Signal(8), Signal(8), Signal(16)
        left = Signal(16)                 # payload bytes still to come
        crc = Signal(16)
        # The last four payload bytes (little-endian) while receiving; while answering, the same
        # register is the transmit shift register `shreg` (a READ's payload is read before the
        # answer loads it, and nothing of a frame is needed once its answer starts).
        acc = shreg = Signal(32)
        byte_i = Signal(2)
        n_words = Signal(range(MW + 1))
        reason = Signal(8)
        last_seq, seq_known = Signal(8), Signal()
        idle = Signal(range(self._idle_cycles + 1))
        quiet = Signal()
        # quiet == (idle == idle_cycles), as a flip-flop written with idle: the wide compare was
        # in front of every state's timeout branch
        with m.If(got):
            m.d.sync += [idle.eq(0), quiet.eq(0)]
        with m.Elif(~quiet):
            m.d.sync += [idle.eq(idle + 1), quiet.eq(idle == self._idle_cycles - 1)]
        # One CRC update for both directions: the received byte, or (T_WORD) the byte being sent.
        crc_byte, crc_next = Signal(8), Signal(16)
        m.d.comb += [crc_byte.eq(byte), crc_next.eq(crc16_update(crc, crc_byte))]
        crc_rx = crc_next

        # -- answering ---------------------------------------------------------------------------
        resp_status = Signal(8)
        resp_words = Signal(range(max(MW, STATUS_WORDS) + 1))
        resp_is_status = Signal()
        frames_ok, frames_nak = Signal(16), Signal(16)
        byte_n = Signal(2)
        word_i = Signal.like(resp_words)
        crc_tx = crc_next
        status_words = Array([
            Cat(Const(PROTOCOL_VERSION, 8), self.accel_layer, self.accel_busy, Const(MW, 16)),
            Cat(level, Const(0, 16 - ptr_bits), Const(OD, 16)),
            Cat(frames_ok, frames_nak),
            self.accel_run_cycles,
            Const(self._config_id, 32),
        ])
        assert STATUS_BUSY == 0x80 and len(status_words) == STATUS_WORDS
        m.d.comb += out_rd.addr.eq((base + word_i)[:-1])

        def respond(status, words, from_status=False):
            m.d.sync += [resp_status.eq(status), resp_words.eq(words), resp_is_status.eq(from_status)]
            if isinstance(status, int) and status == ACK:
                m.d.sync += frames_ok.eq(frames_ok + 1)
            else:
                m.d.sync += frames_nak.eq(frames_nak + 1)
            m.next = "T_SYNC"

        def in_frame(on_byte):
            """A state inside a frame: a framing error or a gap ends it; a byte goes to `on_byte`."""
            with m.If(rx_error):
                m.d.sync += reason.eq(NAK_FRAMING)
                m.next = "DISCARD"
            with m.Elif(got):
                m.d.sync += crc.eq(crc_rx)
                on_byte()
            with m.Elif(quiet):
                respond(NAK_TIMEOUT, 0)

        write_domain = "comb"
        if self._registered_writes:
            write_domain = "sync"
            m.d.sync += in_wr.en.eq(0)    # (set for one cycle by the payload's fourth byte)
        words_valid = Signal()
        rd_idx = Signal(range(MW + 1))
        reset_count = Signal(range(RESET_CYCLES))

        # EXEC's decode of the frame (the command is one of the four LEN1 accepts); with
        # registered_paths, flip-flops written in CHECK
        decoded = [(Signal(name=name), value) for name, value in (
            ("is_reset", cmd == CMD_RESET), ("is_write", cmd == CMD_WRITE), ("is_read", cmd == CMD_READ),
            ("is_status", cmd == CMD_STATUS), ("repeat", seq_known & (seq == last_seq)))]
        if self._registered_paths:
            is_reset, is_write, is_read, is_status, repeat = (reg for reg, _ in decoded)
        else:
            is_reset, is_write, is_read, is_status, repeat = (value for _, value in decoded)

        with m.FSM(name="link"):
            with m.State("HUNT"):
                with m.If(got & (byte == SYNC_COMMAND)):
                    m.d.sync += crc.eq(CRC_INIT)
                    m.next = "CMD"

            with m.State("CMD"):
                def on_cmd():
                    m.d.sync += cmd.eq(byte)
                    m.next = "SEQ"
                in_frame(on_cmd)
            with m.State("SEQ"):
                def on_seq():
                    m.d.sync += seq.eq(byte)
                    m.next = "LEN0"
                in_frame(on_seq)
            with m.State("LEN0"):
                def on_len0():
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LEN1"
                in_frame(on_len0)
            def length_verdict(new_len):
                """(known, ok, empty): the command is one of the four, its payload length fits it,
                the payload is empty."""
                known, ok = Signal(), Signal()
                with m.Switch(cmd):
                    with m.Case(CMD_WRITE):
                        m.d.comb += [known.eq(1), ok.eq((new_len[:2] == 0) & (new_len <= 4 * MW))]
                    with m.Case(CMD_READ):
                        m.d.comb += [known.eq(1), ok.eq(new_len == 2)]
                    with m.Case(CMD_STATUS, CMD_RESET):
                        m.d.comb += [known.eq(1), ok.eq(new_len == 0)]
                return known, ok, new_len == 0

            def check_length(known, ok, empty):
                """The frame's next state from `length_verdict`."""
                with m.If(~known):
                    m.d.sync += reason.eq(NAK_COMMAND)
                    m.next = "DISCARD"
                with m.Elif(~ok):
                    m.d.sync += reason.eq(NAK_LENGTH)
                    m.next = "DISCARD"
                with m.Elif(empty):
                    m.next = "CRC0"
                with m.Else():
                    m.next = "PAYLOAD"

            with m.State("LEN1"):
                def on_len1():
                    new_len = Cat(length[:8], byte)
                    m.d.sync += [length[8:].eq(byte), left.eq(new_len), byte_i.eq(0), n_words.eq(0)]
                    if self._registered_paths:
                        m.next = "LENGTH"
                    else:
                        check_length(*length_verdict(new_len))
                in_frame(on_len1)
            if self._registered_paths:
                # (the UP5K's Fmax) the length is checked from the register, its verdict registered
                # before it decides (two cycles; the next byte is a character time away): the
                # received byte, the length compares and the state decode had been one path of 9
                # logic levels, the compares and the decode still 9 after the length register
                verdict = [Signal(name=n) for n in ("length_known", "length_ok", "length_empty")]
                with m.State("LENGTH"):
                    m.d.sync += [r.eq(v) for r, v in zip(verdict, length_verdict(length))]
                    m.next = "VERDICT"
                with m.State("VERDICT"):
                    check_length(*verdict)
            with m.State("PAYLOAD"):
                def on_payload():
                    m.d.sync += [acc.eq(Cat(acc[8:], byte)), byte_i.eq(byte_i + 1), left.eq(left - 1)]
                    with m.If(byte_i == 3):
                        m.d.sync += n_words.eq(n_words + 1)
                        m.d[write_domain] += [in_wr.addr.eq(n_words), in_wr.data.eq(Cat(acc[8:], byte)), in_wr.en.eq(1)]
                    with m.If(left == 1):
                        m.next = "CRC0"
                in_frame(on_payload)
            with m.State("CRC0"):
                def on_crc0():
                    m.next = "CRC1"
                in_frame(on_crc0)
            with m.State("CRC1"):
                def on_crc1():
                    if self._registered_paths:
                        m.next = "CHECK"      # (in_frame has taken the CRC into `crc`)
                        return
                    with m.If(crc_rx == 0):
                        m.next = "EXEC"
                    with m.Else():
                        m.d.sync += reason.eq(NAK_CRC)
                        m.next = "DISCARD"
                in_frame(on_crc1)
            if self._registered_paths:
                # (the UP5K's Fmax) the frame's CRC is checked a cycle after its last byte, on the
                # register: the CRC update, its 16-bit compare and the state decode had been one
                # path of 10 logic levels into `reason`. EXEC's decode is registered meanwhile.
                with m.State("CHECK"):
                    m.d.sync += [reg.eq(value) for reg, value in decoded]
                    with m.If(crc == 0):
                        m.next = "EXEC"
                    with m.Else():
                        m.d.sync += reason.eq(NAK_CRC)
                        m.next = "DISCARD"

            with m.State("DISCARD"):
                # drop everything until the line is quiet, so the rest of a bad frame is not parsed
                with m.If(quiet):
                    respond(reason, 0)

            with m.State("EXEC"):
                with m.If(is_reset):
                    m.d.sync += reset_count.eq(0)
                    m.next = "RESET"
                with m.Elif(repeat):
                    # the host did not get our answer: answer again, do nothing twice
                    with m.If(is_read):
                        respond(ACK, last_count)
                    with m.Elif(is_status):
                        respond(ACK, STATUS_WORDS, from_status=True)
                    with m.Else():
                        respond(ACK, 0)
                with m.Else():
                    # a new frame: the words of the last READ were delivered
                    m.d.sync += [base.eq(base + last_count), last_count.eq(0), last_seq.eq(seq), seq_known.eq(1)]
                    with m.If(is_write):
                        m.d.sync += [rd_idx.eq(0), words_valid.eq(0)]
                        m.next = "DRAIN"
                    with m.Elif(is_read):
                        m.next = "READ"
                    with m.Else():
                        respond(ACK, STATUS_WORDS, from_status=True)

            if not self._registered_paths:
                with m.State("READ"):
                    wanted = acc[16:32]    # the u16 payload of READ
                    count = Signal(range(MW + 1))
                    m.d.comb += count.eq(MW)
                    with m.If((wanted <= level) & (wanted <= MW)):
                        m.d.comb += count.eq(wanted)
                    with m.Elif(level <= MW):
                        m.d.comb += count.eq(level)
                    m.d.sync += last_count.eq(count)
                    respond(ACK, count)
            else:
                # (the level only grows meanwhile, so a level a cycle old (`level_was`, no
                # subtractor in front of the compares) counts words already buffered)
                wanted_ok, level_ok = Signal(name="wanted_ok"), Signal(name="level_ok")
                level_was, level_then = Signal(ptr_bits, name="level_was"), Signal(ptr_bits, name="level_then")
                m.d.sync += level_was.eq(level)
                with m.State("READ"):
                    wanted = acc[16:32]    # the u16 payload of READ (kept until the answer loads)
                    m.d.sync += [wanted_ok.eq((wanted <= level_was) & (wanted <= MW)), level_ok.eq(level_was <= MW),
                                 level_then.eq(level_was)]
                    m.next = "READ_COUNT"
                with m.State("READ_COUNT"):
                    count = Signal(range(MW + 1))
                    m.d.comb += count.eq(Mux(wanted_ok, acc[16:32], Mux(level_ok, level_then, MW)))
                    m.d.sync += last_count.eq(count)
                    respond(ACK, count)

            with m.State("DRAIN"):
                # the frame buffer into the accelerator, one word per accepted transfer
                m.d.comb += [self.words.valid.eq(words_valid), self.words.payload.eq(in_rd.data),
                             in_rd.addr.eq(rd_idx), in_rd.en.eq(~words_valid | self.words.ready)]
                with m.If(~words_valid | self.words.ready):
                    with m.If(rd_idx != n_words):
                        m.d.sync += [words_valid.eq(1), rd_idx.eq(rd_idx + 1)]
                    with m.Else():
                        m.d.sync += words_valid.eq(0)
                        respond(ACK, 0)

            with m.State("RESET"):
                m.d.comb += [self.accel_reset.eq(1), clearing.eq(1)]
                m.d.sync += [reset_count.eq(reset_count + 1), wr_ptr.eq(0), base.eq(0), last_count.eq(0),
                             seq_known.eq(0)]
                with m.If(reset_count == RESET_CYCLES - 1):
                    respond(ACK, 0)

            # -- the answer: sync byte, header word, payload words, CRC high then low ------------
            with m.State("T_SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(SYNC_RESPONSE)]
                with m.If(self.tx.ready):
                    m.d.sync += [crc.eq(CRC_INIT), shreg.eq(Cat(resp_status, seq, (resp_words * 4)[:16])),
                                 byte_n.eq(0), word_i.eq(0)]
                    m.next = "T_WORD"
            with m.State("T_WORD"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(shreg[:8]), crc_byte.eq(shreg[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [crc.eq(crc_tx), shreg.eq(shreg >> 8), byte_n.eq(byte_n + 1)]
                    with m.If(byte_n == 3):
                        with m.If(word_i == resp_words):
                            m.next = "T_CRC_HI"
                        with m.Else():
                            m.next = "T_LOAD"
            with m.State("T_LOAD"):
                # out_rd.addr has followed word_i for at least the four cycles of the last word
                m.d.sync += [shreg.eq(Mux(resp_is_status, status_words[word_i], out_rd.data)),
                             word_i.eq(word_i + 1)]
                m.next = "T_WORD"
            with m.State("T_CRC_HI"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[8:])]
                with m.If(self.tx.ready):
                    m.next = "T_CRC_LO"
            with m.State("T_CRC_LO"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[:8])]
                with m.If(self.tx.ready):
                    m.next = "HUNT"
        return m


class StreamRegister(wiring.Component):
    """A register stage on a valid/ready stream: payload and valid from flip-flops, full
    throughput (ready passes through: `i.ready = ~o.valid | o.ready`). `cut_ready`: `i.ready`
    from the flip-flop too (`~o.valid`), so no path runs through the stage in either direction,
    at one idle cycle after each word taken."""

    def __init__(self, width: int, *, cut_ready: bool = False):
        self._cut_ready = cut_ready
        super().__init__({"i": In(stream.Signature(unsigned(width))), "o": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform):
        m = Module()
        if self._cut_ready:
            m.d.comb += self.i.ready.eq(~self.o.valid)
            with m.If(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.ready):
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
            return m
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class HostTop(wiring.Component):
    """The accelerator behind a UART: what goes on a board.

    `HostTop(cfg, clk_freq=25e6, baud=115200)` on a board (the divisor follows from the clock),
    or `HostTop(cfg, divisor=4)` for simulation. Standalone, the UART is the `rx`/`tx` ports
    (idle high); elaborated by an amaranth-boards platform, it takes the board's `uart` resource
    (number 0) and leaves the ports unused. `busy` mirrors the accelerator's (for an LED).
    `max_words`: words per frame (frame buffer depth); `out_depth`: result buffer words;
    `idle_bytes`: character times of silence that end a frame cut short.
    """

    def __init__(self, cfg: AccelConfig, *, divisor: int | None = None, clk_freq: float | None = None,
                 baud: int = 115200, max_words: int = DEFAULT_MAX_WORDS, out_depth: int = 512, idle_bytes: int = 16):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if divisor is None:
            if clk_freq is None:
                raise ValueError("give the baud divisor or the clock frequency (clk_freq, with baud)")
            divisor = baud_divisor(clk_freq, baud)
        if not isinstance(idle_bytes, int) or idle_bytes < 2:
            raise ValueError(f"idle_bytes must be an integer >= 2, not {idle_bytes!r}")
        self._cfg, self._divisor = cfg, divisor
        self._link_args = {"max_words": max_words, "out_depth": out_depth, "idle_cycles": idle_bytes * 10 * divisor,
                           "config_id": config_id(cfg),
                           **({"registered_paths": True} if cfg.compact_control or cfg.memory_pipeline else {}),
                           **({"registered_writes": True} if cfg.memory_pipeline else {})}
        check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1)})

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTRx(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self._divisor)
        m.submodules.link = link = HostLink(**self._link_args)
        accel = QjouleAccel(self._cfg)
        # The link's RESET state resets the accelerator through a register: the reset reaches most
        # of its flip-flops across the die (from the link's state decode it bounded the 8x8
        # ULX3S build's Fmax, 16.8 ns of routing). RESET lasts RESET_CYCLES; one cycle later is
        # no matter.
        accel_reset = Signal(reset_less=bool(self._cfg.memory_pipeline))
        if self._cfg.memory_pipeline:
            # The large device: the accelerator runs in its own domain on the same clock, whose
            # reset is asynchronous, so the reset net is not a timed path (on the 8x8 ULX3S build
            # its routing, 15.3 ns to thousands of flip-flops, was the next critical path after
            # the tap walk). It is a register (no glitch), set by the board's reset (where its
            # domain has one: the ECP5 platforms' has none, configuration initializes every
            # flip-flop) or the link's RESET, and cleared on a clock edge while the accelerator
            # has no input and nothing to do, so a flip-flop that leaves reset a cycle late holds
            # the same value anyway.
            m.d.sync += accel_reset.eq(link.accel_reset | ResetSignal("sync", allow_reset_less=True))
            m.domains.accel = accel_domain = ClockDomain("accel", async_reset=True, local=True)
            m.d.comb += [accel_domain.clk.eq(ClockSignal("sync")), accel_domain.rst.eq(accel_reset)]
            in_accel_domain = DomainRenamer("accel")
        else:
            m.d.sync += accel_reset.eq(link.accel_reset)
            in_accel_domain = ResetInserter(accel_reset)
        m.submodules.accel = in_accel_domain(accel)

        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)
        if self._cfg.memory_pipeline or self._cfg.compact_control:
            # The large-device setting: the frame buffer's block-RAM output into a register, not
            # through the input unit's parser logic (its clock-to-out plus that logic bounded
            # Fmax); reset with the accelerator, so no stale word survives a link reset. The ready
            # is cut too: the path ran from the input unit's ready through the link's frame-buffer
            # read back into the input unit's enables (the UP5K), and from the parser's state
            # through the link's drain counter (8 levels on the ULX3S). A word per two cycles at
            # most: the UART brings one per ~350 bit times, and the input unit spends at least
            # four cycles on an image word's pixels.
            slice_ = StreamRegister(WORD_BITS, cut_ready=True)
            m.submodules.words_reg = in_accel_domain(slice_)
            wiring.connect(m, link.words, slice_.i)
            wiring.connect(m, slice_.o, accel.i)
        else:
            wiring.connect(m, link.words, accel.i)
        wiring.connect(m, accel.o, link.results)
        m.d.comb += [link.rx_error.eq(uart_rx.framing_error), link.accel_busy.eq(accel.busy),
                     link.accel_layer.eq(accel.layer), link.accel_run_cycles.eq(accel.run_cycles),
                     self.busy.eq(accel.busy)]

        if platform is None:
            m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        else:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_pin = rx_pin = io.Buffer("i", uart.rx)
            m.submodules.tx_pin = tx_pin = io.Buffer("o", uart.tx)
            m.d.comb += [uart_rx.rx.eq(rx_pin.i), tx_pin.o.eq(uart_tx.tx)]
        return m
