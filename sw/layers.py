"""Quantized layers: a 3×3 convolution (stride 1, zero padding 1) and a linear layer.

The latent float weights live in `.weight`; the forward pass uses their fake-quantized values
(qjoule.sw.quant), or their power-of-two values with `w_kind="pot"` (qjoule.sw.pot).
`clip_weights_()` keeps the latent weights in [−1, 1] (and pruned ones at 0) and is called after
every optimizer step. With `q=None` they are plain float layers (the baseline), never clipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .pot import check_pot_bits, max_exponent, pot_scale, pot_weight_int, quantize_pot
from .quant import check_q, quantize_weight, weight_int, weight_scale

W_KINDS = ("uniform", "pot")


def check_w_kind(w_kind: str, q: int | None) -> str:
    """Validate a weight kind for a layer at `q` ("pot" needs q 2..6)."""
    if w_kind not in W_KINDS:
        from ..errors import UserError
        raise UserError(f"weight kind must be one of {', '.join(W_KINDS)}, got {w_kind!r}")
    if w_kind == "pot":
        if q is None:
            from ..errors import UserError
            raise UserError("power-of-two weights need a bit-width 2..6, not float")
        check_pot_bits(q)
    return w_kind


class _QuantWeights:
    q: int | None
    w_kind: str = "uniform"
    prune_mask: torch.Tensor | None = None   # True = pruned (held at 0); set during training only
    weight: torch.nn.Parameter

    def quantized_weight(self) -> torch.Tensor:
        if self.w_kind == "pot":
            return quantize_pot(self.weight, self.q)
        return quantize_weight(self.weight, self.q)

    def integer_weight(self) -> torch.Tensor:
        """The integer weights the hardware stores (int64), for export."""
        if self.q is None:
            raise ValueError("a float layer has no integer weights")
        if self.w_kind == "pot":
            return pot_weight_int(self.weight.detach(), self.q).to(torch.int64)
        return weight_int(self.weight.detach(), self.q).to(torch.int64)

    def weight_step(self) -> float:
        """s_w: the real value of integer weight 1."""
        return pot_scale(self.q) if self.w_kind == "pot" else weight_scale(self.q)

    @torch.no_grad()
    def clip_weights_(self) -> None:
        if self.q is not None:
            self.weight.clamp_(-1.0, 1.0)
        if self.prune_mask is not None:
            self.weight.masked_fill_(self.prune_mask, 0.0)

    def _init_weights(self, fan_in: int) -> None:
        # Uniform over ±sqrt(3/fan_in) (unit output variance). The batch norm that follows
        # rescales anyway; at low Q this keeps a useful share of weights away from 0.
        bound = math.sqrt(3.0 / fan_in)
        if self.q is not None and self.q >= 2 and self.w_kind == "uniform":
            bound = min(1.0, max(bound, 2.0 ** -(self.q - 1)))
        elif self.w_kind == "pot":
            # at least 4× the zero threshold 2^-(K+1): at B = 3 a wide layer's sqrt(3/fan_in)
            # would start (and stay) almost all zero codes
            bound = min(1.0, max(bound, 2.0 ** -(max_exponent(self.q) - 1)))
        torch.nn.init.uniform_(self.weight, -bound, bound)


class QuantConv2d(torch.nn.Conv2d, _QuantWeights):
    """3×3 convolution, stride 1, zero padding 1, weights fake-quantized at `q`."""

    def __init__(self, in_channels: int, out_channels: int, q: int | None, bias: bool = False,
                 w_kind: str = "uniform"):
        super().__init__(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
        self.q = check_q(q)
        self.w_kind = check_w_kind(w_kind, self.q)
        self._init_weights(in_channels * 9)

    def forward(self, x):
        return F.conv2d(x, self.quantized_weight(), self.bias, stride=1, padding=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", q={self.q}" + (f", w_kind={self.w_kind}" if self.w_kind != "uniform" else "")


class QuantLinear(torch.nn.Linear, _QuantWeights):
    """Linear layer, weights fake-quantized at `q`."""

    def __init__(self, in_features: int, out_features: int, q: int | None, bias: bool = False,
                 w_kind: str = "uniform"):
        super().__init__(in_features, out_features, bias=bias)
        self.q = check_q(q)
        self.w_kind = check_w_kind(w_kind, self.q)
        self._init_weights(in_features)

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", q={self.q}" + (f", w_kind={self.w_kind}" if self.w_kind != "uniform" else "")
