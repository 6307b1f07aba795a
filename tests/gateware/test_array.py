"""MacArray against the golden conv3x3_acc / dense_acc, bit for bit, at every Q.

The testbench plays a minimal output-stationary schedule (the real sequencer is elsewhere): R
output pixels × C output channels at a time, over the 3×3 taps and the channel words, with padded
taps masked by row_valid and channels past the layer's end by lane_valid. Groups follow each other
with no gap (clear on a group's first cycle), so every result is read on the exact cycle
`latency` says it is ready, before the next group overwrites it.
"""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from qjoule.config import variant
from qjoule.gateware.array import MacArray
from qjoule.sw import golden

QS = [1, 2, 3, 4, 5, 6, 8, 16]


def weight_code(w: int, q: int) -> int:
    return (1 if w == 1 else 0) if q == 1 else int(w) & ((1 << q) - 1)


def pack(codes, q: int) -> int:
    return sum(int(c) << (i * q) for i, c in enumerate(codes))


def random_weights(rng, q, shape):
    if q == 1:
        return rng.choice([-1, 1], size=shape)
    return rng.integers(-(1 << (q - 1)), 1 << (q - 1), size=shape)


class Schedule:
    """Cycles for the array plus, for each group, the cycle whose result holds it."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        self.cycles: list[dict] = []
        self.reads: list[tuple[int, list]] = []  # (cycle, [(acc index, key)])

    def garbage_word(self) -> int:
        return int(self.rng.integers(0, 1 << self.cfg.datapath))

    def words(self, values, q) -> list[tuple[int, int]]:
        """(word, lane mask) per S-lane slice of `values`; missing lanes filled with garbage."""
        s = self.cfg.lanes
        out = []
        for start in range(0, len(values), s):
            part = [int(v) for v in values[start:start + s]]
            mask = (1 << len(part)) - 1
            word = pack(part, q) | (self.garbage_word() & ~((1 << (len(part) * q)) - 1) & ((1 << self.cfg.datapath) - 1))
            out.append((word, mask))
        return out

    def group(self, steps, keys):
        """steps: list of (act words per row, row_valid, weight words per column, lane mask, shift,
        pixel_mode); keys[r*C + c] names the output held by PE (r, c) or is None."""
        for i, (acts, row_valid, weights, lanes, shift, pixel_mode) in enumerate(steps):
            self.cycles.append({"act": acts, "weight": weights, "row_valid": row_valid, "lane_valid": lanes,
                                "en": 1, "clear": int(i == 0), "shift": shift, "pixel_mode": pixel_mode})
        self.reads.append((len(self.cycles) - 1, [(i, k) for i, k in enumerate(keys) if k is not None]))


def conv_schedule(cfg, x, w, pixel_layer, rng) -> Schedule:
    """x: (Cin, H, W) codes or pixels; w: (O, Cin, 3, 3)."""
    q, rows, cols = cfg.q, cfg.rows, cfg.cols
    cin, h, wd = x.shape
    o = w.shape[0]
    passes = golden.pixel_chunks(x, q) if pixel_layer else [x]
    sched = Schedule(cfg, rng)
    pixels = [(y, xx) for y in range(h) for xx in range(wd)]
    for p0 in range(0, len(pixels), rows):
        group_pixels = pixels[p0:p0 + rows]
        for o0 in range(0, o, cols):
            group_outs = list(range(o0, min(o0 + cols, o)))
            steps = []
            for j, xs in enumerate(passes):
                for dy in range(3):
                    for dx in range(3):
                        wwords = [sched.words([weight_code(v, q) for v in w[oc, :, dy, dx]], q) for oc in group_outs]
                        n_words = len(wwords[0])
                        for k in range(n_words):
                            acts, row_valid = [], 0
                            for r in range(rows):
                                if r < len(group_pixels):
                                    y, xx = group_pixels[r][0] + dy - 1, group_pixels[r][1] + dx - 1
                                    if 0 <= y < h and 0 <= xx < wd:
                                        acts.append(sched.words(xs[:, y, xx], q)[k][0])
                                        row_valid |= 1 << r
                                        continue
                                acts.append(sched.garbage_word())  # padding or no pixel: masked
                            weights = [wwords[c][k][0] if c < len(group_outs) else sched.garbage_word()
                                       for c in range(cols)]
                            steps.append((acts, row_valid, weights, wwords[0][k][1], j, int(pixel_layer)))
            keys = [(group_outs[c], *group_pixels[r]) if r < len(group_pixels) and c < len(group_outs) else None
                    for r in range(rows) for c in range(cols)]
            sched.group(steps, keys)
    return sched


def run_array(dut: MacArray, sched: Schedule) -> dict:
    latency = dut.latency
    want = {cycle + latency - 1: entries for cycle, entries in sched.reads}
    got = {}
    idle = {"act": [0] * dut.cfg.rows, "weight": [0] * dut.cfg.cols, "row_valid": 0, "lane_valid": 0,
            "en": 0, "clear": 0, "shift": 0, "pixel_mode": 0}

    async def testbench(ctx):
        for i, inputs in enumerate(sched.cycles + [idle] * (latency - 1)):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            for index, key in want.get(i, []):
                got[key] = ctx.get(dut.acc[index])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return got


def check_conv(cfg, x, w, pixel_layer, rng):
    got = run_array(MacArray(cfg), conv_schedule(cfg, x, w, pixel_layer, rng))
    expected = golden.conv3x3_acc(x[None], w, 8 if pixel_layer else cfg.q)[0]
    assert len(got) == expected.size
    for (o, y, xx), value in got.items():
        assert value == expected[o, y, xx], (o, y, xx)


@pytest.mark.parametrize("q, memory_pipeline", [(q, 0) for q in QS] + [(1, 2), (4, 2)])
def test_conv_hidden_layer_matches_golden(q, memory_pipeline):
    # 3 rows × 2 columns (not square, so a row/column mix-up shows); 3×3 image = 9 pixels (last
    # group has an empty row), 3 output channels (last group has an empty column), S + 1 input
    # channels (the second word is mostly masked lanes). memory_pipeline 2 (the large device):
    # per-row control registers and per-PE control pipelines, the same latency.
    cfg = variant("tiny", q, rows=3, cols=2, memory_pipeline=memory_pipeline)
    rng = np.random.default_rng(10 + q)
    x = rng.integers(0, 1 << q, size=(cfg.lanes + 1, 3, 3))
    w = random_weights(rng, q, (3, cfg.lanes + 1, 3, 3))
    check_conv(cfg, x, w, pixel_layer=False, rng=rng)


@pytest.mark.parametrize("q", QS)
def test_conv_first_layer_pixels_matches_golden(q):
    cfg = variant("tiny", q, rows=3, cols=2)
    rng = np.random.default_rng(20 + q)
    x = rng.integers(0, 256, size=(2, 3, 3))
    x[0, 0, :] = [255, 0, 128]
    w = random_weights(rng, q, (3, 2, 3, 3))
    check_conv(cfg, x, w, pixel_layer=True, rng=rng)


@pytest.mark.parametrize("q", [1, 4, 16])
def test_dense_layer_matches_golden(q):
    """A dense layer is the same array with every row holding its own input vector (batch)."""
    cfg = variant("tiny", q)
    rng = np.random.default_rng(30 + q)
    k, o = 2 * cfg.lanes + 3, 3
    x = rng.integers(0, 1 << q, size=(cfg.rows, k))
    w = random_weights(rng, q, (o, k))
    sched = Schedule(cfg, rng)
    for o0 in range(0, o, cfg.cols):
        outs = list(range(o0, min(o0 + cfg.cols, o)))
        xw = [sched.words(x[r], q) for r in range(cfg.rows)]
        ww = [sched.words([weight_code(v, q) for v in w[oc]], q) for oc in outs]
        steps = [([xw[r][i][0] for r in range(cfg.rows)], (1 << cfg.rows) - 1,
                  [ww[c][i][0] if c < len(outs) else 0 for c in range(cfg.cols)], ww[0][i][1], 0, 0)
                 for i in range(len(ww[0]))]
        sched.group(steps, [(r, outs[c]) if c < len(outs) else None for r in range(cfg.rows) for c in range(cfg.cols)])
    got = run_array(MacArray(cfg), sched)
    expected = golden.dense_acc(x, w, q)
    assert got == {(r, oc): int(expected[r, oc]) for r in range(cfg.rows) for oc in range(o)}


@pytest.mark.parametrize("q", QS)
def test_accumulator_extremes_every_pe(q):
    """max_reduction/S cycles of the most negative weight times the largest activation."""
    cfg = variant("tiny", q)
    w_min = -1 if q == 1 else -(1 << (q - 1))
    a_max = 1 if q == 1 else (1 << q) - 1
    rng = np.random.default_rng(0)
    sched = Schedule(cfg, rng)
    k = cfg.max_reduction
    act_words = sched.words([a_max] * k, q)
    weight_words = sched.words([weight_code(w_min, q)] * k, q)
    steps = [([a] * cfg.rows, (1 << cfg.rows) - 1, [wd] * cfg.cols, mask, 0, 0)
             for (a, mask), (wd, _) in zip(act_words, weight_words)]
    sched.group(steps, list(range(cfg.rows * cfg.cols)))
    got = run_array(MacArray(cfg), sched)
    value = k * w_min * (1 if q == 1 else a_max)
    assert got == {i: value for i in range(cfg.rows * cfg.cols)}


def pair_triples(q: int, lanes: int, rows: int, every_code: bool):
    """(w_lo lanes, w_hi lanes, codes per row) per group: every weight pair meets every code
    (`every_code`: all (w_lo, w_hi, a) triples) or the extreme and middle codes."""
    ws = range(-(1 << (q - 1)), 1 << (q - 1))
    pairs = list(itertools.product(ws, ws))
    codes = list(range(1 << q)) if every_code else [0, 1, (1 << (q - 1)) - 1, 1 << (q - 1), (1 << q) - 1]
    for start in range(0, len(pairs), lanes):
        chunk = (pairs[start:start + lanes] + [(0, 0)] * lanes)[:lanes]
        for k in range(0, len(codes), rows):
            yield ([lo for lo, _ in chunk], [hi for _, hi in chunk],
                   [[codes[(k + r + i) % len(codes)] for i in range(lanes)] for r in range(rows)])


@pytest.mark.parametrize("q, memory_pipeline, every_code", [(5, 0, True), (6, 0, True), (5, 2, False), (6, 2, False)])
def test_paired_columns_give_each_pe_its_exact_lane_sum(q, memory_pipeline, every_code):
    """Paired lane products (gateware/lane_pair.py): columns 0 and 1 of a 2×3 array share one
    multiply per lane, column 2 forms its own. Each group is one cycle, so PE (r, c) holds that
    cycle's Σ_i w_c,i · a_r,i. At Q = 5 and 6 every (w_lo, w_hi, a) triple is driven (an exhaustive
    check of the packing); with the large-device registers (memory_pipeline 2) every weight pair
    with the extreme and middle codes. Some groups run again with lanes masked by lane_valid or
    rows padded by row_valid, which must add 0 to both PEs of the pair."""
    from qjoule.gateware.lane_pair import pairs_lanes

    cfg = variant("tiny", q, cols=3, memory_pipeline=memory_pipeline)
    assert pairs_lanes(cfg)
    rng = np.random.default_rng(q)
    rows, cols, lanes = cfg.rows, cfg.cols, cfg.lanes
    sched, expected = Schedule(cfg, rng), {}
    for n, (w_lo, w_hi, a) in enumerate(pair_triples(q, lanes, rows, every_code)):
        w = np.array([w_lo, w_hi, rng.integers(-(1 << (q - 1)), 1 << (q - 1), lanes)])
        a = np.array(a)
        # Every group runs unmasked; every 7th again with all lanes but the first masked, every
        # 11th again with every row but the first padded.
        variants = [((1 << lanes) - 1, (1 << rows) - 1)] + [(0b1, (1 << rows) - 1)] * (n % 7 == 0) \
            + [((1 << lanes) - 1, 0b1)] * (n % 11 == 0)
        for v, (lane_valid, row_valid) in enumerate(variants):
            mask = np.array([(lane_valid >> i) & 1 for i in range(lanes)])
            acts = [pack(a[r], q) for r in range(rows)]
            weights = [pack([weight_code(x, q) for x in w[c]], q) for c in range(cols)]
            keys = [(n, v, r, c) for r in range(rows) for c in range(cols)]
            sched.group([(acts, row_valid, weights, lane_valid, 0, 0)], keys)
            expected.update({(n, v, r, c): int((w[c] * a[r] * mask).sum()) if (row_valid >> r) & 1 else 0
                             for r in range(rows) for c in range(cols)})
    assert run_array(MacArray(cfg), sched) == expected
