"""Power-of-two weights in hardware: the shift-and-accumulate lane, the PE built from it, the config.

The lane is checked for every (activation, weight code, valid) at 2, 3 and 4 bits against
`pot_product`, which is itself checked against the contract's integers (qjoule.sw.pot); the PE is
checked against the golden model (qjoule.sw.golden) on random words, first-layer pixel passes and
the accumulator extremes of the PoT weight range.
"""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from qjoule.config import AccelConfig, variant
from qjoule.errors import UserError
from qjoule.gateware.pe import ProcessingElement
from qjoule.gateware.pot_lane import PotLane, pot_product
from qjoule.sw import golden
from qjoule.sw.pot import max_exponent, pot_codes, pot_values


def lane_code(w: int, q: int) -> int:
    """The weight's lane field from the contract's (sign, e): sign at bit Q−1, e below."""
    sign, e = pot_codes(np.array([w]), q)
    return int(sign[0]) << (q - 1) | int(e[0])


@pytest.mark.parametrize("q", [2, 3, 4, 5, 6])
def test_reference_matches_contract_integers(q):
    """pot_product(a, code(w)) == a · w for every PoT integer weight and every activation code."""
    for w in pot_values(q):
        code = lane_code(int(w), q)
        for a in range(1 << q):
            assert pot_product(a, code, q) == a * int(w)
    # every code is covered: 2^(Q−1) − 1 exponents x 2 signs + the zero code (with either sign bit)
    assert len({lane_code(int(w), q) for w in pot_values(q)}) == len(pot_values(q)) == 2 * (max_exponent(q) + 1) + 1
    assert pot_product(5 % (1 << q), 1 << (q - 1), q) == 0  # "negative zero" is zero too


@pytest.mark.parametrize("hold_zero", [False, True])
@pytest.mark.parametrize("q", [2, 3, 4])
def test_lane_every_code(q, hold_zero):
    """Every (act, code, valid) in one pass, one per cycle; value + carry after one tick is the
    product (0 when masked). A zero weight or a masked lane resets the product flops to 0, or with
    `hold_zero` leaves them unchanged."""
    dut = PotLane(q, hold_zero=hold_zero)
    inputs = [(a, code, valid) for valid in (1, 0) for code in range(1 << q) for a in range(1 << q)]
    rng = np.random.default_rng(q)
    inputs = [inputs[i] for i in rng.permutation(len(inputs))]  # zero codes amid live ones
    results, held_kept = [], []

    async def testbench(ctx):
        for a, code, valid in inputs:
            ctx.set(dut.act, a)
            ctx.set(dut.weight, code)
            ctx.set(dut.valid, valid)
            before = (ctx.get(dut.held), ctx.get(dut.held_negative))
            await ctx.tick()
            results.append(ctx.get(dut.value) + ctx.get(dut.carry))
            gated = not valid or code & ((1 << (q - 1)) - 1) == 0
            if gated:
                after = (ctx.get(dut.held), ctx.get(dut.held_negative))
                held_kept.append(after == (before if hold_zero else (0, 0)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    expected = [pot_product(a, code, q) if valid else 0 for a, code, valid in inputs]
    assert results == expected
    assert len(held_kept) > (1 << q) ** 2 and all(held_kept)


def test_lane_rejects_bad_q():
    with warnings.catch_warnings():
        # The refused components are never elaborated; Amaranth would warn about them.
        warnings.simplefilter("ignore", UnusedElaboratable)
        for q in (1, 7, "4", True):
            with pytest.raises(ValueError, match="q 2..6"):
                PotLane(q)
        gc.collect()


# -- the PE with power-of-two lanes -------------------------------------------------------------

def pot_cfg(q: int, name: str = "tiny") -> AccelConfig:
    return variant(name, q=q, weights="pot")


def pack(fields, q: int) -> int:
    return sum(int(f) << (i * q) for i, f in enumerate(fields))


def run_pe(dut, cycles):
    """Apply cycles[i] before tick i; return acc as it reflects input i."""
    idle = {"act": 0, "weight": 0, "lane_valid": 0, "en": 0, "clear": 0, "shift": 0, "pixel_mode": 0}
    seen = []

    async def testbench(ctx):
        for i, inputs in enumerate(cycles + [idle] * (dut.latency - 1)):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            if i >= dut.latency - 1:
                seen.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return seen


def dot_cycles(cfg, acts, weights, *, shift=0, first_clear=True, pixel_mode=0):
    """One dot product word by word (the last word's missing lanes masked and left 0)."""
    q, s = cfg.q, cfg.lanes
    cycles = []
    for start in range(0, len(acts), s):
        a = [int(x) for x in acts[start:start + s]]
        w = [lane_code(int(x), q) for x in weights[start:start + s]]
        cycles.append({"act": pack(a, q), "weight": pack(w, q), "lane_valid": (1 << len(a)) - 1, "en": 1,
                       "clear": int(first_clear and start == 0), "shift": shift, "pixel_mode": pixel_mode})
    return cycles


@pytest.mark.parametrize("q, hold_zero", [(2, False), (3, False), (4, False), (5, False), (6, False), (3, True)])
def test_pe_random_cycles_follow_golden(q, hold_zero):
    """Random PoT words (zeros included), masks, en/clear and pass shifts; acc every cycle."""
    cfg = pot_cfg(q)
    rng = np.random.default_rng(300 + q)
    s, values = cfg.lanes, pot_values(q)
    cycles, expected, acc = [], [], 0
    for _ in range(150):
        act = [int(x) for x in rng.integers(0, 1 << q, size=s)]
        w = [int(x) for x in rng.choice(values, size=s)]
        valid = int(rng.integers(0, 1 << s)) if rng.random() < 0.5 else (1 << s) - 1
        en, clear = int(rng.random() < 0.8), int(rng.random() < 0.2)
        shift = int(rng.integers(0, cfg.first_layer_passes))
        cycles.append({"act": pack(act, q), "weight": pack([lane_code(x, q) for x in w], q), "lane_valid": valid,
                       "en": en, "clear": clear, "shift": shift, "pixel_mode": int(rng.random() < 0.5)})
        keep = [i for i in range(s) if valid >> i & 1]
        word = int(golden.dense_acc(np.array([[act[i] for i in keep]]), np.array([[w[i] for i in keep]]), q)[0, 0]) \
            if keep else 0
        if en:
            acc = (0 if clear else acc) + (word << (shift * q))
        expected.append(acc)
    assert run_pe(ProcessingElement(cfg, pot_hold_zero=hold_zero), cycles) == expected


@pytest.mark.parametrize("q", [2, 3, 4])
def test_pe_first_layer_passes_equal_pixel_dot_product(q):
    """ceil(8/Q) passes of Q-bit pixel chunks through the shift lanes sum to Σ w·p."""
    cfg = pot_cfg(q)
    rng = np.random.default_rng(400 + q)
    k = 27
    pixels = rng.integers(0, 256, size=k)
    pixels[:3] = [0, 255, 128]
    w = rng.choice(pot_values(q), size=k)
    w[:2] = [-(1 << max_exponent(q)), 1 << max_exponent(q)]
    cycles = []
    for j, chunk in enumerate(golden.pixel_chunks(pixels, q)):
        cycles += dot_cycles(cfg, chunk, w, shift=j, first_clear=(j == 0))
    assert run_pe(ProcessingElement(cfg), cycles)[-1] == int(golden.dense_acc(pixels[None], w[None], 8)[0, 0])


@pytest.mark.parametrize("q", [2, 3, 4])
def test_pe_accumulator_extremes_and_one_bit_fewer_overflows(q):
    """All weights −2^K over the longest reduction (hidden codes at L(Q), or 255-pixels over
    9·max_channels): the sums fit acc_bits, and the larger one wraps with one bit fewer."""
    cfg = pot_cfg(q)
    w_min = -(1 << max_exponent(q))
    k = cfg.max_reduction
    hidden = (dot_cycles(cfg, np.full(k, (1 << q) - 1), np.full(k, w_min)), k * w_min * ((1 << q) - 1))
    kp = 9 * cfg.max_channels
    pixel_cycles = []
    for j, chunk in enumerate(golden.pixel_chunks(np.full(kp, 255), q)):
        pixel_cycles += dot_cycles(cfg, chunk, np.full(kp, w_min), shift=j, first_clear=(j == 0))
    pixels = (pixel_cycles, kp * w_min * 255)
    for cycles, value in (hidden, pixels):
        assert run_pe(ProcessingElement(cfg), cycles)[-1] == value
    cycles, value = min((hidden, pixels), key=lambda cv: cv[1])
    assert value < -(1 << (cfg.acc_bits - 2))
    assert run_pe(ProcessingElement(cfg, acc_bits=cfg.acc_bits - 1), cycles)[-1] != value


# -- the config field ---------------------------------------------------------------------------

def test_config_pot_acc_bits_by_hand():
    # Q = 4 PoT: K = 6, |w| ≤ 64. Pixels: 9·8·64·255 = 1175040 -> ceil(log2) = 21, +1 sign = 22;
    # hidden: 72·64·15 = 69120 is smaller. Uniform Q = 4 (|w| ≤ 8) needs 19 bits.
    cfg = AccelConfig(q=4, datapath=16, max_channels=8, max_dense_inputs=16, weights="pot")
    assert (cfg.pot_max_exponent, cfg.weight_max, cfg.acc_bits) == (6, 64, 22)
    assert cfg.replace(weights="uniform").acc_bits == 19
    # Q = 2 PoT: weights {0, ±1}: 9·8·1·255 = 18360 -> 15 + 1 = 16 (uniform |w| ≤ 2: 17).
    cfg2 = AccelConfig(q=2, datapath=16, max_channels=8, max_dense_inputs=16, weights="pot")
    assert (cfg2.weight_max, cfg2.acc_bits, cfg2.replace(weights="uniform").acc_bits) == (1, 16, 17)


@pytest.mark.parametrize("changes, fragment", [
    ({"q": 1, "datapath": 16, "weights": "pot"}, "power-of-two weights need q 2..6 (a sign bit and an exponent field, weights up to 2^30), got q=1"),
    ({"q": 8, "datapath": 16, "weights": "pot"}, "power-of-two weights need q 2..6"),
    ({"weights": "log"}, "weights must be one of 'uniform', 'pot', got 'log'"),
])
def test_config_rejects_bad_weights(changes, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        AccelConfig(**changes)


def test_config_json_round_trip_keeps_weights(tmp_path):
    cfg = pot_cfg(3, "ulx3s")
    path = tmp_path / "accel.json"
    path.write_text(cfg.to_json())
    assert AccelConfig.load(path) == cfg and cfg.weights == "pot"
    # a config file written before the field existed still loads, as uniform
    data = cfg.replace(weights="uniform").to_dict()
    del data["weights"]
    assert AccelConfig.from_dict(data) == cfg.replace(weights="uniform")
