"""The sequencer: runs the layer program over the buffers with its own address generation.

Maps are stored in raster order (`qjoule.program.MapLayout`): pixel (h, w) at raster index i =
h·W + w lives in bank i mod R at address (i div R)·G + g. For each layer it reads one layer-table
entry (`qjoule.program.LAYER_FIELDS`) and runs one of

- **conv3x3** (padding 1): for each pixel tile t (the R consecutive raster positions t·R ..
  t·R + R − 1, which may span row ends), each tile of C output channels, for each pass j (first
  layer only), group g, tap (kh, kw): one array cycle. Row r reads raster position t·R + r + off,
  off = (kh − 1)·W + kw − 1 = q·R + s: R consecutive positions, so R distinct banks; bank b's
  address is (t + q)·G + gg, plus G for the banks b < s, and a rotation by s gives row r its
  pixel. q·G, (q + 1)·G and s of the nine taps are layer constants registered at SETUP (from
  `wdiv_g` = (W div R)·G and `wmod` = W mod R). Each row keeps its own output position (h_r, w_r),
  stepped per tile by divmod(R, W) (`tile_dh`, `tile_dw`) with a wrap at W, no divider: a tap
  outside the map (the zero padding) or a row past the map's end clears `row_valid`. Lanes past
  the last channel clear `lane_valid`. The weight address counts up through the layer's words,
  (tile·G_c + g)·9 + tap, back to the tile start for each first-layer pass.
- **dense**: for each tile of C outputs, for each input position i (raster order) and group g:
  one array cycle on row 0 only. The C weight words of a cycle are shared by all rows, and with
  one image each weight is used once, so no other row has a product to form: dense layers run at
  1/R utilization (docs/interface.md).
- **maxpool2x2**: a lane-wise max of the codes of four input words per output word. Even R >= 4:
  R/2 output words of one output row per two cycles (the R consecutive input positions of one
  input row per cycle); otherwise one word per two cycles (R = 2 or odd) or four (R = 1).
  Positions are (address, bank) pairs stepped by additions with a wrap.
- **conv3x3 with a fused max-pool** (`fused_pool`, configs with `pool_fusion`: R a power of two,
  the encoder fuses a conv and the 2×2 max-pool after it on maps of even width): the conv as
  above; the writer stores the pooled map. A tile's rows 2k, 2k + 1 are a horizontal pair; the
  writer maxes each pair, keeps the maxima in a line buffer (R/2 banks, a slot per tile, a
  delay line of pairs) and, for pairs on odd conv rows, maxes with the vertical partner W/2 pairs
  back and writes the pooled pixel (see "fused max-pool" below, docs/interface.md).

A first layer folded by the input unit (`fold_w`/`fold_h`, see `qjoule.program.fold_image`)
issues only the centre column (or centre) of taps. A finished tile's R·C accumulators are
captured into one of two hold registers (so the array goes straight on with the next tiles) and
drained through C `PostProcess` units, one row per cycle, back to back (R cycles a conv tile); the
codes are written into the output half with lane write-enables, one word per bank and cycle, all
R pixels of the tile at once (raster positions t·R + r: bank r, one address). The last layer
instead sends its logits to the output stream as int64 (two 32-bit words, low first). A layer
with `dump` set copies its output map to the output stream afterwards (debug mode).

For Fmax, no address needs a multiplier (products such as t·G are running sums kept next to their
counters; the nine conv tap offsets are layer constants set up front), and both activation-buffer
ports are registered: the read address one cycle after the issue (the array's controls are
delayed to match) and each write one cycle after it is formed. Layer constants (every field − 1,
the dense flag, lane masks, tap offsets) are registers set at SETUP/INIT; counters are as wide as
the config's bounds need. With `memory_pipeline` (the ULX3S board) the buffers' reads take
1 + memory_pipeline cycles (the `_d` controls pass through `pipe`), the param read-ahead is given
time to settle before the feeder takes a tile, and a one-row skid register per post-processing
unit lets the feeder see a flop as the units' ready.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qjoule.config import PP_MULT_BITS, AccelConfig
from qjoule.program import (FUSE_LAYER_FIELDS, KIND_DENSE, KIND_POOL, LAYER_FIELDS, MAX_LAYERS, MIXED_LAYER_FIELDS,
                            PARAM_META_BITS, PARAM_META_FIELDS, WORD_BITS, layer_fields, layer_words, line_buffer_shape,
                            param_word_bits, param_words)

from . import REPLICA
from .array import MacArray
from .buffers import activation_buffer_signature, wide_buffer_signature
from .postproc import PostProcess

__all__ = ["Sequencer", "layer_layout", "layer_register_layout", "param_layout", "table_signature",
           "tile_param_layout"]


def layer_layout(cfg: AccelConfig | None = None) -> data.StructLayout:
    """A layer-table entry as the hardware for `cfg` holds it (`program.layer_fields`: the
    per-layer-mode fields only with q_modes; None: the single-Q entry)."""
    fields = ([f for f in LAYER_FIELDS if f[0] not in MIXED_LAYER_FIELDS + FUSE_LAYER_FIELDS] if cfg is None
              else layer_fields(cfg))
    return data.StructLayout({name: unsigned(bits) for name, bits in fields})


def _bits(n: int) -> int:
    """Bits of an unsigned value up to n (at least 1)."""
    return max(1, int(n).bit_length())


def layer_register_layout(cfg: AccelConfig, act_addr_bits: int, weight_depth: int) -> data.StructLayout:
    """The layer register `L` as the sequencer holds it: `layer_layout(cfg)`, or with
    `compact_control` every field at the width the config's bounds need (program.encode refuses a
    layer beyond them; the sequencer's counters have those widths too): addresses and group counts
    within a bank half, H/W up to max_height/max_width, W mod R below R, and so on."""
    full = layer_layout(cfg)
    if not cfg.compact_control:
        return full
    R, C = cfg.rows, cfg.cols
    grp = act_addr_bits + 1
    tiles = -(-cfg.max_height * cfg.max_width // R)
    widths = {"passes": _bits(cfg.first_layer_passes), "lanes_last": _bits(cfg.max_lanes),
              "height": _bits(cfg.max_height), "out_height": _bits(cfg.max_height),
              "width": _bits(cfg.max_width), "out_width": _bits(cfg.max_width),
              **{f: grp for f in ("groups", "pass_groups", "wdiv_g", "out_groups", "out_wdiv_g", "out_words")},
              "wmod": _bits(R - 1), "out_wmod": _bits(R - 1), "tile_dh": _bits(R), "tile_dw": _bits(R),
              "tiles": _bits(tiles), "out_tiles": _bits(-(-max(cfg.max_channels, cfg.max_classes) // C)),
              "weight_base": _bits(weight_depth), "weight_words": _bits(weight_depth),
              "param_base": _bits(param_words(cfg))}
    return data.StructLayout({name: unsigned(min(field.shape.width, widths.get(name, field.shape.width)))
                              for name, field in full})


def tile_param_layout(cfg: AccelConfig, act_addr_bits: int) -> data.StructLayout:
    """A tile's param metadata as the drain holds it (the tile-metadata FIFO, the writer's `W`):
    PARAM_META_FIELDS, or with `compact_control` at the widths the config's bounds need."""
    if not cfg.compact_control:
        return data.StructLayout({name: unsigned(bits) for name, bits in PARAM_META_FIELDS})
    S, C = cfg.max_lanes, cfg.cols
    return data.StructLayout({"group_first": unsigned(act_addr_bits + 1), "lane_skip": unsigned(_bits(S - 1)),
                              "n_groups": unsigned(_bits((S - 1 + C - 1) // S + 1)), "c_valid": unsigned(_bits(C))})


def table_signature(cfg: AccelConfig) -> wiring.Signature:
    """The layer table's buffer ports: one entry per word ("wide"), or the PROGRAM section's
    32-bit words, layer_words(cfg) per entry ("words": assembled into `L` in FETCH, one per cycle)."""
    if cfg.layer_table == "words":
        return wide_buffer_signature(unsigned(WORD_BITS), MAX_LAYERS * layer_words(cfg))
    return wide_buffer_signature(unsigned(layer_layout(cfg).size), MAX_LAYERS)


def param_layout(cfg: AccelConfig) -> data.StructLayout:
    column = data.StructLayout({"mult": signed(PP_MULT_BITS), "bias": signed(cfg.pp_bias_bits)})
    return data.StructLayout({**{name: unsigned(bits) for name, bits in PARAM_META_FIELDS},
                              "cols": data.ArrayLayout(column, cfg.cols)})


class Sequencer(wiring.Component):
    """Runs `n_layers` table entries from `start`; `busy` until the last layer has drained.

    Ports toward the buffers are the buffers' own signatures, flipped (the sequencer drives
    addresses and reads data). `need_weights` asks the input parser for the current (external)
    layer's WEIGHTS section; `weights_loaded` pulses when it has been written.
    """

    def __init__(self, cfg: AccelConfig, act_addr_bits: int, weight_depth: int):
        self._cfg = cfg
        self._act_addr_bits = act_addr_bits
        self._weight_depth = weight_depth
        super().__init__({
            "start": In(1),
            "n_layers": In(range(MAX_LAYERS + 1)),
            "busy": Out(1),
            "done": Out(1),
            "need_weights": Out(1),
            "weights_loaded": In(1),
            "table": In(table_signature(cfg)),
            "act": In(activation_buffer_signature(cfg, act_addr_bits)),
            "weights": In(wide_buffer_signature(unsigned(cfg.cols * cfg.datapath), weight_depth)),
            "params": In(wide_buffer_signature(unsigned(param_word_bits(cfg)), param_words(cfg))),
            "out": Out(stream.Signature(unsigned(WORD_BITS))),
            # Activity counters (cycles with the array enabled, cycles of the layer), for bench/.
            "mac_cycles": Out(32),
            "layer_cycles": Out(32),
            "layer_index": Out(range(MAX_LAYERS + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, S, Q, D = cfg.rows, cfg.cols, cfg.lanes, cfg.q, cfg.datapath
        A = self._act_addr_bits + 2  # signed address arithmetic width
        m.submodules.array = array = MacArray(cfg)
        pps = []
        for c in range(C):
            pp = PostProcess(cfg)
            m.submodules[f"pp{c}"] = pp
            pps.append(pp)

        L = Signal(layer_register_layout(cfg, self._act_addr_bits, self._weight_depth))
        li = Signal(range(MAX_LAYERS + 1))
        words_table = cfg.layer_table == "words"
        if words_table:
            # FETCH reads the entry's words tbase + tk, tk = 0 .. n − 1 (n = layer_words(cfg)), one
            # per cycle; each lands in its slice of L one cycle later (tbase = li·n, a running sum).
            entry_words = layer_words(cfg)
            tbase, tk = Signal(range(MAX_LAYERS * entry_words + 1)), Signal(range(entry_words + 1))
            m.d.comb += [self.table.rd_addr.eq(tbase + tk), self.layer_index.eq(li)]
        else:
            m.d.comb += [self.table.rd_addr.eq(li), self.layer_index.eq(li)]

        # Per-layer mixed precision: the layer's mode and its output map's mode as indices into
        # cfg.modes (one comparator per mode; the lanes of a mode are constants, D / Q).
        modes = cfg.modes
        mode_idx = Signal(range(len(modes)))
        out_idx = Signal(range(len(modes)))
        if cfg.mixed:
            for k, mq in enumerate(modes):
                with m.If(L.mode_q == mq):
                    m.d.comb += mode_idx.eq(k)
                with m.If(L.out_q == mq):
                    m.d.comb += out_idx.eq(k)

        # -- counters shared by conv and dense issue -------------------------------------------
        # Widths from the config's bounds (program.encode refuses a layer beyond them), not fixed
        # 16/24 bits: shorter carry chains and comparators, and the iCE40's cells. `dim` also
        # holds the output rows a map's last tile runs past its end; a map's groups (the words
        # of one pixel) all sit in one bank half.
        dim = range(max(cfg.max_height, cfg.max_width) + 2 * R + 2)
        grp = range((1 << self._act_addr_bits) + 1)
        n_tiles = range(-(-cfg.max_height * cfg.max_width // R) + 1)
        n_out_tiles = range(-(-max(cfg.max_channels, cfg.max_classes) // C) + 1)
        n_weights = range(self._weight_depth + 1)
        # A raster position i (of the input map) is kept as the pair (i div R)·G, i mod R: the
        # address part and the bank. Steps of it are pair additions (`_pair_add`), no divider.
        h = Signal(dim)         # dense: input row
        kh = Signal(2)
        kw = Signal(2)
        # Folded first layer: the input unit stored the kw (and kh) neighbours in extra lanes, so
        # only the centre column (or centre) of taps is issued.
        kh0, kh1, kw0, kw1 = Signal(2), Signal(2), Signal(2), Signal(2)
        g = Signal(grp)         # group within the pass
        gg = Signal(grp)        # group within the input map (j·G_c + g)
        j = Signal(4)           # first-layer pass
        to = Signal(n_out_tiles)  # output tile
        t = Signal(n_tiles)     # conv: pixel tile (raster positions t·R .. t·R + R − 1)
        w0 = Signal(dim)        # dense: input column
        wr = Signal(range(R))   # dense: bank of the input position (i mod R)
        tG = Signal(A)          # conv: t·G_in; dense: (i div R)·G_in
        tGo = Signal(A)         # conv: t·G_out, the output address of the tile's pixels
        wcount = Signal(n_weights)  # weight address
        wtile = Signal(n_weights)   # weight address of the current tile's first word
        # conv: per-row position (h_r, w_r) of the tile's output pixel t·R + r, stepped by
        # (tile_dh, tile_dw) = divmod(R, W) per tile (set up by counting in INIT); rows past the end
        # of the map have h_r >= H.
        pos_h = [Signal(dim, name=f"pos_h{r}") for r in range(R)]
        pos_w = [Signal(dim, name=f"pos_w{r}") for r in range(R)]
        init_k = Signal(range(R + 1))
        # Layer constants registered at SETUP, so no path runs from the latched entry (or a "− 1"
        # subtractor) into the issue, drain and pool logic: `*_last` = the field − 1.
        h_last, w_last = Signal(dim), Signal(dim, name="w_last")  # (named: the closures below read it)
        tiles_last, out_tiles_last = Signal(n_tiles), Signal(n_out_tiles)
        passes_last, pass_groups_last, groups_last = Signal(4), Signal(grp), Signal(grp)
        out_h_last, out_w_last, out_words_last = Signal(dim), Signal(dim), Signal(grp)
        is_dense = Signal()

        # -- hold registers and in-flight tracking -----------------------------------------------
        # Two hold slots used in turn: tile ends are issued, captured (capture_delay cycles
        # later, when the array's accumulators hold the finished sums) and copied out by the
        # feeder in the same order, so the n-th tile end always uses slot n mod 2. At most two
        # tiles are between their last issue and the feeder, so a capture always finds its slot
        # free, and tiles shorter than the capture delay still keep the array busy.
        capture_delay = 2 + cfg.memory_pipeline + array.latency
        last_line = Signal(capture_delay)
        # (with memory_pipeline the wide data registers have no reset: see ProcessingElement)
        no_reset = {"reset_less": True} if cfg.memory_pipeline else {}
        hold_acc = [Signal.like(array.acc, name=f"hold_acc{k}", **no_reset) for k in range(2)]
        hold_valid = Signal(2)
        # obase: the output address of the tile's pixels (all R in distinct banks, same address);
        # rows: which of its R pixels exist (the last tile of a map may be partial)
        fusion = cfg.pool_fusion
        half = R // 2
        # emit (pool fusion): pair k of the tile (rows 2k, 2k + 1) is on an odd conv row, so its
        # pooled pixel is complete (its vertical partner is the even row above)
        meta_layout = data.StructLayout({"to": unsigned(Shape.cast(n_out_tiles).width), "rows": unsigned(R),
                                         "obase": unsigned(A), **({"emit": unsigned(half)} if fusion else {})})
        pending = [Signal(meta_layout, name=f"pending{k}") for k in range(2)]  # per slot, from its issue
        iss_ptr, cap_ptr, rd_ptr = Signal(), Signal(), Signal()
        inflight = Signal()
        m.d.comb += inflight.eq(last_line.any())
        # tiles between their last issue and the feeder's copy (in flight or held): a register,
        # so the issue decision does not wait on the drain's handshakes
        occupancy = Signal(range(4))

        # -- issue-cycle signals (combinational) -----------------------------------------------
        # With at_last_flags (both boards' Fmax setting), "counter == its last value" of the issue
        # counters are flip-flops kept with the counters (`count_up` and `restart`: every write of a
        # counter also writes its flag), so a tile's last cycle, the issue and the
        # enables of every issue counter are a few gates of flip-flops, not wide compares.
        flags = cfg.at_last_flags
        at_last = {}

        def last_flag(ctr, last, single, double, before2):
            """`ctr == last`: with flags a registered flag, kept by `count_up` and `restart`, with a
            second one a step ahead, "ctr == last − 1" (`<ctr>_at_penult`), so that the at-last
            flag's next value is a choice of flip-flops; the lookahead flag's own next value
            compares the counter with a register, `before2` = last − 2 (comparing the incremented
            counter with `last` made ABC build an 11-LUT ripple, the UP5K's critical path). From
            the entry at SETUP: `single` (the first value is the last: the at-last flag after every
            restart), `double` (the first value is the one before the last) and `before2`."""
            if not flags:
                return ctr == last
            f = SimpleNamespace(
                flag=Signal(name=f"{ctr.name}_at_last"), penult=Signal(name=f"{ctr.name}_at_penult"),
                single_r=Signal(name=f"{ctr.name}_single"), double_r=Signal(name=f"{ctr.name}_double"),
                before2_r=Signal(len(ctr), name=f"{ctr.name}_before2"), single=single, double=double, before2=before2)
            at_last[id(ctr)] = f
            return f.flag

        def field_flag(ctr, last, field):
            """last_flag of a counter from 0 to last = L.field − 1."""
            return last_flag(ctr, last, L[field] == 1, L[field] == 2, L[field] - 3)

        def count_up(ctr):
            """ctr.eq(ctr + 1), and with flags its flags."""
            if not flags:
                return [ctr.eq(ctr + 1)]
            f = at_last[id(ctr)]
            return [ctr.eq(ctr + 1), f.flag.eq(f.penult), f.penult.eq(ctr == f.before2_r)]

        def restart(ctr, first):
            """ctr.eq(first), and with flags its flags."""
            if not flags:
                return [ctr.eq(first)]
            f = at_last[id(ctr)]
            return [ctr.eq(first), f.flag.eq(f.single_r), f.penult.eq(f.double_r)]

        def setup_flags():
            """At SETUP every issue counter starts: its flags from the latched entry, and the
            nests' registered products."""
            return [a.eq(b) for f in at_last.values()
                    for a, b in ((f.flag, f.single), (f.penult, f.double), (f.single_r, f.single),
                                 (f.double_r, f.double), (f.before2_r, f.before2))] + \
                   [stmt for chain in nests.values() for stmt in chain.setup]

        class Nest:
            """With flags, an issue counters' nest (innermost first) keeps, per level k, "every
            counter up to k at its last" as a register (`at[k]`), so that a level's enable is
            issue & one flop, not an AND of the flags of every level inside it (that AND, the
            tile-last decision and the issue were the UP5K's critical path, into ~100 enables).
            `single[k]`: every counter up to k has one value (the products after a restart)."""

            def __init__(self, name, ctrs):
                fs = [at_last[id(c)] for c in ctrs]
                self.fs = fs
                self.at = [fs[0].flag] + [Signal(name=f"{name}_at_last{k}") for k in range(1, len(ctrs))]
                self.single = [Signal(name=f"{name}_single{k}") for k in range(len(ctrs))]
                self.setup = [reg.eq(Cat(*[f.single for f in fs[:k + 1]]).all())
                              for k in range(len(ctrs)) for reg in ((self.single[k],) + ((self.at[k],) if k else ()))]

            def on_issue(self):
                """The products after an issue: the counters up to the highest level m at its last
                restart, level m + 1 counts up, the rest hold. So level k's product becomes
                single[k] if level k was at its last; single[k − 1] & penult[k] if level k − 1
                was (k counts up: it is at its last next if it was one before); else the new
                product of level k − 1 & level k's own flag (k holds)."""
                stmts = []
                below = Mux(self.at[0], self.single[0], self.fs[0].penult)   # level 0 always moves
                for k in range(1, len(self.fs)):
                    here = Mux(self.at[k], self.single[k],
                               Mux(self.at[k - 1], self.single[k - 1] & self.fs[k].penult, below & self.fs[k].flag))
                    stmts.append(self.at[k].eq(here))
                    below = here
                return stmts

        nests = {}

        def nest(name, levels):
            """An issue counters' nest, innermost first (the counters of `nests[name]`): `levels` =
            [(at_last, emit)], where `emit()` writes the level's statements, which run when this
            level's counter and every one inside it is at its last. Without flags, nested `If`s of each level's
            `at_last`; with flags, one `If` per level on the nest's product register, in order (a
            later level's statements take precedence, as when nested), and the products' update."""
            if not flags:
                def emit_from(k):
                    if k < len(levels):
                        with m.If(levels[k][0]):
                            levels[k][1]()
                            emit_from(k + 1)
                emit_from(0)
                return
            chain = nests[name]
            m.d.sync += chain.on_issue()
            for k, (_, emit) in enumerate(levels):
                with m.If(chain.at[k]):
                    emit()

        g_last_now, j_last_now = field_flag(g, pass_groups_last, "pass_groups"), field_flag(j, passes_last, "passes")
        to_last_now, t_last_now = field_flag(to, out_tiles_last, "out_tiles"), field_flag(t, tiles_last, "tiles")
        h_last_now, w0_last_now = field_flag(h, h_last, "height"), field_flag(w0, w_last, "width")
        # (the taps start at kw0, kh0 = 1 when folded, else 0, and end at kw1, kh1 = 1 when folded,
        # else 2: a folded tap is single)
        kw_last_now = last_flag(kw, kw1, L.fold_w, 0, 0)
        kh_last_now = last_flag(kh, kh1, L.fold_h, 0, 0)
        if flags:
            # CONV: taps kw, kh, groups g, passes j, output tiles to, pixel tiles t; DENSE: groups
            # g, positions w0, h, output tiles to. (A layer runs one of the two; SETUP sets both.)
            nests.update(conv=Nest("conv", (kw, kh, g, j, to, t)), dense=Nest("dense", (g, w0, h, to)))
        gc_last = Signal()      # the last group of the pass
        m.d.comb += gc_last.eq(g_last_now)
        issue = Signal()        # one array cycle issued this cycle
        tile_first = Signal()
        tile_last = Signal()
        can_issue = Signal()
        fold_setup = [kh0.eq(Mux(L.fold_h, 1, 0)), kh1.eq(Mux(L.fold_h, 1, 2)),
                      kw0.eq(Mux(L.fold_w, 1, 0)), kw1.eq(Mux(L.fold_w, 1, 2))]
        # A tile's last cycle may issue while fewer than two tiles are in flight or held. (Not
        # also "two, and the feeder copies one out this cycle": that put the whole drain
        # handshake, collector -> post-processing ready -> feeder, in front of every issue
        # counter's enable. The tile waits one cycle instead, hidden by the other held tile.)
        copying = Signal()
        m.d.comb += can_issue.eq(~tile_last | (occupancy < 2))
        m.d.sync += occupancy.eq(occupancy + (issue & tile_last) - copying)

        # Registered controls for the array. The issue cycle's buffer addresses are registered
        # (`_a`, for Fmax: no adder chain ends in a block RAM's address pins), the reads take one
        # more cycle, and the `_d` copies line up with the buffers' read data.
        en_a, clear_a, en_d, clear_d = Signal(), Signal(), Signal(), Signal()
        shift_a, shift_d = Signal(4), Signal(4)
        rowv_a, rowv_d = Signal(R), Signal(R)
        lanev_a, lanev_d = Signal(cfg.max_lanes), Signal(cfg.max_lanes)
        rot_a, rot_d = Signal(range(R)), Signal(range(R))  # row r takes bank (r + rot) mod R
        wcount_a = Signal(n_weights)
        # With memory_pipeline, the read data comes 1 + memory_pipeline cycles after the address:
        # `pipe` gives each `_d` copy that many registers (one, the plain assignment, without).
        in_flight = []   # every pipeline stage's valid, for FINISH

        def pipe(dst, src, valid=False):
            for k in range(cfg.memory_pipeline):
                stage = Signal.like(src, name=f"{dst.name}_p{k}")
                m.d.sync += stage.eq(src)
                if valid:
                    in_flight.append(stage)
                src = stage
            m.d.sync += dst.eq(src)

        for dst, src in ((en_d, en_a), (clear_d, clear_a), (shift_d, shift_a), (rowv_d, rowv_a),
                         (lanev_d, lanev_a), (rot_d, rot_a)):
            pipe(dst, src, valid=dst is en_d)
        m.d.sync += wcount_a.eq(wcount)
        lanes_mask = Signal(cfg.max_lanes)   # registered at SETUP
        if not cfg.mixed:
            lanes_setup = [lanes_mask.eq(Mux(L.lanes_last >= S, (1 << S) - 1,
                                             (Const(1, S + 1) << L.lanes_last[:8]) - 1))]
            full_mask = (1 << S) - 1
        else:
            full_mask = Signal(cfg.max_lanes)   # every lane of the layer's mode (registered at SETUP)
            # lanes_last is 1 .. S of the layer's mode (the encoder's), so no clamp is needed
            lanes_setup = [lanes_mask.eq((Const(1, cfg.max_lanes + 1) << L.lanes_last[:8]) - 1),
                           full_mask.eq(Array(Const((1 << (D // mq)) - 1, cfg.max_lanes) for mq in modes)[mode_idx])]

        m.d.sync += last_line.eq(Cat(issue & tile_last, last_line[:-1]))
        with m.If(last_line[-1]):
            m.d.sync += cap_ptr.eq(~cap_ptr)
            for k in range(2):
                with m.If(cap_ptr == k):
                    m.d.sync += [*([] if cfg.memory_pipeline else [hold_acc[k].eq(array.acc)]), hold_valid[k].eq(1)]
        if cfg.memory_pipeline:
            # On the large array a slot's R·C accumulators (~1.5k flip-flops) take their enable
            # from C registered copies, one per column (kept apart in synthesis: `REPLICA`), each
            # decided a cycle ahead from the delay line: the slot the capture after this cycle's
            # (if any) will use.
            next_ptr = cap_ptr ^ last_line[-1]
            for k in range(2):
                for c in range(C):
                    cap_en = Signal(name=f"cap_en{k}_{c}", attrs={REPLICA: 1})
                    m.d.sync += cap_en.eq(last_line[-2] & (next_ptr == k))
                    with m.If(cap_en):
                        m.d.sync += [hold_acc[k][r * C + c].eq(array.acc[r * C + c]) for r in range(R)]

        # array inputs: a rotation of the R bank words (conv: by the tap's bank offset; dense: row
        # 0 takes the input position's bank)
        rotated = []
        for r in range(R):
            word = Signal(D, name=f"act_row{r}")
            if R == 1:
                m.d.comb += word.eq(self.act.rd_data[0])
            else:
                m.d.comb += word.eq(Array(self.act.rd_data[(r + k) % R] for k in range(R))[rot_d])
            rotated.append(word)
        m.d.comb += [
            array.act.eq(Cat(*rotated)),
            array.weight.eq(self.weights.rd_data),
            array.row_valid.eq(rowv_d),
            array.lane_valid.eq(lanev_d),
            array.en.eq(en_d),
            array.clear.eq(clear_d),
            array.shift.eq(shift_d),
            array.pixel_mode.eq(L.first & (Q == 1)),
            self.weights.rd_addr.eq(wcount_a),
        ]
        if cfg.mixed:
            m.d.comb += array.mode.eq(mode_idx)  # a layer constant (the array drains before the next)

        # row validity of a conv tap, per row: its output pixel exists and the tap's input pixel
        # (h_r + kh − 1, w_r + kw − 1) is inside the map (else the zero padding)
        conv_rowv = Signal(R)
        exists = Signal(R)
        for r in range(R):
            top, bottom = pos_h[r] == 0, pos_h[r] == h_last
            left, right = pos_w[r] == 0, pos_w[r] == w_last
            m.d.comb += exists[r].eq(pos_h[r] <= h_last)
            m.d.comb += conv_rowv[r].eq(exists[r] & ~((kh == 0) & top) & ~((kh == 2) & bottom)
                                        & ~((kw == 0) & left) & ~((kw == 2) & right))

        # conv read addresses. Tap (kh, kw) of row r reads raster position t·R + r + off, off =
        # (kh − 1)·W + kw − 1 = q·R + s (0 <= s < R): bank (r + s) mod R, address (t + q)·G + gg,
        # plus G for the banks b < s (their row wrapped past bank R − 1). Per tap, q·G ("lo"),
        # (q + 1)·G ("hi") and s are layer constants computed at SETUP.
        tap_lo = {(a, b): Signal(signed(A + 2), name=f"tap_lo_{a}_{b}") for a in range(3) for b in range(3)}
        tap_hi = {(a, b): Signal(signed(A + 2), name=f"tap_hi_{a}_{b}") for a in range(3) for b in range(3)}
        tap_s = {(a, b): Signal(range(R), name=f"tap_s_{a}_{b}") for a in range(3) for b in range(3)}

        def tap_at(name, tap_kh, tap_kw):
            """(lo, hi, s, wrapped) of tap (tap_kh, tap_kw); wrapped[b] = s > b (bank b reads hi)."""
            lo, hi, s = Signal(signed(A + 2), name=f"{name}_lo"), Signal(signed(A + 2), name=f"{name}_hi"), \
                Signal(range(R), name=f"{name}_s")
            with m.Switch(Cat(tap_kw, tap_kh)):
                for (a, b) in tap_lo:
                    with m.Case(b | a << 2):
                        m.d.comb += [lo.eq(tap_lo[a, b]), hi.eq(tap_hi[a, b]), s.eq(tap_s[a, b])]
            return lo, hi, s, Cat(*[s > b for b in range(R)])

        if cfg.memory_pipeline:
            # The large array: the current tap's constants are registers (`cur`), with the next
            # tap's beside them (`nxt`), so the 9:1 tap select is not between kw and the read
            # address (it was the 8x8 ULX3S build's critical path). An issue moves nxt into cur
            # and selects the tap after next; any other cycle reloads both from (kh, kw), so both
            # hold from the second INIT cycle on (INIT lasts two cycles at least).
            # (kh, kw) of the next tap and the one after it (the walk: kw, then kh, then the group)
            next_kh, next_kw, after_kh, after_kw = Signal(2), Signal(2), Signal(2), Signal(2)
            m.d.comb += [next_kw.eq(Mux(kw_last_now, kw0, kw + 1)),
                         next_kh.eq(Mux(kw_last_now, Mux(kh_last_now, kh0, kh + 1), kh))]
            m.d.comb += [after_kw.eq(Mux(next_kw == kw1, kw0, next_kw + 1)),
                         after_kh.eq(Mux(next_kw == kw1, Mux(next_kh == kh1, kh0, next_kh + 1), next_kh))]
            cur = [Signal(signed(A + 2), name="cur_lo"), Signal(signed(A + 2), name="cur_hi"),
                   Signal(range(R), name="cur_s"), Signal(R, name="cur_wrapped")]
            nxt = [Signal.like(x, name=x.name.replace("cur", "nxt")) for x in cur]
            with m.If(issue):
                m.d.sync += [*(c.eq(n) for c, n in zip(cur, nxt)),
                             *(n.eq(v) for n, v in zip(nxt, tap_at("tap_after", after_kh, after_kw)))]
            with m.Else():
                m.d.sync += [*(c.eq(v) for c, v in zip(cur, tap_at("tap_now", kh, kw))),
                             *(n.eq(v) for n, v in zip(nxt, tap_at("tap_next", next_kh, next_kw)))]
            cur_lo, cur_hi, cur_s, cur_wrapped = cur
        else:
            # (the same select in the issue cycle; written out so these configs' Verilog stays as it was)
            cur_lo, cur_hi = Signal(signed(A + 2), name="cur_lo"), Signal(signed(A + 2), name="cur_hi")
            cur_s = Signal(range(R), name="cur_s")
            with m.Switch(Cat(kw, kh)):
                for (a, b) in tap_lo:
                    with m.Case(b | a << 2):
                        m.d.comb += [cur_lo.eq(tap_lo[a, b]), cur_hi.eq(tap_hi[a, b]), cur_s.eq(tap_s[a, b])]
            cur_wrapped = [cur_s > b for b in range(R)]
        row_g = Signal(A + 2)
        m.d.comb += row_g.eq(tG + gg)
        conv_addr = []
        for b in range(R):
            addr = Signal(signed(A + 2), name=f"conv_addr{b}")
            m.d.comb += addr.eq(row_g + Mux(cur_wrapped[b], cur_hi, cur_lo))
            conv_addr.append(addr)
        # The tap constants, in two register steps (for Fmax: one adder each): SETUP registers
        # each kh row's base (q·G, s) from the latched entry (`tap_base_setup`), INIT (conv
        # layers only, at least one cycle before CONV) the nine taps from those (`tap_setup`):
        # lo = base_q + {−G, 0, +G} and hi = lo + G as parallel sums, not one after the other.
        tap_base_setup, tap_setup = [], []
        groups_x2 = L.groups << 1
        for a in range(3):
            if a == 1:
                base_q, base_s = Const(0, signed(A + 2)), Const(0, range(R + 1))
            else:
                base_q, base_s = Signal(signed(A + 2), name=f"tap_base_q{a}"), Signal(range(R + 1), name=f"tap_base_s{a}")
                if a == 2:   # + W
                    tap_base_setup += [base_q.eq(L.wdiv_g), base_s.eq(L.wmod)]
                else:        # − W, normalised to 0 <= s < R
                    tap_base_setup += [base_q.eq(Mux(L.wmod == 0, -L.wdiv_g, -L.wdiv_g - L.groups)),
                                       base_s.eq(Mux(L.wmod == 0, 0, R - L.wmod))]
            for b in range(3):
                s_sum = Signal(signed(18), name=f"tap_sum_{a}_{b}")
                m.d.comb += s_sum.eq(base_s + (b - 1))
                lo = Mux(s_sum < 0, base_q - L.groups, Mux(s_sum >= R, base_q + L.groups, base_q))
                hi = Mux(s_sum < 0, base_q, Mux(s_sum >= R, base_q + groups_x2, base_q + L.groups))
                s_val = Mux(s_sum < 0, s_sum + R, Mux(s_sum >= R, s_sum - R, s_sum))
                tap_setup += [tap_lo[a, b].eq(lo), tap_hi[a, b].eq(hi), tap_s[a, b].eq(s_val)]
        # -- pool engine ---------------------------------------------------------------------------
        # Output pixel (ho, wo) reads raster positions (2·ho + dy)·W + 2·wo + dx. Positions are
        # (address part, bank) pairs stepped by pair additions: rs0, rs1 = the starts of input rows
        # 2·ho and 2·ho + 1 (+ 2W per output row), o = the output position (+ 1 per output word,
        # or + R/2 per step of the vector engine), orow = the output row's start (+ W_out).
        # Generic engine (R = 1, 2 or odd): one output word (ho, wo, g) at a time; each cycle (k =
        # dy) reads the two positions 2·wo, 2·wo + 1 of one input row (consecutive: two banks), or
        # at R = 1 one word (k = 2·dy + dx). A lane-wise max of the codes, written on the last k.
        two_cols = R >= 2
        k_last = 1 if two_cols else 3
        vec = R % 2 == 0 and R >= 4
        half = R // 2
        AP = A + 8
        p_ho, p_wo, p_g, p_k = Signal(dim), Signal(dim), Signal(grp), Signal(2)
        p_issue = Signal()
        p_dy = Signal()
        m.d.comb += p_dy.eq(p_k[0] if two_cols else p_k[1])

        def pos(name):
            return Signal(AP, name=f"{name}_q"), Signal(range(R), name=f"{name}_s")

        rs0, rs1, p_in0, p_in1, p_o, p_orow, p_w2 = (pos(n) for n in ("p_rs0", "p_rs1", "p_in0", "p_in1", "p_o",
                                                                     "p_orow", "p_w2"))
        p_t, p_wo0 = Signal(dim), Signal(dim)   # vector engine: step t of the row, wo0 = t·R/2
        p_tG = Signal(AP)                     # t·G (R input positions per step: one bank column)
        # the position read this cycle, and its address per bank (banks below its bank wrapped)
        rd_q, rd_s = Signal(AP), Signal(range(R))
        if vec:
            m.d.comb += [rd_q.eq(Mux(p_dy, rs1[0], rs0[0]) + p_tG), rd_s.eq(Mux(p_dy, rs1[1], rs0[1]))]
        else:
            m.d.comb += [rd_q.eq(Mux(p_dy, p_in1[0], p_in0[0])), rd_s.eq(Mux(p_dy, p_in1[1], p_in0[1]))]
        pool_addr = []
        for b in range(R):
            addr = Signal(AP, name=f"pool_addr{b}")
            if R == 1:
                m.d.comb += addr.eq(rd_q + p_g + Mux(p_k[0], L.groups, 0))
            else:
                m.d.comb += addr.eq(rd_q + p_g + Mux(rd_s > b, L.groups, 0))
            pool_addr.append(addr)
        # `_a`: the cycle the registered read address is at the buffer; `_d`: its data is back.
        p_valid_a, p_first_a, p_last_a, p_s_a = Signal(), Signal(), Signal(), Signal(range(R))
        p_valid_d, p_first_d, p_last_d, p_s_d = Signal(), Signal(), Signal(), Signal(range(R))
        p_waddr_a, p_os_a, p_mask_a = Signal(AP), Signal(range(R)), Signal(max(1, half))
        p_waddr_d, p_os_d, p_mask_d = Signal(AP), Signal(range(R)), Signal(max(1, half))
        m.d.sync += [p_valid_a.eq(p_issue), p_first_a.eq(p_k == 0), p_last_a.eq(p_k == k_last), p_s_a.eq(rd_s),
                     p_waddr_a.eq(p_o[0] + p_g), p_os_a.eq(p_o[1])]
        if vec:
            m.d.sync += p_mask_a.eq(Cat(*[p_wo0 + k <= out_w_last for k in range(half)]))
        for dst, src in ((p_valid_d, p_valid_a), (p_first_d, p_first_a), (p_last_d, p_last_a), (p_s_d, p_s_a),
                         (p_waddr_d, p_waddr_a), (p_os_d, p_os_a), (p_mask_d, p_mask_a)):
            pipe(dst, src, valid=dst is p_valid_d)
        # the input words in raster order: in_words[k] is position (read position) + k
        in_words = []
        for k in range(R if vec else min(R, 2)):
            word = Signal(D, name=f"pool_in{k}")
            if R == 1:
                m.d.comb += word.eq(self.act.rd_data[0])
            else:
                m.d.comb += word.eq(Array(self.act.rd_data[(k + o) % R] for o in range(R))[p_s_d])
            in_words.append(word)
        pool_busy = [p_valid_a, p_valid_d]   # pool stages in flight (FINISH waits for them)
        if cfg.memory_pipeline:
            # The large device: the rotated words are registered (stage `e`) before the maxima,
            # and the pooled words a cycle later again (stage `w`) before the rotation into the
            # banks' write ports: bank mux, two compares and the write mux in one cycle were the
            # 8x8 ULX3S build's critical path.
            staged = []
            for word in in_words:
                word_e = Signal(D, name=f"{word.name}_e")
                m.d.sync += word_e.eq(word)
                staged.append(word_e)
            in_words = staged
            p_valid_e, p_first_e, p_last_e = Signal(), Signal(), Signal()
            p_waddr_e, p_os_e, p_mask_e = Signal(AP), Signal(range(R)), Signal(max(1, half))
            m.d.sync += [p_valid_e.eq(p_valid_d), p_first_e.eq(p_first_d), p_last_e.eq(p_last_d),
                         p_waddr_e.eq(p_waddr_d), p_os_e.eq(p_os_d), p_mask_e.eq(p_mask_d)]
            p_valid_d, p_first_d, p_last_d, p_waddr_d, p_os_d, p_mask_d = (p_valid_e, p_first_e, p_last_e, p_waddr_e,
                                                                           p_os_e, p_mask_e)
            pool_busy.append(p_valid_e)
        n_out = half if vec else 1
        p_max = [Signal(D, name=f"p_max{k}") for k in range(n_out)]
        p_new = [Signal(D, name=f"p_new{k}") for k in range(n_out)]
        for k in range(n_out):
            _lane_max(m, cfg, mode_idx, p_first_d, p_new[k],
                      [in_words[2 * k], in_words[2 * k + 1]] if two_cols else [in_words[0]], p_max[k])
            with m.If(p_valid_d):
                m.d.sync += p_max[k].eq(p_new[k])
        pool_writing = Signal()
        m.d.comb += pool_writing.eq(p_valid_d & p_last_d)
        pooled = p_new
        if cfg.memory_pipeline:
            # stage `w`: the write a cycle after the last maximum, from `p_max` (which holds it)
            p_valid_w, p_waddr_w, p_os_w, p_mask_w = Signal(), Signal(AP), Signal(range(R)), Signal(max(1, half))
            m.d.sync += [p_valid_w.eq(pool_writing), p_waddr_w.eq(p_waddr_d), p_os_w.eq(p_os_d), p_mask_w.eq(p_mask_d)]
            pool_writing = Signal(name="pool_writing_w")
            m.d.comb += pool_writing.eq(p_valid_w)
            p_waddr_d, p_os_d, p_mask_d, pooled = p_waddr_w, p_os_w, p_mask_w, p_max
            pool_busy.append(p_valid_w)
        # per bank: the write (enable, data, address) of the written output word(s)
        pool_wen, pool_wdata, pool_waddr = [], [], []
        for b in range(R):
            en, wd, wa = Signal(name=f"pool_wen{b}"), Signal(D, name=f"pool_wdata{b}"), Signal(AP, name=f"pool_waddr{b}")
            if vec:
                rel = [(b - o) % R for o in range(R)]  # output word k' = (b − o) mod R lands in bank b
                m.d.comb += [en.eq(Array(p_mask_d[k] if k < half else 0 for k in rel)[p_os_d]),
                             wd.eq(Array(pooled[k] if k < half else 0 for k in rel)[p_os_d])]
            else:
                m.d.comb += [en.eq(p_os_d == b), wd.eq(pooled[0])]
            m.d.comb += wa.eq(p_waddr_d + Mux(p_os_d > b, L.groups, 0))
            pool_wen.append(en)
            pool_wdata.append(wd)
            pool_waddr.append(wa)

        # -- drain: hold -> feeder -> PostProcess -> collector -> writer ------------------------
        # Three decoupled stages so a tile drains while the array computes the next ones: the
        # feeder copies the hold register (freeing it) and feeds one row per cycle into the C
        # PostProcess units; the collector gathers their outputs into `codes` (backpressuring
        # the units while the writer still owns the previous tile); the writer stores the codes,
        # one word per bank and cycle, or sends the logits. Tile metadata travels in a FIFO.
        pmeta_layout = tile_param_layout(cfg, self._act_addr_bits)
        entry_layout = data.StructLayout({"p": pmeta_layout, "t": meta_layout})
        m.submodules.meta_fifo = meta_fifo = SyncFIFO(width=entry_layout.size, depth=cfg.tile_meta_depth)
        P = Signal(param_layout(cfg), **no_reset)   # the fed tile's parameters
        feed_acc = Signal.like(array.acc, **no_reset)
        feed_row = Signal(range(R + 1))
        coll_row = Signal(range(R + 1))
        n_rows = Signal(range(R + 1))
        m.d.comb += n_rows.eq(Mux(is_dense, 1, R))
        codes = [[Signal(cfg.code_bits, name=f"code_{r}_{c}") for c in range(C)] for r in range(R)]
        logits = [Signal(64, name=f"logit{c}") for c in range(C)]
        wcodes = [[Signal(cfg.code_bits, name=f"wcode_{r}_{c}") for c in range(C)] for r in range(R)]
        # compact_control: the writer emits the collector's logits (the collector waits meanwhile)
        wlogits = logits if cfg.compact_control else [Signal(64, name=f"wlogit{c}") for c in range(C)]
        W = Signal(entry_layout)                # the written tile's metadata
        wk = Signal(8)         # write step within the tile's groups
        ek = Signal(range(2 * C + 1))  # emit step (logit words)
        drain_writing = Signal()
        d_wdata = [Signal(D, name=f"d_wdata{r}") for r in range(R)]
        d_wen = [Signal(cfg.write_lanes, name=f"d_wen{r}") for r in range(R)]
        d_waddr = Signal(A + 2)
        m.d.comb += d_waddr.eq(W.t.obase + W.p.group_first + wk)
        # With memory_pipeline each lane's code index is a register stepped with `wk` (loaded at
        # the writer's take), not wk·S + s − lane_skip formed every cycle: that adder chain into
        # the code select and the write data was the 8x8 ULX3S build's critical path.
        # a lane's code is written only where 0 <= idx < c_valid <= C: the low bits select it
        code_sel = max(1, (C - 1).bit_length())
        lane_idx = ([Signal(signed(18), name=f"lane_idx{s}") for s in range(S)]
                    if cfg.memory_pipeline and not cfg.mixed else [])
        # compact_control: the index at the width its values need (−(S − 1) .. the last group's
        # last lane), so the per-lane compares are a few bits wide (at Q = 1: 16 lanes)
        idx_bits = 18 if not cfg.compact_control else max(((S + C - 2) // S + 1) * S, S).bit_length() + 1
        if not cfg.mixed:
            for r in range(R):
                for s in range(S):
                    idx = Signal(signed(idx_bits), name=f"idx_{r}_{s}")
                    # (S is a power of two at every Q that divides 16: a shift, not a multiplier)
                    wk_s = wk << (S.bit_length() - 1) if S & (S - 1) == 0 else wk * S
                    m.d.comb += idx.eq(lane_idx[s] if lane_idx else wk_s + s - W.p.lane_skip)
                    ok = (idx >= 0) & (idx < W.p.c_valid)
                    m.d.comb += [d_wdata[r][s * Q:(s + 1) * Q].eq(Array(wcodes[r])[idx[:code_sel]]),
                                 d_wen[r][s].eq(ok)]
        else:
            # Per-layer modes: the codes are packed at the output map's container width (the next
            # layer's mode), zero-extended; a lane is Q_out / write_granularity write enables.
            per_mode = []
            for qo in modes:
                so, per = D // qo, qo // cfg.write_granularity
                data_m = [Signal(D, name=f"d_wdata{r}_m{qo}") for r in range(R)]
                wen_m = [Signal(cfg.write_lanes, name=f"d_wen{r}_m{qo}") for r in range(R)]
                # (so is constant: a shift, or a constant multiply of a small counter, no multiplier)
                wk_s = wk << (so.bit_length() - 1) if so & (so - 1) == 0 else wk * so
                for r in range(R):
                    for s_ in range(so):
                        idx = Signal(signed(18), name=f"idx_{r}_{s_}_m{qo}")
                        m.d.comb += idx.eq(wk_s + s_ - W.p.lane_skip)
                        ok = (idx >= 0) & (idx < W.p.c_valid)
                        m.d.comb += [data_m[r][s_ * qo:(s_ + 1) * qo].eq(Array(wcodes[r])[idx[:code_sel]][:qo]),
                                     wen_m[r][s_ * per:(s_ + 1) * per].eq(Mux(ok, (1 << per) - 1, 0))]
                per_mode.append((data_m, wen_m))
            with m.Switch(out_idx):
                for k, (data_m, wen_m) in enumerate(per_mode):
                    with m.Case(k):
                        m.d.comb += [d_wdata[r].eq(data_m[r]) for r in range(R)]
                        m.d.comb += [d_wen[r].eq(wen_m[r]) for r in range(R)]
        rows_ok = Signal(R)
        for r in range(R):
            m.d.comb += rows_ok[r].eq(W.t.rows[r])

        # feeder
        # the next slot's tile parameters, read ahead (its pending meta is stable from its issue)
        rd_meta = Signal(meta_layout)
        m.d.comb += rd_meta.eq(Mux(rd_ptr, pending[1], pending[0]))
        if not cfg.memory_pipeline:
            m.d.comb += self.params.rd_addr.eq(L.param_base + rd_meta.to)
        else:
            # Pipelined: the address registered too, so the words of the slot rd_ptr points to are
            # there 2 + param_read_latency cycles after it flips (or its pending meta was written,
            # which the capture delay covers). Everything reading them (the wide copy, the FIFO
            # push) does so in LOAD, a cycle after the take, so `param_settled` holds the next
            # take back param_lag = 1 + param_read_latency cycles (one less fails the tests).
            m.d.sync += self.params.rd_addr.eq(L.param_base + rd_meta.to)
            param_lag = 1 + cfg.param_read_latency
            since_take = Signal(range(param_lag + 1))
            param_settled = Signal()
            m.d.comb += param_settled.eq(since_take == param_lag)
            with m.If(copying):
                m.d.sync += since_take.eq(1)
            with m.Elif(~param_settled):
                m.d.sync += since_take.eq(since_take + 1)
        feeder_idle = Signal()
        # The feeder takes the next hold slot in the cycle its last row enters the units (R
        # cycles a tile, not R + 1), except where the param read-ahead would not have settled: a
        # dense tile feeds one row, and at R = 1 a conv tile too.
        feed_last = Signal()
        chain_ok = Signal()
        m.d.comb += chain_ok.eq(~is_dense if R >= 2 else 0)
        take_ok = (feeder_idle | (feed_last & chain_ok)) & hold_valid.bit_select(rd_ptr, 1) & meta_fifo.w_rdy
        m.d.comb += copying.eq(take_ok & param_settled if cfg.memory_pipeline else take_ok)
        pp_ready = Signal()     # the row presented this cycle is taken
        feed_valid = Signal()   # the feeder presents a row (FEED)
        # With pipelined buffers (the large-device setting), a one-row skid register per column
        # sits in front of its unit, so the feeder sees a flop as ready (not the units' stall
        # logic across the die) and each column's skid follows its own unit.
        skid = cfg.memory_pipeline > 0
        skid_probe = {}
        if not skid:
            m.d.comb += pp_ready.eq(pps[0].i.ready)
        # With memory_pipeline the take's wide copy comes a cycle later (LOAD, below); in that
        # cycle the units get the tile's row 0 straight from its hold slot and param word.
        load_slot = Signal()                                              # the slot LOAD copies
        feed_loads = ([Signal(name=f"feed_load{c}", attrs={REPLICA: 1}) for c in range(C)]
                      if cfg.memory_pipeline else [])                     # LOAD, per column
        if feed_loads:
            load_params = Signal(param_layout(cfg))                       # (the param read data)
            m.d.comb += load_params.eq(self.params.rd_data)
        # With memory_pipeline each column selects its row by its own copy of `feed_row` (the
        # R:1 accumulator select spans the die), and `feed_last` comes from a register set as
        # the row steps, not a compare of `feed_row`: feed_row -> compare -> take -> feed_row
        # across the die was the 8x8 ULX3S build's critical path.
        feed_rows = ([Signal(range(R + 1), name=f"feed_row{c}", attrs={REPLICA: 1}) for c in range(C)]
                     if cfg.memory_pipeline else [feed_row] * C)
        row_is_last = Signal()  # feed_row == n_rows - 1, registered (memory_pipeline)

        def set_feed_row(value, is_last=None):
            m.d.sync += [row.eq(value) for row in ([feed_row, *feed_rows] if cfg.memory_pipeline else [feed_row])]
            if is_last is not None:
                m.d.sync += row_is_last.eq(is_last)

        for c, pp in enumerate(pps):
            row = [Array(feed_acc[r * C + c] for r in range(R))[feed_rows[c]], P.cols[c].mult, P.cols[c].bias]
            if feed_loads:
                row0 = [Mux(load_slot, hold_acc[1][c], hold_acc[0][c]), load_params.cols[c].mult,
                        load_params.cols[c].bias]
                row = [Mux(feed_loads[c], first, later) for first, later in zip(row0, row)]
            ports = [pp.i.payload.acc, pp.i.payload.mult, pp.i.payload.bias]
            if not skid:
                m.d.comb += [port.eq(value) for port, value in zip(ports, row)]
                m.d.comb += pp.i.valid.eq(feed_valid)
            else:
                held = Signal(name=f"skid{c}_valid")
                regs = [Signal.like(port, name=f"skid{c}_{name}") for port, name in zip(ports, ("acc", "mult", "bias"))]
                m.d.comb += [port.eq(Mux(held, reg, value)) for port, reg, value in zip(ports, regs, row)]
                m.d.comb += pp.i.valid.eq(feed_valid | held)
                with m.If(held):
                    with m.If(pp.i.ready):
                        m.d.sync += held.eq(0)
                with m.Elif(feed_valid & ~pp.i.ready):
                    m.d.sync += [held.eq(1), *[reg.eq(value) for reg, value in zip(regs, row)]]
                if c == 0:
                    m.d.comb += pp_ready.eq(~held)
                    skid_probe = {"skid_held": held}
            m.d.comb += [pp.i.payload.shift.eq(L.shift), pp.i.payload.act.as_value().eq(L.act)]
            if cfg.mixed:
                m.d.comb += pp.i.payload.q_out.eq(L.clamp_q)

        params_now = Signal(param_layout(cfg))
        m.d.comb += params_now.eq(self.params.rd_data)
        if cfg.compact_control:   # (the fields' low bits: the values fit the config's bounds)
            pmeta_now = Cat(*[params_now[name][:field.shape.width] for name, field in pmeta_layout])
        else:
            pmeta_now = params_now.as_value()[:PARAM_META_BITS]

        def push_meta(meta):
            m.d.comb += [meta_fifo.w_en.eq(1), meta_fifo.w_data.eq(Cat(pmeta_now, meta))]

        def take_hold():
            if not cfg.memory_pipeline:
                push_meta(rd_meta)
            wide = [] if cfg.memory_pipeline else [P.eq(params_now), feed_acc.eq(Mux(rd_ptr, hold_acc[1], hold_acc[0]))]
            m.d.sync += [*wide, rd_ptr.eq(~rd_ptr)]
            set_feed_row(0, is_last=(n_rows == 1) if cfg.memory_pipeline else None)
            for k in range(2):
                with m.If(rd_ptr == k):
                    m.d.sync += hold_valid[k].eq(0)

        # The take's wide copy (~1.5k accumulator and ~0.5k param flip-flops on the 8x8 array):
        # with memory_pipeline it happens a cycle later (LOAD), enabled by C registered copies of
        # the take, one per column (`REPLICA`), not by the take's logic across the die. The slot
        # is still intact then (a capture into it comes capture_delay cycles after an issue the
        # take allows) and so is its param word (its read address changes a cycle later), so
        # LOAD feeds row 0 from them: no cycle is lost.
        after_take = "LOAD" if cfg.memory_pipeline else "FEED"
        if cfg.memory_pipeline:
            m.d.sync += load_slot.eq(rd_ptr)
            for c, load in enumerate(feed_loads):
                m.d.sync += load.eq(copying)
                with m.If(load):
                    m.d.sync += [P.cols[c].eq(params_now.cols[c]),
                                 *[feed_acc[r * C + c].eq(Mux(load_slot, hold_acc[1][r * C + c], hold_acc[0][r * C + c]))
                                   for r in range(R)]]

        with m.FSM(name="feeder"):
            with m.State("IDLE"):
                m.d.comb += feeder_idle.eq(1)
                with m.If(copying):
                    take_hold()
                    m.next = after_take
            if cfg.memory_pipeline:
                with m.State("LOAD"):
                    # row 0 (from the hold slot); no take here: a conv tile has R >= 2 rows
                    # (chain_ok), a dense one takes from IDLE only. The tile's metadata goes
                    # into the FIFO now, not in the take's cycle: the take's logic into the
                    # FIFO's LUT RAM was the 8x8 ULX3S build's critical path. (The take saw
                    # room, and no take comes between; the writer reads it only after the
                    # tile's rows went through the post-processing units.)
                    m.d.comb += feed_valid.eq(1)
                    push_meta(Mux(load_slot, pending[1], pending[0]))
                    with m.If(pp_ready):
                        set_feed_row(1, is_last=n_rows == 2)
                    with m.If(pp_ready & (n_rows == 1)):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += feed_valid.eq(1)
                row_at_last = row_is_last if cfg.memory_pipeline else feed_row == n_rows - 1
                m.d.comb += feed_last.eq(pp_ready & row_at_last)
                with m.If(pp_ready):
                    set_feed_row(feed_row + 1, is_last=(feed_row == n_rows - 2) if cfg.memory_pipeline else None)
                with m.If(copying):
                    take_hold()
                    if cfg.memory_pipeline:
                        m.next = "LOAD"
                with m.Elif(feed_last):
                    m.next = "IDLE"

        # collector
        # A full `codes` takes the next tile's first row in the cycle the writer copies it out
        # (the writer samples the old values at the same edge), so a tile costs R cycles here too.
        # For Fmax, the units' ready comes from flip-flops only (`codes_full` is a register, and
        # the writer takes a full `codes` whenever it is idle), and each column's codes are
        # captured on its own unit's valid (the units run in lockstep).
        codes_full = Signal()   # coll_row == n_rows, registered
        writer_take = Signal()
        writer_idle = Signal()
        coll_ready = Signal()
        coll_at = Signal(range(R + 1))
        if cfg.compact_control:
            writer_emitting = Signal()
            # EMIT reads `logits` itself: in the last layer the collector takes no row from the
            # writer's take until its last logit word has gone (a dense tile issues for longer)
            m.d.comb += coll_ready.eq((~codes_full | (writer_idle & ~L.last)) & ~writer_emitting)
        else:
            m.d.comb += coll_ready.eq(~codes_full | writer_idle)
        m.d.comb += coll_at.eq(Mux(codes_full, 0, coll_row))
        coll_accept = Signal()
        m.d.comb += coll_accept.eq(pps[0].o.valid & coll_ready)
        for c, pp in enumerate(pps):
            m.d.comb += pp.o.ready.eq(coll_ready)
            with m.If(pp.o.valid & coll_ready):
                with m.Switch(coll_at):
                    for r in range(R):
                        with m.Case(r):
                            m.d.sync += codes[r][c].eq(pp.o.payload.code)
                m.d.sync += logits[c].eq(pp.o.payload.logit)
        coll_next = Signal(range(R + 1))
        m.d.comb += coll_next.eq(Mux(writer_take, 0, coll_row) + coll_accept)
        m.d.sync += [coll_row.eq(coll_next), codes_full.eq(coll_next == n_rows)]

        # writer
        sel_logit = Signal(64)
        emit_valid = Signal()
        emit_data = Signal(WORD_BITS)
        with m.FSM(name="writer"):
            with m.State("IDLE"):
                m.d.comb += writer_idle.eq(1)
                with m.If(codes_full):
                    m.d.comb += [meta_fifo.r_en.eq(1), writer_take.eq(1)]
                    m.d.sync += [W.eq(meta_fifo.r_data), wk.eq(0), ek.eq(0)]
                    if lane_idx:
                        taken = Signal(entry_layout)
                        m.d.comb += taken.eq(meta_fifo.r_data)
                        m.d.sync += [idx.eq(s - taken.p.lane_skip) for s, idx in enumerate(lane_idx)]
                    m.d.sync += [wcodes[r][c].eq(codes[r][c]) for r in range(R) for c in range(C)]
                    if not cfg.compact_control:
                        m.d.sync += [wlogits[c].eq(logits[c]) for c in range(C)]
                    with m.If(L.last):
                        m.next = "EMIT"
                    with m.Else():
                        m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += drain_writing.eq(1)
                m.d.sync += wk.eq(wk + 1)
                m.d.sync += [idx.eq(idx + S) for idx in lane_idx]
                with m.If(wk == W.p.n_groups - 1):
                    m.next = "IDLE"
            with m.State("EMIT"):
                if cfg.compact_control:
                    m.d.comb += writer_emitting.eq(1)
                m.d.comb += [emit_valid.eq(1), sel_logit.eq(Array(wlogits)[ek >> 1]),
                             emit_data.eq(Mux(ek[0], sel_logit[32:], sel_logit[:32]))]
                with m.If(self.out.ready):
                    m.d.sync += ek.eq(ek + 1)
                    with m.If(ek == (W.p.c_valid << 1) - 1):
                        m.next = "IDLE"
        drain_idle = Signal()
        m.d.comb += drain_idle.eq(~hold_valid.any() & feeder_idle & ~meta_fifo.r_rdy & writer_idle)

        # -- fused max-pool in the writer (cfg.pool_fusion, layers with `fused_pool`) -----------
        # A conv tile's R rows are R/2 horizontal pairs (W even, the tile start t·R even): pair k
        # = rows 2k, 2k + 1, pair index p = t·R/2 + k. The writer takes the lane-wise max of each
        # pair (at the output map's mode) and stores it in the line buffer, bank k, slot t; a pair
        # on an odd conv row (`emit`) also takes the max with its vertical partner, W/2 = a·R/2 + b
        # pairs back: bank (k − b) mod R/2 of slot t − a (k >= b) or t − a − 1 (k < b), or, with
        # a = 0 and k >= b, pair k − b of the same tile (bypassed: it is written in this cycle). The
        # emitted pairs of all tiles, in order, are the pooled map's pixels in raster order, so a
        # running position (oq, os) places them: the m-th emitted pair of a tile at position
        # (oq, os) + m, one bank each (at most R/2 < R). Three stages per group step: 0 forms the
        # maxima and the registered line-buffer addresses, 1 waits for the read, 2 combines and
        # forms the (registered) activation-buffer writes (with `memory_pipeline`, a stage between
        # 1 and 2 registers the line buffer's read, and one in 2 the pair maxima). Per tile the
        # writer still takes 1 + n_groups cycles, as unfused.
        fuse_r = Signal()
        fv_a, fv_b = Signal(), Signal()
        f_wdata = [Signal(D, name=f"f_wdata{b}") for b in range(R)]
        f_waddr = [Signal(A + 2, name=f"f_waddr{b}") for b in range(R)]
        fo_en_b = Signal(R)
        flen_b = Signal(cfg.write_lanes)
        f_valids = [fv_a, fv_b]                          # the fused writer's stages in flight
        f_out_valid, f_out_len, f_out_en = fv_b, flen_b, fo_en_b   # its last stage (the act write)
        fuse_setup = []
        fuse_tile_end = []
        if fusion:
            lb_banks, gbits, sbits = line_buffer_shape(cfg)
            hb = half.bit_length() - 1            # R/2 = 2^hb
            lb_rd, lb_wr = [], []
            for k in range(half):
                mem = Memory(shape=unsigned(D), depth=1 << (gbits + sbits), init=[])
                m.submodules[f"line{k}"] = mem
                lb_rd.append(mem.read_port())
                lb_wr.append(mem.write_port(granularity=cfg.write_granularity))
            ws, rs_lo, rs_hi = Signal(sbits), Signal(sbits), Signal(sbits)   # slots t, t − a, t − a − 1
            f_ext = Signal(half)       # bank j reads slot t − a − 1 (j >= R/2 − b)
            f_byp = Signal(half)       # bank j's partner is in this tile (a = 0, j < R/2 − b)
            f_rot = Signal(range(half))    # b
            oq, os_ = Signal(A + 2), Signal(range(R))   # the pooled position of the tile's first emitted pair
            wo = L.width >> 1
            pa, pb = wo >> hb, wo & (half - 1)
            fuse_setup = [fuse_r.eq(L.fused_pool), ws.eq(0), rs_lo.eq(-pa), rs_hi.eq(-pa - 1), f_rot.eq(pb),
                          f_ext.eq(Cat(*[pb >= half - jb for jb in range(half)])),
                          f_byp.eq(Cat(*[(pa == 0) & (pb < half - jb) for jb in range(half)])),
                          oq.eq(0), os_.eq(0)]
            # stage 0
            pm = [Signal(D, name=f"f_pm{k}") for k in range(half)]
            for k in range(half):
                _lane_max(m, cfg, out_idx, Const(1), pm[k], [d_wdata[2 * k], d_wdata[2 * k + 1]], Const(0, D))
            f_grp = Signal(16)
            m.d.comb += f_grp.eq(W.p.group_first + wk)
            f_go = Signal()
            m.d.comb += f_go.eq(drain_writing & fuse_r)
            emit = W.t.emit
            # where the tile's pairs go: the m-th emitted pair to position os + m (bank, wrap past R − 1)
            rank = [sum(emit[i] for i in range(k)) if k else Const(0) for k in range(half)]
            o_sel = [Signal(range(half), name=f"f_sel{b}") for b in range(R)]
            o_en, o_wrap = Signal(R), Signal(R)
            for b in range(R):
                for k in reversed(range(half)):   # (at most one pair per bank)
                    u = os_ + rank[k]
                    hit = emit[k] & ((u == b) | (u == b + R))
                    with m.If(hit):
                        m.d.comb += [o_sel[b].eq(k), o_en[b].eq(1), o_wrap[b].eq(u >= R)]
            for k in range(half):
                m.d.sync += [lb_wr[k].addr.eq(Cat(f_grp[:gbits], ws)), lb_wr[k].data.eq(pm[k]),
                             lb_wr[k].en.eq(Mux(f_go & W.t.rows[2 * k], d_wen[2 * k], 0)),
                             lb_rd[k].addr.eq(Cat(f_grp[:gbits], Mux(f_ext[k], rs_hi, rs_lo)))]
            # stage 1 (`_a`) and 2 (`_b`)
            pm_a = [Signal(D, name=f"f_pm_a{k}") for k in range(half)]
            pm_b = [Signal(D, name=f"f_pm_b{k}") for k in range(half)]
            len_a = Signal(cfg.write_lanes)
            oaddr_a, oaddr_b = Signal(A + 2), Signal(A + 2)
            sel_a = [Signal(range(half), name=f"f_sel_a{b}") for b in range(R)]
            sel_b = [Signal(range(half), name=f"f_sel_b{b}") for b in range(R)]
            en_fa, wrap_a, wrap_b = Signal(R), Signal(R), Signal(R)
            m.d.sync += [fv_a.eq(f_go), len_a.eq(d_wen[0]), oaddr_a.eq(oq + f_grp), en_fa.eq(o_en), wrap_a.eq(o_wrap),
                         *[pm_a[k].eq(pm[k]) for k in range(half)], *[sel_a[b].eq(o_sel[b]) for b in range(R)]]
            m.d.sync += [fv_b.eq(fv_a), flen_b.eq(len_a), oaddr_b.eq(oaddr_a), fo_en_b.eq(en_fa), wrap_b.eq(wrap_a),
                         *[pm_b[k].eq(pm_a[k]) for k in range(half)], *[sel_b[b].eq(sel_a[b]) for b in range(R)]]
            src = [Signal(D, name=f"f_src{jb}") for jb in range(half)]
            for jb in range(half):
                m.d.comb += src[jb].eq(Mux(f_byp[jb], pm_b[jb], lb_rd[jb].data))
            control = (fv_b, flen_b, oaddr_b, fo_en_b, wrap_b)   # valid, lanes, address, bank enables, wraps

            def delay(letter, control, data):
                """One more register stage of the fused writer: registered copies of the controls
                (`<name>_<letter>`) and of each data list (`f_<kind>_<letter><k>`)."""
                regs = [Signal.like(x, name=x.name[:-1] + letter) for x in control]
                copies = {kind: [Signal.like(x, name=f"f_{kind}_{letter}{k}") for k, x in enumerate(xs)]
                          for kind, xs in data.items()}
                m.d.sync += [reg.eq(x) for reg, x in zip(regs, control)]
                m.d.sync += [reg.eq(x) for kind, xs in data.items() for reg, x in zip(copies[kind], xs)]
                f_valids.append(regs[0])
                return regs, copies

            if cfg.memory_pipeline:
                # With pipelined buffers the line buffer's read is registered too, like theirs (one
                # more stage): at R = 2 it is a block RAM, whose clock-to-out into the pair max and
                # the write data was the critical path of the 2x2 ULX3S build.
                control, copies = delay("c", control, {"src": src, "pm": pm_b, "sel": sel_b})
                src, pm_b, sel_b = copies["src"], copies["pm"], copies["sel"]
            out = [Signal(D, name=f"f_out{k}") for k in range(half)]
            for k in range(half):
                partner = Signal(D, name=f"f_partner{k}")
                m.d.comb += partner.eq(Array(src[(k - r) % half] for r in range(half))[f_rot] if half > 1 else src[0])
                _lane_max(m, cfg, out_idx, Const(1), out[k], [pm_b[k], partner], Const(0, D))
            if cfg.memory_pipeline:
                # ... and the pair maxima are registered before the bank select and the write (one
                # more stage): rotation, lane max, select and the write-port mux had been one path
                # of 10 logic levels into the write data on the ULX3S builds.
                control, copies = delay("d", control, {"out": out, "sel": sel_b})
                out, sel_b = copies["out"], copies["sel"]
            f_out_valid, f_out_len, oaddr_b, f_out_en, wrap_b = control
            for b in range(R):
                m.d.comb += [f_wdata[b].eq(Array(out)[sel_b[b]] if half > 1 else out[0]),
                             f_waddr[b].eq(oaddr_b + Mux(wrap_b[b], L.out_groups, 0))]
            # a pixel tile's last output tile done: the next slot, the pooled position past its emitted pairs
            n_emit = Signal(range(half + 1))
            m.d.comb += n_emit.eq(sum(emit[k] for k in range(half)))
            total = os_ + n_emit
            with m.If(drain_writing & fuse_r & (wk == W.p.n_groups - 1) & (W.t.to == out_tiles_last)):
                m.d.sync += [ws.eq(ws + 1), rs_lo.eq(rs_lo + 1), rs_hi.eq(rs_hi + 1),
                             os_.eq(Mux(total >= R, total - R, total)), oq.eq(oq + Mux(total >= R, L.out_groups, 0))]

        # -- dump engine (cfg.debug_dump) -----------------------------------------------------------
        dump = cfg.debug_dump
        dump_addr = Signal(grp)
        dump_k = Signal(range(R * -(-D // WORD_BITS) + 1))
        dump_words = Signal(R * D)
        dump_valid = Signal()
        dump_chunks = -(-D // WORD_BITS)
        dump_data = Signal(WORD_BITS)
        if dump:
            padded = Cat(*[Cat(dump_words[b * D:(b + 1) * D], Const(0, dump_chunks * WORD_BITS - D)) for b in range(R)])
            m.d.comb += dump_data.eq(Array(padded[i * WORD_BITS:(i + 1) * WORD_BITS] for i in range(R * dump_chunks))[dump_k])
            # output stream mux
            m.d.comb += [self.out.valid.eq(emit_valid | dump_valid),
                         self.out.payload.eq(Mux(dump_valid, dump_data, emit_data))]
        else:
            m.d.comb += [self.out.valid.eq(emit_valid), self.out.payload.eq(emit_data)]

        # -- act buffer port mux -----------------------------------------------------------------
        # Both ports are registered (for Fmax): the read address one cycle after the issue, the
        # write one cycle after the engine produced it (FINISH waits for `wr_pending`).
        rd_sel = Signal(2)  # 0 conv, 1 dense, 2 pool, 3 dump
        m.d.sync += self.act.rd_half.eq(L.in_half ^ (rd_sel == 3) if dump else L.in_half)
        for b in range(R):
            with m.Switch(rd_sel):
                with m.Case(0):
                    m.d.sync += self.act.rd_addr[b].eq(conv_addr[b])
                with m.Case(1):
                    m.d.sync += self.act.rd_addr[b].eq(row_g)
                with m.Case(2):
                    m.d.sync += self.act.rd_addr[b].eq(pool_addr[b])
                if dump:
                    with m.Case(3):
                        m.d.sync += self.act.rd_addr[b].eq(dump_addr)
        m.d.sync += self.act.wr_half.eq(~L.in_half)
        wr_pending = Signal()
        m.d.comb += wr_pending.eq(Cat(*[self.act.wr_en[b] for b in range(R)]).any())
        for b in range(R):
            with m.If(pool_writing):
                m.d.sync += [self.act.wr_addr[b].eq(pool_waddr[b]), self.act.wr_data[b].eq(pool_wdata[b]),
                             self.act.wr_en[b].eq(Mux(pool_wen[b], (1 << cfg.write_lanes) - 1, 0))]
            with m.Elif(f_out_valid):
                m.d.sync += [self.act.wr_addr[b].eq(f_waddr[b]), self.act.wr_data[b].eq(f_wdata[b]),
                             self.act.wr_en[b].eq(Mux(f_out_en[b], f_out_len, 0))]
            with m.Else():
                m.d.sync += [self.act.wr_addr[b].eq(d_waddr), self.act.wr_data[b].eq(d_wdata[b]),
                             self.act.wr_en[b].eq(Mux(drain_writing & rows_ok[b] & ~fuse_r, d_wen[b], 0))]

        # -- issue bookkeeping common to conv/dense -----------------------------------------------
        rot_now = Signal(range(R))   # conv: the tap's bank offset s; dense: the position's bank
        tile_rows = Signal(R)        # the tile's existing pixels (conv), row 0 (dense)
        m.d.sync += [en_a.eq(issue), clear_a.eq(issue & tile_first)]
        with m.If(issue):
            m.d.sync += [shift_a.eq(j), rot_a.eq(rot_now),
                         lanev_a.eq(Mux(gc_last, lanes_mask, full_mask)),
                         wcount.eq(wcount + 1)]
            with m.If(tile_last):
                m.d.sync += iss_ptr.eq(~iss_ptr)
                for k in range(2):
                    with m.If(iss_ptr == k):
                        if fusion:
                            m.d.sync += pending[k].emit.eq(Cat(*[exists[2 * pr] & pos_h[2 * pr][0] for pr in range(half)]))
                        m.d.sync += [pending[k].to.eq(to), pending[k].rows.eq(tile_rows),
                                     pending[k].obase.eq(tGo)]
        m.d.sync += self.mac_cycles.eq(self.mac_cycles + en_d)
        with m.If(self.busy):
            m.d.sync += self.layer_cycles.eq(self.layer_cycles + 1)

        # handles for simulation-only probes (tests, bench, formal harnesses); `rot`: row r of the
        # issued cycle reads bank (r + rot) mod R
        self.probes = {"issue": issue, "tile_last": tile_last, "hold_valid": hold_valid, "inflight": inflight,
                       "feeder_idle": feeder_idle, "writer_idle": writer_idle, "codes_full": codes_full,
                       "kh": kh, "kw": kw, "to": to, "fifo_rdy": meta_fifo.r_rdy, "copying": copying, "j": j,
                       "en": en_d, "row_valid": rowv_d, "lane_valid": lanev_d, "rot": rot_now,
                       "conv": rd_sel == 0, "tap": (cur_lo, cur_hi, cur_s),
                       "tap_table": {k: (tap_lo[k], tap_hi[k], tap_s[k]) for k in tap_lo},
                       **skid_probe}

        def step(k):
            """A constant step of k raster positions as (address part, bank part)."""
            cq = {0: 0, 1: L.groups, 2: L.groups << 1}[k // R]
            return cq, k % R

        def advance(pair, cq, cs):
            """pair += (cq, cs) with the bank wrapping into the address (cs < R)."""
            q, s = pair
            total = s + cs
            wrap = total >= R
            return [q.eq(q + cq + Mux(wrap, L.groups, 0)), s.eq(Mux(wrap, total - R, total))]

        def added(pair, cq, cs, name):
            """pair + (cq, cs), combinational (two signals)."""
            q, s = pair
            nq, ns = Signal.like(q, name=f"{name}_q"), Signal.like(s, name=f"{name}_s")
            total = s + cs
            wrap = total >= R
            m.d.comb += [nq.eq(q + cq + Mux(wrap, L.groups, 0)), ns.eq(Mux(wrap, total - R, total))]
            return nq, ns

        rs0_next = added(rs0, p_w2[0], p_w2[1], "p_rs0_next")
        rs1_next = added(rs1, p_w2[0], p_w2[1], "p_rs1_next")
        orow_next = added(p_orow, L.out_wdiv_g, L.out_wmod, "p_orow_next")

        # -- main FSM ------------------------------------------------------------------------------
        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(self.start):
                    # mac_cycles runs free (probes take differences); layer_cycles counts this run
                    m.d.sync += [li.eq(0), self.layer_cycles.eq(0)]
                    if words_table:
                        m.d.sync += tbase.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                if words_table:
                    m.d.sync += tk.eq(tk + 1)
                    with m.Switch(tk):
                        for k in range(1, entry_words + 1):
                            with m.Case(k):
                                if cfg.compact_control:
                                    m.d.sync += _word_into(L, layer_layout(cfg), k - 1, self.table.rd_data)
                                else:
                                    m.d.sync += L.as_value()[(k - 1) * WORD_BITS:k * WORD_BITS].eq(self.table.rd_data)
                    with m.If(tk == entry_words):
                        m.d.sync += tk.eq(0)
                        m.next = "LATCH"
                else:
                    m.next = "LATCH"
            with m.State("LATCH"):
                m.d.comb += self.busy.eq(1)
                if not words_table:
                    if cfg.compact_control:
                        table_entry = Signal(layer_layout(cfg))
                        m.d.comb += table_entry.eq(self.table.rd_data)
                        m.d.sync += [L[name].eq(table_entry[name]) for name, _ in layer_layout(cfg)]
                    else:
                        m.d.sync += L.eq(self.table.rd_data)
                with m.If(li == self.n_layers):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                w2_total = L.wmod << 1
                w2_wrap = w2_total >= R
                m.d.sync += setup_flags()
                m.d.sync += [h.eq(0), kh.eq(Mux(L.fold_h, 1, 0)), kw.eq(Mux(L.fold_w, 1, 0)), g.eq(0), gg.eq(0), j.eq(0), to.eq(0), t.eq(0),
                             w0.eq(0), wr.eq(0), tG.eq(0), tGo.eq(0), *tap_base_setup,
                             h_last.eq(L.height - 1), w_last.eq(L.width - 1), *fold_setup, *lanes_setup,
                             tiles_last.eq(L.tiles - 1), out_tiles_last.eq(L.out_tiles - 1),
                             passes_last.eq(L.passes - 1), pass_groups_last.eq(L.pass_groups - 1),
                             groups_last.eq(L.groups - 1), out_h_last.eq(L.out_height - 1),
                             out_w_last.eq(L.out_width - 1), out_words_last.eq(L.out_words - 1),
                             is_dense.eq(L.kind == KIND_DENSE),
                             pos_h[0].eq(0), pos_w[0].eq(0), init_k.eq(0),
                             wcount.eq(L.weight_base), wtile.eq(L.weight_base),
                             p_ho.eq(0), p_wo.eq(0), p_g.eq(0), p_k.eq(0), p_t.eq(0), p_wo0.eq(0), p_tG.eq(0),
                             rs0[0].eq(0), rs0[1].eq(0), rs1[0].eq(L.wdiv_g), rs1[1].eq(L.wmod),
                             p_in0[0].eq(0), p_in0[1].eq(0), p_in1[0].eq(L.wdiv_g), p_in1[1].eq(L.wmod),
                             p_o[0].eq(0), p_o[1].eq(0), p_orow[0].eq(0), p_orow[1].eq(0),
                             p_w2[0].eq((L.wdiv_g << 1) + Mux(w2_wrap, L.groups, 0)),
                             p_w2[1].eq(Mux(w2_wrap, w2_total - R, w2_total)),
                             *([dump_addr.eq(0), dump_k.eq(0)] if dump else []), *fuse_setup]
                with m.If(L.kind == KIND_POOL):
                    m.next = "POOL"
                with m.Elif(L.kind == KIND_DENSE):
                    with m.If(L.external):
                        m.next = "WEIGHTS"
                    with m.Else():
                        m.next = "DENSE"
                with m.Else():
                    m.next = "INIT"
            with m.State("INIT"):
                # conv: row r's position = row r − 1's plus one raster step (settled after R − 1 cycles)
                m.d.comb += self.busy.eq(1)
                m.d.sync += tap_setup
                for r in range(1, R):
                    wrap = pos_w[r - 1] == w_last
                    m.d.sync += [pos_w[r].eq(Mux(wrap, 0, pos_w[r - 1] + 1)), pos_h[r].eq(pos_h[r - 1] + wrap)]
                m.d.sync += init_k.eq(init_k + 1)
                with m.If(init_k >= max(1 if cfg.memory_pipeline else 0, R - 2)):
                    with m.If(L.external):
                        m.next = "WEIGHTS"
                    with m.Else():
                        m.next = "CONV"
            with m.State("WEIGHTS"):
                m.d.comb += [self.busy.eq(1), self.need_weights.eq(1)]
                with m.If(self.weights_loaded):
                    with m.If(L.kind == KIND_DENSE):
                        m.next = "DENSE"
                    with m.Else():
                        m.next = "CONV"

            with m.State("CONV"):
                m.d.comb += [self.busy.eq(1), rd_sel.eq(0), issue.eq(can_issue), rot_now.eq(cur_s),
                             tile_rows.eq(exists),
                             tile_first.eq((j == 0) & (gg == 0) & (kh == kh0) & (kw == kw0)),
                             tile_last.eq(nests["conv"].at[3] if flags else
                                          j_last_now & gc_last & kh_last_now & kw_last_now)]
                with m.If(issue):
                    m.d.sync += rowv_a.eq(conv_rowv)
                    m.d.sync += count_up(kw)

                    def next_kh():
                        m.d.sync += [*restart(kw, kw0), *count_up(kh)]

                    def next_group():
                        m.d.sync += [*restart(kh, kh0), *count_up(g), gg.eq(gg + 1)]

                    def next_pass():
                        m.d.sync += [*restart(g, 0), *count_up(j), wcount.eq(wtile)]

                    def next_out_tile():
                        # tile of output channels done
                        m.d.sync += [*restart(j, 0), gg.eq(0), *count_up(to),
                                     wcount.eq(wcount + 1), wtile.eq(wcount + 1)]

                    def next_pixel_tile():
                        # pixel tile done: the next R raster positions
                        m.d.sync += [*restart(to, 0), wcount.eq(L.weight_base), wtile.eq(L.weight_base),
                                     *count_up(t), tG.eq(tG + L.groups), tGo.eq(tGo + L.out_groups)]
                        for r in range(R):
                            nw = pos_w[r] + L.tile_dw
                            wrap = nw > w_last
                            m.d.sync += [pos_w[r].eq(Mux(wrap, nw - L.width, nw)),
                                         pos_h[r].eq(pos_h[r] + L.tile_dh + wrap)]

                    def finish():
                        m.next = "FINISH"

                    nest("conv", [(kw_last_now, next_kh), (kh_last_now, next_group), (gc_last, next_pass),
                                  (j_last_now, next_out_tile), (to_last_now, next_pixel_tile), (t_last_now, finish)])

            with m.State("DENSE"):
                # input positions i = h·W + w in raster order (bank wr, address part tG); groups innermost
                m.d.comb += [self.busy.eq(1), rd_sel.eq(1), issue.eq(can_issue), rot_now.eq(wr), tile_rows.eq(1),
                             tile_first.eq((h == 0) & (w0 == 0) & (gg == 0)),
                             tile_last.eq(nests["dense"].at[2] if flags else h_last_now & w0_last_now & gc_last)]
                with m.If(issue):
                    m.d.sync += [rowv_a.eq(1), *count_up(g), gg.eq(gg + 1)]

                    def next_position():
                        m.d.sync += [*restart(g, 0), gg.eq(0), *count_up(w0), wr.eq(wr + 1)]
                        if R == 1:
                            m.d.sync += [wr.eq(0), tG.eq(tG + L.groups)]
                        else:
                            with m.If(wr == R - 1):
                                m.d.sync += [wr.eq(0), tG.eq(tG + L.groups)]

                    def next_row():
                        m.d.sync += [*restart(w0, 0), *count_up(h)]

                    def next_out_tile():
                        m.d.sync += [*restart(h, 0), wr.eq(0), tG.eq(0), *count_up(to)]

                    def finish():
                        m.next = "FINISH"

                    nest("dense", [(gc_last, next_position), (w0_last_now, next_row), (h_last_now, next_out_tile),
                                   (to_last_now, finish)])

            with m.State("POOL"):
                m.d.comb += [self.busy.eq(1), rd_sel.eq(2), p_issue.eq(1)]
                m.d.sync += p_k.eq(p_k + 1)
                with m.If(p_k == k_last):
                    m.d.sync += [p_k.eq(0), p_g.eq(p_g + 1)]
                    with m.If(p_g == groups_last):
                        m.d.sync += p_g.eq(0)
                        if vec:
                            # next step of R/2 output words; at the row's end, the next row pair
                            m.d.sync += [p_t.eq(p_t + 1), p_wo0.eq(p_wo0 + half), p_tG.eq(p_tG + L.groups),
                                         *advance(p_o, *step(half))]
                            row_end = p_wo0 + half > out_w_last
                        else:
                            m.d.sync += [p_wo.eq(p_wo + 1), *advance(p_in0, *step(2)), *advance(p_in1, *step(2)),
                                         *advance(p_o, *step(1))]
                            row_end = p_wo == out_w_last
                        with m.If(row_end):
                            m.d.sync += [p_ho.eq(p_ho + 1), p_wo.eq(0), p_t.eq(0), p_wo0.eq(0), p_tG.eq(0),
                                         rs0[0].eq(rs0_next[0]), rs0[1].eq(rs0_next[1]),
                                         rs1[0].eq(rs1_next[0]), rs1[1].eq(rs1_next[1]),
                                         p_in0[0].eq(rs0_next[0]), p_in0[1].eq(rs0_next[1]),
                                         p_in1[0].eq(rs1_next[0]), p_in1[1].eq(rs1_next[1])]
                            if vec:
                                m.d.sync += [p_orow[0].eq(orow_next[0]), p_orow[1].eq(orow_next[1]),
                                             p_o[0].eq(orow_next[0]), p_o[1].eq(orow_next[1])]
                            with m.If(p_ho == out_h_last):
                                m.next = "FINISH"

            with m.State("FINISH"):
                # wait for the array pipeline, the hold register, the drain and the pool write
                m.d.comb += self.busy.eq(1)
                settled = ~inflight & ~hold_valid.any() & drain_idle
                for pv in pool_busy:
                    settled = settled & ~pv
                settled = settled & ~en_a & ~en_d
                for fv in f_valids:
                    settled = settled & ~fv
                settled = settled & ~wr_pending
                if in_flight:
                    settled = settled & ~Cat(*in_flight).any()
                with m.If(settled):
                    if not dump:
                        m.next = "NEXT"
                    else:
                        with m.If(L.dump):
                            m.next = "DUMP_READ"
                        with m.Else():
                            m.next = "NEXT"
            if dump:
                with m.State("DUMP_READ"):
                    m.d.comb += [self.busy.eq(1), rd_sel.eq(3)]
                    m.next = "DUMP_WAIT"
                with m.State("DUMP_WAIT"):  # the registered address reaches the buffer
                    m.d.comb += [self.busy.eq(1), rd_sel.eq(3)]
                    if not cfg.memory_pipeline:
                        m.next = "DUMP_LATCH"
                    else:  # and its data comes memory_pipeline cycles later still
                        dump_wait = Signal(range(cfg.memory_pipeline + 1))
                        m.d.sync += dump_wait.eq(dump_wait + 1)
                        with m.If(dump_wait == cfg.memory_pipeline):
                            m.d.sync += dump_wait.eq(0)
                            m.next = "DUMP_LATCH"
                with m.State("DUMP_LATCH"):
                    m.d.comb += [self.busy.eq(1), rd_sel.eq(3)]
                    m.d.sync += [dump_words.eq(self.act.rd_data), dump_k.eq(0)]
                    m.next = "DUMP_EMIT"
                with m.State("DUMP_EMIT"):
                    m.d.comb += [self.busy.eq(1), rd_sel.eq(3), dump_valid.eq(1)]
                    with m.If(self.out.ready):
                        m.d.sync += dump_k.eq(dump_k + 1)
                        with m.If(dump_k == R * dump_chunks - 1):
                            m.d.sync += dump_addr.eq(dump_addr + 1)
                            with m.If(dump_addr == out_words_last):
                                m.next = "NEXT"
                            with m.Else():
                                m.next = "DUMP_READ"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += li.eq(li + 1)
                if words_table:
                    m.d.sync += tbase.eq(tbase + entry_words)
                m.next = "FETCH"
        return m


def _word_into(target, packed: data.StructLayout, k: int, word) -> list:
    """Assignments of stream word k of an entry packed at `packed`'s field widths (program.
    pack_fields: from bit 0 upwards) into `target`'s fields, which may be narrower (their low bits)."""
    stmts, offset = [], 0
    for name, field in packed:
        lo, hi = max(offset, k * WORD_BITS), min(offset + len(target[name]), (k + 1) * WORD_BITS)
        if lo < hi:
            stmts.append(target[name][lo - offset:hi - offset].eq(word[lo - k * WORD_BITS:hi - k * WORD_BITS]))
        offset += field.shape.width
    return stmts


def _lane_max(m, cfg: AccelConfig, mode_idx, first, target, words, old) -> None:
    """target = the lane-wise max of `words` (one or two words) and `old` (on the `first` step:
    of `words` alone), lanes of the layer's mode: Q-bit codes, or with per-layer modes a mux over
    the modes' lane sets (zero-extended codes in a container compare as the codes do)."""
    d = cfg.datapath

    def at(q, out):
        for s in range(d // q):
            sl = slice(s * q, (s + 1) * q)
            lanes = [w[sl] for w in words]
            best = lanes[0] if len(lanes) == 1 else Mux(lanes[1] > lanes[0], lanes[1], lanes[0])
            m.d.comb += out[sl].eq(Mux(first | (best > old[sl]), best, old[sl]))

    if not cfg.mixed:
        at(cfg.q, target)
        return
    per_mode = [Signal(d, name=f"{target.name}_m{q}") for q in cfg.modes]
    for q, value in zip(cfg.modes, per_mode):
        at(q, value)
    with m.Switch(mode_idx):
        for k, value in enumerate(per_mode):
            with m.Case(k):
                m.d.comb += target.eq(value)
