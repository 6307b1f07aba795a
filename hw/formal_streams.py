"""Formal harnesses for the valid/ready streams (amaranth.lib.stream rules).

- `PostProcStreamHarness`: `PostProcess` (the one stream-to-stream unit of the gateware; the
  sequencer feeds C of them) under any input timing and any output backpressure. The source obeys
  the stream rules (assumed: once valid, it stays valid with the same payload until taken); the
  payload is a sequence number (acc = transfers accepted so far, m = 1, b = 0, s = 0, no
  activation, so the logit is acc). Asserted: the output keeps valid and its payload while not
  ready; the n-th output transfer carries n (nothing lost, duplicated or reordered; a counter
  scoreboard); never more outputs than inputs.
- `SequencerOutHarness`: `qjoule_accel`'s output stream comes straight from the sequencer
  (`wiring.connect(seq.out, o)`); the sequencer is driven with free buffer read data, table
  entries and controls (every program, every memory content), and its `out` must keep valid and
  payload while not ready. Bounded (`SEQ_OUT_DEPTH` cycles from reset). `qjoule_accel`'s input stream is a sink: the rules put nothing on a
  sink's ready.

`DroppedReadyPostProcess` is the weakened twin: `i.ready` without its `~o.valid | o.ready` term
(it accepts while stalled), which loses transfers.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig
from qjoule.gateware.postproc import PostAct, PostProcess, pp_input_layout, pp_output_layout

from .formal import Check

__all__ = ["DroppedReadyPostProcess", "PostProcStreamHarness", "SequencerOutHarness", "stream_checks"]

#: Bounded depth of the PostProcess scoreboard: items through the 8-stage pipeline with up to 5 stall cycles.
PP_STREAM_DEPTH = 14
#: Bounded depth of the accelerator-output check: a run's start, a short layer's first tiles and
#: their logits (k-induction up to 12 did not close: unreachable states with both output sources
#: active are not excluded without invariants on the sequencer's FSMs).
SEQ_OUT_DEPTH = 40


class DroppedReadyPostProcess(wiring.Component):
    """PostProcess whose i.ready ignores the output side (a dropped handshake term)."""

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({"i": In(stream.Signature(pp_input_layout(cfg))),
                          "o": Out(stream.Signature(pp_output_layout(cfg)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = PostProcess(self._cfg)
        m.d.comb += [inner.i.valid.eq(self.i.valid), inner.i.payload.eq(self.i.payload), self.i.ready.eq(1),
                     self.o.valid.eq(inner.o.valid), self.o.payload.eq(inner.o.payload), inner.o.ready.eq(self.o.ready)]
        return m


def free_inputs(dut: wiring.Component, skip: tuple[str, ...] = ()) -> dict[str, In]:
    """A harness signature member per input port bit-field of `dut` (named by its path joined with
    "__"), except the names in `skip`: the solver drives them freely (see `drive_free_inputs`)."""
    return {name: In(member.shape) for name, member, _ in _input_ports(dut) if name not in skip}


def drive_free_inputs(m: Module, harness: wiring.Component, dut: wiring.Component, skip: tuple[str, ...] = ()):
    """Connect `dut`'s inputs to the harness's members of the same name (from `free_inputs`)."""
    for name, _, value in _input_ports(dut):
        if name not in skip:
            m.d.comb += value.eq(getattr(harness, name))


def _input_ports(dut: wiring.Component):
    for path, member, value in dut.signature.flatten(dut):
        if member.flow == wiring.In:
            yield "__".join(map(str, path)), member, value


def _stable_while_stalled(m: Module, port, prefix: str):
    """Assert: valid & ~ready in one cycle -> valid and the same payload in the next."""
    was_stalled = Signal(name=f"{prefix}_was_stalled")
    old = Signal.like(port.payload, name=f"{prefix}_old_payload")
    m.d.sync += [was_stalled.eq(port.valid & ~port.ready), old.eq(port.payload)]
    m.d.comb += Assert(~was_stalled | (port.valid & (Value.cast(port.payload) == Value.cast(old))))


class PostProcStreamHarness(wiring.Component):
    def __init__(self, cfg: AccelConfig, *, dut=None):
        self._cfg = cfg
        self._dut = dut
        super().__init__({"in_valid": In(1), "out_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.dut = dut = self._dut or PostProcess(cfg)
        m.d.comb += Assume(~ResetSignal())
        count_bits = min(cfg.acc_bits, 16)
        sent = Signal(count_bits)      # input transfers so far = the next input's sequence number
        received = Signal(count_bits)  # output transfers so far
        m.d.comb += [dut.i.valid.eq(self.in_valid), dut.o.ready.eq(self.out_ready),
                     dut.i.payload.acc.eq(sent), dut.i.payload.mult.eq(1), dut.i.payload.bias.eq(0),
                     dut.i.payload.shift.eq(0), dut.i.payload.act.eq(PostAct.NONE)]
        # the source's rule: once valid, it stays valid until taken (its payload, `sent`, only
        # changes on a transfer)
        was_offering = Signal()
        m.d.sync += was_offering.eq(dut.i.valid & ~dut.i.ready)
        m.d.comb += Assume(~was_offering | self.in_valid)
        with m.If(dut.i.valid & dut.i.ready):
            m.d.sync += sent.eq(sent + 1)
        with m.If(dut.o.valid & dut.o.ready):
            m.d.sync += received.eq(received + 1)
            m.d.comb += Assert(dut.o.payload.logit == received)       # in order, none lost or doubled
        m.d.comb += Assert((sent - received)[:count_bits] <= PostProcess.latency_for(cfg) + 1)   # (the real unit's)
        _stable_while_stalled(m, dut.o, "o")
        return m


class SequencerOutHarness(wiring.Component):
    """The sequencer with every input free; its output stream must hold while stalled."""

    def __init__(self, cfg: AccelConfig):
        from amaranth.utils import ceil_log2

        from qjoule.program import bank_depth as _bank_depth
        from qjoule.gateware.sequencer import Sequencer
        self._cfg = cfg
        # addr_bits as ActivationBuffer(cfg) has them (without building its memories)
        self._seq = Sequencer(cfg, max(1, ceil_log2(_bank_depth(cfg))), cfg.weight_words)
        super().__init__(free_inputs(self._seq))

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = self._seq
        m.d.comb += Assume(~ResetSignal())
        drive_free_inputs(m, self, seq)
        _stable_while_stalled(m, seq.out, "out")
        return m


def stream_checks(cfg: AccelConfig) -> list[Check]:
    return [
        Check(f"streams.postproc.{cfg.name}.q{cfg.q}", "streams", lambda: PostProcStreamHarness(cfg), "bmc",
              PP_STREAM_DEPTH, "PostProcess: payload held while stalled; output n carries input n (counter scoreboard)"),
        Check(f"streams.accel_out.{cfg.name}.q{cfg.q}", "streams", lambda: SequencerOutHarness(cfg), "bmc", SEQ_OUT_DEPTH,
              "qjoule_accel.o (= sequencer.out): valid and payload held while not ready, any program and memory"),
    ]
