"""The datapath alone (MacArray + one PostProcess per column) as a synthesizable design.

Used for synthesis before the full accelerator exists, and to measure the datapath's own area and
Fmax. The PostProcess of column c takes the accumulator of row `drain_row`, as a sequencer
draining the array row by row would.
"""

from __future__ import annotations

from amaranth.hdl import Array, Elaboratable, Module, Signal, Value
from amaranth.lib import data

from qjoule.config import AccelConfig
from qjoule.gateware.array import MacArray
from qjoule.gateware.postproc import PostProcess, pp_input_layout

__all__ = ["Datapath"]


class Datapath(Elaboratable):
    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.array = MacArray(cfg)
        self.postprocs = [PostProcess(cfg) for _ in range(cfg.cols)]
        self.drain_row = Signal(range(cfg.rows))
        params = data.StructLayout({name: pp_input_layout(cfg)[name].shape for name in ("mult", "bias", "shift", "act")})
        self.pp_params = Signal(data.ArrayLayout(params, cfg.cols))
        self.pp_valid = Signal()
        self.pp_ready = Signal()
        # Port lists for ScanWrapper: everything the design reads and everything it drives.
        a = self.array
        self.inputs = [Value.cast(v) for v in (a.act, a.weight, a.row_valid, a.lane_valid, a.en, a.clear,
                                               a.shift, a.pixel_mode, self.drain_row, self.pp_params,
                                               self.pp_valid, self.pp_ready)]
        self.outputs = [Value.cast(a.acc)]
        for pp in self.postprocs:
            self.outputs += [Value.cast(pp.o.payload), pp.o.valid, pp.i.ready]

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.array = self.array
        accs = Array(self.array.acc[r * cfg.cols + c] for r in range(cfg.rows) for c in range(cfg.cols))
        for c, pp in enumerate(self.postprocs):
            m.submodules[f"postproc_{c}"] = pp
            params = self.pp_params[c]
            m.d.comb += [
                pp.i.payload.acc.eq(accs[self.drain_row * cfg.cols + c]),
                pp.i.payload.mult.eq(params.mult),
                pp.i.payload.bias.eq(params.bias),
                pp.i.payload.shift.eq(params.shift),
                pp.i.payload.act.eq(params.act),
                pp.i.valid.eq(self.pp_valid),
                pp.o.ready.eq(self.pp_ready),
            ]
        return m
