"""Formal harnesses for the input side: the accelerator's input stream and the host link's streams.

- `AccelInputHarness`: `qjoule_accel.i` is a sink, so "no transfer lost or duplicated" means: every
  word it accepts is stored where the section format (docs/interface.md) says, once, in order. A
  scoreboard written from that format, not from top.py, follows the accepted words (header
  `type << 24 | length`, then `length` payload words) and predicts each buffer write: a WEIGHTS or
  PARAMS section of start address a carries wide words of `ceil(bits/32)` chunks, low chunk first,
  the j-th of them written to a + j (modulo the port's address width; the encoder keeps a + n
  inside the buffer; the param buffer takes each chunk k as it arrives, under write enable k); a PROGRAM section carries n_layers, the image descriptor, then layer entries
  written to table addresses 0, 1, ...; other kinds write nothing. Asserted in every cycle: each
  buffer's write enable is exactly the predicted one, with the predicted address and data. So
  no accepted word is dropped, doubled, reordered or misplaced, and nothing else is written. The
  source is free but obeys the stream rules (valid and payload held until taken). The weight,
  param and table write ports belong to the parser in every cycle, so accepting a word and
  storing it are the same thing (the parser never accepts a word it cannot store). The sequencer and the buffers are cut points (`cut_modules`: their outputs,
  e.g. the sequencer's `need_weights` and `done`, free in every cycle), so any run and any
  request for external weights are covered, IMAGE sections included. Bounded (`INPUT_DEPTH`).
- `i.ready` and `i.valid`: top.py derives ready from its state alone (HEADER: not running, or
  the sequencer asks for weights; PAYLOAD: 1; PIXELS: words left and none being written), so no
  source can form a loop through it; read from the code, not proven here.
- `HostLinkStreamHarness`: `HostLink` (the frame decoder between the UART and the accelerator's
  streams) with every input free: its two source streams, `words` (to the accelerator) and `tx`
  (bytes to the UART), keep valid and payload while not ready. Its sinks (`rx`, `results`) are
  inputs of the rules' other side. Bounded (`LINK_DEPTH`).

`DroppedReadyHostLink` is the weakened twin: the link sees its `words` consumer always ready
(the dropped handshake term), so its output moves on while stalled.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Const, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.program import (IMAGE_WORDS, LAYER_WORDS, SECTION_PARAMS, SECTION_PROGRAM,
                            SECTION_WEIGHTS, WORD_BITS, chunks, param_word_bits, weight_word_bits)

from .formal import Check, cut_modules
from .formal_streams import _stable_while_stalled, drive_free_inputs, free_inputs

__all__ = ["AccelInputHarness", "DroppedReadyHostLink", "HostLinkStreamHarness", "input_checks"]

#: Cycles from reset: WEIGHTS words (from step 3) and a PARAMS word (a header, the address and
#: ceil(param_word_bits/32) chunks: 7 on the tiny variant) are reached within it, a PROGRAM
#: section's first table entry (1 + 1 + IMAGE_WORDS + LAYER_WORDS words) is not; depth 32 did not
#: finish in 400 s (about 2 minutes per step from step 15: the scoreboard's counters are related
#: to the parser's only through the whole input history without invariants on the parser's
#: state, which top.py keeps in local signals).
INPUT_DEPTH = 14
#: Cycles from reset: a WRITE frame of one word through the link's CRC check into `words`, and its
#: ACK bytes on `tx` (tests show both streams carry transfers within it).
LINK_DEPTH = 30


class AccelInputHarness(wiring.Component):
    """Free input source (obeying the rules), scoreboard on the weight, param and table write ports."""

    def __init__(self, cfg: AccelConfig, *, dut=None):
        from qjoule.gateware.top import QjouleAccel
        self._cfg = cfg
        self._accel = dut or QjouleAccel(cfg)
        super().__init__({"in_valid": In(1), "in_payload": In(WORD_BITS), "out_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        accel = self._accel
        fragment = accel.elaborate(platform)          # elaborated here to watch its buffers' ports
        accel._MustUse__silence = True
        m.submodules.accel = fragment
        self.buffers = {name: fragment.submodules[name] for name in ("weights", "params", "table")}
        buffers = {SECTION_WEIGHTS: self.buffers["weights"], SECTION_PARAMS: self.buffers["params"],
                   SECTION_PROGRAM: self.buffers["table"]}
        m.d.comb += [Assume(~ResetSignal()), accel.i.valid.eq(self.in_valid), accel.i.payload.eq(self.in_payload),
                     accel.o.ready.eq(self.out_ready)]
        word, taken = self.in_payload, accel.i.valid & accel.i.ready

        # the source's rules: once offered, valid and payload stay until taken
        offered, old = Signal(), Signal(WORD_BITS)
        m.d.sync += [offered.eq(self.in_valid & ~accel.i.ready), old.eq(self.in_payload)]
        m.d.comb += Assume(~offered | (self.in_valid & (self.in_payload == old)))

        # -- the scoreboard: the section format ---------------------------------------------------
        in_payload = Signal()                  # the next word is a payload word (else a header)
        kind, remaining, index = Signal(8), Signal(24), Signal(24)
        address = Signal(24)                   # where the next wide word goes
        chunk = Signal(range(LAYER_WORDS + chunks(param_word_bits(cfg)) + 1))
        widest = max(LAYER_WORDS, chunks(param_word_bits(cfg)), chunks(weight_word_bits(cfg)))
        assembled = Signal(widest * WORD_BITS)
        n_chunks = Signal.like(chunk)
        m.d.comb += n_chunks.eq(Mux(kind == SECTION_PROGRAM, LAYER_WORDS,
                                    Mux(kind == SECTION_PARAMS, chunks(param_word_bits(cfg)),
                                        chunks(weight_word_bits(cfg)))))

        first_wide = Mux(kind == SECTION_PROGRAM, IMAGE_WORDS + 1, 1)   # payload index of the first chunk
        carries_words = (kind == SECTION_PROGRAM) | (kind == SECTION_PARAMS) | (kind == SECTION_WEIGHTS)
        completes = Signal()                   # this transfer is the last chunk of a wide word
        expected = Signal.like(assembled)
        m.d.comb += expected.eq(assembled)
        with m.Switch(chunk):
            for k in range(widest):
                with m.Case(k):
                    m.d.comb += expected[k * WORD_BITS:(k + 1) * WORD_BITS].eq(word)
        with m.If(taken):
            with m.If(~in_payload):
                m.d.sync += [kind.eq(word[24:]), remaining.eq(word[:24]), index.eq(0), chunk.eq(0),
                             in_payload.eq(word[:24] != 0)]
            with m.Else():
                m.d.sync += [remaining.eq(remaining - 1), index.eq(index + 1), in_payload.eq(remaining != 1)]
                with m.If(index == 0):
                    m.d.sync += address.eq(Mux(kind == SECTION_PROGRAM, 0, word))
                with m.Elif(carries_words & (index >= first_wide)):
                    m.d.sync += [assembled.eq(expected), chunk.eq(chunk + 1)]
                    with m.If(chunk == n_chunks - 1):
                        m.d.comb += completes.eq(1)
                        m.d.sync += [chunk.eq(0), address.eq(address + 1)]

        # The param buffer takes each chunk as it arrives (one write enable per chunk): the
        # accepted word itself, at the wide word's address, under chunk `chunk`'s enable.
        params = buffers.pop(SECTION_PARAMS)
        stores = Signal()
        m.d.comb += stores.eq(taken & in_payload & (kind == SECTION_PARAMS) & (index != 0))
        m.d.comb += [Assert(params.wr_en == Mux(stores, Const(1, len(params.wr_en)) << chunk, 0)),
                     Assert(~stores | (params.wr_addr == address[:len(params.wr_addr)])),
                     Assert(~stores | (params.wr_data == word))]
        for section, buf in buffers.items():
            bits = len(buf.wr_data)
            writes = completes & (kind == section)
            m.d.comb += [Assert(buf.wr_en == writes),
                         Assert(~writes | (buf.wr_addr == address[:len(buf.wr_addr)])),
                         Assert(~writes | (buf.wr_data == expected[:bits]))]
        return m


class DroppedReadyHostLink(wiring.Component):
    """HostLink whose `words` output ignores its consumer's ready (a dropped handshake term)."""

    def __init__(self, **link_args):
        from qjoule.gateware.host_top import HostLink
        self._inner = HostLink(**link_args)
        super().__init__(self._inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        for path, member, value in self.signature.flatten(self):
            inner_value = inner
            for part in path:
                inner_value = getattr(inner_value, part) if isinstance(part, str) else inner_value[part]
            if path == ("words", "ready"):
                m.d.comb += inner_value.eq(1)
            elif member.flow == wiring.In:
                m.d.comb += inner_value.eq(value)
            else:
                m.d.comb += value.eq(inner_value)
        return m


#: The accelerator's sequencer and buffers as cut points (the parser is what is checked).
ACCEL_CUT = cut_modules("top.accel.seq", "top.accel.act", "top.accel.weights", "top.accel.params", "top.accel.table")

LINK_ARGS = {"max_words": 2, "out_depth": 2, "idle_cycles": 2}


class HostLinkStreamHarness(wiring.Component):
    """HostLink with every input free; `words` and `tx` hold valid and payload while not ready."""

    def __init__(self, *, dut=None):
        from qjoule.gateware.host_top import HostLink
        self._link = dut or HostLink(**LINK_ARGS)
        super().__init__(free_inputs(self._link))

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self._link
        m.d.comb += Assume(~ResetSignal())
        drive_free_inputs(m, self, link)
        _stable_while_stalled(m, link.words, "words")
        _stable_while_stalled(m, link.tx, "tx")
        return m


def input_checks(cfg: AccelConfig) -> list[Check]:
    return [
        Check(f"streams.accel_in.{cfg.name}.q{cfg.q}", "streams", lambda: AccelInputHarness(cfg), "bmc", INPUT_DEPTH,
              "qjoule_accel.i: each PROGRAM/PARAMS/WEIGHTS word accepted is written once, in order, at its address "
              "(scoreboard on the buffer write ports; sequencer and memories cut: their outputs free)",
              script=ACCEL_CUT),
        Check("streams.host_link", "streams", lambda: HostLinkStreamHarness(), "bmc", LINK_DEPTH,
              "HostLink words and tx: valid and payload held while not ready, any bytes and backpressure"),
    ]
