"""Power-of-two (logarithmic) weights and log-domain pruning (docs/contract.md "Power-of-two weights").

After Przewlocka-Rus & Kryjak: at bit-width B a weight is one sign bit plus a (B−1)-bit exponent
field, one field value reserved for zero, so w ∈ {0} ∪ {±2^−k : k = 0 .. K}, K = 2^(B−1) − 2.

Rounding happens in the log domain: with l = −log2|w|,
- |w| < 2^−(K+1) (below half the smallest power) -> 0;
- otherwise k = clip(ceil(l − 1/2), 0, K): the nearest power of two in log2, a tie (l exactly
  halfway, |w| = 2^−(k+1/2)) going to the larger magnitude (the smaller k).
The latent weights are clipped to [−1, 1] (so k = 0 is reached only from |w| ≥ 2^−1/2) and the
STE is the uniform one, g_w = g · 1{|w| ≤ 1}.

Integer form: w_int = ±2^(K−k) (0 for the zero code), real value w_int · 2^−K, so every product
with an activation code is a left shift of that code by K − k. The hardware code of a weight is
(sign, e) with e = k + 1 for a non-zero weight and e = 0 for zero (`pot_codes`).

B is limited to 2..6 (K ≤ 30): a larger B gives weight integers beyond 32 bits.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:  # torch is imported where it is used: the integer side (intmodel) runs without it
    import torch

POT_BITS = (2, 6)  # the bit-widths a PoT weight supports


def check_pot_bits(b) -> int:
    """Validate a PoT bit-width: 2..6 (B = 1 has no code space for an exponent)."""
    if isinstance(b, bool) or not isinstance(b, int):
        raise UserError(f"power-of-two weights need an integer bit-width 2..6, got {b!r}")
    if b == 1:
        raise UserError("power-of-two weights need at least 2 bits (sign + exponent), got q=1: Q=1 has no PoT code space")
    if not POT_BITS[0] <= b <= POT_BITS[1]:
        raise UserError(f"power-of-two weights support bit-widths 2..6 (weight integers up to 2^30), got q={b}")
    return b


def max_exponent(b: int) -> int:
    """K = 2^(B−1) − 2, the largest exponent k (the smallest magnitude 2^−K)."""
    return (1 << (b - 1)) - 2


def pot_scale(b: int) -> float:
    """s_w = 2^−K: the real value of integer weight 1."""
    return 2.0 ** -max_exponent(b)


def pot_exponent(w: "torch.Tensor", b: int) -> "torch.Tensor":
    """k of every weight (float tensor of integers), −1 where the weight rounds to zero."""
    import torch
    k_max = max_exponent(b)
    # In float64 whatever the tensor's dtype: a float32 weight converts exactly, so the float32
    # model and its float64 copy (tests) pick the same k even next to a log-domain tie.
    mag = w.detach().abs().double()
    zero = mag < 2.0 ** -(k_max + 1)
    # log2 of 0 is -inf; those positions are zero anyway.
    l = -torch.log2(torch.where(zero, torch.ones_like(mag), mag))
    k = torch.clamp(torch.ceil(l - 0.5), 0.0, float(k_max))
    return torch.where(zero, torch.full_like(k, -1.0), k).to(w.dtype)


def pot_weight_int(w: "torch.Tensor", b: int) -> "torch.Tensor":
    """The integer weights ±2^(K−k) (0 for the zero code) as a float tensor of integers."""
    import torch
    k = pot_exponent(w, b)
    k_max = max_exponent(b)
    mag = torch.where(k < 0, torch.zeros_like(k), torch.exp2(k_max - k))
    return torch.where(w < 0, -mag, mag)


def _fake_pot(w: "torch.Tensor", b: int) -> "torch.Tensor":
    return pot_weight_int(w, b) * pot_scale(b)


def quantize_pot(w: "torch.Tensor", b: int) -> "torch.Tensor":
    """Fake-quantized PoT weights (real values ±2^−k or 0) with the straight-through estimator."""
    from .quant import ClippedWeightSTE

    return ClippedWeightSTE.apply(w, functools.partial(_fake_pot, b=b))


# -- integer side ------------------------------------------------------------------------------

def pot_values(b: int) -> np.ndarray:
    """Every integer weight a B-bit PoT layer may hold, ascending: −2^K .. −1, 0, 1 .. 2^K."""
    k_max = max_exponent(b)
    pos = [1 << j for j in range(k_max + 1)]
    return np.array(sorted([-p for p in pos] + [0] + pos), dtype=np.int64)


def pot_dtype(b: int) -> np.dtype:
    """Storage dtype of B-bit PoT integer weights (they reach 2^K)."""
    k_max = max_exponent(b)
    return np.dtype("int8") if k_max <= 6 else np.dtype("int16") if k_max <= 14 else np.dtype("int32")


def is_pot_array(arr: np.ndarray, b: int) -> bool:
    """True when every value is 0 or ±2^j with 0 ≤ j ≤ K."""
    return bool(np.all(np.isin(np.asarray(arr, dtype=np.int64), pot_values(b))))


def pot_codes(w_int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Hardware codes (sign, e) of integer PoT weights: sign 1 for negative, e = k + 1, e = 0 for zero."""
    w = np.asarray(w_int, dtype=np.int64)
    if not is_pot_array(w, b):
        raise ValueError(f"not {b}-bit power-of-two integer weights")
    k_max = max_exponent(b)
    mag = np.abs(w)
    shift = np.zeros_like(mag)
    nz = mag > 0
    shift[nz] = np.log2(mag[nz]).round().astype(np.int64)   # K − k, exact for powers of two
    e = np.where(nz, k_max - shift + 1, 0)
    return (w < 0).astype(np.int64), e


# -- log-domain pruning ----------------------------------------------------------------------------

def prune_schedule(step: int, total_steps: int, fraction: float, ramp: float = 0.75) -> float:
    """Target sparsity after `step` of `total_steps`: cubic ramp 0 -> fraction over the first `ramp` of training."""
    end = max(1, math.floor(total_steps * ramp))
    t = min(1.0, step / end)
    return fraction * (1.0 - (1.0 - t) ** 3)


def prune_mask(w: "torch.Tensor", sparsity: float) -> "torch.Tensor":
    """Bool mask (True = pruned) of the floor(sparsity·n) weights with the largest |log2 w|.

    In the clipped range |w| ≤ 1, the largest |log2 |w|| is the smallest |w| (the largest exponent
    k), so this ranks by exponent; equal magnitudes go by position (a stable sort), so the mask is
    deterministic. Already pruned weights (0) stay pruned.
    """
    import torch
    flat = w.detach().abs().flatten()
    count = math.floor(sparsity * flat.numel() + 1e-9)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if count > 0:
        order = torch.sort(flat, stable=True).indices
        mask[order[:count]] = True
    return mask.view_as(w)
