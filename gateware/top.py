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
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig
from qjoule.program import (IMAGE_FIELDS, IMAGE_WORDS, MAX_LAYERS, SECTION_IMAGE, SECTION_PARAMS,
                            SECTION_PROGRAM, SECTION_WEIGHTS, WORD_BITS, chunks, layer_words, param_word_bits,
                            param_words, weight_word_bits)

from .buffers import ActivationBuffer, WideBuffer
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
        m.submodules.params = pbuf = WideBuffer(unsigned(param_word_bits(cfg)), param_words(cfg),
                                                pipeline=cfg.memory_pipeline)
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

        # -- section parser ----------------------------------------------------------------------
        kind = Signal(8)
        remaining = Signal(24)
        n_layers = Signal(range(MAX_LAYERS + 1))
        image = Signal(data.StructLayout({name: unsigned(bits) for name, bits in IMAGE_FIELDS}))
        image_words = Signal(IMAGE_WORDS * WORD_BITS)
        entry_words = layer_words(cfg)  # (one more with per-layer modes)
        table_chunks = 1 if words_table else entry_words  # "words": each PROGRAM word is one table word
        wide_bits = max(table_chunks, chunks(weight_word_bits(cfg)), chunks(param_word_bits(cfg))) * WORD_BITS
        assembly = Signal(wide_bits)
        chunk = Signal(range(wide_bits // WORD_BITS + 1))
        index = Signal(24)       # payload word index within the section
        waddr = Signal(24)       # target address of the next wide word
        m.d.comb += image.eq(image_words)

        n_chunks = Signal.like(chunk)
        with m.Switch(kind):
            with m.Case(SECTION_PROGRAM):
                m.d.comb += n_chunks.eq(table_chunks)
            with m.Case(SECTION_PARAMS):
                m.d.comb += n_chunks.eq(chunks(param_word_bits(cfg)))
            with m.Default():
                m.d.comb += n_chunks.eq(chunks(weight_word_bits(cfg)))

        # -- image writer: pixels (h, w, c) -> folded virtual channels -> chunk planes ----------
        # Pixel (h, w, c) is the input of tap (kh, kw) of output pixel (h + 1 − kh, w + 1 − kw):
        # for each folded tap ("copy") it is written there as virtual channel copy·C + c, one
        # Q-bit chunk plane per cycle. The image region is cleared first so the lanes of
        # neighbours outside the image (the zero padding) read 0.
        pix = Signal(32)          # up to four pixels, low byte first
        pix_left = Signal(3)      # pixels of `pix` still to write
        pix_count = Signal(32)    # pixels still expected in the section
        plane = Signal(4)
        px_c_lane = Signal(range(S))
        px_c_group = Signal(16)
        px_c = Signal(16)
        px_h = Signal(16)
        px_w = Signal(16)
        # the pixel's raster position i = h·W + w as (i div R)·G and i mod R (its bank)
        px_q = Signal(24)
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
        active = Signal(3)
        with m.If(image.fold_w):
            with m.Switch(ph):
                for i, kws in enumerate(phases):
                    with m.Case(i):
                        m.d.comb += active.eq(sum(1 << kw for kw in kws))
        with m.Else():
            m.d.comb += active.eq(0b010)
        plane_groups = Signal(24)  # plane·G_v, a running sum (no multiplier in the address path)
        # The copies of row ckh go to output pixels (h + 1 − ckh, w + 1 − kw): raster positions
        # i + (1 − ckh)·W + (1 − kw). The centre i ± W first, as (address part, bank) with a wrap.
        c_q, c_s = Signal(signed(27)), Signal(range(R))
        up_sum = Signal(range(2 * R + 1))           # s + W mod R
        down_diff = Signal(signed(18))              # s − W mod R
        m.d.comb += [up_sum.eq(px_s + image.wmod), down_diff.eq(px_s - image.wmod)]
        with m.If(ckh == 0):
            with m.If(up_sum >= R):
                m.d.comb += [c_q.eq(px_q + image.wdiv_g + image.groups), c_s.eq(up_sum - R)]
            with m.Else():
                m.d.comb += [c_q.eq(px_q + image.wdiv_g), c_s.eq(up_sum)]
        with m.Elif(ckh == 2):
            with m.If(down_diff < 0):
                m.d.comb += [c_q.eq(px_q - image.wdiv_g - image.groups), c_s.eq(down_diff + R)]
            with m.Else():
                m.d.comb += [c_q.eq(px_q - image.wdiv_g), c_s.eq(down_diff)]
        with m.Else():
            m.d.comb += [c_q.eq(px_q), c_s.eq(px_s)]
        h_ok = Signal()
        m.d.comb += h_ok.eq(~((ckh == 0) & (px_h == image.height - 1)) & ~((ckh == 2) & (px_h == 0)))
        copy_groups = Array(image[f"copy{k}_groups"] for k in range(9))
        copy_lanes = Array(image[f"copy{k}_lanes"] for k in range(9))
        targets = []   # per kw: (bank, row part, group part, lane, valid) of the address
        for kw in range(3):
            k = Signal(4, name=f"copy_kw{kw}")  # copy index: virtual channel k·C + c
            m.d.comb += k.eq(Mux(image.fold_h, Mux(ckh == 2, 6, Mux(ckh == 1, 3, 0)), 0) + Mux(image.fold_w, kw, 0))
            off_g, off_l = Signal(16, name=f"off_g{kw}"), Signal(8, name=f"off_l{kw}")
            m.d.comb += [off_g.eq(copy_groups[k]), off_l.eq(copy_lanes[k])]
            lane_sum = Signal(range(2 * S + 256), name=f"lane_sum{kw}")
            cur_g, cur_l = Signal(16, name=f"cur_g{kw}"), Signal(range(S), name=f"cur_l{kw}")
            m.d.comb += lane_sum.eq(px_c_lane + off_l)
            with m.If(lane_sum >= S):
                m.d.comb += [cur_l.eq(lane_sum - S), cur_g.eq(px_c_group + off_g + 1)]
            with m.Else():
                m.d.comb += [cur_l.eq(lane_sum), cur_g.eq(px_c_group + off_g)]
            qG, bank = Signal(signed(27), name=f"t_qG{kw}"), Signal(range(R), name=f"t_bank{kw}")
            if kw == 1 or R == 1:
                step = {0: 1, 1: 0, 2: -1}[kw]
                m.d.comb += [qG.eq(c_q + step * image.groups if step else c_q), bank.eq(0 if R == 1 else c_s)]
            elif kw == 0:   # position + 1
                m.d.comb += [qG.eq(Mux(c_s == R - 1, c_q + image.groups, c_q)),
                             bank.eq(Mux(c_s == R - 1, 0, c_s + 1))]
            else:           # position − 1
                m.d.comb += [qG.eq(Mux(c_s == 0, c_q - image.groups, c_q)),
                             bank.eq(Mux(c_s == 0, R - 1, c_s - 1))]
            w_ok = {0: px_w != image.width - 1, 1: 1, 2: px_w != 0}[kw]
            row_part, group_part = Signal(26, name=f"img_row{kw}"), Signal(26, name=f"img_group{kw}")
            m.d.comb += [row_part.eq(qG), group_part.eq(plane_groups + cur_g)]
            valid = Signal(name=f"img_valid{kw}")
            m.d.comb += valid.eq(active[kw] & h_ok & w_ok)
            targets.append((bank, row_part, group_part, cur_l, valid))
        img_writing = Signal()
        clearing = Signal()
        clr_addr = Signal(24)
        chunk_val = Signal(Q)
        m.d.comb += chunk_val.eq((pix[:8] >> (plane * Q))[:Q])

        # act write port: sequencer while running (its port is registered inside it), the input
        # unit's writes otherwise. An image write is two register stages (for Fmax): the two
        # halves of its address sum, then the sum, at the port. `start` is raised one cycle late
        # (`start_q`), so the last image write lands before `running` switches the port.
        s1 = [{"bank": Signal(range(R), name=f"s1_bank{kw}"), "row": Signal(26, name=f"s1_row{kw}"),
               "group": Signal(26, name=f"s1_group{kw}"), "lane": Signal(range(S), name=f"s1_lane{kw}"),
               "valid": Signal(name=f"s1_valid{kw}")} for kw in range(3)]
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
                    m.d.sync += [kind.eq(word[24:]), remaining.eq(word[:24]), index.eq(0), chunk.eq(0)]
                    with m.If(word[24:] == SECTION_IMAGE):
                        m.d.sync += [pix_left.eq(0), plane.eq(0), clr_addr.eq(0),
                                     pix_count.eq(image.pixels), plane_groups.eq(0),
                                     px_c_lane.eq(0), px_c_group.eq(0), px_c.eq(0), px_h.eq(0), px_w.eq(0),
                                     px_q.eq(0), px_s.eq(0),
                                     ckh.eq(kh_first), ph.eq(0)]
                        with m.If(word[:24] == 0):
                            m.d.comb += start.eq(1)  # an empty IMAGE runs on the buffer as it is
                        with m.Else():
                            m.next = "CLEAR"
                    with m.Elif(word[:24] != 0):
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.i.ready.eq(1), in_payload.eq(1)]
                with m.If(self.i.valid):
                    m.d.sync += [remaining.eq(remaining - 1), index.eq(index + 1)]
                    with m.Switch(kind):
                        with m.Case(SECTION_PROGRAM):
                            with m.If(index == 0):
                                m.d.sync += [n_layers.eq(word), waddr.eq(0)]
                            with m.Elif(index <= IMAGE_WORDS):
                                with m.Switch(index):
                                    for k in range(IMAGE_WORDS):
                                        with m.Case(k + 1):
                                            m.d.sync += image_words[k * WORD_BITS:(k + 1) * WORD_BITS].eq(word)
                            with m.Else():
                                _assemble(m, assembly, chunk, word)
                        with m.Case(SECTION_PARAMS, SECTION_WEIGHTS):
                            with m.If(index == 0):
                                m.d.sync += waddr.eq(word)
                            with m.Else():
                                _assemble(m, assembly, chunk, word)
                    with m.If(remaining == 1):
                        with m.If(seq.need_weights & (kind == SECTION_WEIGHTS)):
                            m.d.comb += seq.weights_loaded.eq(1)
                        m.next = "HEADER"
            with m.State("CLEAR"):
                m.d.comb += clearing.eq(1)
                m.d.sync += clr_addr.eq(clr_addr + 1)
                with m.If(clr_addr == image.words - 1):
                    m.next = "PIXELS"
            with m.State("PIXELS"):
                # one chunk plane of one phase of copies of one pixel per cycle
                m.d.comb += img_writing.eq((pix_left != 0) & (pix_count != 0))
                with m.If(img_writing):
                    m.d.sync += [plane.eq(plane + 1), plane_groups.eq(plane_groups + image.pass_groups)]
                    with m.If(plane == cfg.first_layer_passes - 1):
                        m.d.sync += [plane.eq(0), plane_groups.eq(0)]
                        # next kw phase, next kh row of copies, or the next pixel
                        with m.If(ph != ph_last):
                            m.d.sync += ph.eq(ph + 1)
                        with m.Elif(ckh != kh_last):
                            m.d.sync += [ph.eq(0), ckh.eq(ckh + 1)]
                        with m.Else():
                            m.d.sync += [ph.eq(0), ckh.eq(kh_first),
                                         pix.eq(pix >> 8), pix_left.eq(pix_left - 1), pix_count.eq(pix_count - 1)]
                            _next_pixel(m, cfg, image, px_c_lane, px_c_group, px_c, px_h, px_w, px_q, px_s)
                with m.Else():
                    # this word is done: take the next one, or end the section and start the run
                    m.d.comb += self.i.ready.eq(remaining != 0)
                    with m.If(remaining == 0):
                        m.d.comb += start.eq(1)
                        m.next = "HEADER"
                    with m.Elif(self.i.valid):
                        m.d.sync += [pix.eq(word), pix_left.eq(4), remaining.eq(remaining - 1)]

        # wide-word writes: the assembled word goes to its buffer when its last chunk arrives
        is_wide = Signal()
        m.d.comb += is_wide.eq(((kind == SECTION_PROGRAM) & (index > IMAGE_WORDS))
                               | (((kind == SECTION_PARAMS) | (kind == SECTION_WEIGHTS)) & (index != 0)))
        done_word = Signal()
        m.d.comb += done_word.eq(in_payload & self.i.valid & is_wide & (chunk == n_chunks - 1))
        full = Signal(wide_bits)
        m.d.comb += full.eq(assembly)
        with m.Switch(chunk):
            for k in range(wide_bits // WORD_BITS):
                with m.Case(k):
                    m.d.comb += full[k * WORD_BITS:(k + 1) * WORD_BITS].eq(word)
        m.d.comb += [wbuf.wr_addr.eq(waddr), wbuf.wr_data.eq(full),
                     pbuf.wr_addr.eq(waddr), pbuf.wr_data.eq(full),
                     tbuf.wr_addr.eq(waddr), tbuf.wr_data.eq(full)]
        with m.If(done_word):
            m.d.sync += [waddr.eq(waddr + 1), chunk.eq(0)]
            with m.Switch(kind):
                with m.Case(SECTION_PROGRAM):
                    m.d.comb += tbuf.wr_en.eq(1)
                with m.Case(SECTION_PARAMS):
                    m.d.comb += pbuf.wr_en.eq(1)
                with m.Case(SECTION_WEIGHTS):
                    m.d.comb += wbuf.wr_en.eq(1)
        return m


def _assemble(m, assembly, chunk, word):
    """Store one 32-bit chunk of a wide word."""
    with m.Switch(chunk):
        for k in range(len(assembly) // WORD_BITS):
            with m.Case(k):
                m.d.sync += assembly[k * WORD_BITS:(k + 1) * WORD_BITS].eq(word)
    m.d.sync += chunk.eq(chunk + 1)


def _next_pixel(m, cfg, image, lane, group, c, h, w, q, bank):
    """Advance the (h, w, c) pixel walk of the image writer (and its raster position (q, bank))."""
    S, R = cfg.lanes, cfg.rows
    m.d.sync += [c.eq(c + 1), lane.eq(lane + 1)]
    if S == 1:
        m.d.sync += [lane.eq(0), group.eq(group + 1)]
    else:
        with m.If(lane == S - 1):
            m.d.sync += [lane.eq(0), group.eq(group + 1)]
    with m.If(c == image.channels - 1):
        m.d.sync += [c.eq(0), lane.eq(0), group.eq(0), w.eq(w + 1), bank.eq(bank + 1)]
        if R == 1:
            m.d.sync += [bank.eq(0), q.eq(q + image.groups)]
        else:
            with m.If(bank == R - 1):
                m.d.sync += [bank.eq(0), q.eq(q + image.groups)]
        with m.If(w == image.width - 1):
            m.d.sync += [w.eq(0), h.eq(h + 1)]
