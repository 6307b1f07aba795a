"""Power-of-two weights: the quantizer by hand, pruning, export and the golden model vs fake-quant."""

import json
import math

import numpy as np
import pytest
import torch

from qjoule.errors import UserError
from qjoule.sw import golden, intmodel
from qjoule.sw.mixed import export_model
from qjoule.sw.pot import (check_pot_bits, max_exponent, pot_codes, pot_exponent, pot_scale, pot_values,
                           pot_weight_int, prune_mask, prune_schedule, quantize_pot)
from qjoule.sw.train import TrainConfig, fit, predict


# -- quantizer by hand ---------------------------------------------------------------------------

def test_code_space():
    assert [max_exponent(b) for b in (2, 3, 4, 5, 6)] == [0, 2, 6, 14, 30]
    assert pot_values(3).tolist() == [-4, -2, -1, 0, 1, 2, 4]
    assert pot_scale(3) == 0.25
    for b in (1, 7, 0):
        with pytest.raises(UserError):
            check_pot_bits(b)


def test_rounding_in_log_domain_by_hand():
    # B = 3: K = 2, magnitudes 1, 1/2, 1/4; zero below 1/8.
    w = torch.tensor([1.0, 0.75, 0.70, 0.5, 0.36, 0.35, 0.25, 0.126, 0.125, 0.124, 0.0, -0.6, -0.3, -0.1])
    # 0.75 -> log2 distance to 1 is 0.415, to 1/2 is 0.585: 1.  0.70: -log2 = 0.515 > 0.5: 1/2.
    # 0.36: 1.474 -> 1/2; 0.35: 1.515 -> 1/4.  0.126 and 0.125 (= half of 1/4) -> 1/4; 0.124 -> 0.
    expected = [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0, 0, -0.5, -0.25, 0]
    assert quantize_pot(w, 3).tolist() == expected
    assert pot_weight_int(w, 3).tolist() == [e * 4 for e in expected]
    assert pot_exponent(w, 3).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, -1, -1, 1, 2, -1]


def test_tie_goes_to_larger_magnitude():
    b = 4
    for k in range(max_exponent(b)):
        tie = torch.tensor([2.0 ** -(k + 0.5)], dtype=torch.float64)
        assert pot_exponent(tie, b).item() in (k, k + 1)
        # the geometric midpoint, nudged above, always rounds to 2^-k; nudged below, to 2^-(k+1)
        assert pot_exponent(tie * (1 + 1e-9), b).item() == k
        assert pot_exponent(tie * (1 - 1e-9), b).item() == k + 1


def test_ste_passes_gradient_inside_clip_range():
    w = torch.tensor([0.3, -0.9, 1.0, 1.5, -2.0], requires_grad=True)
    quantize_pot(w, 4).sum().backward()
    assert w.grad.tolist() == [1, 1, 1, 0, 0]


def test_pot_codes():
    sign, e = pot_codes(np.array([4, -4, 2, -1, 0]), 3)
    # K = 2: 4 = 2^(K-0): k=0 -> e=1; 2: k=1 -> e=2; 1: k=2 -> e=3; zero -> e=0
    assert sign.tolist() == [0, 1, 0, 1, 0]
    assert e.tolist() == [1, 1, 2, 3, 0]
    with pytest.raises(ValueError):
        pot_codes(np.array([3]), 3)


def test_latent_clipping_and_prune_mask_hold():
    from qjoule.sw.layers import QuantLinear
    layer = QuantLinear(4, 2, 3, w_kind="pot")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.7, -0.2, 0.4, -3.0], [0.1, 0.9, -0.05, 0.6]]))
    layer.prune_mask = prune_mask(layer.weight, 0.25)
    layer.clip_weights_()
    assert layer.weight.flatten().tolist() == pytest.approx([1.0, -0.2, 0.4, -1.0, 0.0, 0.9, 0.0, 0.6])


# -- pruning -------------------------------------------------------------------------------------

def test_prune_mask_ranks_by_log_magnitude():
    w = torch.tensor([0.5, -0.01, 0.2, 0.0, -0.7, 0.03])
    assert prune_mask(w, 0.5).tolist() == [False, True, False, True, False, True]
    assert prune_mask(w, 0.0).sum() == 0
    assert prune_schedule(0, 100, 0.6) == 0.0
    assert prune_schedule(75, 100, 0.6) == pytest.approx(0.6)
    assert prune_schedule(100, 100, 0.6) == pytest.approx(0.6)
    assert 0 < prune_schedule(30, 100, 0.6) < 0.6


def test_pruning_reaches_requested_sparsity(digits):
    fraction = 0.6
    qnn = fit(TrainConfig(q=3, w_kind="pot", width=8, epochs=1, prune=fraction), digits, progress=False)
    model = export_model(qnn)
    for layer in model.layers:
        if "weight" in layer:
            w = model.arrays[layer["weight"]]
            assert np.mean(w == 0) >= math.floor(fraction * w.size) / w.size, layer["name"]


# -- export and golden model -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pot_nets(digits):
    return {b: fit(TrainConfig(q=b, w_kind="pot", width=16, epochs=3), digits, progress=False) for b in (3, 4)}


@pytest.mark.parametrize("b", [3, 4])
def test_export_header_and_integer_weights(b, pot_nets):
    model = export_model(pot_nets[b])
    assert model.q == b
    k_max = max_exponent(b)
    for layer, w_layer in zip([l for l in model.layers if "weight" in l], pot_nets[b].weight_layers()):
        assert layer["w_kind"] == "pot" and layer["q_w"] == b
        w = model.arrays[layer["weight"]]
        assert set(np.unique(w)) <= set(pot_values(b).tolist())
        # the integer weight times 2^-K is exactly the fake-quantized real weight
        assert np.array_equal(w * 2.0 ** -k_max, w_layer.quantized_weight().detach().double().numpy())


@pytest.mark.parametrize("b", [3, 4])
def test_golden_matches_fake_quant_on_whole_test_split(b, pot_nets, digits, layerwise):
    qnn = pot_nets[b]
    model = export_model(qnn)
    mismatches, total = layerwise(qnn, model, digits.test_x)
    assert mismatches <= 1e-3 * total
    gold = golden.run(model, digits.test_x).predictions
    fake = predict(qnn, digits.test_x)
    # predictions may differ only where a logit was a measured tie (checked layer by layer above)
    assert np.mean(gold == fake) >= 0.995
    assert np.mean(gold == digits.test_y) > 0.5


def test_golden_accumulator_is_a_shift_and_add(pot_nets, digits):
    """The first layer's accumulator equals Σ ± (pixel << (K − k)) over the non-zero weights."""
    model = export_model(pot_nets[4])
    layer = model.layers[0]
    w = model.arrays[layer["weight"]]
    sign, e = pot_codes(w, 4)
    k_max = max_exponent(4)
    img = digits.test_x[:3].astype(np.int64)
    padded = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = golden.run(model, digits.test_x[:3]).accs[layer["name"]]
    o, y, x = 5, 3, 4
    total = np.zeros(3, dtype=np.int64)
    for c in range(w.shape[1]):
        for dy in range(3):
            for dx in range(3):
                if e[o, c, dy, dx]:
                    term = padded[:, c, y + dy, x + dx] << (k_max - (e[o, c, dy, dx] - 1))
                    total += -term if sign[o, c, dy, dx] else term
    assert total.tolist() == acc[:, o, y, x].tolist()


def test_save_load_round_trip_and_bad_values(pot_nets, tmp_path):
    model = export_model(pot_nets[3])
    intmodel.save(model, tmp_path / "m.qjm")
    again = intmodel.load(tmp_path / "m.qjm")
    assert json.dumps(again.header) == json.dumps(model.header)
    bad = intmodel.IntModel(json.loads(json.dumps(model.header)), dict(model.arrays))
    name = model.layers[0]["weight"]
    arr = model.arrays[name].copy()
    arr.flat[0] = 3  # not a power of two
    bad.arrays[name] = arr
    with pytest.raises(UserError, match="not 0 or ±2"):
        intmodel.validate(bad)


def test_train_cli_pot(tmp_path, capsys):
    from qjoule.cli import main
    out = tmp_path / "run"
    assert main(["train", "--weights", "pot", "--q", "3", "--prune", "0.3", "--width", "8", "--epochs", "1",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["w_kind"] == "pot" and metrics["prune"] == 0.3 and metrics["weight_sparsity"] >= 0.29
    model = intmodel.load(out / "model.qjm")
    assert {l.get("w_kind") for l in model.layers if "weight" in l} == {"pot"}
    capsys.readouterr()
    assert main(["train", "--weights", "pot", "--q", "1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "q=1" in err[0]
    assert not (tmp_path / "bad").exists()
