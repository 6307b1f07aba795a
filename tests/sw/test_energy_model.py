"""The energy model against energies computed by hand, term by term."""

import numpy as np
import pytest

from qjoule.errors import UserError
from qjoule.sw.energy_model import MB_BITS, evaluate, net_arrays, network_energy
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.netstats import describe_topology

# A1: conv 1->2 on 4x4 (288 MACs, 18 w + 2 b, 32 outputs); fc: 32->3 (96 MACs, 96 w + 3 b, 3 outputs).
# N_c = 384 (first layer 288), N_s = 119, A_s = 35, image 16 pixels.
TWO_LAYERS = [
    {"name": "A1", "kind": "conv3x3", "in_shape": [1, 4, 4], "out_shape": [2, 4, 4]},
    {"name": "fc", "kind": "dense", "in_shape": [32], "out_shape": [3]},
]
# Round numbers so every term is exact in binary: at Q=2, E_MAC = 2*(2/16) = 1/4,
# word factor (2/16)^2 = 1/64: E_L = 1.5*2/64 = 3/64, E_M = 3*2/64 = 6/64, E_D = 50*2/64 = 100/64,
# p = 32*16/2 = 256, sqrt(p) = 16.
ROUND = {"e_mac16": 2.0, "alpha": 1.0, "p16": 32.0, "p_exponent": 1.0,
         "local_rel": 1.5, "main_rel": 3.0, "dram_rel": 50.0, "mem_alpha": 2.0}


@pytest.fixture
def profile():
    return load_profile("moons2017").with_overrides(ROUND)


def mb(bits):
    return bits / MB_BITS


def test_each_term_by_hand_q2(profile):
    r = network_energy(TWO_LAYERS, 2, 2.0, profile)
    macs_hw = 288 * 4 + 96                     # ceil(8/2) = 4 passes of the first layer: 1248
    assert r["E_C"] == 0.25 * (macs_hw + 3 * 35)                          # 338.25
    local = (3 / 64) * macs_hw / 16                                        # 3.65625
    assert r["E_W"] == (6 / 64) * 119 + local                             # 14.8125
    assert r["E_A"] == 2 * (6 / 64) * 35 + local                          # 10.21875
    assert r["E_HW"] == r["E_C"] + r["E_W"] + r["E_A"]
    # Everything fits in 2 Mb: DRAM carries only the image, 16 pixels * f = 8/2 words.
    assert r["w_s"] == 0 and r["f_s"] == 0
    assert r["E_DRAM"] == (100 / 64) * 16 * 4 == 100.0
    assert r["E_inf"] == 338.25 + 14.8125 + 10.21875 + 100.0
    assert r["compute"] == r["E_C"] and r["local"] == 2 * local
    assert r["main"] == (6 / 64) * (119 + 2 * 35)
    by_layer = {l["name"]: l for l in r["layers"]}
    assert by_layer["A1"]["compute"] == 0.25 * (288 * 4 + 3 * 32)
    assert by_layer["fc"]["main"] == (6 / 64) * (99 + 2 * 3)
    assert sum(l["compute"] for l in r["layers"]) == r["compute"]


def test_dram_terms_exact_when_memory_is_small(profile):
    # M = 40 bits: weights get floor(40/2) = 20 words -> w_s = 119 - 20 = 99;
    # a half of the activation memory holds floor(20/2) = 10 words: A1 overflows 32 - 10 = 22, fc fits.
    r = network_energy(TWO_LAYERS, 2, mb(40), profile)
    assert r["w_s"] == 99 and r["f_s"] == 22
    assert r["E_DRAM"] == (100 / 64) * (64 + 2 * 22 + 99)
    assert r["dram_weights"] == (100 / 64) * 99 and r["dram_fmap"] == (100 / 64) * 44
    assert {l["name"]: l["dram_fmap"] for l in r["layers"]} == {"A1": (100 / 64) * 44, "fc": 0.0}


def test_dram_boundary_one_bit(profile):
    # 119 weights at 2 bits = 238 bits fit exactly; one bit less leaves one word off chip.
    assert network_energy(TWO_LAYERS, 2, mb(238), profile)["w_s"] == 0
    assert network_energy(TWO_LAYERS, 2, mb(237), profile)["w_s"] == 1
    # Feature maps: A1's 32 outputs need a 64-bit half, i.e. M = 128 bits.
    assert network_energy(TWO_LAYERS, 2, mb(128), profile)["f_s"] == 0
    assert network_energy(TWO_LAYERS, 2, mb(126), profile)["f_s"] == 1


def test_moons2017_defaults_q4():
    # moons2017: E_MAC(4) = 1/4, E_L = E_MAC, E_M = 2 E_MAC, E_D = 100 E_MAC, p = 256*4, sqrt = 32.
    r = network_energy(TWO_LAYERS, 4, 2.0, load_profile("moons2017"))
    macs_hw = 288 * 2 + 96
    assert r["E_C"] == 0.25 * (macs_hw + 105)
    assert r["E_W"] == 0.5 * 119 + 0.25 * macs_hw / 32
    assert r["E_A"] == 2 * 0.5 * 35 + 0.25 * macs_hw / 32
    assert r["E_DRAM"] == 25 * 16 * 2


def test_post_ops_replaces_the_paper_3(profile):
    r = network_energy(TWO_LAYERS, 2, 2.0, profile.with_overrides({"post_ops": 10.0}))
    assert r["E_C"] == 0.25 * (1248 + 10 * 35)


def test_power_of_two_layers_weigh_their_macs_by_pot_mac_rel(profile):
    """Only the MACs of a PoT layer change (post-processing, memories and DRAM are the same words)."""
    from qjoule.sw.energy_model import mixed_network_energy

    pot_fc = [TWO_LAYERS[0], {**TWO_LAYERS[1], "w_kind": "pot"}]
    cheap = profile.with_overrides({"pot_mac_rel": 0.5})
    r, uniform = network_energy(pot_fc, 2, 2.0, cheap), network_energy(TWO_LAYERS, 2, 2.0, cheap)
    assert r["E_C"] == 0.25 * (288 * 4 + 0.5 * 96 + 3 * 35)               # 313.25
    assert uniform["E_C"] == 0.25 * (1248 + 3 * 35)
    assert {k: r[k] for k in ("E_W", "E_A", "E_DRAM")} == {k: uniform[k] for k in ("E_W", "E_A", "E_DRAM")}
    # At the default 1 a PoT layer costs what a uniform one does; the per-layer (mixed) model agrees.
    assert network_energy(pot_fc, 2, 2.0, profile)["E_inf"] == network_energy(TWO_LAYERS, 2, 2.0, profile)["E_inf"]
    qs = [{**layer, "q_in": 8 if i == 0 else 2, "q_w": 2, "q_out": 2} for i, layer in enumerate(pot_fc)]
    assert mixed_network_energy(qs, 2.0, cheap)["E_C"] == r["E_C"]
    with pytest.raises(UserError, match="pot_mac_rel"):
        profile.with_overrides({"pot_mac_rel": 0.0})


def test_float_is_32_bits(profile):
    r = network_energy(TWO_LAYERS, None, 2.0, profile)
    # E_MAC(32) = 2*2 = 4, one pass, image in 8/32 words per pixel, E_D(32) = 50*2*4 = 400.
    assert r["E_C"] == 4 * (384 + 105)
    assert r["E_DRAM"] == 400 * 16 * 0.25


def test_measured_reuse_replaces_sqrt_p(profile):
    calibrated = profile.with_overrides({"reuse_w_table.2": 8.0, "p_table.4": 16.0})
    r = network_energy(TWO_LAYERS, 2, 2.0, calibrated)
    e_l, macs_hw = 3 / 64, 1248
    assert r["E_W"] == (6 / 64) * 119 + e_l * macs_hw / 8
    assert r["E_A"] == 2 * (6 / 64) * 35 + e_l * macs_hw / 16      # activations keep sqrt(p(2))
    r4 = network_energy(TWO_LAYERS, 4, 2.0, calibrated)
    e_l4 = 1.5 * 2 / 16
    assert r4["local"] == 2 * e_l4 * (288 * 2 + 96) / 4             # sqrt(16) from the table


def test_measured_idle_lanes_add_to_compute(profile):
    # utilization 1/4: three idle lane-cycles per working MAC, at 0.5 each.
    idle = profile.with_overrides({"idle_table.2": 0.5, "utilization_table.2": 0.25})
    r = network_energy(TWO_LAYERS, 2, 2.0, idle)
    assert r["E_C"] == 0.25 * (1248 + 105) + 0.5 * 1248 * 3
    assert network_energy(TWO_LAYERS, 4, 2.0, idle)["E_C"] == network_energy(TWO_LAYERS, 4, 2.0, profile)["E_C"]
    with pytest.raises(UserError, match=r"utilization_table.2 must be in \(0, 1\], got 1.5"):
        profile.with_overrides({"utilization_table.2": 1.5})
    assert profile.with_overrides({"idle_table.2": 0.0})["idle_table"] == {"2": 0.0}


def test_grid_equals_pointwise(profile):
    layer_lists = [describe_topology((1, 28, 28), 10, b, w) for b in (1, 2) for w in (8, 32)] + [TWO_LAYERS]
    nets = net_arrays(layer_lists)
    qs = np.array([1, 2, 3, 4, 8, 32])
    memory = np.array([mb(100), 0.01, 0.5, 2.0])
    grid = evaluate(nets, qs[None, :, None], memory[None, None, :], profile)
    assert grid["E_inf"].shape == (5, 6, 4)
    for i, layers in enumerate(layer_lists):
        for j, q in enumerate(qs):
            for k, m in enumerate(memory):
                point = network_energy(layers, None if q == 32 else int(q), m, profile)
                for key in ("E_inf", "E_C", "E_W", "E_A", "E_DRAM", "f_s", "w_s"):
                    assert grid[key][i, j, k] == pytest.approx(point[key], rel=1e-12)


def test_bad_memory(profile):
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UserError, match="memory size must be > 0"):
            network_energy(TWO_LAYERS, 4, bad, profile)


def test_separate_activation_memory(profile):
    # Weights fit exactly in 238 bits; the activation memory of 126 bits has 31-word halves: A1 spills 1.
    r = network_energy(TWO_LAYERS, 2, mb(238), profile, act_memory_mb=mb(126))
    assert r["w_s"] == 0 and r["f_s"] == 1
    r = network_energy(TWO_LAYERS, 2, mb(126), profile, act_memory_mb=mb(238))
    assert r["w_s"] == 119 - 63 and r["f_s"] == 0
