"""The multi-mode ProcessingElement (per-layer mixed precision, `AccelConfig.q_modes`) against the
golden model, bit for bit: every mode, mode switches between words, narrower weights sign-extended
into a mode's lanes (as `program.weight_lane` packs them), and the shared accumulator at each
mode's extremes.
"""

import json

import numpy as np
import pytest

from qjoule.config import AccelConfig, variant
from qjoule.gateware.pe import ProcessingElement
from qjoule.program import weight_lane
from qjoule.sw import golden

from .test_pe import pack, random_weights, run_pe, weight_code

#: Modes 1, 2, 4, 8 on one 16-bit datapath (16, 8, 4, 2 lanes); first layer at mode 4.
MODES = (1, 2, 4, 8)


def mixed_cfg(**changes):
    return variant("tiny", 4, q_modes=MODES, **changes)


def mixed_idle(**extra):
    return {"act": 0, "weight": 0, "lane_valid": 0, "en": 0, "clear": 0, "shift": 0, "pixel_mode": 0,
            "mode": 0, **extra}


def test_config_modes():
    cfg = mixed_cfg()
    assert cfg.modes == MODES and cfg.mixed and cfg.datapath == 16
    assert [cfg.lanes_at(q) for q in MODES] == [16, 8, 4, 2]
    assert cfg.max_lanes == 16 and cfg.write_granularity == 1 and cfg.code_bits == 8
    # the accumulator is the widest mode's
    assert cfg.acc_bits == max(variant("tiny", q).acc_bits for q in MODES)
    # JSON round trip; a uniform config's JSON has no q_modes (its config_id is unchanged), and
    # listing only q is the uniform config itself
    assert AccelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert json.loads(cfg.to_json())["q_modes"] == list(MODES)
    assert "q_modes" not in json.loads(variant("tiny", 4).to_json())
    assert variant("tiny", 4, q_modes=[4]) == variant("tiny", 4)
    # the default datapath is a multiple of every mode
    assert variant("tiny", 3, q_modes=(3, 5)).datapath == 15
    assert variant("tiny", 8, q_modes=(3, 8)).datapath == 24


@pytest.mark.parametrize("products", ["lut", "multiply"])
def test_random_cycles_in_every_mode_follow_golden(products):
    """Random mode per word (switching every cycle), random words and masks (garbage in the lane
    mask bits above the mode's lanes must not matter), en/clear, first-layer shifts."""
    cfg = mixed_cfg()
    rng = np.random.default_rng(8)
    cycles, expected, acc = [], [], 0
    for _ in range(240):
        k = int(rng.integers(0, len(MODES)))
        q = MODES[k]
        s = cfg.datapath // q
        act = [int(x) for x in rng.integers(0, 1 << q, size=s)]
        w = [int(x) for x in random_weights(rng, q, s)]
        valid = int(rng.integers(0, 1 << cfg.max_lanes))
        en, clear = int(rng.random() < 0.8), int(rng.random() < 0.2)
        shift = int(rng.integers(0, cfg.first_layer_passes))
        pixel_mode = int(q == 1 and rng.random() < 0.5)
        cycles.append({"act": pack(act, q), "weight": pack([weight_code(x, q) for x in w], q), "lane_valid": valid,
                       "en": en, "clear": clear, "shift": shift, "pixel_mode": pixel_mode, "mode": k})
        keep = [i for i in range(s) if valid >> i & 1]
        q_in = 8 if (q == 1 and pixel_mode) else q
        word = int(golden.dense_acc(np.array([[act[i] for i in keep]]),
                                    np.array([[w[i] for i in keep]]), q_in)[0, 0]) if keep else 0
        if en:
            # first-layer passes shift by j·cfg.q: the first layer runs at mode q (4)
            acc = (0 if clear else acc) + (word << (shift * cfg.q))
        expected.append(acc)
    seen = run_pe(ProcessingElement(cfg, lut_products=(products == "lut")), cycles)
    assert seen == expected


@pytest.mark.parametrize("q_in,q_w", [(2, 4), (4, 2), (3, 1), (2, 8), (8, 3)])
def test_narrow_operands_in_a_wider_container(q_in, q_w):
    """Layer l runs at Q_c = max(q_in, q_w): q_in-bit codes zero-extended, q_w-bit weights
    sign-extended (program.weight_lane at Q_c; ±1 weights as two's complement) give the golden
    dot product of the layer's own q_in codes and q_w weights."""
    q_c = max(q_in, q_w)
    cfg = variant("tiny", q_c, q_modes=(q_in, q_w))  # (3, 1): D = 15; (8, 3): D = 24
    assert cfg.mixed and cfg.datapath % q_c == 0
    rng = np.random.default_rng(q_in * 10 + q_w)
    n = 41
    x = rng.integers(0, 1 << q_in, size=n)
    x[:2] = [0, (1 << q_in) - 1]
    w = random_weights(rng, q_w, n)
    w[:2] = [-1 if q_w == 1 else -(1 << (q_w - 1)), 1 if q_w == 1 else (1 << (q_w - 1)) - 1]
    k = cfg.modes.index(q_c)
    s = cfg.datapath // q_c
    cycles = []
    for start in range(0, n, s):
        a = [int(v) for v in x[start:start + s]]
        lanes = [weight_lane(int(v), q_c) for v in w[start:start + s]]
        cycles.append({"act": pack(a, q_c), "weight": pack(lanes, q_c), "lane_valid": (1 << len(a)) - 1,
                       "en": 1, "clear": int(start == 0), "shift": 0, "pixel_mode": 0, "mode": k})
    seen = run_pe(ProcessingElement(cfg), cycles)
    # golden: ±1 weights are values, codes are the layer's own q_in codes
    assert seen[-1] == int(golden.dense_acc(x[None], w[None], q_in)[0, 0])


def mode_extreme_cycles(cfg, k: int, negative: bool):
    """The longest hidden-layer reduction at mode k with every product at its largest magnitude:
    a = L(Q_c) (+1 at Q_c = 1), w = −2^(Q_c−1) (−1) for the negative end, 2^(Q_c−1) − 1 (+1) for
    the positive one."""
    q = cfg.modes[k]
    s = cfg.datapath // q
    n = cfg.max_reduction
    a = 1 if q == 1 else (1 << q) - 1
    w = (-1 if q == 1 else -(1 << (q - 1))) if negative else (1 if q == 1 else (1 << (q - 1)) - 1)
    value = n * w * (1 if q == 1 else a)
    word_a = pack([a] * s, q)
    word_w = pack([weight_code(w, q)] * s, q)
    cycles = [{"act": word_a, "weight": word_w, "lane_valid": (1 << s) - 1, "en": 1, "clear": int(i == 0),
               "shift": 0, "pixel_mode": 0, "mode": k} for i in range(n // s)]
    return cycles, value


@pytest.mark.parametrize("k", range(len(MODES)))
def test_shared_accumulator_holds_every_mode_extreme(k):
    cfg = mixed_cfg(max_channels=16, max_dense_inputs=256)
    assert cfg.max_reduction % cfg.max_lanes == 0
    dut_cycles = []
    values = []
    for negative in (True, False):
        cycles, value = mode_extreme_cycles(cfg, k, negative)
        dut_cycles += cycles + [mixed_idle()]
        values.append((len(dut_cycles) - 2, value))
        assert -(1 << (cfg.acc_bits - 1)) <= value < 1 << (cfg.acc_bits - 1)
    seen = run_pe(ProcessingElement(cfg), dut_cycles)
    for index, value in values:
        assert seen[index] == value


def test_widest_mode_sets_the_width_and_one_bit_fewer_wraps():
    cfg = mixed_cfg(max_channels=16, max_dense_inputs=256)
    widest = cfg.modes.index(8)
    cycles, value = mode_extreme_cycles(cfg, widest, True)
    assert value < -(1 << (cfg.acc_bits - 2))  # mode 8's extreme needs every bit
    assert run_pe(ProcessingElement(cfg), cycles)[-1] == value
    assert run_pe(ProcessingElement(cfg, acc_bits=cfg.acc_bits - 1), cycles)[-1] != value


@pytest.mark.parametrize("q,modes", [(4, MODES), (3, (3, 5))])
def test_multi_mode_datapath_is_lint_clean_and_deterministic(q, modes):
    """The multi-mode PE, array and post-processing pass Verilator -Wall (as the single-Q ones do,
    tests/hw/test_verilog.py), and the same config gives the same text."""
    from qjoule.gateware.array import MacArray
    from qjoule.gateware.postproc import PostProcess
    from qjoule.hw.verilog import emit_verilog, lint_verilog

    cfg = variant("tiny", q, q_modes=modes, rows=2, cols=3)
    for component in (ProcessingElement, MacArray, PostProcess):
        text = emit_verilog(component(cfg), "dut")
        result = lint_verilog(text, "dut")
        assert result.errors == () and result.warnings == (), (component.__name__, result.warnings[:3])
    assert emit_verilog(MacArray(cfg), "dut") == emit_verilog(MacArray(cfg), "dut")
