"""ProcessingElement against the golden model (qjoule.sw.golden), bit for bit, at every Q.

The testbench drives one input set per clock and reads `acc` every cycle; the input set applied
before tick i must show in `acc` after tick i + latency − 1 (so the pipeline depth is checked too).
"""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from qjoule.config import variant
from qjoule.gateware.pe import ProcessingElement
from qjoule.sw import golden

QS = [1, 2, 3, 4, 5, 8, 16]


# -- packing helpers (the lane order of the interface: lane i = bits [i*Q, (i+1)*Q)) ----------

def weight_code(w: int, q: int) -> int:
    """The Q-bit pattern of a weight: ±1 as bit 1/0 at Q = 1, two's complement otherwise."""
    if q == 1:
        assert w in (-1, 1)
        return 1 if w == 1 else 0
    return w & ((1 << q) - 1)


def pack(codes, q: int) -> int:
    word = 0
    for i, c in enumerate(codes):
        assert 0 <= int(c) < (1 << q)
        word |= int(c) << (i * q)
    return word


def random_weights(rng, q: int, n: int) -> np.ndarray:
    if q == 1:
        return rng.choice([-1, 1], size=n)
    return rng.integers(-(1 << (q - 1)), 1 << (q - 1), size=n)


def idle(**extra):
    return {"act": 0, "weight": 0, "lane_valid": 0, "en": 0, "clear": 0, "shift": 0, "pixel_mode": 0, **extra}


def run_pe(dut: ProcessingElement, cycles: list[dict]) -> list[int]:
    """Apply `cycles[i]` before tick i; return acc as it reflects input i (index i)."""
    latency = dut.latency
    seen: list[int] = []

    async def testbench(ctx):
        for i, inputs in enumerate(cycles + [idle()] * (latency - 1)):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            if i >= latency - 1:
                seen.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return seen


def dot_cycles(cfg, act_codes, weights, *, shift=0, pixel_mode=0, rng=None, first_clear=True):
    """Cycles feeding one dot product word by word; the last word's missing lanes are masked and,
    with `rng`, filled with random garbage that the mask must remove."""
    q, s = cfg.q, cfg.lanes
    cycles = []
    for start in range(0, len(act_codes), s):
        a = [int(x) for x in act_codes[start:start + s]]
        w = [weight_code(int(x), q) for x in weights[start:start + s]]
        valid = (1 << len(a)) - 1
        while len(a) < s:
            a.append(int(rng.integers(0, 1 << q)) if rng is not None else 0)
            w.append(int(rng.integers(0, 1 << q)) if rng is not None else 0)
        cycles.append({"act": pack(a, q), "weight": pack(w, q), "lane_valid": valid, "en": 1,
                       "clear": int(first_clear and start == 0), "shift": shift, "pixel_mode": pixel_mode})
    return cycles


# -- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("products", ["lut", "multiply"])
@pytest.mark.parametrize("q", QS)
def test_random_cycles_follow_golden_word_by_word(q, products):
    """Random words, lane masks, en/clear, passes and pixel mode; acc checked every cycle, with
    the lane products built either way (shift-and-add in LUTs, or multiplies for DSPs)."""
    cfg = variant("tiny", q)
    cycles, expected = random_cycles(cfg, np.random.default_rng(100 + q))
    seen = run_pe(ProcessingElement(cfg, lut_products=(products == "lut")), cycles)
    assert seen == expected


@pytest.mark.parametrize("q, lut_lanes", [(8, 1), (5, 2)])
def test_lut_lanes_beside_multiplies_follow_golden(q, lut_lanes):
    """`lut_lanes`: the first lanes' products shift-and-add in LUTs, the others multiply; the
    accumulator equals the golden model every cycle either way."""
    from amaranth.back import rtlil

    cfg = variant("tiny", q, lut_lanes=lut_lanes)
    cycles, expected = random_cycles(cfg, np.random.default_rng(200 + q))
    assert run_pe(ProcessingElement(cfg), cycles) == expected
    # the multiplies Yosys would map to DSP blocks: one per lane not built from LUTs
    text = rtlil.convert(ProcessingElement(cfg))
    assert text.count("cell $mul ") == cfg.lanes - lut_lanes


@pytest.mark.parametrize("q", [1, 4, 8])
def test_register_operands_take_the_words_a_cycle_ahead(q):
    """register_operands (the ULX3S array's per-PE operand registers): the words applied a cycle
    ahead of the controls give the same sums, a cycle later."""
    cfg = variant("tiny", q)
    cycles, expected = random_cycles(cfg, np.random.default_rng(200 + q))
    operands = ("act", "weight")
    ahead = [idle(**{k: cycles[0][k] for k in operands})]
    ahead += [{**c, **{k: (n[k] if n else 0) for k in operands}} for c, n in zip(cycles, cycles[1:] + [None])]
    seen = run_pe(ProcessingElement(cfg, register_operands=True), ahead)
    assert seen[1:] == expected


def random_cycles(cfg, rng):
    """120 cycles of random words, lane masks, en/clear, passes and pixel mode, with the
    accumulator the golden model expects after each."""
    q, s, lanes_mask = cfg.q, cfg.lanes, (1 << cfg.lanes) - 1
    cycles, expected, acc = [], [], 0
    for _ in range(120):
        act = [int(x) for x in rng.integers(0, 1 << q, size=s)]
        w = [int(x) for x in random_weights(rng, q, s)]
        valid = int(rng.integers(0, lanes_mask + 1)) if rng.random() < 0.5 else lanes_mask
        en, clear = int(rng.random() < 0.8), int(rng.random() < 0.2)
        shift = int(rng.integers(0, cfg.first_layer_passes))
        pixel_mode = int(rng.random() < 0.5)
        cycles.append({"act": pack(act, q), "weight": pack([weight_code(x, q) for x in w], q),
                       "lane_valid": valid, "en": en, "clear": clear, "shift": shift, "pixel_mode": pixel_mode})
        keep = [i for i in range(s) if valid >> i & 1]
        # At Q = 1 pixel mode, the act bits are pixel bits {0, 1}: the golden q_in = 8 (pixels).
        q_in = 8 if (q == 1 and pixel_mode) else q
        word = int(golden.dense_acc(np.array([[act[i] for i in keep]]),
                                    np.array([[w[i] for i in keep]]), q_in)[0, 0]) if keep else 0
        if en:
            acc = (0 if clear else acc) + (word << (shift * q))
        expected.append(acc)
    return cycles, expected


@pytest.mark.parametrize("q", QS)
def test_dense_dot_products_back_to_back(q):
    """Three dot products (lengths not multiples of S, garbage in masked lanes) with idle gaps."""
    cfg = variant("tiny", q)
    rng = np.random.default_rng(q)
    cycles, checks = [], []
    for k in (1, 3 * cfg.lanes + 1, 50):
        x = rng.integers(0, 1 << q, size=k)
        w = random_weights(rng, q, k)
        cycles += dot_cycles(cfg, x, w, rng=rng)
        checks.append((len(cycles) - 1, int(golden.dense_acc(x[None], w[None], q)[0, 0])))
        cycles += [idle(act=int(rng.integers(0, 1 << cfg.datapath)), clear=1)] * 2  # clear without en: no effect
    seen = run_pe(ProcessingElement(cfg), cycles)
    for index, value in checks:
        assert seen[index] == value
        assert seen[index + 2] == value  # held through the idle cycles


@pytest.mark.parametrize("q", QS)
def test_first_layer_passes_equal_plain_pixel_dot_product(q):
    """ceil(8/Q) passes of Q-bit chunks, pass j shifted by j·Q, sum to Σ w·p (Q = 1: pixel_mode)."""
    cfg = variant("tiny", q)
    rng = np.random.default_rng(200 + q)
    k = 27  # a 3×3 window over 3 input channels
    pixels = rng.integers(0, 256, size=k)
    pixels[:3] = [0, 255, 128]
    w = random_weights(rng, q, k)
    chunks = golden.pixel_chunks(pixels, q)
    assert len(chunks) == cfg.first_layer_passes
    cycles = []
    for j, chunk in enumerate(chunks):
        cycles += dot_cycles(cfg, chunk, w, shift=j, pixel_mode=1, rng=rng, first_clear=(j == 0))
    seen = run_pe(ProcessingElement(cfg), cycles)
    assert seen[-1] == int(golden.dense_acc(pixels[None], w[None], 8)[0, 0])


def extreme_cycles(cfg, pixels: bool):
    """All weights at the most negative code, all activations at the largest, over the longest
    reduction the config admits (hidden: max_reduction; first layer: 9·max_channels pixels)."""
    q = cfg.q
    w_min = -1 if q == 1 else -(1 << (q - 1))
    if pixels:
        k = 9 * cfg.max_channels
        chunks = golden.pixel_chunks(np.full(k, 255), q)
        cycles = []
        for j, chunk in enumerate(chunks):
            cycles += dot_cycles(cfg, chunk, np.full(k, w_min), shift=j, pixel_mode=1, first_clear=(j == 0))
        return cycles, k * w_min * 255
    k = cfg.max_reduction
    a_max = 1 if q == 1 else (1 << q) - 1  # at Q = 1 code 1 is +1: +1 · −1 = −1 per term
    return dot_cycles(cfg, np.full(k, a_max), np.full(k, w_min)), k * w_min * (1 if q == 1 else a_max)


@pytest.mark.parametrize("q", QS)
def test_accumulator_extremes_fit_and_one_bit_fewer_overflows(q):
    cfg = variant("tiny", q)
    results = {}
    for pixels in (False, True):
        cycles, value = extreme_cycles(cfg, pixels)
        assert run_pe(ProcessingElement(cfg), cycles)[-1] == value
        results[pixels] = (cycles, value)
    # The larger magnitude sets acc_bits: it does not fit one bit fewer, and a PE built with one
    # bit fewer really wraps.
    cycles, value = min(results.values(), key=lambda cv: cv[1])
    assert value < -(1 << (cfg.acc_bits - 2))
    assert run_pe(ProcessingElement(cfg, acc_bits=cfg.acc_bits - 1), cycles)[-1] != value


@pytest.mark.parametrize("q", QS)
def test_accumulator_extremes_board_config(q):
    """The ulx3s config admits 512 channels and 8192 dense inputs: up to 8192 cycles at S = 1."""
    cfg = variant("ulx3s", q)
    for pixels in (False, True):
        cycles, value = extreme_cycles(cfg, pixels)
        assert run_pe(ProcessingElement(cfg), cycles)[-1] == value


def test_rejects_bad_arguments():
    with warnings.catch_warnings():
        # The half-built component is never elaborated; Amaranth would warn about it.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="AccelConfig"):
            ProcessingElement({"q": 4})
        with pytest.raises(ValueError, match="acc_bits"):
            ProcessingElement(variant("tiny", 4), acc_bits=1)
        gc.collect()
