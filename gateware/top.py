"""The accelerator top, `qjoule_accel`: buffers, sequencer, MAC array and the two 32-bit streams.

The input stream carries framed sections (docs/interface.md): a header word `type << 24 | length`
then `length` payload words. PROGRAM loads the layer table and the image descriptor, PARAMS the
post-processing parameters, WEIGHTS a run of weight-buffer words at a given address, IMAGE the
8-bit pixels, which the input unit writes as ceil(8/Q) Q-bit chunk planes. The end of an IMAGE
section starts a run. While a run is in progress the parser accepts a section header only when
the sequencer asks for an external layer's weights (`ready` stays low otherwise), so the host may
queue those WEIGHTS sections right behind the image. The output stream carries the logits (and the
layer dumps in debug mode).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig
from qjoule.program import (IMAGE_FIELDS, IMAGE_WORDS, MAX_LAYERS, SECTION_IMAGE, SECTION_PARAMS,
                            SECTION_PROGRAM, SECTION_WEIGHTS, WORD_BITS, bank_depth, chunks, layer_words,
                            param_word_bits, param_words, weight_word_bits)

from . import REPLICA
from .buffers import ActivationBuffer, PipelinedMemory, WideBuffer
from .sequencer import Sequencer, layer_layout

__all__ = ["QjouleAccel"]


class QjouleAccel(wiring.Component):
    """The whole accelerator for one `AccelConfig`.

    Ports: `i` (input stream, 32-bit words), `o` (output stream, 32-bit words), `busy` (a run is in
    progress), `mac_cycles` / `run_cycles` (cycles with the array enabled / cycles of the last
    run, for utilization), `layer` (index of the layer running).
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(unsigned(WORD_BITS))),
            "o": Out(stream.Signature(unsigned(WORD_BITS))),
            "busy": Out(1),
            "mac_cycles": Out(32),
            "run_cycles": Out(32),
            "layer": Out(range(MAX_LAYERS + 1)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, S, Q, D = cfg.rows, cfg.lanes, cfg.q, cfg.datapath

        m.submodules.act = act = ActivationBuffer(cfg)
        m.submodules.weights = wbuf = WideBuffer(unsigned(weight_word_bits(cfg)), cfg.weight_words,
                                                 memory=cfg.weight_memory, pipeline=cfg.memory_pipeline)
        m.submodules.params = pbuf = ChunkedBuffer(param_word_bits(cfg), param_words(cfg), pipeline=cfg.memory_pipeline)
        # The layer table: whole entries, or (layer_table "words") the PROGRAM section's words as
        # they arrive, which the sequencer assembles in FETCH (a 32-bit table fits a few EBRs).
        words_table = cfg.layer_table == "words"
        if words_table:
            m.submodules.table = tbuf = WideBuffer(unsigned(WORD_BITS), MAX_LAYERS * layer_words(cfg))
        else:
            m.submodules.table = tbuf = WideBuffer(unsigned(layer_layout(cfg).size), MAX_LAYERS)
        m.submodules.seq = seq = Sequencer(cfg, act.addr_bits, cfg.weight_words)
        self.sequencer = seq  # for simulation probes

        # Read ports belong to the sequencer; write ports to the input side (and the act buffer's
        # write port to the sequencer while it runs).
        for buf, port in ((wbuf, seq.weights), (pbuf, seq.params), (tbuf, seq.table)):
            m.d.comb += [buf.rd_addr.eq(port.rd_addr), port.rd_data.eq(buf.rd_data)]
        m.d.comb += [act.rd_half.eq(seq.act.rd_half), act.rd_addr.eq(seq.act.rd_addr),
                     seq.act.rd_data.eq(act.rd_data)]
        wiring.connect(m, seq.out, wiring.flipped(self.o))
        m.d.comb += [self.mac_cycles.eq(seq.mac_cycles), self.run_cycles.eq(seq.layer_cycles),
                     self.layer.eq(seq.layer_index)]

        running = Signal()
        m.d.comb += self.busy.eq(running)

        # -- widths: every counter and address of the input side is sized from the config's
        # bounds (program.encode refuses a model beyond them), not from the fields' stream widths.
        ab = act.addr_bits                      # addresses inside a bank half (arithmetic wraps)
        depth_bits = bits_for(bank_depth(cfg))  # a count of words per bank (up to bank_depth)
        lane_bits = max(1, (S - 1).bit_length())
        used = {"height": bits_for(cfg.max_height), "width": bits_for(cfg.max_width),
                "channels": bits_for(cfg.max_channels), "pass_groups": ab, "groups": ab, "wdiv_g": ab,
                "wmod": (R - 1).bit_length(), "words": depth_bits, "fold_w": 1, "fold_h": 1,
                **{f"copy{k}_{part}": ab if part == "groups" else lane_bits for k in (1, 2, 3)
                   for part in ("groups", "lanes")},
                "pixels": 2}

        # -- section parser ----------------------------------------------------------------------
        is_program, is_params, is_weights = Signal(), Signal(), Signal()
        remaining = Signal(24)   # the section length field: 24 bits in the protocol
        # remaining == 1 and == 0 as registers, kept with it: they decide `i.ready` in PIXELS, and
        # a 24-bit compare there was the start of the longest path on the UP5K (into the link).
        rem_one, rem_zero = Signal(), Signal()
        n_layers = Signal(range(MAX_LAYERS + 1))
        # The image descriptor, only the fields the input unit uses, at the widths it uses: the
        # copy offsets of copies 1, 2, 3 (the others are sums of these, stepped below).
        # Fields that follow from others need no register: with S a power of two, divmod(k·C, S)
        # is a bit slice of k·C; with P a power of two, groups = P·pass_groups is a shift.
        P = cfg.first_layer_passes
        pow2_lanes, pow2_passes = S & (S - 1) == 0, P & (P - 1) == 0
        if pow2_lanes:
            for k in (1, 2, 3):
                del used[f"copy{k}_groups"], used[f"copy{k}_lanes"]
        if pow2_passes:
            del used["groups"]
        image = _DescriptorFields(m, used)
        if pow2_lanes:
            lane_shift = (S - 1).bit_length()
            for k in (1, 2, 3):
                kc = Signal(used["channels"] + 2, name=f"image_{k}c")
                # (shifts and an add: a multiply here would take one of the UP5K's DSP blocks)
                m.d.comb += kc.eq({1: image.channels, 2: image.channels << 1,
                                   3: image.channels + (image.channels << 1)}[k])
                image.derive(m, f"copy{k}_groups", ab, kc >> lane_shift)
                image.derive(m, f"copy{k}_lanes", lane_bits, kc[:lane_shift])
        if pow2_passes:
            image.derive(m, "groups", ab, image.pass_groups << (P - 1).bit_length())
        entry_words = layer_words(cfg)  # (one more with per-layer modes)
        table_chunks = 1 if words_table else entry_words  # "words": each PROGRAM word is one table word
        n_wide = {"table": table_chunks, "params": chunks(param_word_bits(cfg)),
                  "weights": chunks(weight_word_bits(cfg))}
        # The words before a wide word's last chunk: a shift register of every accepted payload
        # word (its top n − 1 words are the chunks that precede the current one), so the
        # assembled word is a constant slice per buffer and needs no chunk-indexed multiplexer.
        # (the param buffer takes each chunk as it arrives: no history for its words)
        history = Signal(max(n_wide["table"], n_wide["weights"]) * WORD_BITS - WORD_BITS)
        chunk = Signal(range(max(n_wide.values())))
        index = Signal(range(IMAGE_WORDS + 2))   # payload word index within the section, saturating
        waddr = Signal(max(wbuf.addr_bits, pbuf.addr_bits, tbuf.addr_bits))  # the next wide word's address

        n_chunks = Signal(range(max(n_wide.values()) + 1))
        m.d.comb += n_chunks.eq(Mux(is_program, n_wide["table"], Mux(is_params, n_wide["params"], n_wide["weights"])))

        # -- image writer: pixels (h, w, c) -> folded virtual channels -> chunk planes ----------
        # Pixel (h, w, c) is the input of tap (kh, kw) of output pixel (h + 1 − kh, w + 1 − kw):
        # for each folded tap ("copy") it is written there as virtual channel copy·C + c, one
        # Q-bit chunk plane per cycle. The image region is cleared first so the lanes of
        # neighbours outside the image (the zero padding) read 0.
        # The pixel being written is byte `pix_idx` of the input word; the last word of the section
        # holds H·W·C mod 4 pixels (4 if 0), so only the two low bits of `pixels` are kept.
        pix_idx = Signal(2)
        pix_last = Signal(2)
        m.d.comb += pix_last.eq(Mux(rem_one, image.pixels - 1, 3))
        plane = Signal(range(P))
        px_c_lane = Signal(range(S))
        px_c_group = Signal(bits_for(cfg.max_channels // S))
        px_c = Signal(used["channels"])
        px_h = Signal(used["height"])
        px_w = Signal(used["width"])
        # the pixel's raster position i = h·W + w as (i div R)·G and i mod R (its bank)
        px_q = Signal(ab)
        px_s = Signal(range(R))
        # Copies of one kh row are written in parallel when their banks differ: the kw = 0, 1, 2
        # copies go to columns w + 1, w, w − 1, three distinct banks when R >= 3; R = 2 needs two
        # phases ({0, 1}, {2}) and R = 1 three.
        phases = [[0, 1, 2]] if R >= 3 else ([[0, 1], [2]] if R == 2 else [[0], [1], [2]])
        ckh = Signal(2)
        ph = Signal(2)
        kh_first, kh_last, ph_last = Signal(2), Signal(2), Signal(2)
        m.d.comb += [kh_first.eq(Mux(image.fold_h, 0, 1)), kh_last.eq(Mux(image.fold_h, 2, 1)),
                     ph_last.eq(Mux(image.fold_w, len(phases) - 1, 0))]
        # plane == P − 1, ph == ph_last, ckh == kh_last: compares, or with at_last_flags (the
        # boards' Fmax setting) flip-flops written with their counters (`set_*`), so the enables
        # of the pixel-position registers are a few gates of flip-flops.
        flagged = cfg.at_last_flags
        plane_l, ph_l, ckh_l = (Signal(name=n) for n in ("plane_at_last", "ph_at_last", "ckh_at_last"))
        px_c_l, px_w_l = Signal(name="px_c_at_last"), Signal(name="px_w_at_last")
        # channels − 2 and width − 2: a step of the pixel walk onto its last channel or column
        # compares the counter with these (comparing the incremented counter with channels − 1
        # made ABC build a 10-LUT ripple). Registers following the descriptor, which is written
        # at least a cycle before the image's first pixel word arrives.
        c_before2, w_before2 = Signal.like(px_c, name="c_before2"), Signal.like(px_w, name="w_before2")
        if flagged:
            m.d.sync += [c_before2.eq(image.channels - 2), w_before2.eq(image.width - 2)]
            plane_at_last, ph_more, ckh_more = plane_l, ~ph_l, ~ckh_l
            last_step_now = plane_l & ph_l & ckh_l
        else:
            plane_at_last, ph_more, ckh_more = plane == P - 1, ph != ph_last, ckh != kh_last
            last_step_now = (plane == P - 1) & (ph == ph_last) & (ckh == kh_last)

        # (the signals are bound as defaults, not closed over: a closure cell would cost them
        # their inferred Verilog names)
        def set_plane(v, plane=plane, plane_l=plane_l):
            return [plane.eq(v), *([plane_l.eq(v == P - 1)] if flagged else [])]

        def set_ph(v, ph=ph, ph_l=ph_l, ph_last=ph_last):
            return [ph.eq(v), *([ph_l.eq(v == ph_last)] if flagged else [])]

        def set_ckh(v, ckh=ckh, ckh_l=ckh_l, kh_last=kh_last):
            return [ckh.eq(v), *([ckh_l.eq(v == kh_last)] if flagged else [])]
        plane_groups = Signal(ab)  # plane·G_v, a running sum (no multiplier in the address path)
        # the start of an image's pixel walk (the registers of pixel 0)
        walk_start = [plane_groups.eq(0), px_c_lane.eq(0), px_c_group.eq(0), px_c.eq(0), px_h.eq(0), px_w.eq(0),
                      px_q.eq(0), px_s.eq(0), *set_ckh(kh_first), *set_ph(0)]
        # The copies of row ckh go to output pixels (h + 1 − ckh, w + 1 − kw): raster positions
        # i + (1 − ckh)·W + (1 − kw). The centre i ± W first, as (address part, bank) with a wrap.
        # Addresses are ab bits and wrap: a target outside the map is never written (h_ok, w_ok).
        c_q, c_s = Signal(ab), Signal(range(R))
        up_sum = Signal(range(2 * R + 1))           # s + W mod R
        down_diff = Signal(signed(len(up_sum) + 1))  # s − W mod R
        m.d.comb += [up_sum.eq(px_s + image.wmod), down_diff.eq(px_s - image.wmod)]
        # (px_q ± (W div R)·G, ± G more: with at_last_flags and R > 1 the sums of descriptor fields
        # are registers following the descriptor, so an image write's address is one adder after
        # px_q, not three; the descriptor is written at least a cycle before the first pixel word)
        targets_q = [px_q + image.wdiv_g + image.groups, px_q + image.wdiv_g,
                     px_q - image.wdiv_g - image.groups, px_q - image.wdiv_g]
        if flagged and R > 1:   # (at R = 1 the far targets are never taken: one adder either way)
            regs = [Signal(ab, name=f"image_{n}") for n in ("up_far", "up_near", "down_far", "down_near")]
            m.d.sync += [r.eq(v) for r, v in zip(regs, (image.wdiv_g + image.groups, image.wdiv_g,
                                                        -image.wdiv_g - image.groups, -image.wdiv_g))]
            targets_q = [px_q + r for r in regs]
        up_far, up_near, down_far, down_near = targets_q
        with m.If(ckh == 0):
            with m.If(up_sum >= R):
                m.d.comb += [c_q.eq(up_far), c_s.eq(up_sum - R)]
            with m.Else():
                m.d.comb += [c_q.eq(up_near), c_s.eq(up_sum)]
        with m.Elif(ckh == 2):
            with m.If(down_diff < 0):
                m.d.comb += [c_q.eq(down_far), c_s.eq(down_diff + R)]
            with m.Else():
                m.d.comb += [c_q.eq(down_near), c_s.eq(down_diff)]
        with m.Else():
            m.d.comb += [c_q.eq(px_q), c_s.eq(px_s)]
        h_ok = Signal()
        m.d.comb += h_ok.eq(~((ckh == 0) & (px_h == image.height - 1)) & ~((ckh == 2) & (px_h == 0)))
        # Copy k = base + kw (fold_w; else k = base): its offset divmod(k·C, S) as a register per kw,
        # reset to copies 0, 1, 2 at each pixel and stepped by copy 3 with each kh row (fold_h:
        # base = 0, 3, 6), instead of nine stored offsets and a nine-way multiplexer. With one
        # write slot (R = 1) the copies come one per cycle in order k = 0, 1, ...: one offset,
        # stepped by copy 1 (C) with each phase and row.
        n_slots = max(len(p) for p in phases)
        restart_offsets, step_offsets, next_phase = Signal(), Signal(), Signal()

        def step_offset(off_g, off_l, copy, name):
            step_l = Signal(range(2 * S), name=f"step_l{name}")
            m.d.comb += step_l.eq(off_l + image[f"{copy}_lanes"])
            with m.If(step_l >= S):
                m.d.sync += [off_l.eq(step_l - S), off_g.eq(off_g + image[f"{copy}_groups"] + 1)]
            with m.Else():
                m.d.sync += [off_l.eq(step_l), off_g.eq(off_g + image[f"{copy}_groups"])]

        if n_slots == 1:
            offsets = [(Signal(ab, name="off_g"), Signal(range(S), name="off_l"))]
            with m.If(restart_offsets):
                m.d.sync += [offsets[0][0].eq(0), offsets[0][1].eq(0)]
            with m.Elif(step_offsets | next_phase):
                step_offset(*offsets[0], "copy1", "")
        else:
            offsets = [(Signal(ab, name=f"off_g{kw}"), Signal(range(S), name=f"off_l{kw}")) for kw in range(3)]
            for kw, (off_g, off_l) in enumerate(offsets):
                with m.If(restart_offsets):
                    if kw == 0:
                        m.d.sync += [off_g.eq(0), off_l.eq(0)]
                    else:
                        on = image.fold_w if kw == 1 else 1  # (copy 1 is the centre column's base only when folded)
                        m.d.sync += [off_g.eq(Mux(on, image[f"copy{kw}_groups"], 0)),
                                     off_l.eq(Mux(on, image[f"copy{kw}_lanes"], 0))]
                with m.Elif(step_offsets):
                    step_offset(off_g, off_l, "copy3", kw)
        # Per kw: the address's row part (raster position + 1 − kw) and its bank, and whether
        # column w + 1 − kw exists.
        rows_kw = []
        for kw in range(3):
            qG, bank = Signal(ab, name=f"t_qG{kw}"), Signal(range(R), name=f"t_bank{kw}")
            if kw == 1 or R == 1:
                # (an add or a subtract: `step * groups` was a $mul, which the iCE40 build put in
                # an SB_MAC16 without registers, a path nextpnr does not time)
                qG_kw = {0: c_q + image.groups, 1: c_q, 2: c_q - image.groups}[kw]
                m.d.comb += [qG.eq(qG_kw), bank.eq(0 if R == 1 else c_s)]
            elif kw == 0:   # position + 1
                m.d.comb += [qG.eq(Mux(c_s == R - 1, c_q + image.groups, c_q)),
                             bank.eq(Mux(c_s == R - 1, 0, c_s + 1))]
            else:           # position − 1
                m.d.comb += [qG.eq(Mux(c_s == 0, c_q - image.groups, c_q)),
                             bank.eq(Mux(c_s == 0, R - 1, c_s - 1))]
            w_ok = {0: px_w != image.width - 1, 1: Const(1), 2: px_w != 0}[kw]
            rows_kw.append((qG, bank, w_ok))
        # The copies written in one cycle go through `slots` write paths (as many as a phase has
        # copies: 3 for R >= 3, 2 for R = 2, 1 for R = 1); slot j writes copy kw = phases[ph][j]
        # (folded), or the centre column's copy (kw = 1, not folded).
        kw1_slot = phases[0].index(1) if 1 in phases[0] else 0
        targets = []   # per slot: (bank, row part, group part, lane, valid) of the address
        for j in range(n_slots):
            conds = {}
            for i, p in enumerate(phases):
                if j < len(p):
                    cond = image.fold_w & (ph == i) if len(phases) > 1 else image.fold_w
                    conds[p[j]] = conds[p[j]] | cond if p[j] in conds else cond
            if j == kw1_slot:
                conds[1] = conds[1] | ~image.fold_w if 1 in conds else ~image.fold_w
            kws = sorted(conds)

            def pick(values, kws=kws, conds=conds):
                """values[kw] of the slot's copy (one-hot conditions: the last is the default)."""
                out = values[kws[-1]]
                for kw in reversed(kws[:-1]):
                    out = Mux(conds[kw], values[kw], out)
                return out

            off_g, off_l = Signal(ab, name=f"slot_off_g{j}"), Signal(range(S), name=f"slot_off_l{j}")
            qG, bank = Signal(ab, name=f"slot_qG{j}"), Signal(range(R), name=f"slot_bank{j}")
            w_ok = Signal(name=f"slot_w_ok{j}")
            slot_offset = offsets[0] if n_slots == 1 else (pick([o[0] for o in offsets]), pick([o[1] for o in offsets]))
            m.d.comb += [off_g.eq(slot_offset[0]), off_l.eq(slot_offset[1]),
                         qG.eq(pick([r[0] for r in rows_kw])), bank.eq(pick([r[1] for r in rows_kw])),
                         w_ok.eq(pick([r[2] for r in rows_kw]))]
            any_kw = conds[kws[0]]
            for kw in kws[1:]:
                any_kw = any_kw | conds[kw]
            lane_sum = Signal(range(2 * S), name=f"lane_sum{j}")
            cur_g, cur_l = Signal(ab, name=f"cur_g{j}"), Signal(range(S), name=f"cur_l{j}")
            m.d.comb += lane_sum.eq(px_c_lane + off_l)
            with m.If(lane_sum >= S):
                m.d.comb += [cur_l.eq(lane_sum - S), cur_g.eq(px_c_group + off_g + 1)]
            with m.Else():
                m.d.comb += [cur_l.eq(lane_sum), cur_g.eq(px_c_group + off_g)]
            row_part, group_part = Signal(ab, name=f"img_row{j}"), Signal(ab, name=f"img_group{j}")
            m.d.comb += [row_part.eq(qG), group_part.eq(plane_groups + cur_g)]
            valid = Signal(name=f"img_valid{j}")
            m.d.comb += valid.eq(any_kw & h_ok & w_ok)
            targets.append((bank, row_part, group_part, cur_l, valid))
        img_writing = Signal()
        clearing = Signal()
        clr_addr = Signal(depth_bits)
        chunk_val = Signal(Q)
        m.d.comb += chunk_val.eq((self.i.payload.word_select(pix_idx, 8) >> (plane * Q))[:Q])

        # act write port: sequencer while running (its port is registered inside it), the input
        # unit's writes otherwise. An image write is two register stages (for Fmax): the two
        # halves of its address sum, then the sum, at the port. `start` is raised one cycle late
        # (`start_q`), so the last image write lands before `running` switches the port.
        s1 = [{"bank": Signal(range(R), name=f"s1_bank{kw}"), "row": Signal(ab, name=f"s1_row{kw}"),
               "group": Signal(ab, name=f"s1_group{kw}"), "lane": Signal(range(S), name=f"s1_lane{kw}"),
               "valid": Signal(name=f"s1_valid{kw}")} for kw in range(n_slots)]
        s1_chunk = Signal(Q)
        m.d.sync += s1_chunk.eq(chunk_val)
        for regs, (bank, row_part, group_part, lane, valid) in zip(s1, targets):
            m.d.sync += [regs["bank"].eq(bank), regs["row"].eq(row_part), regs["group"].eq(group_part),
                         regs["lane"].eq(lane), regs["valid"].eq(img_writing & valid)]
        in_addr = [Signal(act.addr_bits, name=f"in_wr_addr{b}") for b in range(R)]
        in_data = [Signal(cfg.datapath, name=f"in_wr_data{b}") for b in range(R)]
        in_en = [Signal(cfg.write_lanes, name=f"in_wr_en{b}") for b in range(R)]
        # Per-layer modes: the image is written at mode q, whose lanes are `per` finer write
        # enables each (the buffer's granularity is the gcd of the modes).
        per = Q // cfg.write_granularity
        for b in range(R):
            with m.If(clearing):
                m.d.sync += [in_addr[b].eq(clr_addr), in_data[b].eq(0), in_en[b].eq((1 << cfg.write_lanes) - 1)]
            with m.Else():
                m.d.sync += [in_data[b].eq(Cat(*[s1_chunk] * S)), in_en[b].eq(0)]
                for regs in s1:
                    with m.If(regs["valid"] & (regs["bank"] == b)):
                        m.d.sync += in_addr[b].eq(regs["row"] + regs["group"])
                        if per == 1:
                            m.d.sync += in_en[b].eq(Const(1, S) << regs["lane"])
                        else:
                            with m.Switch(regs["lane"]):
                                for lane in range(S):
                                    with m.Case(lane):
                                        m.d.sync += in_en[b].eq(((1 << per) - 1) << (lane * per))
            with m.If(running):
                m.d.comb += [act.wr_addr[b].eq(seq.act.wr_addr[b]), act.wr_data[b].eq(seq.act.wr_data[b]),
                             act.wr_en[b].eq(seq.act.wr_en[b])]
            with m.Else():
                m.d.comb += [act.wr_addr[b].eq(in_addr[b]), act.wr_data[b].eq(in_data[b]), act.wr_en[b].eq(in_en[b])]
        m.d.comb += act.wr_half.eq(Mux(running, seq.act.wr_half, 0))

        start, start_q = Signal(), Signal()
        m.d.sync += start_q.eq(start)
        m.d.comb += seq.start.eq(start_q)
        m.d.comb += seq.n_layers.eq(n_layers)
        with m.If(start_q):
            m.d.sync += running.eq(1)
        with m.Elif(running & seq.done):
            m.d.sync += running.eq(0)

        word = self.i.payload
        in_payload = Signal()
        with m.FSM(name="parser"):
            with m.State("HEADER"):
                m.d.comb += self.i.ready.eq(~(running | start_q) | seq.need_weights)
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [is_program.eq(word[24:] == SECTION_PROGRAM), is_params.eq(word[24:] == SECTION_PARAMS),
                                 is_weights.eq(word[24:] == SECTION_WEIGHTS),
                                 remaining.eq(word[:24]), rem_one.eq(word[:24] == 1), rem_zero.eq(word[:24] == 0),
                                 index.eq(0), chunk.eq(0)]
                    with m.If(word[24:] == SECTION_IMAGE):
                        if flagged:   # (the pixel walk starts in CLEAR: no header decode in its enables)
                            m.d.sync += clr_addr.eq(0)
                        else:
                            m.d.comb += restart_offsets.eq(1)
                            m.d.sync += [pix_idx.eq(0), *set_plane(0), clr_addr.eq(0), *walk_start]
                        with m.If(word[:24] == 0):
                            m.d.comb += start.eq(1)  # an empty IMAGE runs on the buffer as it is
                        with m.Else():
                            m.next = "CLEAR"
                    with m.Elif(word[:24] != 0):
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.i.ready.eq(1), in_payload.eq(1)]
                with m.If(self.i.valid):
                    m.d.sync += [remaining.eq(remaining - 1), rem_one.eq(remaining == 2), rem_zero.eq(rem_one),
                                 history.eq(Cat(history[WORD_BITS:], word))]
                    with m.If(index != IMAGE_WORDS + 1):
                        m.d.sync += index.eq(index + 1)
                    with m.If(is_program):
                        with m.If(index == 0):
                            m.d.sync += [n_layers.eq(word), waddr.eq(0)]
                        with m.Elif(index <= IMAGE_WORDS):
                            image.capture(m, index - 1, word)
                    with m.Elif(is_params | is_weights):
                        with m.If(index == 0):
                            m.d.sync += waddr.eq(word)
                    with m.If(rem_one):
                        with m.If(seq.need_weights & is_weights):
                            m.d.comb += seq.weights_loaded.eq(1)
                        m.next = "HEADER"
            with m.State("CLEAR"):
                m.d.comb += clearing.eq(1)
                m.d.sync += clr_addr.eq(clr_addr + 1)
                if flagged:   # (every cycle of CLEAR, which always comes before PIXELS)
                    m.d.comb += restart_offsets.eq(1)
                    m.d.sync += [pix_idx.eq(0), *set_plane(0), *walk_start,
                                 px_c_l.eq(image.channels == 1), px_w_l.eq(image.width == 1)]
                with m.If(clr_addr == image.words - 1):
                    m.next = "PIXELS"
            with m.State("PIXELS"):
                # One chunk plane of one phase of copies of one pixel per cycle, read from the input
                # word while it waits on the stream: the word is taken with its last pixel's last
                # step (`ready` from the state alone), so no copy of it is kept.
                last_step = Signal()
                m.d.comb += [last_step.eq(last_step_now),
                             img_writing.eq(self.i.valid & ~rem_zero),
                             self.i.ready.eq(~rem_zero & last_step & (pix_idx == pix_last))]
                with m.If(rem_zero):
                    # the section is done: start the run
                    m.d.comb += start.eq(1)
                    m.next = "HEADER"
                with m.Elif(img_writing):
                    m.d.sync += [*set_plane(plane + 1), plane_groups.eq(plane_groups + image.pass_groups)]
                    with m.If(plane_at_last):
                        m.d.sync += [*set_plane(0), plane_groups.eq(0)]
                        # next kw phase, next kh row of copies, or the next pixel
                        with m.If(ph_more):
                            m.d.sync += set_ph(ph + 1)
                            m.d.comb += next_phase.eq(1)
                        with m.Elif(ckh_more):
                            m.d.sync += [*set_ph(0), *set_ckh(ckh + 1)]
                            m.d.comb += step_offsets.eq(1)
                        with m.Else():
                            m.d.comb += restart_offsets.eq(1)
                            m.d.sync += [*set_ph(0), *set_ckh(kh_first), pix_idx.eq(pix_idx + 1)]
                            _next_pixel(m, cfg, image, px_c_lane, px_c_group, px_c, px_h, px_w, px_q, px_s,
                                        (px_c_l, px_w_l, c_before2, w_before2) if flagged else None)
                            with m.If(pix_idx == pix_last):
                                m.d.sync += [pix_idx.eq(0), remaining.eq(remaining - 1), rem_one.eq(remaining == 2),
                                             rem_zero.eq(rem_one)]

        # wide-word writes: the assembled word goes to its buffer when its last chunk arrives
        is_wide = Signal()
        m.d.comb += is_wide.eq((is_program & (index > IMAGE_WORDS)) | ((is_params | is_weights) & (index != 0)))
        done_word = Signal()
        m.d.comb += done_word.eq(in_payload & self.i.valid & is_wide & (chunk == n_chunks - 1))
        with m.If(in_payload & self.i.valid & is_wide):
            m.d.sync += chunk.eq(chunk + 1)

        def assembled(n):
            """The wide word whose last chunk is on the stream: the n − 1 words before it, then it."""
            return Cat(history[len(history) - (n - 1) * WORD_BITS:], word) if n > 1 else word

        m.d.comb += [wbuf.wr_addr.eq(waddr), wbuf.wr_data.eq(assembled(n_wide["weights"])),
                     pbuf.wr_addr.eq(waddr), pbuf.wr_data.eq(word),
                     tbuf.wr_addr.eq(waddr), tbuf.wr_data.eq(assembled(n_wide["table"]))]
        with m.If(done_word):
            m.d.sync += [waddr.eq(waddr + 1), chunk.eq(0)]
            m.d.comb += [tbuf.wr_en.eq(is_program), wbuf.wr_en.eq(is_weights)]
        with m.If(in_payload & self.i.valid & is_wide & is_params):
            m.d.comb += pbuf.wr_en.eq(Const(1, pbuf.chunks) << chunk)
        return m


class ChunkedBuffer(wiring.Component):
    """A memory of `bits`-wide words read whole (as `WideBuffer`) and written one 32-bit stream
    word at a time: `wr_en` has one bit per chunk (chunk k is bits [32·k, 32·k + 32) of the word
    at `wr_addr`), so the parser stores each chunk as it arrives instead of holding the earlier
    chunks of a wide word in registers until its last one."""

    def __init__(self, bits: int, depth: int, *, pipeline: int = 0):
        self.chunks = chunks(bits)
        self.depth = depth
        self.addr_bits = max(1, (depth - 1).bit_length())
        super().__init__({"rd_addr": In(self.addr_bits), "rd_data": Out(bits),
                          "wr_addr": In(self.addr_bits), "wr_data": In(WORD_BITS), "wr_en": In(self.chunks)})
        shape = unsigned(self.chunks * WORD_BITS)
        # (pipeline: registered reads, as the activation and weight buffers' `memory_pipeline`)
        self.pipeline = pipeline
        if pipeline == 2:
            # One memory per chunk, each read at its own copy of the address (`REPLICA`), a
            # register: one address register for the whole word drove a dozen block RAMs across
            # the die (14.3 ns of routing on an 8x8 ULX3S build). Reads take one cycle more.
            self.memories = [PipelinedMemory(unsigned(WORD_BITS), depth, pipeline=pipeline)
                             for _ in range(self.chunks)]
        elif pipeline == 1:
            self.memories = [PipelinedMemory(shape, depth, granularity=WORD_BITS, pipeline=pipeline)]
        else:
            self.memories = [Memory(shape=shape, depth=depth, init=[])]

    def elaborate(self, platform):
        m = Module()
        if self.pipeline == 2:
            data_bits = []
            for k, mem in enumerate(self.memories):
                m.submodules[f"chunk{k}"] = mem
                addr = Signal(self.addr_bits, name=f"rd_addr_{k}", attrs={REPLICA: 1})
                m.d.sync += addr.eq(self.rd_addr)
                m.d.comb += [mem.rd_addr.eq(addr), mem.wr_addr.eq(self.wr_addr), mem.wr_data.eq(self.wr_data),
                             mem.wr_en.eq(self.wr_en[k])]
                data_bits.append(mem.rd_data)
            m.d.comb += self.rd_data.eq(Cat(*data_bits)[:len(self.rd_data)])
            return m
        m.submodules.memory = mem = self.memories[0]
        if self.pipeline == 1:
            m.d.comb += [mem.rd_addr.eq(self.rd_addr), self.rd_data.eq(mem.rd_data[:len(self.rd_data)]),
                         mem.wr_addr.eq(self.wr_addr), mem.wr_data.eq(Cat(*[self.wr_data] * self.chunks)),
                         mem.wr_en.eq(self.wr_en)]
            return m
        rd, wr = mem.read_port(), mem.write_port(granularity=WORD_BITS)
        m.d.comb += [rd.addr.eq(self.rd_addr), self.rd_data.eq(rd.data),
                     wr.addr.eq(self.wr_addr), wr.data.eq(Cat(*[self.wr_data] * self.chunks)), wr.en.eq(self.wr_en)]
        return m


def bits_for(n: int) -> int:
    """Bits of an unsigned count 0..n."""
    return max(1, int(n).bit_length())


class _DescriptorFields:
    """The image descriptor's fields that the input unit uses, each a register of the width it
    needs (`used`: name -> bits, at most the field's stream width), loaded from the PROGRAM
    section's descriptor words as they arrive; the bits it does not use are never stored."""

    def __init__(self, m, used: dict[str, int]):
        self._layout = {}
        offset = 0
        for name, bits in IMAGE_FIELDS:
            self._layout[name] = (offset, bits)
            offset += bits
        self._fields, self._derived = {}, set()
        for name, keep in used.items():
            if keep > self._layout[name][1]:
                raise ValueError(f"descriptor field {name!r} is {self._layout[name][1]} bits, not {keep}")
            self._fields[name] = Signal(keep, name=f"image_{name}")

    def __getattr__(self, name):
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name):
        return self._fields[name]

    def derive(self, m, name, bits, value):
        """A field computed from others (not stored): a `bits`-wide signal equal to `value`."""
        self._fields[name] = Signal(bits, name=f"image_{name}")
        self._derived.add(name)
        m.d.comb += self._fields[name].eq(value)

    def capture(self, m, word_index, word):
        """Store the used bits of descriptor word `word_index` (0-based) into the fields."""
        with m.Switch(word_index):
            for k in range(IMAGE_WORDS):
                with m.Case(k):
                    lo_w, hi_w = k * WORD_BITS, (k + 1) * WORD_BITS
                    for name, reg in self._fields.items():
                        if name in self._derived:
                            continue
                        offset, _ = self._layout[name]
                        lo, hi = max(offset, lo_w), min(offset + len(reg), hi_w)
                        if lo < hi:
                            m.d.sync += reg[lo - offset:hi - offset].eq(word[lo - lo_w:hi - lo_w])


def _next_pixel(m, cfg, image, lane, group, c, h, w, q, bank, flags=None):
    """Advance the (h, w, c) pixel walk of the image writer (and its raster position (q, bank)).
    `flags`: registered (c == channels − 1, w == width − 1), written with c and w (at_last_flags),
    instead of the compares, and the registers channels − 2 and width − 2 they are written from."""
    S, R = cfg.lanes, cfg.rows
    m.d.sync += [c.eq(c + 1), lane.eq(lane + 1)]
    if flags is not None:
        c_l, w_l, c_before2, w_before2 = flags
        m.d.sync += c_l.eq(c == c_before2)
    if S == 1:
        m.d.sync += [lane.eq(0), group.eq(group + 1)]
    else:
        with m.If(lane == S - 1):
            m.d.sync += [lane.eq(0), group.eq(group + 1)]
    with m.If(c_l if flags is not None else c == image.channels - 1):
        m.d.sync += [c.eq(0), lane.eq(0), group.eq(0), w.eq(w + 1), bank.eq(bank + 1)]
        if flags is not None:
            m.d.sync += [c_l.eq(image.channels == 1), w_l.eq(w == w_before2)]
        if R == 1:
            m.d.sync += [bank.eq(0), q.eq(q + image.groups)]
        else:
            with m.If(bank == R - 1):
                m.d.sync += [bank.eq(0), q.eq(q + image.groups)]
        with m.If(w_l if flags is not None else w == image.width - 1):
            m.d.sync += [w.eq(0), h.eq(h + 1)]
            if flags is not None:
                m.d.sync += w_l.eq(image.width == 1)
