"""Weight and activation quantizers with straight-through estimators (docs/contract.md).

`q` is an int 1..16, or None for the float baseline. rnd(x) = floor(x + 1/2) everywhere, so ties
round up exactly as the integer export and the golden model do.

- weights, Q ≥ 2: w_int = clip(rnd(w·2^(Q−1)), −2^(Q−1), 2^(Q−1) − 1), real w_int / 2^(Q−1);
  Q = 1: +1 if w ≥ 0 else −1. STE: g_w = g · 1{|w| ≤ 1}.
- activations, Q ≥ 2: a = clip(rnd(x·L), 0, L) / L with L = 2^Q − 1 (all 2^Q codes: a deliberate
  deviation from Moons' Keras code). STE: g · 1{0 ≤ x ≤ 1}.
  Q = 1: +1 if x ≥ 0 else −1 (sign of hardtanh), STE g · 1{|x| ≤ 1}.
- float: weights unchanged, activations ReLU.
"""

from __future__ import annotations

import functools

import torch

from ..errors import UserError


def check_q(q) -> int | None:
    """Validate a Q: an int 1..16 or None (float)."""
    if q is None:
        return None
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16:
        raise UserError(f"q must be 1..16 or 'float', got {q!r}")
    return q


def parse_q(text: str) -> int | None:
    """The CLI spelling of Q: '1'..'16' or 'float'."""
    if str(text).strip().lower() == "float":
        return None
    try:
        q = int(text)
    except ValueError:
        raise UserError(f"--q must be 1..16 or 'float', got {text!r}") from None
    if not 1 <= q <= 16:
        raise UserError(f"--q must be 1..16 or 'float', got {text!r}")
    return q


def rnd(x: torch.Tensor) -> torch.Tensor:
    """Round half up: floor(x + 1/2)."""
    return torch.floor(x + 0.5)


def weight_int(w: torch.Tensor, q: int) -> torch.Tensor:
    """The integer weights (as a float tensor of integers) of latent weights `w` at Q."""
    if q == 1:
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
    n = float(1 << (q - 1))
    return torch.clamp(rnd(w * n), -n, n - 1)


def weight_scale(q: int | None) -> float:
    """s_w: real value of one integer weight step (2^−(Q−1), or 1 at Q = 1)."""
    return 1.0 if q in (None, 1) else 2.0 ** -(q - 1)


def act_scale(q: int | None) -> float:
    """Real value of one activation code step: 1/L(Q) for Q ≥ 2, 1 for ±1 activations at Q = 1."""
    return 1.0 if q in (None, 1) else 1.0 / ((1 << q) - 1)


class ClippedWeightSTE(torch.autograd.Function):
    """Straight-through estimator of every weight quantizer (uniform and power-of-two):
    forward is `fake(w)`, the gradient passes where the latent weight is inside [−1, 1]."""

    @staticmethod
    def forward(ctx, w, fake):
        ctx.save_for_backward(w)
        return fake(w)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype), None


def _fake_uniform(w: torch.Tensor, q: int) -> torch.Tensor:
    return weight_int(w, q) * weight_scale(q)


class _ActSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):
        ctx.save_for_backward(x)
        ctx.q = q
        if q == 1:
            return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        top = float((1 << q) - 1)
        return torch.clamp(rnd(x * top), 0.0, top) / top

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.q == 1:
            return g * (x.abs() <= 1).to(g.dtype), None
        return g * ((x >= 0) & (x <= 1)).to(g.dtype), None


def quantize_weight(w: torch.Tensor, q: int | None) -> torch.Tensor:
    """Fake-quantized weights (real values) with the STE; the latent weights themselves at float."""
    return w if q is None else ClippedWeightSTE.apply(w, functools.partial(_fake_uniform, q=q))


def quantize_act(x: torch.Tensor, q: int | None) -> torch.Tensor:
    """Fake-quantized activation (real values a/L, or ±1) with the STE; ReLU at float."""
    return torch.relu(x) if q is None else _ActSTE.apply(x, q)


def act_codes(a: torch.Tensor, q: int) -> torch.Tensor:
    """The integer codes the hardware stores for fake-quantized activations `a` (exact: a·L is an integer)."""
    if q == 1:
        return (a > 0).to(torch.int64)
    return torch.round(a * ((1 << q) - 1)).to(torch.int64)


class ActQuant(torch.nn.Module):
    """Quantized activation as a module (ReLU at float)."""

    def __init__(self, q: int | None):
        super().__init__()
        self.q = check_q(q)

    def forward(self, x):
        return quantize_act(x, self.q)

    def extra_repr(self) -> str:
        return f"q={self.q}"
