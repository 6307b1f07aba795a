"""Export + golden model against the fake-quantized PyTorch model on the whole digits test split.

Every code or prediction that differs must be a measured tie: the float value lies within the
fixed-point error of the folded post-processing (|acc|+1)·2^−(s+1) (plus float rounding) of a
rounding boundary. Layers are compared one at a time, each fed the golden model's codes of the
layer before, so a tie in one layer cannot masquerade as a mismatch in the next.
"""

import numpy as np
import pytest
import torch

from qjoule.sw import golden, intmodel
from qjoule.sw.export import export
from qjoule.sw.train import predict

CASES = [(1, 1), (2, 1), (3, 1), (4, 1), (8, 1), (4, 2)]


@pytest.mark.parametrize("q,blocks", CASES)
def test_every_layer_matches_fake_quant_except_measured_ties(q, blocks, trained_digits, digits, layerwise):
    qnn = trained_digits(q, blocks)
    model = export(qnn)

    def weights_exported_exactly(stage, layer):
        assert np.array_equal(model.arrays[layer["weight"]],
                              (stage["conv"] if "conv" in stage else stage["linear"]).integer_weight().numpy())

    mismatches, total = layerwise(qnn, model, digits.test_x, check_layer=weights_exported_exactly)
    assert mismatches <= total * 1e-3


@pytest.mark.parametrize("q,blocks", CASES)
def test_predictions_equal_fake_quant_on_whole_test_split(q, blocks, trained_digits, digits):
    qnn = trained_digits(q, blocks)
    model = export(qnn)
    golden_preds = golden.run(model, digits.test_x).predictions
    torch_preds = predict(qnn, digits.test_x)
    differ = np.flatnonzero(golden_preds != torch_preds)
    # < 0.1% of samples: with 360 test images that means none.
    assert len(differ) < 1e-3 * len(digits.test_y), f"samples {differ.tolist()} differ"
    assert np.mean(golden_preds == digits.test_y) > 0.5  # a trained network, not noise


def test_export_is_deterministic_and_round_trips(trained_digits, tmp_path):
    qnn = trained_digits(4)
    intmodel.save(export(qnn, source={"dataset": "digits"}), tmp_path / "a.qjm")
    intmodel.save(export(qnn, source={"dataset": "digits"}), tmp_path / "b.qjm")
    assert (tmp_path / "a.qjm").read_bytes() == (tmp_path / "b.qjm").read_bytes()
    m = intmodel.load(tmp_path / "a.qjm")
    assert [l["name"] for l in m.layers] == [s["name"] for s in qnn.specs]
    assert m.layers[0]["q_in"] == 8 and m.layers[-1]["act"] == "none"


def test_fold_matches_batch_norm_by_hand():
    """One channel with known BN statistics: A and B from the contract's formulas."""
    from qjoule.sw.export import affine_params
    from qjoule.sw.layers import QuantConv2d
    conv = QuantConv2d(1, 1, q=4)
    bn = torch.nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(4.0)   # sigma = 2
    a, b = affine_params(conv, bn, s_in=1 / 255, s_w=1 / 8, l_out=15)
    assert a[0] == pytest.approx(2 / 2 / 255 / 8 * 15)
    assert b[0] == pytest.approx((0.5 + 2 * (0 - 3) / 2) * 15)
