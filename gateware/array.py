"""The R×C output-stationary MAC array.

Row r holds one output pixel, column c one output channel: each cycle row r gets one activation
word (broadcast to its C PEs) and column c one weight word (broadcast to its R PEs), so one fetch
of a weight is reused R times and one fetch of an activation C times. PE (r, c) accumulates into
`acc[r*C + c]`. `row_valid[r]` = 0 zeroes row r's products (a padded pixel), on top of the shared
`lane_valid` mask; `en`, `clear`, `shift`, `pixel_mode` (and `mode`, per-layer modes) are shared by every PE (see
`ProcessingElement`).

The inputs are registered once at the array's edge (so the broadcast fans out from a flop, not
from the sequencer's logic), which adds one cycle: `latency` = 1 + ProcessingElement.latency.
With `memory_pipeline` (the large-device setting) the broadcast takes a second register, so that
no register fans out across the array: each PE registers its own operand words from the edge
registers (`ProcessingElement(register_operands=True)`), each row has its own copy of the
controls, and each PE its own control pipeline, all kept apart in synthesis (`REPLICA`);
`latency` = 2 + ProcessingElement.latency.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig

from . import REPLICA
from .lane_pair import LanePair, pairs_lanes
from .pe import ProcessingElement, is_ice40

__all__ = ["MacArray"]


class MacArray(wiring.Component):
    def __init__(self, cfg: AccelConfig, *, acc_bits: int | None = None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        #: cycles from the ports to `acc`: inputs held before clock edge k show after edge k + latency − 1
        self.latency = (2 if cfg.memory_pipeline else 1) + ProcessingElement.latency
        self._acc_bits = cfg.acc_bits if acc_bits is None else acc_bits
        d, r, c = cfg.datapath, cfg.rows, cfg.cols
        super().__init__({
            "act": In(data.ArrayLayout(d, r)),
            "weight": In(data.ArrayLayout(d, c)),
            "row_valid": In(r),
            "lane_valid": In(cfg.max_lanes),
            "en": In(1),
            "clear": In(1),
            "shift": In(range(8)),
            "pixel_mode": In(1),
            # per-layer mixed precision only: the layer's mode, an index into cfg.modes
            **({"mode": In(range(len(cfg.modes)))} if cfg.mixed else {}),
            "acc": Out(data.ArrayLayout(signed(self._acc_bits), r * c)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg

        # Edge registers: one copy of each operand word and of the controls. Named `<port>_q` so the
        # ports keep their own names in the Verilog (sim/activity.py samples the ports).
        # (With memory_pipeline the operand words have no reset: nothing reads them before a clear.)
        no_reset = {"reset_less": True} if cfg.memory_pipeline else {}
        act = Signal.like(self.act, name="act_q", **no_reset)
        weight = Signal.like(self.weight, name="weight_q", **no_reset)
        ports = [self.en, self.clear, self.shift, self.pixel_mode, *([self.mode] if cfg.mixed else [])]
        row_valid = Signal.like(self.row_valid, name="row_valid_q")
        lane_valid = Signal.like(self.lane_valid, name="lane_valid_q")
        shared = [Signal.like(port, name=f"{port.name}_q") for port in ports]
        m.d.sync += [act.eq(self.act), weight.eq(self.weight), row_valid.eq(self.row_valid),
                     lane_valid.eq(self.lane_valid), *[copy.eq(port) for copy, port in zip(shared[:4], ports)]]
        m.d.sync += [copy.eq(port) for copy, port in zip(shared[4:], ports[4:])]

        paired = pairs_lanes(cfg) and not is_ice40(platform)
        for r in range(cfg.rows):
            row_lanes = Signal(cfg.max_lanes, name=f"row{r}_lane_valid")
            if not cfg.memory_pipeline:
                # A padded row masks every lane of its PEs.
                m.d.comb += row_lanes.eq(Mux(row_valid[r], lane_valid, 0))
                controls = shared
            else:
                # The large device: each row has its own copy of the control registers (kept
                # apart in synthesis), so a control fans out to C PEs, not R·C across the die.
                controls = [Signal.like(port, name=f"{port.name}_q{r}", attrs={REPLICA: 1}) for port in ports]
                row_lanes.attrs[REPLICA] = 1
                m.d.sync += [*[copy.eq(edge) for copy, edge in zip(controls, shared)],
                             row_lanes.eq(Mux(row_valid[r], lane_valid, 0))]
            for c in range(cfg.cols):
                # Paired lanes: columns (c, c + 1), c even, share one multiply per lane (a
                # LanePair, the PEs' stage 1); an odd last column forms its own products.
                half = None if not paired or c + 1 == cfg.cols and c % 2 == 0 else ("lo", "hi")[c % 2]
                pe = ProcessingElement(cfg, acc_bits=self._acc_bits, register_operands=bool(cfg.memory_pipeline),
                                       pair_half=half)
                m.submodules[f"pe_{r}_{c}"] = pe
                pe_ports = [pe.en, pe.clear, pe.shift, pe.pixel_mode, *([pe.mode] if cfg.mixed else [])]
                if half is None:
                    operands = [pe.act.eq(act[r]), pe.weight.eq(weight[c]), pe.lane_valid.eq(row_lanes)]
                else:
                    if half == "lo":
                        pair = LanePair(cfg, register_operands=bool(cfg.memory_pipeline))
                        m.submodules[f"pair_{r}_{c}"] = pair
                        m.d.comb += [pair.act.eq(act[r]), pair.weight_lo.eq(weight[c]),
                                     pair.weight_hi.eq(weight[c + 1]), pair.lane_valid.eq(row_lanes)]
                    operands = [pe.packed.eq(pair.packed), *([pe.codes.eq(pair.codes)] if half == "lo" else [])]
                m.d.comb += [
                    *operands,
                    *[pe_port.eq(control) for pe_port, control in zip(pe_ports, controls)],
                    self.acc[r * cfg.cols + c].eq(pe.acc),
                ]
        return m
