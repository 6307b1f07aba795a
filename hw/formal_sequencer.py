"""Formal harness for the sequencer: its buffer addresses stay inside the buffers.

The sequencer is driven with free controls and free memory contents, and its layer table returns
one free but *well-formed* hidden-layer entry of one kind (conv3x3, dense or maxpool2x2; every
field as `qjoule.program.encode` would write it for some layer the config admits; the
constraints are the encoder's own checks):

    1 <= C_in, C_out <= max_channels, 1 <= H <= max_height, 1 <= W <= max_width,
    G = ceil(C_in/S) (via lanes_last = C_in − (G−1)·S in 1..S), bank columns B = ceil(W/R),
    row_stride = B·G, H·row_stride <= bank depth (input map fits a half), the output map likewise
    (conv: same H, W; dense: 1×1, C_in·H·W <= max_dense_inputs; pool: H/2 × W/2, same groups),
    T = ceil(C_out/C) output tiles, weight_base + weight words <= the buffer, param_base + T <=
    param words. The first layer (pixel passes, folds) and the logits layer are not covered.

Asserted in every cycle of a run: a weight read issued to the array is inside the weight buffer;
an activation read that feeds a valid array row (row_valid, one cycle later) is inside its bank's
half (conv, dense; pool reads are not checked); every activation write (any lane enabled) is
inside its bank's half. tests/hw/test_formal.py shows each kind reaches reads and writes within
the depth (pool writes from step 8, dense from step 24, conv from step 33 on the tiny variant).

Bounded: `SEQ_DEPTH` cycles from reset (the run starts when the free `start` says so), which
covers the first tiles' issue cycles of any such layer but not a whole layer; k-induction over
the address counters was out of reach in this session.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.program import KIND_CONV, KIND_DENSE, KIND_POOL, bank_depth, param_words

from .formal import Check

__all__ = ["SEQ_DEPTH", "SequencerBoundsHarness", "sequencer_checks"]

SEQ_DEPTH = 40
KINDS = ("conv", "dense", "pool")


class SequencerBoundsHarness(wiring.Component):
    def __init__(self, cfg: AccelConfig, kind: str = "conv"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self._kind = kind
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
        free["out_bank_cols"] = In(range(cfg.max_width + 1))
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

        # -- a well-formed hidden-layer entry of the chosen kind ---------------------------------
        depth = bank_depth(cfg)
        bank_cols, c_out, out_bank_cols = self.bank_cols, self.c_out, self.out_bank_cols
        c_in = (e.groups - 1) * S + e.lanes_last
        input_map = (
            ~e.first & ~e.fold_w & ~e.fold_h & ~e.external & ~e.last & ~e.dump
            & (e.passes == 1) & (e.groups == e.pass_groups) & (e.groups >= 1)
            & (e.lanes_last >= 1) & (e.lanes_last <= S) & (c_in <= cfg.max_channels)
            & (e.height >= 1) & (e.height <= cfg.max_height) & (e.width >= 1) & (e.width <= cfg.max_width)
            & ((bank_cols - 1) * R < e.width) & (e.width <= bank_cols * R)
            & (e.row_stride == bank_cols * e.groups) & (e.height * e.row_stride <= depth))
        out_channels = (
            (c_out >= 1) & (c_out <= cfg.max_channels)
            & ((e.out_groups - 1) * S < c_out) & (c_out <= e.out_groups * S)
            & ((e.out_tiles - 1) * C < c_out) & (c_out <= e.out_tiles * C)
            & (e.param_base + e.out_tiles <= param_words(cfg)))
        if self._kind == "conv":
            layer = (
                (e.kind == KIND_CONV) & out_channels
                & (e.out_height == e.height) & (e.out_width == e.width)
                & (e.out_row_stride == bank_cols * e.out_groups) & (e.out_words == e.height * e.out_row_stride)
                & (e.weight_words == e.out_tiles * e.groups * 9))
        elif self._kind == "dense":
            layer = (
                (e.kind == KIND_DENSE) & out_channels & (c_in * e.height * e.width <= cfg.max_dense_inputs)
                & (e.out_height == 1) & (e.out_width == 1)
                & (e.out_row_stride == e.out_groups) & (e.out_words == e.out_groups)
                & (e.weight_words == e.out_tiles * e.height * e.width * e.groups))
        else:
            layer = (
                (e.kind == KIND_POOL) & (e.out_height == e.height >> 1) & (e.out_width == e.width >> 1)
                & (e.out_height >= 1) & (e.out_width >= 1) & (e.out_groups == e.groups)
                & ((out_bank_cols - 1) * R < e.out_width) & (e.out_width <= out_bank_cols * R)
                & (e.out_row_stride == out_bank_cols * e.out_groups)
                & (e.out_words == e.out_height * e.out_row_stride) & (e.weight_words == 0))
        m.d.comb += Assume(input_map & layer & (e.out_words <= depth)
                           & (e.weight_base + e.weight_words <= cfg.weight_words))

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
    return [Check(f"sequencer.bounds.{kind}.{cfg.name}.q{cfg.q}", "sequencer",
                  lambda kind=kind: SequencerBoundsHarness(cfg, kind), "bmc", SEQ_DEPTH,
                  f"{kind} hidden layer, any well-formed entry: weight/activation reads (conv, dense) and "
                  f"activation writes inside the buffers; bounded {SEQ_DEPTH} cycles")
            for kind in KINDS]
