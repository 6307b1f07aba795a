"""Formal harness for the sequencer: its buffer addresses stay inside the buffers.

The sequencer is driven with free controls and free memory contents, and its layer table returns
one free but *well-formed* conv3x3 hidden-layer entry (every field as `qjoule.program.encode`
would write it for some layer the config admits; the constraints are the encoder's own checks):

    1 <= C_in, C_out <= max_channels, 1 <= H <= max_height, 1 <= W <= max_width,
    G = ceil(C_in/S) (via lanes_last = C_in − (G−1)·S in 1..S), bank columns B = ceil(W/R),
    row_stride = B·G, H·row_stride <= bank depth (input map fits a half), the output map likewise,
    T = ceil(C_out/C) output tiles, weight_base + T·G·9 <= weight words, param_base + T <= param words.

Asserted in every cycle of a run: a weight read issued to the array is inside the weight buffer;
an activation read that feeds a valid array row (row_valid, one cycle later) is inside its bank's
half; every activation write (any lane enabled) is inside its bank's half.

Bounded: `SEQ_DEPTH` cycles from reset (the run starts when the free `start` says so), which
covers the first tiles' issue cycles of any such layer but not a whole layer; k-induction over
the address counters was out of reach in this session.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.program import KIND_CONV, bank_depth, param_words

from .formal import Check

__all__ = ["SEQ_DEPTH", "SequencerBoundsHarness", "sequencer_checks"]

SEQ_DEPTH = 40


class SequencerBoundsHarness(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        from amaranth.utils import ceil_log2

        from qjoule.program import bank_depth as _bank_depth
        from qjoule.gateware.sequencer import Sequencer, layer_layout
        self._cfg = cfg
        self._addr_bits = max(1, ceil_log2(_bank_depth(cfg)))  # = ActivationBuffer(cfg).addr_bits
        self._seq = Sequencer(cfg, self._addr_bits, cfg.weight_words)
        self._layout = layer_layout()
        free = {}
        for path, member, value in self._seq.signature.flatten(self._seq):
            name = "__".join(map(str, path))
            if member.flow == wiring.In and name != "table__rd_data":
                free[name] = In(member.shape)
        free["entry"] = In(self._layout)
        # witnesses of the entry's shape (free each cycle, pinned by the assumptions)
        free["bank_cols"] = In(range(cfg.max_width + 1))
        free["c_out"] = In(range(cfg.max_channels + 1))
        super().__init__(free)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, S = cfg.rows, cfg.cols, cfg.lanes
        seq = self._seq
        m.submodules.seq = seq.elaborate(platform)   # elaborated here for its probes
        seq._MustUse__silence = True                # (the component object itself is not added)
        m.d.comb += Assume(~ResetSignal())
        for path, member, value in seq.signature.flatten(seq):
            name = "__".join(map(str, path))
            if member.flow == wiring.In and name != "table__rd_data":
                m.d.comb += value.eq(getattr(self, name))
        e = self.entry
        m.d.comb += seq.table.rd_data.eq(e)

        # -- a well-formed conv3x3 hidden-layer entry -----------------------------------------
        depth = bank_depth(cfg)
        bank_cols, c_out = self.bank_cols, self.c_out
        m.d.comb += Assume(
            (e.kind == KIND_CONV) & ~e.first & ~e.fold_w & ~e.fold_h & ~e.external & ~e.last & ~e.dump
            & (e.passes == 1) & (e.groups == e.pass_groups) & (e.groups >= 1)
            & (e.lanes_last >= 1) & (e.lanes_last <= S)
            & ((e.groups - 1) * S + e.lanes_last <= cfg.max_channels)
            & (e.height >= 1) & (e.height <= cfg.max_height) & (e.width >= 1) & (e.width <= cfg.max_width)
            & ((bank_cols - 1) * R < e.width) & (e.width <= bank_cols * R)
            & (e.row_stride == bank_cols * e.groups) & (e.height * e.row_stride <= depth)
            & (c_out >= 1) & (c_out <= cfg.max_channels)
            & ((e.out_groups - 1) * S < c_out) & (c_out <= e.out_groups * S)
            & ((e.out_tiles - 1) * C < c_out) & (c_out <= e.out_tiles * C)
            & (e.out_height == e.height) & (e.out_width == e.width)
            & (e.out_row_stride == bank_cols * e.out_groups) & (e.out_words == e.height * e.out_row_stride)
            & (e.out_words <= depth)
            & (e.weight_words == e.out_tiles * e.groups * 9) & (e.weight_base + e.weight_words <= cfg.weight_words)
            & (e.param_base + e.out_tiles <= param_words(cfg)))

        # -- the properties ---------------------------------------------------------------------
        probes = seq.probes
        issue, kw = probes["issue"], probes["kw"]
        m.d.comb += Assert(~issue | (seq.weights.rd_addr < cfg.weight_words))
        # reads: the address of bank (r + kw − 1) mod R at the issue cycle feeds row r
        prev_addr = [Signal(len(seq.act.rd_addr[b]), name=f"prev_rd_addr{b}") for b in range(R)]
        prev_kw = Signal.like(kw)
        m.d.sync += [prev_kw.eq(kw), *[p.eq(seq.act.rd_addr[b]) for b, p in enumerate(prev_addr)]]
        row_valid, en = probes["row_valid"], probes["en"]
        for r in range(R):
            for k, dk in enumerate((-1, 0, 1)):
                b = (r + dk) % R
                m.d.comb += Assert(~(en & row_valid[r] & (prev_kw == k)) | (prev_addr[b] < depth))
        for b in range(R):
            m.d.comb += Assert((seq.act.wr_en[b] == 0) | (seq.act.wr_addr[b] < depth))
        return m


def sequencer_checks(cfg: AccelConfig) -> list[Check]:
    return [Check(f"sequencer.bounds.conv.{cfg.name}.q{cfg.q}", "sequencer", lambda: SequencerBoundsHarness(cfg),
                  "bmc", SEQ_DEPTH, "conv3x3 hidden layer, any well-formed entry: weight/activation reads and "
                  f"activation writes inside the buffers; bounded {SEQ_DEPTH} cycles")]
