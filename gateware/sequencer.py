"""The sequencer: runs the layer program over the buffers with its own address generation.

For each layer it reads one layer-table entry (`qjoule.program.LAYER_FIELDS`) and runs one of

- **conv3x3** (padding 1): for each output row h, each tile of R output pixels (columns w0 ..
  w0+R−1), each tile of C output channels, for each pass j (first layer only), group g, tap
  (kh, kw): one array cycle. The R activation words of a tap come from R consecutive input columns,
  so from R distinct banks in one cycle; a rotation by kw−1 gives row r its pixel. Positions
  outside the image clear `row_valid`; lanes past the last channel clear `lane_valid`. The weight
  address simply counts up through the layer's words, (tile·G_c + g)·9 + tap, back to the tile
  start for each first-layer pass.
- **dense**: for each tile of C outputs, for each input pixel (h, w) and group g: one array cycle
  on row 0 only (the weight word is shared by the rows, so the rows cannot split one dot product;
  dense layers run at 1/R utilization, see docs/interface.md).
- **maxpool2x2**: a lane-wise max of the codes of four input words per output word, reading as
  many banks per cycle as the layout allows (R/2 output words per two cycles for even R >= 4).

A first layer folded by the input unit (`fold_w`/`fold_h`, see `qjoule.program.fold_image`)
issues only the centre column (or centre) of taps. A finished tile's R·C accumulators are
captured into one of two hold registers (so the array goes straight on with the next tiles) and
drained through C `PostProcess` units, one row per cycle; the codes are written into the output
half with lane write-enables, one word per bank and cycle, all R pixels of the tile at once (they
sit in R distinct banks). The last layer instead sends its logits to
the output stream as int64 (two 32-bit words, low first). A layer with `dump` set copies its
output map to the output stream afterwards (debug mode).

For Fmax, no address needs a multiplier (products such as h·row_stride are running sums kept
next to their counters; the nine conv tap offsets are layer constants set up front), and both
activation-buffer ports are registered: the read address one cycle after the issue (the array's
controls are delayed to match) and each write one cycle after it is formed.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from qjoule.config import PP_MULT_BITS, AccelConfig
from qjoule.program import (KIND_DENSE, KIND_POOL, LAYER_FIELDS, MAX_LAYERS, PARAM_META_BITS, PARAM_META_FIELDS,
                            MIXED_LAYER_FIELDS, WORD_BITS, layer_fields, param_word_bits, param_words)

from .array import MacArray
from .buffers import activation_buffer_signature, wide_buffer_signature
from .postproc import PostProcess

__all__ = ["Sequencer", "layer_layout", "param_layout"]


def layer_layout(cfg: AccelConfig | None = None) -> data.StructLayout:
    """A layer-table entry as the hardware for `cfg` holds it (`program.layer_fields`: the
    per-layer-mode fields only with q_modes; None: the single-Q entry)."""
    fields = [f for f in LAYER_FIELDS if f[0] not in MIXED_LAYER_FIELDS] if cfg is None else layer_fields(cfg)
    return data.StructLayout({name: unsigned(bits) for name, bits in fields})


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
        super().__init__({
            "start": In(1),
            "n_layers": In(range(MAX_LAYERS + 1)),
            "busy": Out(1),
            "done": Out(1),
            "need_weights": Out(1),
            "weights_loaded": In(1),
            "table": In(wide_buffer_signature(unsigned(layer_layout(cfg).size), MAX_LAYERS)),
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

        L = Signal(layer_layout(cfg))
        li = Signal(range(MAX_LAYERS + 1))
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
        h = Signal(16)
        kh = Signal(2)
        kw = Signal(2)
        # Folded first layer: the input unit stored the kw (and kh) neighbours in extra lanes, so
        # only the centre column (row) of taps is issued.
        kh0, kh1, kw0, kw1 = Signal(2), Signal(2), Signal(2), Signal(2)
        g = Signal(16)          # group within the pass
        gg = Signal(16)         # group within the input map (j·G_c + g)
        j = Signal(4)           # first-layer pass
        to = Signal(16)         # output tile
        wt = Signal(16)         # pixel tile (conv) / bank column w div R (dense)
        w0 = Signal(16)         # first column of the pixel tile (conv) / w (dense)
        wr = Signal(range(R))   # w mod R (dense)
        wtGo = Signal(A)        # wt·G_out
        rowbase = Signal(A)     # h·row_stride
        rowbase_o = Signal(A)   # h·out_row_stride
        row_wt = Signal(A)      # rowbase + wt·G (the tile's first input column), a running sum
        wcount = Signal(24)     # weight address
        wtile = Signal(24)      # weight address of the current tile's first word

        # -- hold registers and in-flight tracking -----------------------------------------------
        # Two hold slots used in turn: tile ends are issued, captured (capture_delay cycles
        # later, when the array's accumulators hold the finished sums) and copied out by the
        # feeder in the same order, so the n-th tile end always uses slot n mod 2. At most two
        # tiles are between their last issue and the feeder, so a capture always finds its slot
        # free, and tiles shorter than the capture delay still keep the array busy.
        capture_delay = 2 + MacArray.latency
        last_line = Signal(capture_delay)
        hold_acc = [Signal.like(array.acc, name=f"hold_acc{k}") for k in range(2)]
        hold_valid = Signal(2)
        # obase = rowbase_o + wtGo: the output address of the tile's pixel column, summed at issue
        meta_layout = data.StructLayout({"to": unsigned(16), "w0": unsigned(16), "obase": unsigned(A)})
        pending = [Signal(meta_layout, name=f"pending{k}") for k in range(2)]  # per slot, from its issue
        iss_ptr, cap_ptr, rd_ptr = Signal(), Signal(), Signal()
        inflight = Signal()
        m.d.comb += inflight.eq(last_line.any())
        occupancy = Signal(range(capture_delay + 3))
        m.d.comb += occupancy.eq(sum(last_line[k] for k in range(capture_delay)) + hold_valid[0] + hold_valid[1])

        # -- issue-cycle signals (combinational) -----------------------------------------------
        issue = Signal()        # one array cycle issued this cycle
        tile_first = Signal()
        tile_last = Signal()
        can_issue = Signal()
        m.d.comb += [kh0.eq(Mux(L.fold_h, 1, 0)), kh1.eq(Mux(L.fold_h, 1, 2)),
                     kw0.eq(Mux(L.fold_w, 1, 0)), kw1.eq(Mux(L.fold_w, 1, 2))]
        # A tile's last cycle may issue while fewer than two tiles are in flight or held, or two
        # are and the feeder copies one out this cycle.
        copying = Signal()
        m.d.comb += can_issue.eq(~tile_last | (occupancy < 2) | ((occupancy == 2) & copying))

        # Registered controls for the array. The issue cycle's buffer addresses are registered
        # (`_a`, for Fmax: no adder chain ends in a block RAM's address pins), the reads take one
        # more cycle, and the `_d` copies line up with the buffers' read data.
        en_a, clear_a, en_d, clear_d = Signal(), Signal(), Signal(), Signal()
        shift_a, shift_d = Signal(4), Signal(4)
        rowv_a, rowv_d = Signal(R), Signal(R)
        lanev_a, lanev_d = Signal(cfg.max_lanes), Signal(cfg.max_lanes)
        rot_a, rot_d = Signal(2), Signal(2)       # conv: kw; dense: unused
        wr_a, wr_d = Signal(range(R)), Signal(range(R))
        wcount_a = Signal(24)
        m.d.sync += [en_d.eq(en_a), clear_d.eq(clear_a), shift_d.eq(shift_a), rowv_d.eq(rowv_a),
                     lanev_d.eq(lanev_a), rot_d.eq(rot_a), wr_d.eq(wr_a), wcount_a.eq(wcount)]
        dense_d = Signal()
        lanes_mask = Signal(cfg.max_lanes)
        if not cfg.mixed:
            m.d.comb += lanes_mask.eq(Mux(L.lanes_last >= S, (1 << S) - 1,
                                          (Const(1, S + 1) << L.lanes_last[:8]) - 1))
            full_mask = (1 << S) - 1
        else:
            full_mask = Signal(cfg.max_lanes)   # every lane of the layer's mode
            # lanes_last is 1 .. S of the layer's mode (the encoder's), so no clamp is needed
            m.d.comb += lanes_mask.eq((Const(1, cfg.max_lanes + 1) << L.lanes_last[:8]) - 1)
            with m.Switch(mode_idx):
                for k, mq in enumerate(modes):
                    with m.Case(k):
                        m.d.comb += full_mask.eq((1 << (D // mq)) - 1)

        m.d.comb += dense_d.eq(L.kind == KIND_DENSE)  # L is constant while a layer runs
        m.d.sync += last_line.eq(Cat(issue & tile_last, last_line[:-1]))
        with m.If(last_line[-1]):
            m.d.sync += cap_ptr.eq(~cap_ptr)
            for k in range(2):
                with m.If(cap_ptr == k):
                    m.d.sync += [hold_acc[k].eq(array.acc), hold_valid[k].eq(1)]

        # array inputs
        rotated = []
        for r in range(R):
            choices = [self.act.rd_data[(r + dk) % R] for dk in (-1, 0, 1)]
            word = Signal(D, name=f"act_row{r}")
            with m.If(dense_d):
                m.d.comb += word.eq(self.act.rd_data[0] if R == 1 else Array(self.act.rd_data)[wr_d])
            with m.Else():
                m.d.comb += word.eq(Array(choices)[rot_d])
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

        # row validity of a conv tap, per row
        conv_rowv = Signal(R)
        hvalid = Signal()
        m.d.comb += hvalid.eq(~(((kh == 0) & (h == 0)) | ((kh == 2) & (h == L.height - 1))))
        for r in range(R):
            col = Signal(signed(18), name=f"col{r}")
            m.d.comb += col.eq(w0 + r + kw - 1)
            m.d.comb += conv_rowv[r].eq(hvalid & (col >= 0) & (col < L.width))

        # conv read addresses: bank b holds column w0 + kw − 1 + ((b − (kw − 1)) mod R), which is in
        # bank column wt + step(b, kw) with step ∈ {−1, 0, +1} known at elaboration time.
        # The nine tap offsets (kh − 1)·row_stride + step·G, step ∈ {−1, 0, +1}, are layer constants
        # set in SETUP, so a bank's address is two adds: row_wt + gg, plus its tap's offset.
        tap_off = {(dkh, step): Signal(signed(A + 2), name=f"tap_off_{dkh + 1}_{step + 1}")
                   for dkh in (-1, 0, 1) for step in (-1, 0, 1)}
        row_g = Signal(A + 2)
        m.d.comb += row_g.eq(row_wt + gg)
        conv_addr = []
        for b in range(R):
            addr = Signal(signed(A + 2), name=f"conv_addr{b}")
            with m.Switch(Cat(kw, kh)):
                for kh_ in range(3):
                    for k, dk in enumerate((-1, 0, 1)):
                        step = (dk + (b - dk) % R) // R
                        with m.Case(k | kh_ << 2):
                            m.d.comb += addr.eq(row_g + tap_off[(kh_ - 1, step)])
            conv_addr.append(addr)

        # -- pool engine ---------------------------------------------------------------------------
        # Per output word (ho, wo, g): with R >= 2 the two input columns 2·wo, 2·wo + 1 sit in two
        # banks, so each cycle reads both (k = dy, 2 cycles per word); with R = 1 one word per
        # cycle (k = 2·dy + dx, 4 cycles). A lane-wise max of the codes, written on the last k.
        two_cols = R >= 2
        k_last = 1 if two_cols else 3
        p_ho, p_wo, p_g, p_k = Signal(16), Signal(16), Signal(16), Signal(2)
        p_q2, p_r2 = Signal(16), Signal(range(R))  # divmod(2·wo, R)
        p_woq, p_wor = Signal(16), Signal(range(R))
        p_issue = Signal()
        p_dy = Signal()
        p_q1, p_r1 = Signal(16), Signal(range(R))  # divmod(2·wo + 1, R)
        if R == 1:
            m.d.comb += [p_dy.eq(p_k[1]), p_r1.eq(0), p_q1.eq(p_q2 + p_k[0])]
        else:
            m.d.comb += p_dy.eq(p_k[0])
            with m.If(p_r2 == R - 1):
                m.d.comb += [p_r1.eq(0), p_q1.eq(p_q2 + 1)]
            with m.Else():
                m.d.comb += [p_r1.eq(p_r2 + 1), p_q1.eq(p_q2)]
        # Address products kept as running sums (no multiplier in the address path): 2·ho·row_stride,
        # ho·out_row_stride, q2·G and wo div R·G step with their counters.
        p_ho_rs, p_ho_ors, p_q2g, p_woqg = Signal(A + 8), Signal(A + 8), Signal(A + 8), Signal(A + 8)
        p_q1g = Signal(A + 8)   # q1·G
        if R == 1:
            m.d.comb += p_q1g.eq(p_q2g + Mux(p_k[0], L.groups, 0))
        else:
            m.d.comb += p_q1g.eq(p_q2g + Mux(p_r2 == R - 1, L.groups, 0))
        p_rowaddr = Signal(A + 8)
        m.d.comb += p_rowaddr.eq(p_ho_rs + Mux(p_dy, L.row_stride, 0) + p_g)
        p_addr0, p_addr1 = Signal(A + 8), Signal(A + 8)
        m.d.comb += [p_addr0.eq(p_rowaddr + p_q2g), p_addr1.eq(p_rowaddr + p_q1g)]
        # `_a`: the cycle the registered read address is at the buffer; `_d`: its data is back.
        p_valid_a, p_first_a, p_last_a = Signal(), Signal(), Signal()
        p_r0_a, p_r1_a, p_wor_a = Signal(range(R)), Signal(range(R)), Signal(range(R))
        p_waddr_a = Signal(A + 8)
        p_valid_d, p_first_d, p_last_d = Signal(), Signal(), Signal()
        p_r0_d, p_r1_d, p_wor_d = Signal(range(R)), Signal(range(R)), Signal(range(R))
        p_waddr_d = Signal(A + 8)
        p_max = Signal(D)
        p_new = Signal(D)
        words = [Array(self.act.rd_data)[p_r1_d]] if R == 1 else [Array(self.act.rd_data)[p_r0_d],
                                                                   Array(self.act.rd_data)[p_r1_d]]

        _lane_max(m, cfg, mode_idx, p_first_d, p_new, words, p_max)
        m.d.sync += [p_valid_a.eq(p_issue), p_first_a.eq(p_k == 0), p_last_a.eq(p_k == k_last),
                     p_r0_a.eq(p_r2), p_r1_a.eq(p_r1), p_wor_a.eq(p_wor),
                     p_waddr_a.eq(p_ho_ors + p_woqg + p_g)]
        m.d.sync += [p_valid_d.eq(p_valid_a), p_first_d.eq(p_first_a), p_last_d.eq(p_last_a),
                     p_r0_d.eq(p_r0_a), p_r1_d.eq(p_r1_a), p_wor_d.eq(p_wor_a), p_waddr_d.eq(p_waddr_a)]
        with m.If(p_valid_d):
            m.d.sync += p_max.eq(p_new)
        pool_writing = Signal()
        m.d.comb += pool_writing.eq(p_valid_d & p_last_d)

        # Even R >= 4: a whole tile of R/2 output columns per step. Input columns 2·wo0 .. 2·wo0 +
        # R − 1 (wo0 = t·R/2) are exactly bank column t of every bank, so all R banks read the
        # same address; output columns wo0 .. wo0 + R/2 − 1 are banks 0 .. R/2 − 1 (t even) or
        # R/2 .. R − 1 (t odd) of bank column t div 2. Two cycles (dy) per R/2 output words.
        vec = R % 2 == 0 and R >= 4
        half = R // 2
        p_t, p_wo0 = Signal(16), Signal(16)
        p_tg, p_thg = Signal(A + 8), Signal(A + 8)  # t·G and (t div 2)·G, running sums
        v_addr = Signal(A + 8)
        m.d.comb += v_addr.eq(p_ho_rs + Mux(p_k[0], L.row_stride, 0) + p_tg + p_g)
        v_waddr_a, v_odd_a, v_mask_a = Signal(A + 8), Signal(), Signal(max(1, half))
        v_waddr_d, v_odd_d, v_mask_d = Signal(A + 8), Signal(), Signal(max(1, half))
        v_max = [Signal(D, name=f"v_max{k}") for k in range(half)]
        v_new = [Signal(D, name=f"v_new{k}") for k in range(half)]
        if vec:
            m.d.sync += [v_waddr_a.eq(p_ho_ors + p_thg + p_g), v_odd_a.eq(p_t[0]),
                         v_mask_a.eq(Cat(*[p_wo0 + k < L.out_width for k in range(half)]))]
            m.d.sync += [v_waddr_d.eq(v_waddr_a), v_odd_d.eq(v_odd_a), v_mask_d.eq(v_mask_a)]
            for k in range(half):
                _lane_max(m, cfg, mode_idx, p_first_d, v_new[k], [self.act.rd_data[2 * k], self.act.rd_data[2 * k + 1]],
                          v_max[k])
                with m.If(p_valid_d):
                    m.d.sync += v_max[k].eq(v_new[k])

        # -- drain: hold -> feeder -> PostProcess -> collector -> writer ------------------------
        # Three decoupled stages so a tile drains while the array computes the next ones: the
        # feeder copies the hold register (freeing it) and feeds one row per cycle into the C
        # PostProcess units; the collector gathers their outputs into `codes` (backpressuring
        # the units while the writer still owns the previous tile); the writer stores the codes,
        # one word per bank and cycle, or sends the logits. Tile metadata travels in a FIFO.
        pmeta_layout = data.StructLayout({name: unsigned(bits) for name, bits in PARAM_META_FIELDS})
        entry_layout = data.StructLayout({"p": pmeta_layout, "t": meta_layout})
        m.submodules.meta_fifo = meta_fifo = SyncFIFO(width=entry_layout.size, depth=4)
        P = Signal(param_layout(cfg))           # the fed tile's parameters
        feed_acc = Signal.like(array.acc)
        feed_row = Signal(range(R + 1))
        coll_row = Signal(range(R + 1))
        n_rows = Signal(range(R + 1))
        m.d.comb += n_rows.eq(Mux(L.kind == KIND_DENSE, 1, R))
        codes = [[Signal(cfg.code_bits, name=f"code_{r}_{c}") for c in range(C)] for r in range(R)]
        logits = [Signal(64, name=f"logit{c}") for c in range(C)]
        wcodes = [[Signal(cfg.code_bits, name=f"wcode_{r}_{c}") for c in range(C)] for r in range(R)]
        wlogits = [Signal(64, name=f"wlogit{c}") for c in range(C)]
        W = Signal(entry_layout)                # the written tile's metadata
        wk = Signal(8)         # write step within the tile's groups
        ek = Signal(range(2 * C + 1))  # emit step (logit words)
        drain_writing = Signal()
        d_wdata = [Signal(D, name=f"d_wdata{r}") for r in range(R)]
        d_wen = [Signal(cfg.write_lanes, name=f"d_wen{r}") for r in range(R)]
        d_waddr = Signal(A + 2)
        m.d.comb += d_waddr.eq(W.t.obase + W.p.group_first + wk)
        if not cfg.mixed:
            for r in range(R):
                for s in range(S):
                    idx = Signal(signed(18), name=f"idx_{r}_{s}")
                    # (S is a power of two at every Q that divides 16: a shift, not a multiplier)
                    wk_s = wk << (S.bit_length() - 1) if S & (S - 1) == 0 else wk * S
                    m.d.comb += idx.eq(wk_s + s - W.p.lane_skip)
                    ok = (idx >= 0) & (idx < W.p.c_valid)
                    m.d.comb += [d_wdata[r][s * Q:(s + 1) * Q].eq(Array(wcodes[r])[idx[:16]]),
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
                        m.d.comb += [data_m[r][s_ * qo:(s_ + 1) * qo].eq(Array(wcodes[r])[idx[:16]][:qo]),
                                     wen_m[r][s_ * per:(s_ + 1) * per].eq(Mux(ok, (1 << per) - 1, 0))]
                per_mode.append((data_m, wen_m))
            with m.Switch(out_idx):
                for k, (data_m, wen_m) in enumerate(per_mode):
                    with m.Case(k):
                        m.d.comb += [d_wdata[r].eq(data_m[r]) for r in range(R)]
                        m.d.comb += [d_wen[r].eq(wen_m[r]) for r in range(R)]
        rows_ok = Signal(R)
        for r in range(R):
            m.d.comb += rows_ok[r].eq(Mux(L.kind == KIND_DENSE, r == 0, W.t.w0 + r < L.out_width))

        # feeder
        # the next slot's tile parameters, read ahead (its pending meta is stable from its issue)
        rd_meta = Signal(meta_layout)
        m.d.comb += rd_meta.eq(Mux(rd_ptr, pending[1], pending[0]))
        m.d.comb += self.params.rd_addr.eq(L.param_base + rd_meta.to)
        feeder_idle = Signal()
        m.d.comb += copying.eq(feeder_idle & hold_valid.bit_select(rd_ptr, 1) & meta_fifo.w_rdy)
        pp_ready = Signal()
        m.d.comb += pp_ready.eq(pps[0].i.ready)
        for c, pp in enumerate(pps):
            m.d.comb += [
                pp.i.payload.acc.eq(Array(feed_acc[r * C + c] for r in range(R))[feed_row]),
                pp.i.payload.mult.eq(P.cols[c].mult),
                pp.i.payload.bias.eq(P.cols[c].bias),
                pp.i.payload.shift.eq(L.shift),
                pp.i.payload.act.as_value().eq(L.act),
            ]
            if cfg.mixed:
                m.d.comb += pp.i.payload.q_out.eq(L.clamp_q)
        params_now = Signal(param_layout(cfg))
        m.d.comb += params_now.eq(self.params.rd_data)
        with m.FSM(name="feeder"):
            with m.State("IDLE"):
                m.d.comb += feeder_idle.eq(1)
                with m.If(copying):
                    m.d.comb += [meta_fifo.w_en.eq(1),
                                 meta_fifo.w_data.eq(Cat(params_now.as_value()[:PARAM_META_BITS], rd_meta))]
                    m.d.sync += [P.eq(params_now), feed_acc.eq(Mux(rd_ptr, hold_acc[1], hold_acc[0])),
                                 rd_ptr.eq(~rd_ptr), feed_row.eq(0)]
                    for k in range(2):
                        with m.If(rd_ptr == k):
                            m.d.sync += hold_valid[k].eq(0)
                    m.next = "FEED"
            with m.State("FEED"):
                for pp in pps:
                    m.d.comb += pp.i.valid.eq(1)
                with m.If(pp_ready):
                    m.d.sync += feed_row.eq(feed_row + 1)
                    with m.If(feed_row == n_rows - 1):
                        m.next = "IDLE"

        # collector
        codes_full = Signal()
        m.d.comb += codes_full.eq(coll_row == n_rows)
        for pp in pps:
            m.d.comb += pp.o.ready.eq(~codes_full)
        with m.If(pps[0].o.valid & ~codes_full):
            for c, pp in enumerate(pps):
                with m.Switch(coll_row):
                    for r in range(R):
                        with m.Case(r):
                            m.d.sync += codes[r][c].eq(pp.o.payload.code)
                m.d.sync += logits[c].eq(pp.o.payload.logit)
            m.d.sync += coll_row.eq(coll_row + 1)

        # writer
        writer_idle = Signal()
        sel_logit = Signal(64)
        emit_valid = Signal()
        emit_data = Signal(WORD_BITS)
        with m.FSM(name="writer"):
            with m.State("IDLE"):
                m.d.comb += writer_idle.eq(1)
                with m.If(codes_full):
                    m.d.comb += meta_fifo.r_en.eq(1)
                    m.d.sync += [W.eq(meta_fifo.r_data), coll_row.eq(0), wk.eq(0), ek.eq(0)]
                    m.d.sync += [wcodes[r][c].eq(codes[r][c]) for r in range(R) for c in range(C)]
                    m.d.sync += [wlogits[c].eq(logits[c]) for c in range(C)]
                    with m.If(L.last):
                        m.next = "EMIT"
                    with m.Else():
                        m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += drain_writing.eq(1)
                m.d.sync += wk.eq(wk + 1)
                with m.If(wk == W.p.n_groups - 1):
                    m.next = "IDLE"
            with m.State("EMIT"):
                m.d.comb += [emit_valid.eq(1), sel_logit.eq(Array(wlogits)[ek >> 1]),
                             emit_data.eq(Mux(ek[0], sel_logit[32:], sel_logit[:32]))]
                with m.If(self.out.ready):
                    m.d.sync += ek.eq(ek + 1)
                    with m.If(ek == (W.p.c_valid << 1) - 1):
                        m.next = "IDLE"
        drain_idle = Signal()
        m.d.comb += drain_idle.eq(~hold_valid.any() & feeder_idle & ~meta_fifo.r_rdy & writer_idle)

        # -- dump engine -------------------------------------------------------------------------
        dump_addr = Signal(24)
        dump_k = Signal(range(R * -(-D // WORD_BITS) + 1))
        dump_words = Signal(R * D)
        dump_valid = Signal()
        dump_chunks = -(-D // WORD_BITS)
        dump_data = Signal(WORD_BITS)
        padded = Cat(*[Cat(dump_words[b * D:(b + 1) * D], Const(0, dump_chunks * WORD_BITS - D)) for b in range(R)])
        m.d.comb += dump_data.eq(Array(padded[i * WORD_BITS:(i + 1) * WORD_BITS] for i in range(R * dump_chunks))[dump_k])

        # output stream mux
        m.d.comb += [self.out.valid.eq(emit_valid | dump_valid),
                     self.out.payload.eq(Mux(dump_valid, dump_data, emit_data))]

        # -- act buffer port mux -----------------------------------------------------------------
        # Both ports are registered (for Fmax): the read address one cycle after the issue, the
        # write one cycle after the engine produced it (FINISH waits for `wr_pending`).
        rd_sel = Signal(2)  # 0 conv, 1 dense, 2 pool, 3 dump
        m.d.sync += self.act.rd_half.eq(L.in_half ^ (rd_sel == 3))
        for b in range(R):
            with m.Switch(rd_sel):
                with m.Case(0):
                    m.d.sync += self.act.rd_addr[b].eq(conv_addr[b])
                with m.Case(1):
                    m.d.sync += self.act.rd_addr[b].eq(row_g)
                with m.Case(2):
                    if vec:
                        m.d.sync += self.act.rd_addr[b].eq(v_addr)
                    elif R == 1:
                        m.d.sync += self.act.rd_addr[b].eq(p_addr1)
                    else:
                        m.d.sync += self.act.rd_addr[b].eq(Mux(p_r2 == b, p_addr0, p_addr1))
                with m.Case(3):
                    m.d.sync += self.act.rd_addr[b].eq(dump_addr)
        m.d.sync += self.act.wr_half.eq(~L.in_half)
        wr_pending = Signal()
        m.d.comb += wr_pending.eq(Cat(*[self.act.wr_en[b] for b in range(R)]).any())
        for b in range(R):
            with m.If(pool_writing):
                if vec:
                    m.d.sync += [self.act.wr_addr[b].eq(v_waddr_d), self.act.wr_data[b].eq(v_new[b % half]),
                                 self.act.wr_en[b].eq(Mux((v_odd_d == b // half) & v_mask_d[b % half], (1 << cfg.write_lanes) - 1, 0))]
                else:
                    m.d.sync += [self.act.wr_addr[b].eq(p_waddr_d), self.act.wr_data[b].eq(p_new),
                                 self.act.wr_en[b].eq(Mux(p_wor_d == b, (1 << cfg.write_lanes) - 1, 0))]
            with m.Else():
                m.d.sync += [self.act.wr_addr[b].eq(d_waddr), self.act.wr_data[b].eq(d_wdata[b]),
                             self.act.wr_en[b].eq(Mux(drain_writing & rows_ok[b], d_wen[b], 0))]

        # -- issue bookkeeping common to conv/dense -----------------------------------------------
        m.d.sync += [en_a.eq(issue), clear_a.eq(issue & tile_first)]
        with m.If(issue):
            m.d.sync += [shift_a.eq(j), rot_a.eq(kw), wr_a.eq(wr),
                         lanev_a.eq(Mux(g == L.pass_groups - 1, lanes_mask, full_mask)),
                         wcount.eq(wcount + 1)]
            with m.If(tile_last):
                m.d.sync += iss_ptr.eq(~iss_ptr)
                for k in range(2):
                    with m.If(iss_ptr == k):
                        m.d.sync += [pending[k].to.eq(to), pending[k].w0.eq(w0),
                                     pending[k].obase.eq(rowbase_o + wtGo)]
        m.d.sync += self.mac_cycles.eq(self.mac_cycles + en_d)
        with m.If(self.busy):
            m.d.sync += self.layer_cycles.eq(self.layer_cycles + 1)

        # handles for simulation-only probes (tests, bench)
        self.probes = {"issue": issue, "tile_last": tile_last, "hold_valid": hold_valid, "inflight": inflight,
                       "feeder_idle": feeder_idle, "writer_idle": writer_idle, "codes_full": codes_full,
                       "kh": kh, "kw": kw, "to": to, "fifo_rdy": meta_fifo.r_rdy, "copying": copying, "j": j,
                       "en": en_d, "row_valid": rowv_d, "lane_valid": lanev_d}

        # -- main FSM ------------------------------------------------------------------------------
        gc_last = Signal()
        m.d.comb += gc_last.eq(g == L.pass_groups - 1)
        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(self.start):
                    # mac_cycles runs free (probes take differences); layer_cycles counts this run
                    m.d.sync += [li.eq(0), self.layer_cycles.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += L.eq(self.table.rd_data)
                with m.If(li == self.n_layers):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [h.eq(0), kh.eq(kh0), kw.eq(kw0), g.eq(0), gg.eq(0), j.eq(0), to.eq(0), wt.eq(0),
                             w0.eq(0), wr.eq(0), wtGo.eq(0), rowbase.eq(0), rowbase_o.eq(0), row_wt.eq(0),
                             *[off.eq(_signed_sum((dkh, L.row_stride), (step, L.groups)))
                               for (dkh, step), off in tap_off.items()],
                             wcount.eq(L.weight_base), wtile.eq(L.weight_base),
                             p_ho.eq(0), p_wo.eq(0), p_g.eq(0), p_k.eq(0), p_q2.eq(0), p_r2.eq(0),
                             p_woq.eq(0), p_wor.eq(0), p_t.eq(0), p_wo0.eq(0), dump_addr.eq(0), dump_k.eq(0),
                             p_ho_rs.eq(0), p_ho_ors.eq(0), p_q2g.eq(0), p_woqg.eq(0), p_tg.eq(0), p_thg.eq(0)]
                with m.If(L.external):
                    m.next = "WEIGHTS"
                with m.Elif(L.kind == KIND_POOL):
                    m.next = "POOL"
                with m.Elif(L.kind == KIND_DENSE):
                    m.next = "DENSE"
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
                m.d.comb += [self.busy.eq(1), rd_sel.eq(0), issue.eq(can_issue),
                             tile_first.eq((j == 0) & (gg == 0) & (kh == kh0) & (kw == kw0)),
                             tile_last.eq((j == L.passes - 1) & gc_last & (kh == kh1) & (kw == kw1))]
                with m.If(issue):
                    m.d.sync += rowv_a.eq(conv_rowv)
                    m.d.sync += kw.eq(kw + 1)
                    with m.If(kw == kw1):
                        m.d.sync += [kw.eq(kw0), kh.eq(kh + 1)]
                        with m.If(kh == kh1):
                            m.d.sync += [kh.eq(kh0), g.eq(g + 1), gg.eq(gg + 1)]
                            with m.If(gc_last):
                                m.d.sync += [g.eq(0), j.eq(j + 1), wcount.eq(wtile)]
                                with m.If(j == L.passes - 1):
                                    # tile of output channels done
                                    m.d.sync += [j.eq(0), gg.eq(0), to.eq(to + 1),
                                                 wcount.eq(wcount + 1), wtile.eq(wcount + 1)]
                                    with m.If(to == L.out_tiles - 1):
                                        m.d.sync += [to.eq(0), wcount.eq(L.weight_base), wtile.eq(L.weight_base),
                                                     wt.eq(wt + 1), w0.eq(w0 + R), row_wt.eq(row_wt + L.groups),
                                                     wtGo.eq(wtGo + L.out_groups)]
                                        with m.If(w0 + R >= L.width):
                                            m.d.sync += [wt.eq(0), w0.eq(0), wtGo.eq(0), h.eq(h + 1),
                                                         rowbase.eq(rowbase + L.row_stride),
                                                         row_wt.eq(rowbase + L.row_stride),
                                                         rowbase_o.eq(rowbase_o + L.out_row_stride)]
                                            with m.If(h == L.height - 1):
                                                m.next = "FINISH"

            with m.State("DENSE"):
                # positions (h, w) with w = w0, bank wr, bank column wt; groups g innermost
                m.d.comb += [self.busy.eq(1), rd_sel.eq(1), issue.eq(can_issue),
                             tile_first.eq((h == 0) & (w0 == 0) & (gg == 0)),
                             tile_last.eq((h == L.height - 1) & (w0 == L.width - 1) & gc_last)]
                with m.If(issue):
                    m.d.sync += [rowv_a.eq(1), g.eq(g + 1), gg.eq(gg + 1)]
                    with m.If(gc_last):
                        m.d.sync += [g.eq(0), gg.eq(0), w0.eq(w0 + 1), wr.eq(wr + 1)]
                        if R == 1:
                            m.d.sync += [wr.eq(0), row_wt.eq(row_wt + L.groups)]
                        else:
                            with m.If(wr == R - 1):
                                m.d.sync += [wr.eq(0), row_wt.eq(row_wt + L.groups)]
                        with m.If(w0 == L.width - 1):
                            m.d.sync += [w0.eq(0), wr.eq(0), h.eq(h + 1),
                                         rowbase.eq(rowbase + L.row_stride), row_wt.eq(rowbase + L.row_stride)]
                            with m.If(h == L.height - 1):
                                m.d.sync += [h.eq(0), rowbase.eq(0), row_wt.eq(0), to.eq(to + 1)]
                                with m.If(to == L.out_tiles - 1):
                                    m.next = "FINISH"

            with m.State("POOL"):
                m.d.comb += [self.busy.eq(1), rd_sel.eq(2), p_issue.eq(1)]
                m.d.sync += p_k.eq(p_k + 1)
                if vec:
                    with m.If(p_k == 1):
                        m.d.sync += [p_k.eq(0), p_g.eq(p_g + 1)]
                        with m.If(p_g == L.groups - 1):
                            m.d.sync += [p_g.eq(0), p_t.eq(p_t + 1), p_wo0.eq(p_wo0 + half),
                                         p_tg.eq(p_tg + L.groups), p_thg.eq(p_thg + Mux(p_t[0], L.groups, 0))]
                            with m.If(p_wo0 + half >= L.out_width):
                                m.d.sync += [p_t.eq(0), p_wo0.eq(0), p_ho.eq(p_ho + 1), p_tg.eq(0), p_thg.eq(0),
                                             p_ho_rs.eq(p_ho_rs + (L.row_stride << 1)),
                                             p_ho_ors.eq(p_ho_ors + L.out_row_stride)]
                                with m.If(p_ho == L.out_height - 1):
                                    m.next = "FINISH"
                with m.If((p_k == k_last) & (not vec)):
                    m.d.sync += p_k.eq(0)
                    m.d.sync += p_g.eq(p_g + 1)
                    with m.If(p_g == L.groups - 1):
                        m.d.sync += [p_g.eq(0), p_wo.eq(p_wo + 1)]
                        # divmod(wo, R) and divmod(2·wo, R), incrementally
                        if R == 1:
                            m.d.sync += [p_woq.eq(p_woq + 1), p_q2.eq(p_q2 + 2),
                                         p_woqg.eq(p_woqg + L.groups), p_q2g.eq(p_q2g + (L.groups << 1))]
                        else:
                            with m.If(p_wor == R - 1):
                                m.d.sync += [p_wor.eq(0), p_woq.eq(p_woq + 1), p_woqg.eq(p_woqg + L.groups)]
                            with m.Else():
                                m.d.sync += p_wor.eq(p_wor + 1)
                            if R == 2:
                                m.d.sync += [p_q2.eq(p_q2 + 1), p_q2g.eq(p_q2g + L.groups)]
                            else:
                                with m.If(p_r2 >= R - 2):
                                    m.d.sync += [p_r2.eq(p_r2 + 2 - R), p_q2.eq(p_q2 + 1), p_q2g.eq(p_q2g + L.groups)]
                                with m.Else():
                                    m.d.sync += p_r2.eq(p_r2 + 2)
                        with m.If(p_wo == L.out_width - 1):
                            m.d.sync += [p_wo.eq(0), p_woq.eq(0), p_wor.eq(0), p_q2.eq(0), p_r2.eq(0),
                                         p_woqg.eq(0), p_q2g.eq(0), p_ho.eq(p_ho + 1),
                                         p_ho_rs.eq(p_ho_rs + (L.row_stride << 1)),
                                         p_ho_ors.eq(p_ho_ors + L.out_row_stride)]
                            with m.If(p_ho == L.out_height - 1):
                                m.next = "FINISH"

            with m.State("FINISH"):
                # wait for the array pipeline, the hold register, the drain and the pool write
                m.d.comb += self.busy.eq(1)
                with m.If(~inflight & ~hold_valid.any() & drain_idle & ~p_valid_a & ~p_valid_d & ~en_a & ~en_d
                          & ~wr_pending):
                    with m.If(L.dump):
                        m.next = "DUMP_READ"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("DUMP_READ"):
                m.d.comb += [self.busy.eq(1), rd_sel.eq(3)]
                m.next = "DUMP_WAIT"
            with m.State("DUMP_WAIT"):  # the registered address reaches the buffer
                m.d.comb += [self.busy.eq(1), rd_sel.eq(3)]
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
                        with m.If(dump_addr == L.out_words - 1):
                            m.next = "NEXT"
                        with m.Else():
                            m.next = "DUMP_READ"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += li.eq(li + 1)
                m.next = "FETCH"
        return m


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


def _signed_sum(*terms):
    """Σ sign·value for sign ∈ {−1, 0, +1}, written as adds and subtracts (no multiplier)."""
    total = Const(0, 1)
    for sign, value in terms:
        if sign > 0:
            total = total + value
        elif sign < 0:
            total = total - value
    return total
