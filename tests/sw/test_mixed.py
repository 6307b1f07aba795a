"""Per-layer mixed precision: parsing, header semantics, golden vs fake-quant, statistics and energy by hand."""

import json

import numpy as np
import pytest

from qjoule.errors import UserError
from qjoule.sw import golden, intmodel
from qjoule.sw.energy_model import mixed_network_energy, network_energy
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.export import export
from qjoule.sw.mixed import export_model, layer_bits, layer_qs, parse_q_list
from qjoule.sw.netstats import describe_topology, network_stats
from qjoule.sw.train import TrainConfig, fit, predict

TINY = describe_topology((1, 8, 8), 2, 1, (1, 1, 1))   # A1, A.pool, B1, B.pool, C1, C.pool, fc


def test_parse_and_check():
    assert parse_q_list("4, 2,2,8") == (4, 2, 2, 8)
    for bad in ("4,x", "4,,2", "0,2", "4,17"):
        with pytest.raises(UserError):
            parse_q_list(bad)
    with pytest.raises(UserError, match="expected 4 entries, got 3"):
        layer_qs(TINY, (4, 2, 2))


def test_layer_qs_header_semantics():
    layers = layer_qs(TINY, (4, 16, 4, 16))
    assert [(l["name"], l["q_in"], l.get("q_w"), l["q_out"]) for l in layers] == [
        ("A1", 8, 4, 4), ("A.pool", 4, None, 4), ("B1", 4, 16, 16), ("B.pool", 16, None, 16),
        ("C1", 16, 4, 4), ("C.pool", 4, None, 4), ("fc", 4, 16, None)]
    assert layer_bits(layers) == [4, 4, 16, 16, 4, 4, 16]


def test_network_stats_per_layer_bits_by_hand():
    stats = network_stats(TINY, [4, 16, 4, 16])
    # weights·Q + biases·Q per layer: A1 (9+1)·4, B1 (9+1)·16, C1 (9+1)·4, fc (2+2)·16
    assert stats.total.model_bits == 40 + 160 + 40 + 64
    assert [s.out_bits for s in stats.layers] == [64 * 4, 16 * 4, 16 * 16, 4 * 16, 4 * 4, 1 * 4, 2 * 16]
    assert [s.in_bits for s in stats.layers] == [64 * 8, 64 * 4, 16 * 4, 16 * 16, 4 * 16, 4 * 4, 1 * 4]
    assert stats.total.max_feature_map_bits == 256
    assert stats.total.first_layer_passes == 2 and stats.total.bits == 16
    # all equal is the uniform count
    assert network_stats(TINY, [4] * 4).total.model_bits == network_stats(TINY, 4).total.model_bits


def test_mixed_energy_is_the_sum_of_per_layer_terms_by_hand():
    profile = load_profile("moons2017")  # E_MAC(Q) = Q/16, E_L = Q/16, E_M = 2Q/16, E_D = 100Q/16, p = 4096/Q
    e = mixed_network_energy(layer_qs(TINY, (4, 16, 4, 16)), 1.0, profile)
    # A1 at Q=4: 64·9 = 576 MACs, 2 passes -> 1152; A_s 64; N_s 10; sqrt(p) = 32
    a1 = 0.25 * (1152 + 3 * 64) + 2 * 0.25 * 1152 / 32 + 0.5 * 10 + 2 * 0.5 * 64
    # B1 at Q=16: 16·9 = 144 MACs; A_s 16; sqrt(p) = 16
    b1 = 1.0 * (144 + 3 * 16) + 2 * 1.0 * 144 / 16 + 2.0 * 10 + 2 * 2.0 * 16
    # C1 at Q=4: 4·9 = 36 MACs; A_s 4
    c1 = 0.25 * (36 + 3 * 4) + 2 * 0.25 * 36 / 32 + 0.5 * 10 + 2 * 0.5 * 4
    # fc at Q=16: 1·2 MACs; A_s 2; N_s 4
    fc = 1.0 * (2 + 3 * 2) + 2 * 1.0 * 2 / 16 + 2.0 * 4 + 2 * 2.0 * 2
    image = 100 * 4 / 16 * 64 * 8 / 4   # E_D(4) · 64 pixels · f = 8/4
    assert e["E_HW"] == pytest.approx(a1 + b1 + c1 + fc, rel=1e-12)
    assert e["E_DRAM"] == pytest.approx(image, rel=1e-12)
    assert e["E_inf"] == pytest.approx(a1 + b1 + c1 + fc + image, rel=1e-12)
    assert [l["q"] for l in e["layers"]] == [4, 4, 16, 16, 4, 4, 16]


def test_mixed_energy_dram_overflow_by_hand():
    profile = load_profile("moons2017")
    bits = 40 / 2 ** 20  # 40 bits of weight memory and 40 of activation memory (20 per half)
    e = mixed_network_energy(layer_qs(TINY, (4, 16, 4, 16)), bits, profile)
    # weights in layer order: A1's 10 words at 4 bits fill the 40 bits; B1 10, C1 10, fc 4 go to DRAM
    assert e["w_s"] == 24
    assert e["dram_weights"] == pytest.approx(100 * 10 + 25 * 10 + 100 * 4)
    # outputs beyond floor(20/Q) words: A1 64-5, A.pool 16-5, B1 16-1, B.pool 4-1, C1 0, C.pool 0, fc 2-1
    assert e["f_s"] == 59 + 11 + 15 + 3 + 1
    assert e["dram_fmap"] == pytest.approx(2 * (25 * (59 + 11) + 100 * (15 + 3) + 100 * 1))


@pytest.mark.parametrize("q", [1, 2, 4, 8])
def test_mixed_energy_equals_uniform_model_when_all_equal(q):
    profile = load_profile("moons2017")
    layers = describe_topology((1, 8, 8), 10, 1, 16)
    for memory in (0.001, 2.0):
        uniform = network_energy(layers, q, memory, profile)
        mixed = mixed_network_energy(layer_qs(layers, (q,) * 4), memory, profile)
        for key in ("E_C", "E_W", "E_A", "E_DRAM", "E_inf", "w_s", "f_s"):
            assert mixed[key] == pytest.approx(uniform[key], rel=1e-12), key


# -- training, export and the golden model -------------------------------------------------------------

@pytest.mark.parametrize("assignment", [(4, 2, 3, 8), (2, 1, 4, 3)])
def test_golden_matches_fake_quant_mixed(assignment, digits, layerwise):
    qnn = fit(TrainConfig(q_per_layer=assignment, width=16, epochs=3), digits, progress=False)
    model = export_model(qnn)
    assert model.q is None
    weight_layers = [l for l in model.layers if "weight" in l]
    assert [l["q_w"] for l in weight_layers] == list(assignment)
    assert [l["q_out"] for l in weight_layers] == list(assignment[:-1]) + [None]
    assert [l["act"] for l in weight_layers] == [("sign" if q == 1 else "relu") for q in assignment[:-1]] + ["none"]
    mismatches, total = layerwise(qnn, model, digits.test_x)
    assert mismatches <= 1e-3 * total
    gold = golden.run(model, digits.test_x).predictions
    assert np.mean(gold == predict(qnn, digits.test_x)) >= 0.995
    assert np.mean(gold == digits.test_y) > 0.3


def test_export_model_equals_uniform_export(trained_digits):
    qnn = trained_digits(2)
    a, b = export_model(qnn), export(qnn)
    assert json.dumps(a.header) == json.dumps(b.header)
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) and a.arrays[k].dtype == b.arrays[k].dtype for k in b.arrays)


def test_train_cli_mixed(tmp_path, capsys):
    from qjoule.cli import main
    out = tmp_path / "run"
    assert main(["train", "--q-per-layer", "4,2,2,8", "--width", "8", "--epochs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["q"] == "mixed" and metrics["q_per_layer"] == [4, 2, 2, 8]
    model = intmodel.load(out / "model.qjm")
    assert model.q is None
    assert [(l["q_in"], l.get("q_w"), l["q_out"]) for l in model.layers] == [
        (8, 4, 4), (4, None, 4), (4, 2, 2), (2, None, 2), (2, 2, 2), (2, None, 2), (2, 8, None)]
    capsys.readouterr()
    assert main(["train", "--q-per-layer", "4,2,2", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 4 entries, got 3" in err[0]
    assert not (tmp_path / "bad").exists()


def test_export_of_pot_and_mixed_checkpoints_uses_per_layer_scales(digits, tmp_path):
    from qjoule.sw.train import load_checkpoint, save_checkpoint
    for config in (TrainConfig(q=3, w_kind="pot", width=4, epochs=1), TrainConfig(q_per_layer=(4, 2, 2, 8), width=4, epochs=1)):
        qnn = fit(config, digits, progress=False)
        save_checkpoint(tmp_path / "m.pt", qnn, config)
        loaded, _ = load_checkpoint(tmp_path / "m.pt")
        a, b = export(loaded), export_model(qnn)
        assert json.dumps(a.header) == json.dumps(b.header)
        assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in b.arrays)


def test_random_models_pot_and_mixed(tmp_path):
    from qjoule.sw.pot import pot_values
    pot = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=1, w_kind="pot")
    for layer in (l for l in pot.layers if "weight" in l):
        w = pot.arrays[layer["weight"]]
        assert layer["w_kind"] == "pot" and set(np.unique(w)) <= set(pot_values(4).tolist())
        assert w.min() == -64 and w.max() == 64
    mixed = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=1, q_per_layer=(3, 1, 8, 2))
    assert mixed.q is None
    assert [(l["q_in"], l["q_out"]) for l in mixed.layers if "weight" in l] == [(8, 3), (3, 1), (1, 8), (8, None)]
    for model in (pot, mixed):
        intmodel.save(model, tmp_path / "m.qjm")
        assert golden.run(intmodel.load(tmp_path / "m.qjm"), np.zeros((2, 1, 8, 8), np.uint8)).logits.shape == (2, 10)
    with pytest.raises(UserError):
        intmodel.random_model((1, 8, 8), 10, 1, 8, 1, seed=0, w_kind="pot")
