"""Quantized layers: a 3×3 convolution (stride 1, zero padding 1) and a linear layer.

The latent float weights live in `.weight`; the forward pass uses their fake-quantized values
(qjoule.sw.quant). `clip_weights_()` keeps the latent weights in [−1, 1] and is called after every
optimizer step. With `q=None` they are plain float layers (the baseline), never clipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .quant import check_q, quantize_weight, weight_int


class _QuantWeights:
    q: int | None
    weight: torch.nn.Parameter

    def quantized_weight(self) -> torch.Tensor:
        return quantize_weight(self.weight, self.q)

    def integer_weight(self) -> torch.Tensor:
        """The integer weights the hardware stores (int64), for export."""
        if self.q is None:
            raise ValueError("a float layer has no integer weights")
        return weight_int(self.weight.detach(), self.q).to(torch.int64)

    @torch.no_grad()
    def clip_weights_(self) -> None:
        if self.q is not None:
            self.weight.clamp_(-1.0, 1.0)

    def _init_weights(self, fan_in: int) -> None:
        # Uniform over ±sqrt(3/fan_in) (unit output variance). The batch norm that follows
        # rescales anyway; at low Q this keeps a useful share of weights away from 0.
        bound = math.sqrt(3.0 / fan_in)
        if self.q is not None and self.q >= 2:
            bound = min(1.0, max(bound, 2.0 ** -(self.q - 1)))
        torch.nn.init.uniform_(self.weight, -bound, bound)


class QuantConv2d(torch.nn.Conv2d, _QuantWeights):
    """3×3 convolution, stride 1, zero padding 1, weights fake-quantized at `q`."""

    def __init__(self, in_channels: int, out_channels: int, q: int | None, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
        self.q = check_q(q)
        self._init_weights(in_channels * 9)

    def forward(self, x):
        return F.conv2d(x, self.quantized_weight(), self.bias, stride=1, padding=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", q={self.q}"


class QuantLinear(torch.nn.Linear, _QuantWeights):
    """Linear layer, weights fake-quantized at `q`."""

    def __init__(self, in_features: int, out_features: int, q: int | None, bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.q = check_q(q)
        self._init_weights(in_features)

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", q={self.q}"
