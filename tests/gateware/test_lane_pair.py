"""Paired lane products (gateware/lane_pair.py): two PEs of a row, one multiply per lane.

Each cycle starts a new sum (clear with en), so the accumulator of PE (r, c) after the array's
latency is that cycle's lane sum Σ_i w_c,i · a_r,i, compared exactly with numpy. At Q = 5 and 6
every (w_lo, w_hi, a) triple is driven (an exhaustive check of the packing), and with the
large-device registers (memory_pipeline 2) every weight pair with the extreme and middle codes.
Some cycles run a second time with lanes masked by lane_valid or rows by row_valid, which must
add 0 to both PEs.
"""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from qjoule.config import variant
from qjoule.gateware.array import MacArray
from qjoule.gateware.lane_pair import DSP_PAIR_MAX_Q, DSP_PAIR_MIN_Q, pairs_lanes


def pack(values, q: int) -> int:
    return sum((int(v) & ((1 << q) - 1)) << (i * q) for i, v in enumerate(values))


def schedule(q: int, lanes: int, rows: int, every_code: bool):
    """(w_lo lanes, w_hi lanes, codes per row) per cycle: every weight pair meets every code
    (`every_code`: all (w_lo, w_hi, a) triples) or the extreme and middle codes."""
    ws = range(-(1 << (q - 1)), 1 << (q - 1))
    pairs = list(itertools.product(ws, ws))
    codes = list(range(1 << q)) if every_code else [0, 1, (1 << (q - 1)) - 1, 1 << (q - 1), (1 << q) - 1]
    for start in range(0, len(pairs), lanes):
        chunk = (pairs[start:start + lanes] + [(0, 0)] * lanes)[:lanes]
        for k in range(0, len(codes), rows):
            yield ([lo for lo, _ in chunk], [hi for _, hi in chunk],
                   [[codes[(k + r + i) % len(codes)] for i in range(lanes)] for r in range(rows)])


def run_groups(dut: MacArray, cycles: list[dict]) -> list[list[int]]:
    """Apply cycles[i] (each with clear = en = 1) before tick i; return every PE's acc for it."""
    latency = dut.latency
    idle = {"act": [0] * dut.cfg.rows, "weight": [0] * dut.cfg.cols, "row_valid": 0, "lane_valid": 0,
            "en": 0, "clear": 0, "shift": 0, "pixel_mode": 0}
    got = []

    async def testbench(ctx):
        for i, inputs in enumerate(cycles + [idle] * (latency - 1)):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            if i >= latency - 1:
                got.append([ctx.get(dut.acc[k]) for k in range(dut.cfg.rows * dut.cfg.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return got


@pytest.mark.parametrize("q, memory_pipeline, every_code", [(5, 0, True), (6, 0, True), (5, 2, False), (6, 2, False)])
def test_paired_columns_give_each_pe_its_exact_lane_sum(q, memory_pipeline, every_code):
    # 2 rows × 3 columns: columns 0 and 1 are a pair, column 2 forms its own products.
    cfg = variant("tiny", q, cols=3, memory_pipeline=memory_pipeline)
    assert pairs_lanes(cfg)
    rng = np.random.default_rng(q)
    rows, cols, lanes = cfg.rows, cfg.cols, cfg.lanes
    cycles, expected = [], []
    for n, (w_lo, w_hi, a) in enumerate(schedule(q, lanes, rows, every_code)):
        w = np.array([w_lo, w_hi, rng.integers(-(1 << (q - 1)), 1 << (q - 1), lanes)])
        a = np.array(a)
        # Every cycle runs unmasked; every 7th again with all lanes but the first masked, every
        # 11th again with every row but the first padded (masked lanes must add 0 to both PEs).
        variants = [((1 << lanes) - 1, (1 << rows) - 1)] + [(0b1, (1 << rows) - 1)] * (n % 7 == 0) \
            + [((1 << lanes) - 1, 0b1)] * (n % 11 == 0)
        for lane_valid, row_valid in variants:
            mask = np.array([(lane_valid >> i) & 1 for i in range(lanes)])
            cycles.append({"act": [pack(a[r], q) for r in range(rows)], "weight": [pack(w[c], q) for c in range(cols)],
                           "row_valid": row_valid, "lane_valid": lane_valid, "en": 1, "clear": 1, "shift": 0,
                           "pixel_mode": 0})
            expected.append([int((w[c] * a[r] * mask).sum()) if (row_valid >> r) & 1 else 0
                             for r in range(rows) for c in range(cols)])
    got = run_groups(MacArray(cfg), cycles)
    assert len(got) == len(expected)
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g == e, (n, cycles[n])


@pytest.mark.parametrize("q", [4, 7, 8])
def test_no_pairs_outside_their_q_range(q):
    assert not DSP_PAIR_MIN_Q <= q <= DSP_PAIR_MAX_Q
    assert not pairs_lanes(variant("tiny", q))


def test_pairs_need_two_columns_uniform_weights_and_the_switch():
    assert pairs_lanes(variant("tiny", 5))
    assert not pairs_lanes(variant("tiny", 5, cols=1))
    assert not pairs_lanes(variant("tiny", 5, dsp_pairs=False))
    assert not pairs_lanes(variant("tiny", 5, weights="pot"))
