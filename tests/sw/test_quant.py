"""Quantizers and STEs against hand-computed values (docs/contract.md)."""

import pytest
import torch

from qjoule.errors import UserError
from qjoule.sw import quant
from qjoule.sw.layers import QuantConv2d, QuantLinear


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_weight_q2_half_steps_round_up_and_clip():
    # Q = 2: w·2, rnd = floor(x + 1/2), clip to [-2, 1]
    w = t([-1.0, -0.75, -0.5, -0.25, -0.2, 0.0, 0.25, 0.3, 0.5, 0.75, 1.0])
    assert quant.weight_int(w, 2).tolist() == [-2, -1, -1, 0, 0, 0, 1, 1, 1, 1, 1]
    assert quant.quantize_weight(w, 2).tolist() == [-1, -0.5, -0.5, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_weight_q4_and_q8_ends():
    # Q = 4: w·8, range [-8, 7]; -0.0625·8 = -0.5 -> 0, 0.0625·8 = 0.5 -> 1, 0.8125·8 = 6.5 -> 7 (half up)
    assert quant.weight_int(t([-1.0, -0.9375, -0.0625, 0.0625, 0.8125, 0.9375, 1.0]), 4).tolist() == [-8, -7, 0, 1, 7, 7, 7]
    assert quant.weight_int(t([-1.0, 1.0, 0.5]), 8).tolist() == [-128, 127, 64]


def test_weight_q1_sign_with_zero_positive():
    assert quant.weight_int(t([-0.3, -0.0, 0.0, 1e-9, 2.0]), 1).tolist() == [-1, 1, 1, 1, 1]
    assert quant.quantize_weight(t([-0.3, 0.0]), 1).tolist() == [-1, 1]


def test_activation_q2_q3_half_steps_and_clip():
    # Q = 2: L = 3; x·3 = -0.6, 0.5, 1.49, 1.5, 2.5, 3.6 -> 0(clip), 1, 1, 2, 3, 3(clip)
    x = t([-0.2, 1 / 6, 1.49 / 3, 0.5, 2.5 / 3, 1.2])
    a = quant.quantize_act(x, 2)
    assert quant.act_codes(a, 2).tolist() == [0, 1, 1, 2, 3, 3]
    assert a.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    # Q = 3: L = 7; 0.5/7 is a half step -> code 1
    assert quant.act_codes(quant.quantize_act(t([0.5 / 7, 0.49 / 7, 6.5 / 7, 1.0]), 3), 3).tolist() == [1, 0, 7, 7]


def test_activation_q1_sign_and_float_relu():
    a = quant.quantize_act(t([-2.0, -1e-6, 0.0, 0.4]), 1)
    assert a.tolist() == [-1, -1, 1, 1]
    assert quant.act_codes(a, 1).tolist() == [0, 0, 1, 1]
    assert quant.quantize_act(t([-1.0, 0.5, 3.0]), None).tolist() == [0, 0.5, 3.0]


def test_straight_through_estimators():
    w = t([-1.5, -1.0, 0.3, 1.0, 1.2]).requires_grad_()
    quant.quantize_weight(w, 3).sum().backward()
    assert w.grad.tolist() == [0, 1, 1, 1, 0]
    x = t([-0.5, 0.0, 0.5, 1.0, 1.5]).requires_grad_()
    quant.quantize_act(x, 4).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 0]
    x = t([-1.5, -1.0, 0.0, 1.0, 1.01]).requires_grad_()
    quant.quantize_act(x, 1).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 0]


def test_clip_weights_after_step_only_when_quantized():
    conv, lin, flt = QuantConv2d(1, 2, q=4), QuantLinear(3, 2, q=1), QuantLinear(3, 2, q=None)
    for layer in (conv, lin, flt):
        with torch.no_grad():
            layer.weight.fill_(1.7)
        layer.clip_weights_()
    assert conv.weight.max().item() == 1.0 and lin.weight.max().item() == 1.0
    assert flt.weight.max().item() == pytest.approx(1.7)


def test_quant_layers_use_integer_weights():
    conv = QuantConv2d(2, 3, q=3)
    x = torch.rand(1, 2, 4, 4)
    expected = torch.nn.functional.conv2d(x, conv.integer_weight().float() / 4, padding=1)
    assert torch.equal(conv(x), expected)
    assert conv.integer_weight().min() >= -4 and conv.integer_weight().max() <= 3


@pytest.mark.parametrize("text,expected", [("1", 1), ("16", 16), ("float", None), ("FLOAT", None)])
def test_parse_q(text, expected):
    assert quant.parse_q(text) == expected


@pytest.mark.parametrize("text", ["0", "17", "-1", "four", "4.5"])
def test_parse_q_rejects(text):
    with pytest.raises(UserError, match=repr(text)):
        quant.parse_q(text)
