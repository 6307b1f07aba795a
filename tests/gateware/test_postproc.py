"""PostProcess against golden.postprocess, with random input gaps and random backpressure.

The checker also holds the stream rules: once `o.valid` is high it stays high with the same
payload until `o.ready` takes it; nothing is lost, duplicated or reordered.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from qjoule.config import board_config, variant
from qjoule.gateware.postproc import PostAct, PostProcess
from qjoule.sw import golden

QS = [1, 2, 3, 4, 5, 8, 16]
ACTS = {"relu": PostAct.RELU, "sign": PostAct.SIGN, "none": PostAct.NONE}


def random_items(cfg, rng: random.Random, n: int) -> list[dict]:
    acc_lo, acc_hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    items = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # extremes of every field
            acc = rng.choice([acc_lo, acc_hi, 0, -1])
            mult = rng.choice([-(1 << 17) + 1, (1 << 17) - 1, 0, 1, -1])
            bias = rng.choice([-(1 << 63), (1 << 63) - 1, 0, 1 << 40, -(1 << 40)])
            shift = rng.choice([1, 62, 0, 63])
        elif kind == 1:  # the scale export produces: t lands near the code range
            acc = rng.randint(acc_lo, acc_hi)
            shift = rng.randint(1, 40)
            mult = rng.randint(-(1 << 17) + 1, (1 << 17) - 1)
            bias = rng.randint(-(4 << shift), 4 << shift) + (1 << (shift - 1))
        else:  # anything
            acc = rng.randint(acc_lo, acc_hi)
            mult = rng.randint(-(1 << 17), (1 << 17) - 1)
            bias = rng.randint(-(1 << 63), (1 << 63) - 1)
            shift = rng.randint(0, 63)
        act = rng.choice(["relu", "sign", "none"])
        items.append({"acc": acc, "mult": mult, "bias": bias, "shift": shift, "act": act})
    return items


def expected_output(cfg, item) -> tuple[int, int]:
    """(code, logit): code from golden.postprocess where the contract defines the case, logit the
    exact t = (acc·m + b) >> s in Python integers."""
    t = (item["acc"] * item["mult"] + item["bias"]) >> item["shift"]
    act = item["act"]
    # golden.postprocess bounds |b| with np.abs, which wraps at b = −2^63 (reported); that one
    # value is checked against the exact Python t only.
    in_contract = 1 <= item["shift"] <= 62 and not (act == "relu" and cfg.q == 1)
    if in_contract and item["bias"] != -(1 << 63):
        args = (np.array([[item["acc"]]]), np.array([item["mult"]]), np.array([item["bias"]]), item["shift"])
        if act == "relu":
            code = int(golden.postprocess(*args, cfg.q, "relu")[0, 0])
        elif act == "sign":
            code = int(golden.postprocess(*args, 1, "sign")[0, 0])
        else:
            code = 0
            if -(1 << 63) <= t < (1 << 63):
                assert int(golden.postprocess(*args, None, "none")[0, 0]) == t
    else:  # shift 0 or 63, relu at Q = 1: outside the contract, defined by the module's doc
        code = {"relu": min(max(t, 0), (1 << cfg.q) - 1), "sign": int(t >= 0), "none": 0}[act]
    return code, t


def latency_of(cfg, dsp_width=None) -> int:
    """An instance's `latency`, from a unit built only to read it (not elaborated: silenced)."""
    pp = PostProcess(cfg, dsp_width=dsp_width)
    pp._MustUse__silence = True
    return pp.latency


def run_stream(cfg, items, *, seed, gap=0.3, stall=0.4, dsp_width=None):
    dut = PostProcess(cfg, dsp_width=dsp_width)
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    received = []
    state = {"cycles": 0}

    async def producer(ctx):
        for item in items:
            while rng_in.random() < gap:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, {**item, "act": ACTS[item["act"]]})
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held = None  # (code, logit) offered last cycle and not taken
        while len(received) < len(items):
            ready = int(rng_out.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            state["cycles"] += 1
            offered = (payload.code, payload.logit) if valid else None
            if held is not None:
                assert offered == held, "o.valid dropped or o.payload changed while stalled"
            if valid and ready:
                received.append(offered)
                held = None
            else:
                held = offered
            assert state["cycles"] < 20 * len(items) + 100, "stream stuck"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return received, state["cycles"]


@pytest.mark.parametrize("dsp_width", [18, 16])
@pytest.mark.parametrize("q", QS)
def test_random_and_extreme_values_under_backpressure(q, dsp_width):
    """Both product splits: 18×18 blocks (ECP5), and 16×16 (iCE40) where the multiplier is split."""
    cfg = variant("tiny", q)
    rng = random.Random(q)
    items = random_items(cfg, rng, 200)
    received, _ = run_stream(cfg, items, seed=q, dsp_width=dsp_width)
    assert received == [expected_output(cfg, item) for item in items]


@pytest.mark.parametrize("q", [4, 8, 16])
def test_icebreaker_compact_control_split_shift(q):
    """compact_control (the icebreaker's): the shift's multiples of 8 in the sum stage, the rest
    in the output stage; every shift 0..63 among the random and extreme items."""
    cfg = board_config("icebreaker", q)
    assert cfg.compact_control
    items = random_items(cfg, random.Random(20 + q), 200)
    b = cfg.pp_bias_bits   # (32, 40, 48: the biases wrapped into it, as in test_narrow_bias_path)
    for item in items:
        item["bias"] = (item["bias"] + (1 << (b - 1))) % (1 << b) - (1 << (b - 1))
    assert {item["shift"] >> 3 for item in items} == set(range(8))
    received, _ = run_stream(cfg, items, seed=q, dsp_width=16)
    assert received == [expected_output(cfg, item) for item in items]
    # t registered between the shift and the clamp (as on the ULX3S) while t is at most 48 bits
    # (Q = 4: 43 bits, Q = 8: 48; Q = 16: 63, no room on the UP5K), still one result per cycle
    split = cfg.pp_logit_bits <= 48
    assert split == (q != 16) and latency_of(cfg, dsp_width=16) == PostProcess.latency + split
    received, cycles = run_stream(cfg, items[:40], seed=q, gap=0.0, stall=0.0, dsp_width=16)
    assert received == [expected_output(cfg, item) for item in items[:40]]
    assert cycles == 40 + PostProcess.latency + split


@pytest.mark.parametrize("q", [1, 4, 16])
def test_ulx3s_board_registers_t_between_shift_and_clamp(q):
    """memory_pipeline (the ULX3S board config): t is registered between the shift and the clamp
    (latency 5); exact under gaps and backpressure, and still one result per cycle."""
    cfg = board_config("ulx3s-85f", q)
    assert cfg.memory_pipeline and latency_of(cfg) == PostProcess.latency + 1
    items = random_items(cfg, random.Random(40 + q), 150)
    received, _ = run_stream(cfg, items, seed=q)
    assert received == [expected_output(cfg, item) for item in items]
    received, cycles = run_stream(cfg, items[:40], seed=q, gap=0.0, stall=0.0)
    assert received == [expected_output(cfg, item) for item in items[:40]]
    assert cycles == 40 + PostProcess.latency + 1


@pytest.mark.parametrize("dsp_width", [18, 16])
def test_board_config_widths(dsp_width):
    """The widest accumulator any variant has (default/ulx3s at Q = 16: 45 bits)."""
    cfg = variant("ulx3s", 16)
    assert cfg.acc_bits == 45
    items = random_items(cfg, random.Random(7), 120)
    received, _ = run_stream(cfg, items, seed=7, dsp_width=dsp_width)
    assert received == [expected_output(cfg, item) for item in items]


def test_full_throughput_without_backpressure():
    """No gaps, always ready: one result per cycle after the pipeline fills."""
    cfg = variant("tiny", 4)
    items = random_items(cfg, random.Random(3), 64)
    received, cycles = run_stream(cfg, items, seed=3, gap=0.0, stall=0.0)
    assert received == [expected_output(cfg, item) for item in items]
    assert cycles == len(items) + latency_of(cfg)


def test_hand_computed_values():
    """t = (acc·m + b) >> s on numbers worked out by hand (Q = 4, L = 15)."""
    cfg = variant("tiny", 4)
    items = [
        {"acc": 100, "mult": 3, "bias": 4, "shift": 3, "act": "relu"},     # 304 >> 3 = 38 -> 15
        {"acc": 10, "mult": 5, "bias": 2, "shift": 2, "act": "relu"},      # 52 >> 2 = 13
        {"acc": -7, "mult": 1, "bias": 0, "shift": 1, "act": "relu"},      # -7 >> 1 = -4 -> 0
        {"acc": -7, "mult": 1, "bias": 0, "shift": 1, "act": "none"},      # floor(-3.5) = -4
        {"acc": -1, "mult": 1, "bias": 1, "shift": 5, "act": "sign"},      # 0 >> 5 = 0 -> 1
        {"acc": -1, "mult": 1, "bias": 0, "shift": 5, "act": "sign"},      # -1 >> 5 = -1 -> 0
    ]
    received, _ = run_stream(cfg, items, seed=0)
    assert received == [(15, 38), (13, 13), (0, -4), (0, -4), (1, 0), (0, -1)]


@pytest.mark.parametrize("q", [1, 4])
def test_narrow_bias_path(q):
    """A board config with pp_bias_bits = 32: exact for every bias that fits 32 bits."""
    cfg = variant("tiny", q, pp_bias_bits=32)
    assert cfg.pp_logit_bits == max(cfg.acc_bits + 18, 32) + 1
    items = random_items(cfg, random.Random(11 + q), 120)
    for item in items:  # the extremes of a 32-bit bias and random ones
        item["bias"] = (item["bias"] + (1 << 31)) % (1 << 32) - (1 << 31)
    received, _ = run_stream(cfg, items, seed=q)
    assert received == [expected_output(cfg, item) for item in items]


def test_encode_refuses_a_bias_wider_than_the_hardware(model_builder):
    from qjoule.errors import UserError
    from qjoule.program import encode

    model = model_builder(4, (1, 4, 4), [3], classes=2, seed=1)
    cfg = variant("tiny", 4, pp_bias_bits=32)
    encode(model, cfg)  # export's biases at this scale fit 32 bits
    name = model.layer("L0")["pp_bias"]
    model.arrays[name] = model.arrays[name].copy()
    model.arrays[name][1] = 1 << 31
    with pytest.raises(UserError, match=r"layer 'L0': pp_bias too wide for pp_bias_bits=32"):
        encode(model, cfg)
    encode(model, variant("tiny", 4))  # the 64-bit default takes it


@pytest.mark.parametrize("dsp_width", [18, 16])
def test_accumulator_narrower_than_the_product_split(dsp_width):
    """A config whose accumulator is under 17 bits (one input channel, one dense input) still
    splits the product at bit 16: the accumulator is sign-extended past it, results exact."""
    cfg = variant("tiny", 1, max_channels=1, max_dense_inputs=1)
    assert cfg.acc_bits <= 16
    items = random_items(cfg, random.Random(5), 80)
    received, _ = run_stream(cfg, items, seed=5, dsp_width=dsp_width)
    assert received == [expected_output(cfg, item) for item in items]
