"""The golden model: the integer contract (docs/contract.md) in numpy, integers only.

Every function here is the reference the generated RTL is checked against bit for bit, so each
one is written as directly from the contract as possible: int64 values, and an explicit check
that no intermediate value can overflow int64 (when a post-processing product could, the exact
Python-integer path is taken instead).

One speed measure keeps the arithmetic exact: a dot product whose bound K·max|w|·max|x| is below
2^24 (2^53) runs as a float32 (float64) BLAS matrix product. Every product and every partial sum
is then an integer of magnitude below 2^24 (2^53), which float32 (float64) represents exactly, so
each operation is exact in any summation order (FMA included) and the result equals the int64
product; numpy's int64 matmul has no BLAS and is ~40x slower. Larger bounds take the int64 path.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UserError

PIXEL_BITS = 8
_INT64_SAFE = 1 << 62  # keep one bit of headroom below int64's 2^63
_FLOAT32_EXACT = 1 << 24  # float32 holds every integer of magnitude up to 2^24 exactly
_FLOAT64_EXACT = 1 << 53  # float64: up to 2^53
_IM2COL_VALUES = 1 << 23  # conv batch chunk: at most ~8M im2col values (64 MB) at a time


def code_max(q: int) -> int:
    """L(Q) = 2^Q − 1, the largest unsigned Q-bit code."""
    return (1 << q) - 1


def pixel_chunks(pixels, q: int) -> list[np.ndarray]:
    """Split 8-bit pixels into ceil(8/Q) Q-bit chunks, low chunk first.

    Chunk j is `(p >> (j·Q)) & L(Q)`; the top chunk is narrower when Q does not divide 8.
    `Σ_j chunk_j << (j·Q)` equals the pixel, so the first layer computed pass by pass with
    shifted adds equals the plain dot product (paper §III). At Q ≥ 8 there is one chunk: the pixel.
    """
    if not isinstance(q, (int, np.integer)) or not 1 <= q <= 16:
        raise ValueError(f"q must be 1..16, got {q!r}")
    p = np.asarray(pixels, dtype=np.int64)
    if p.size and (p.min() < 0 or p.max() > 255):
        raise ValueError(f"pixels must be 0..255, got range [{p.min()}, {p.max()}]")
    passes = -(-PIXEL_BITS // q)
    return [(p >> (j * q)) & code_max(q) for j in range(passes)]


def _operand_values(x, q_in: int) -> np.ndarray:
    """The integer value each input code stands for: ±1 for Q = 1 bits, the code itself otherwise."""
    x = np.asarray(x, dtype=np.int64)
    if q_in == 1:
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError("q_in=1 codes must be bits 0/1")
        return 2 * x - 1
    top = 255 if q_in == PIXEL_BITS else code_max(q_in)
    if x.size and (x.min() < 0 or x.max() > top):
        raise ValueError(f"q_in={q_in} codes must be 0..{top}, got range [{x.min()}, {x.max()}]")
    return x


def _magnitude(a: np.ndarray) -> int:
    """max |a| as a Python integer (exact for every int64, including -2^63)."""
    return max(abs(int(a.min())), abs(int(a.max()))) if a.size else 0


def _reduction_bound(values: np.ndarray, weight: np.ndarray, k: int) -> int:
    # |any partial sum of Σ w·x| ≤ K · max|w| · max|x|: if that fits, no partial sum can overflow.
    wmax, xmax = _magnitude(weight), _magnitude(values)
    bound = k * wmax * xmax
    assert bound < _INT64_SAFE, f"reduction of {k} terms of |w|<={wmax}, |x|<={xmax} could overflow int64"
    return bound


def _matmul_dtype(bound: int) -> type:
    """The cheapest dtype whose matrix product is exact for this bound (see the module docstring)."""
    if bound < _FLOAT32_EXACT:
        return np.float32
    return np.float64 if bound < _FLOAT64_EXACT else np.int64


def _exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """a @ b for integer-valued operands, exactly, as int64."""
    dtype = _matmul_dtype(bound)
    return np.matmul(a.astype(dtype, copy=False), b.astype(dtype, copy=False)).astype(np.int64)


def conv3x3_acc(x, weight, q_in: int) -> np.ndarray:
    """3×3 convolution, stride 1, zero padding 1: the integer accumulator of every output.

    x: codes (N, C, H, W); weight: (O, C, 3, 3) integers; q_in: 8 = pixels, 1 = bits meaning ±1,
    otherwise unsigned Q-bit codes. A padded position contributes 0 at every q_in (at Q = 1 it is
    not −1: the hardware masks the lane). Returns (N, O, H, W) int64.
    """
    values = _operand_values(x, q_in)
    w = np.asarray(weight, dtype=np.int64)
    if values.ndim != 4 or w.ndim != 4 or w.shape[1:] != (values.shape[1], 3, 3):
        raise ValueError(f"conv3x3_acc: x {values.shape} and weight {w.shape} do not match (N,C,H,W) / (O,C,3,3)")
    n, c, h, wd = values.shape
    o = w.shape[0]
    bound = _reduction_bound(values, w, 9 * c)
    acc = np.empty((n, o, h, wd), dtype=np.int64)
    step = max(1, _IM2COL_VALUES // (c * 9 * h * wd))
    for start in range(0, n, step):
        part = values[start:start + step]
        m = len(part)
        # Padding with value 0 *after* mapping bits to ±1, so a padded position adds nothing.
        padded = np.zeros((c, m, h + 2, wd + 2), dtype=_matmul_dtype(bound))
        padded[:, :, 1:h + 1, 1:wd + 1] = part.transpose(1, 0, 2, 3)
        # im2col as one matrix: rows (c, dy, dx) match weight.reshape(O, C*9), columns (n, y, x).
        cols = np.empty((c, 3, 3, m, h, wd), dtype=padded.dtype)
        for dy in range(3):
            for dx in range(3):
                cols[:, dy, dx] = padded[:, :, dy:dy + h, dx:dx + wd]
        out = _exact_matmul(w.reshape(o, c * 9), cols.reshape(c * 9, m * h * wd), bound)
        acc[start:start + m] = out.reshape(o, m, h, wd).transpose(1, 0, 2, 3)
    return acc


def dense_acc(x, weight, q_in: int) -> np.ndarray:
    """Dense layer accumulators: x (N, K) codes, weight (O, K) integers -> (N, O) int64."""
    values = _operand_values(x, q_in)
    w = np.asarray(weight, dtype=np.int64)
    if values.ndim != 2 or w.ndim != 2 or w.shape[1] != values.shape[1]:
        raise ValueError(f"dense_acc: x {values.shape} and weight {w.shape} do not match (N,K) / (O,K)")
    bound = _reduction_bound(values, w, values.shape[1])
    return _exact_matmul(values, w.T, bound)


def postprocess(acc, mult, bias, shift: int, q_out: int | None, act: str) -> np.ndarray:
    """Folded bias + batch norm and the activation, per output channel along axis 1.

    t = (acc·m_c + b_c) >> s (arithmetic shift, i.e. floor division by 2^s), then
    act "relu": clip(t, 0, 2^q_out − 1); "sign": 1 if t ≥ 0 else 0; "none": t (a logit).
    """
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    if acc.ndim < 2 or mult.shape != (acc.shape[1],) or bias.shape != (acc.shape[1],):
        raise ValueError(f"postprocess: acc {acc.shape} needs mult and bias of shape ({acc.shape[1] if acc.ndim > 1 else '?'},), "
                         f"got {mult.shape} and {bias.shape}")
    if not 1 <= int(shift) <= 62:
        raise ValueError(f"shift must be 1..62, got {shift!r}")
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    m, b = mult.reshape(shape), bias.reshape(shape)
    # Magnitudes in Python integers: np.abs wraps at -2^63 (it stays negative).
    bound = _magnitude(acc) * _magnitude(mult) + _magnitude(bias)
    if bound < _INT64_SAFE:
        t = acc * m          # in place from here: these arrays are the largest the model makes
        t += b
        t >>= int(shift)
    else:
        # Exact in Python integers (an accumulator of ~50 bits times an 18-bit multiplier).
        t_obj = (acc.astype(object) * m.astype(object) + b.astype(object)) >> int(shift)
        if act == "none":
            flat = t_obj.ravel()
            if flat.size and (max(flat) >= 1 << 63 or min(flat) < -(1 << 63)):
                raise OverflowError("postprocess: a logit does not fit int64")
        else:
            t_obj = np.clip(t_obj, -1, 1 << 17)  # only the sign / the clip range matter below
        t = t_obj.astype(np.int64)
    if act == "relu":
        if q_out is None or not 2 <= q_out <= 16:
            raise ValueError(f"act 'relu' needs q_out 2..16, got {q_out!r}")
        return np.clip(t, 0, code_max(q_out), out=t)
    if act == "sign":
        if q_out != 1:
            raise ValueError(f"act 'sign' needs q_out 1, got {q_out!r}")
        return (t >= 0).astype(np.int64)  # floor shift keeps the sign of acc·m + b
    if act == "none":
        return t
    raise ValueError(f"act must be 'relu', 'sign' or 'none', got {act!r}")


def maxpool2x2(codes) -> np.ndarray:
    """2×2 max-pool, stride 2, floor (an odd last row/column is dropped): (N,C,H,W) -> (N,C,H//2,W//2).

    On codes; at Q = 1 the max of bits is their OR (+1 > −1).
    """
    x = np.asarray(codes, dtype=np.int64)
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2)
    return x.max(axis=(3, 5))


@dataclasses.dataclass
class GoldenResult:
    """Everything the golden model computed for a batch.

    accs: {layer name: int64 accumulators} for conv and dense layers; outputs: {layer name:
    int64 codes} for every layer (the last layer's output is the logits); logits (N, classes);
    predictions (N,): argmax of the logits, the first index on ties (as torch.argmax).
    """

    accs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    logits: np.ndarray
    predictions: np.ndarray


def run(model, images) -> GoldenResult:
    """Run an integer model (qjoule.sw.intmodel.IntModel) on uint8 images (N, C, H, W)."""
    images = np.asarray(images)
    expected = tuple(model.input_shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise UserError(f"the model expects images of shape (N, {', '.join(map(str, expected))}), "
                        f"got {tuple(images.shape)}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer) or (images.size and (images.min() < 0 or images.max() > 255)):
            raise UserError(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
    x = images.astype(np.int64)
    accs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    for layer in model.layers:
        kind, name = layer["kind"], layer["name"]
        if kind == "maxpool2x2":
            x = maxpool2x2(x)
        else:
            weight = model.arrays[layer["weight"]]
            if kind == "conv3x3":
                acc = conv3x3_acc(x, weight, layer["q_in"])
            elif kind == "dense":
                acc = dense_acc(x.reshape(x.shape[0], -1), weight, layer["q_in"])
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
            accs[name] = acc
            x = postprocess(acc, model.arrays[layer["pp_mult"]], model.arrays[layer["pp_bias"]],
                            layer["pp_shift"], layer["q_out"], layer["act"])
        outputs[name] = x
    logits = x.reshape(x.shape[0], -1)
    return GoldenResult(accs=accs, outputs=outputs, logits=logits, predictions=np.argmax(logits, axis=1))
