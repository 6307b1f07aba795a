"""Formal harness for the sequencer: its buffer addresses stay inside the buffers.

The sequencer is driven with free controls and free memory contents, and its layer table returns
one free but *well-formed* entry of one kind: a hidden conv3x3, dense or maxpool2x2 layer, the
first (pixel) layer, or the logits (last dense) layer. Every field is as `qjoule.program.encode`
would write it for some layer the config admits (the constraints are the encoder's own checks and
`MapLayout`'s raster layout, pixel i = h·W + w in bank i mod R at (i div R)·G + g):

    1 <= H <= max_height, 1 <= W <= max_width, G_c = ceil(C_in/S) (via lanes_last in 1..S),
    G = P·G_c (P = ceil(8/Q) passes for the first layer, else 1), W = wdiv·R + wmod (wmod < R),
    wdiv_g = wdiv·G, ceil(H·W/R)·G <= the bank depth (the input map fits a half), T = ceil(C_out/C)
    output tiles, param_base + T <= param words, weight_base + weight words <= the buffer;
    conv: tiles = ceil(H·W/R), R = tile_dh·W + tile_dw (tile_dw < W), the output map the same
    positions with G_out groups, weight words T·G_c·9; first layer: fold 1, 3 or 9 (fold_w,
    fold_h), fold·C_in virtual channels of C_in <= max_channels, weight words T·G_c·(9/fold);
    dense: C_in·H·W <= max_dense_inputs, a 1×1 output map, weight words T·H·W·G; logits: the
    same with C_out <= max_classes, `last`, no output map; pool: H/2 × W/2 with the same groups;
    fused (a config with pool fusion): a hidden conv with `fused_pool`, W even, H >= 2, its output
    map the pooled H/2 × W/2 one (every other kind has `fused_pool` 0).

Asserted in every cycle of a run: a weight read issued to the array is inside the weight buffer;
an activation read whose data feeds a valid array row (en, row_valid two cycles after the issue;
row r takes bank (r + rot) mod R) is inside its bank's half (conv, first, dense, logits); a
max-pool read at the buffer (one cycle after the sequencer's internal `p_issue`, not a probe:
looked up by name) is inside its half in every bank (even R, or R = 1: the max takes every bank's
word; odd R >= 3 is not checked); every activation write (any lane
enabled) is inside its bank's half, and the logits layer writes none (its logits leave on the
output stream). tests/hw/test_formal.py shows each kind reaches its reads and writes (or the
logits layer its reads) within the depth.

Bounded: `SEQ_DEPTH` cycles from reset (`SEQ_DEPTH_FUSED` for the fused kind) (the run starts when the free `start` says so), which
covers the first tiles' issue cycles of any such layer but not a whole layer; k-induction over
the address counters was out of reach.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.program import KIND_CONV, KIND_DENSE, KIND_POOL, bank_depth, param_words

from .formal import Check
from .formal_streams import drive_free_inputs, free_inputs

__all__ = ["SEQ_DEPTH", "SEQ_DEPTH_FUSED", "SequencerBoundsHarness", "sequencer_checks", "seq_depth"]

SEQ_DEPTH = 40
#: The fused kind's first pooled write needs two conv tiles (an even and an odd conv row), the
#: drain and the writer's 2-stage pipeline: ~41 cycles on tiny at W = 2.
SEQ_DEPTH_FUSED = 48
KINDS = ("conv", "dense", "pool", "first", "logits", "fused")


def internal_signal(module, name: str):
    """The signal `name` assigned in an elaborated `module` (a sequencer-internal handle that is not
    among its probes); a clear error if the sequencer no longer has it."""
    from amaranth.hdl._ast import Assign, Switch   # (the statements of an elaborated Module)

    def walk(statements):
        for statement in statements:
            if isinstance(statement, Assign):
                yield from statement.lhs._lhs_signals()
            elif isinstance(statement, Switch):
                for _patterns, body, _loc in statement.cases:
                    yield from walk(body)

    for statements in module._statements.values():
        for signal in walk(statements):
            if signal.name == name:
                return signal
    raise LookupError(f"the sequencer has no signal {name!r} (hw/formal_sequencer.py watches it); adapt the harness")


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
        self._layout = layer_layout(cfg)
        if kind == "fused" and not cfg.pool_fusion:
            raise ValueError(f"kind 'fused' needs a config with pool fusion, not {cfg.name!r} (rows={cfg.rows})")
        # the table's read data is the free `entry` below, pinned to a well-formed layer
        free = free_inputs(self._seq, skip=("table__rd_data",))
        free["entry"] = In(self._layout)
        # witnesses of the entry's shape (free each cycle, pinned by the assumptions)
        free["c_out"] = In(range(max(cfg.max_channels, cfg.max_classes) + 1))
        free["wdiv"] = In(range(cfg.max_width + 1))            # W div R
        free["in_tiles"] = In(range(cfg.max_height * cfg.max_width + 1))
        free["out_wdiv"] = In(range(cfg.max_width + 1))
        free["out_tiles_map"] = In(range(cfg.max_height * cfg.max_width + 1))
        free["fold"] = In(range(10))
        super().__init__(free)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, S = cfg.rows, cfg.cols, cfg.lanes
        kind = self._kind
        seq = self._seq
        m.submodules.seq = fragment = seq.elaborate(platform)   # elaborated here for its probes
        seq._MustUse__silence = True                           # (the component object itself is not added)
        m.d.comb += Assume(~ResetSignal())
        drive_free_inputs(m, self, seq, skip=("table__rd_data",))
        e = self.entry
        m.d.comb += seq.table.rd_data.eq(e)

        # -- a well-formed entry of the chosen kind (qjoule.program.encode's rules) -----------------
        depth = bank_depth(cfg)
        c_out, wdiv, in_tiles, fold = self.c_out, self.wdiv, self.in_tiles, self.fold
        first = kind == "first"
        passes = cfg.first_layer_passes if first else 1
        c_in = (e.pass_groups - 1) * S + e.lanes_last            # virtual channels (fold·C) in the first layer
        if first:
            # fold 1, 3 or 9 (kw, or kh and kw, taps in lanes), C real channels <= max_channels
            layer_in = (((fold == 1) & ~e.fold_w & ~e.fold_h) | ((fold == 3) & e.fold_w & ~e.fold_h)
                        | ((fold == 9) & e.fold_w & e.fold_h)) & (c_in <= fold * cfg.max_channels)
        else:
            layer_in = ~e.fold_w & ~e.fold_h & (c_in <= cfg.max_channels)
        input_map = (
            layer_in & (e.first == int(first)) & ~e.external & ~e.dump
            & (e.passes == passes) & (e.groups == passes * e.pass_groups) & (e.pass_groups >= 1)
            & (e.lanes_last >= 1) & (e.lanes_last <= S)
            & (e.height >= 1) & (e.height <= cfg.max_height) & (e.width >= 1) & (e.width <= cfg.max_width)
            & (e.wmod < R) & (e.width == wdiv * R + e.wmod) & (e.wdiv_g == wdiv * e.groups)
            & ((in_tiles - 1) * R < e.height * e.width) & (e.height * e.width <= in_tiles * R)
            & (in_tiles * e.groups <= depth))
        out_channels = (
            (c_out >= 1) & (c_out <= (cfg.max_classes if kind == "logits" else cfg.max_channels))
            & ((e.out_groups - 1) * S < c_out) & (c_out <= e.out_groups * S)
            & ((e.out_tiles - 1) * C < c_out) & (c_out <= e.out_tiles * C)
            & (e.param_base + e.out_tiles <= param_words(cfg)))
        if kind in ("conv", "first", "fused"):
            taps = 9 // fold if first else 9
            if kind == "fused":   # the output map is the pooled one
                out_wdiv, out_tiles_map = self.out_wdiv, self.out_tiles_map
                out_map = ((e.width[0] == 0) & (e.height >= 2)
                           & (e.out_height == e.height >> 1) & (e.out_width == e.width >> 1)
                           & (e.out_wmod < R) & (e.out_width == out_wdiv * R + e.out_wmod)
                           & (e.out_wdiv_g == out_wdiv * e.out_groups)
                           & ((out_tiles_map - 1) * R < e.out_height * e.out_width)
                           & (e.out_height * e.out_width <= out_tiles_map * R)
                           & (e.out_words == out_tiles_map * e.out_groups))
            else:
                out_map = ((e.out_height == e.height) & (e.out_width == e.width) & (e.out_wmod == e.wmod)
                           & (e.out_wdiv_g == wdiv * e.out_groups) & (e.out_words == in_tiles * e.out_groups))
            layer = (
                (e.kind == KIND_CONV) & ~e.last & out_channels
                & (e.tiles == in_tiles) & (e.tile_dh * e.width + e.tile_dw == R) & (e.tile_dw < e.width)
                & out_map & (e.weight_words == e.out_tiles * e.pass_groups * taps))
        elif kind in ("dense", "logits"):
            last = kind == "logits"
            out_map = ((e.out_words == 0) & (e.out_wdiv_g == 0) & (e.out_wmod == 0) if last else
                       (e.out_words == e.out_groups) & (e.out_wdiv_g == (1 // R) * e.out_groups)
                       & (e.out_wmod == 1 % R))
            layer = (
                (e.kind == KIND_DENSE) & (e.last == int(last)) & out_channels
                & (c_in * e.height * e.width <= cfg.max_dense_inputs)
                & (e.out_height == 1) & (e.out_width == 1) & out_map
                & (e.tiles == 0) & (e.tile_dh == 0) & (e.tile_dw == 0)
                & (e.weight_words == e.out_tiles * e.height * e.width * e.groups))
        else:
            out_wdiv, out_tiles_map = self.out_wdiv, self.out_tiles_map
            layer = (
                (e.kind == KIND_POOL) & ~e.last & (e.out_height == e.height >> 1) & (e.out_width == e.width >> 1)
                & (e.out_height >= 1) & (e.out_width >= 1) & (e.out_groups == e.groups)
                & (e.out_wmod < R) & (e.out_width == out_wdiv * R + e.out_wmod)
                & (e.out_wdiv_g == out_wdiv * e.out_groups)
                & ((out_tiles_map - 1) * R < e.out_height * e.out_width)
                & (e.out_height * e.out_width <= out_tiles_map * R)
                & (e.out_words == out_tiles_map * e.out_groups)
                & (e.tiles == 0) & (e.tile_dh == 0) & (e.tile_dw == 0) & (e.weight_words == 0) & (e.out_tiles == 0))
        m.d.comb += Assume(input_map & layer & (e.out_words <= depth)
                           & (e.weight_base + e.weight_words <= cfg.weight_words))
        if cfg.pool_fusion:
            m.d.comb += Assume(e.fused_pool == int(kind == "fused"))

        # -- the properties ---------------------------------------------------------------------
        probes = seq.probes
        issue = probes["issue"]
        m.d.comb += Assert(~issue | (seq.weights.rd_addr < cfg.weight_words))
        # conv, dense: the registered read address is at the buffer one cycle after the issue, its
        # data feeds the array one cycle later (en, row_valid); row r takes bank (r + rot) mod R,
        # rot as at the issue.
        prev_addr = [Signal(len(seq.act.rd_addr[b]), name=f"prev_rd_addr{b}") for b in range(R)]
        rot1, rot2 = Signal.like(probes["rot"], name="rot_1"), Signal.like(probes["rot"], name="rot_2")
        m.d.sync += [rot1.eq(probes["rot"]), rot2.eq(rot1), *[p.eq(seq.act.rd_addr[b]) for b, p in enumerate(prev_addr)]]
        row_valid, en = probes["row_valid"], probes["en"]
        for r in range(R):
            for k in range(R):
                m.d.comb += Assert(~(en & row_valid[r] & (rot2 == k)) | (prev_addr[(r + k) % R] < depth))
        # max-pool: one cycle after a pool read is issued (the sequencer's `p_issue`) its registered
        # address is at the buffer; the max takes the words of 2 consecutive banks (R even < 4: all
        # banks), or of all R banks (the vector engine, R even >= 4), so every bank read is inside.
        # (Odd R >= 3 reads R banks and uses two; not checked there.)
        if R % 2 == 0 or R == 1:
            pool_read = Signal(name="pool_read_at_buffer")
            m.d.sync += pool_read.eq(internal_signal(fragment, "p_issue"))
            for b in range(R):
                m.d.comb += Assert(~pool_read | (seq.act.rd_addr[b] < depth))
            self.pool_read = pool_read
        # writes: any lane enabled is inside the bank's half; the logits layer writes none
        for b in range(R):
            if kind == "logits":
                m.d.comb += Assert(seq.act.wr_en[b] == 0)
            else:
                m.d.comb += Assert((seq.act.wr_en[b] == 0) | (seq.act.wr_addr[b] < depth))
        return m


def seq_depth(kind: str) -> int:
    """The bound of `kind`'s check: deep enough to reach its reads and writes."""
    return SEQ_DEPTH_FUSED if kind == "fused" else SEQ_DEPTH


def sequencer_checks(cfg: AccelConfig) -> list[Check]:
    notes = {"conv": "hidden conv3x3", "dense": "hidden dense", "pool": "maxpool2x2", "first": "first (pixel) conv3x3, "
             "any fold", "logits": "last dense (logits)", "fused": "hidden conv3x3 with a fused 2x2 max-pool"}
    return [Check(f"sequencer.bounds.{kind}.{cfg.name}.q{cfg.q}", "sequencer",
                  lambda kind=kind: SequencerBoundsHarness(cfg, kind), "bmc", seq_depth(kind),
                  f"{notes[kind]} layer, any well-formed entry: weight and activation reads and activation writes "
                  f"inside the buffers; bounded {seq_depth(kind)} cycles")
            for kind in KINDS if kind != "fused" or cfg.pool_fusion]
