"""The integer model and its file format (`.qjm`, docs/contract.md "The integer model file").

An `IntModel` is a header (plain JSON data: layers, Qs, shapes) plus named integer arrays.
`save` writes a zip with fixed timestamps (same model -> same bytes); `load` checks everything
the contract lists and turns any problem into a one-line `UserError`. `random_model` builds a
random but valid model of the topology family, for testing hardware at any Q without training.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .pot import POT_BITS, is_pot_array, max_exponent, pot_dtype

FORMAT = "qjoule-int-model"
VERSION = 1
MULT_MAX = (1 << 17) - 1  # |m_c| fits 18 signed bits
SHIFT_RANGE = (1, 62)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_INT64_MAX = (1 << 63) - 1


class IntModel:
    """An integer network: `header` (dict, the .qjm header.json) and `arrays` (name -> ndarray)."""

    def __init__(self, header: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.header = header
        self.arrays = arrays

    @property
    def layers(self) -> list[dict[str, Any]]:
        return self.header["layers"]

    @property
    def q(self) -> int | None:
        return self.header["q"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        i = self.header["input"]
        return (i["channels"], i["height"], i["width"])

    @property
    def classes(self) -> int:
        return self.header["classes"]

    def layer(self, name: str) -> dict[str, Any]:
        for layer in self.layers:
            if layer["name"] == name:
                return layer
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"IntModel(q={self.q!r}, input={self.input_shape}, classes={self.classes}, layers={len(self.layers)})"


# -- value ranges ------------------------------------------------------------------------------

def weight_range(q_w: int, w_kind: str = "uniform") -> tuple[int, int]:
    """The integer weight range at q_w: ±1 (stored as −1/+1) at Q = 1, else two's complement Q bits;
    power-of-two weights (w_kind "pot") span ±2^K, K = 2^(q_w−1) − 2."""
    if w_kind == "pot":
        return (-(1 << max_exponent(q_w)), 1 << max_exponent(q_w))
    return (-1, 1) if q_w == 1 else (-(1 << (q_w - 1)), (1 << (q_w - 1)) - 1)


def random_weights(rng: np.random.Generator, q_w: int, w_kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Weight integers drawn uniformly over the codes of q_w bits (power-of-two values for "pot")."""
    if w_kind == "pot":
        from .pot import pot_values
        return rng.choice(pot_values(q_w), size=shape)
    if q_w == 1:
        return rng.choice(np.array([-1, 1]), size=shape)
    lo, hi = weight_range(q_w)
    return rng.integers(lo, hi + 1, size=shape)


def weight_dtype(q_w: int, w_kind: str = "uniform") -> np.dtype:
    if w_kind == "pot":
        return pot_dtype(q_w)
    return np.dtype("int8") if q_w <= 8 else np.dtype("int16")


def fold_postprocess(a, b, q_out: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Real per-channel affine map t ≈ A_c·acc + B_c -> integer (pp_mult, pp_bias, pp_shift).

    Exactly the contract: s is the largest shift in [1, 62] with max |rnd(A_c·2^s)| ≤ 2^17 − 1,
    m_c = rnd(A_c·2^s), b_c = rnd(B_c·2^s) + 2^(s−1) (the rounding offset is omitted for
    Q_out = 1, where only the sign matters). rnd(x) = floor(x + 1/2).
    One addition to the contract: s is also lowered until every b_c fits int64 (only matters for
    channels whose A_c is ~0, e.g. γ = 0, where the shift would otherwise run to 62).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise UserError("cannot export: a post-processing scale or offset is not finite (NaN/inf in the trained parameters)")
    amax = float(np.abs(a).max(initial=0.0))
    bmax = float(np.abs(b).max(initial=0.0))
    for s in range(SHIFT_RANGE[1], SHIFT_RANGE[0] - 1, -1):
        if math.floor(amax * 2.0 ** s + 0.5) <= MULT_MAX and bmax * 2.0 ** s + 2.0 ** s < 2.0 ** 62:
            break
    else:
        raise UserError(f"cannot export: post-processing scale {amax:g} needs a multiplier above {MULT_MAX} even at shift 1")
    scale = 2.0 ** s
    mult = np.floor(a * scale + 0.5).astype(np.int64)
    bias = np.floor(b * scale + 0.5).astype(np.int64)
    if q_out != 1:
        bias = bias + (1 << (s - 1))
    return mult.astype(np.int32), bias, s


# -- validation ----------------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape(v, where: str) -> list[int]:
    if not isinstance(v, list) or not v or not all(_is_int(d) and d >= 1 for d in v):
        raise UserError(f"{where} must be a list of positive integers, got {v!r}")
    return v


def validate(model: IntModel, source: str = "model") -> None:
    """Check the header and arrays against the contract; raise a one-line UserError naming the problem."""
    h = model.header
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        raise UserError(f"{source} is not a qjoule integer model (format {h.get('format') if isinstance(h, dict) else None!r}, expected {FORMAT!r})")
    if h.get("version") != VERSION:
        raise UserError(f"{source} has format version {h.get('version')!r}, this qjoule reads version {VERSION}")
    q = h.get("q")
    if q is not None and not (_is_int(q) and 1 <= q <= 16):
        raise UserError(f"{source}: q must be 1..16 or null, got {q!r}")
    inp = h.get("input")
    if not isinstance(inp, dict) or inp.get("bits") != 8 or not all(
            _is_int(inp.get(k)) and inp.get(k) >= 1 for k in ("channels", "height", "width")):
        raise UserError(f"{source}: input must give positive channels/height/width and bits 8, got {inp!r}")
    classes = h.get("classes")
    if not (_is_int(classes) and classes >= 2):
        raise UserError(f"{source}: classes must be an integer >= 2, got {classes!r}")
    layers = h.get("layers")
    if not isinstance(layers, list) or not layers:
        raise UserError(f"{source}: layers must be a non-empty list")
    infos = h.get("arrays")
    if not isinstance(infos, dict):
        raise UserError(f"{source}: header has no 'arrays' table")

    prev_shape = [inp["channels"], inp["height"], inp["width"]]
    prev_q = 8
    names: set[str] = set()
    used_arrays: set[str] = set()
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if not isinstance(layer, dict):
            raise UserError(f"{source}: layer {i} is not an object")
        name = layer.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise UserError(f"{source}: layer {i} has a missing or duplicate name {name!r}")
        names.add(name)
        where = f"{source}: layer {name!r}"
        kind = layer.get("kind")
        in_shape = _shape(layer.get("in_shape"), f"{where} in_shape")
        out_shape = _shape(layer.get("out_shape"), f"{where} out_shape")
        expected_in = [math.prod(prev_shape)] if kind == "dense" else prev_shape
        if in_shape != expected_in:
            raise UserError(f"{where} in_shape {in_shape} does not chain: expected {expected_in}")
        if layer.get("q_in") != prev_q:
            raise UserError(f"{where} q_in {layer.get('q_in')!r} does not chain: expected {prev_q}")
        if kind == "maxpool2x2":
            c, hh, ww = in_shape if len(in_shape) == 3 else (None, 0, 0)
            if i == 0 or hh < 2 or ww < 2 or out_shape != [c, hh // 2, ww // 2]:
                raise UserError(f"{where}: maxpool2x2 from {in_shape} must give [C, H//2, W//2] after a hidden layer, got {out_shape}")
            if layer.get("q_out") != prev_q or last:
                raise UserError(f"{where}: maxpool2x2 must keep q_out = q_in = {prev_q} and cannot be the last layer")
        elif kind in ("conv3x3", "dense"):
            if kind == "conv3x3":
                if len(in_shape) != 3 or len(out_shape) != 3 or out_shape[1:] != in_shape[1:]:
                    raise UserError(f"{where}: conv3x3 maps [C,H,W] to [O,H,W], got {in_shape} -> {out_shape}")
                o, wshape = out_shape[0], (out_shape[0], in_shape[0], 3, 3)
            else:
                if len(out_shape) != 1:
                    raise UserError(f"{where}: dense out_shape must be [O], got {out_shape}")
                o, wshape = out_shape[0], (out_shape[0], in_shape[0])
            q_w, q_out, act = layer.get("q_w"), layer.get("q_out"), layer.get("act")
            if not (_is_int(q_w) and 1 <= q_w <= 16):
                raise UserError(f"{where}: q_w must be 1..16, got {q_w!r}")
            if last:
                if q_out is not None or act != "none" or out_shape != [classes]:
                    raise UserError(f"{where}: the last layer must give {classes} logits (q_out null, act 'none')")
            else:
                if not (_is_int(q_out) and 1 <= q_out <= 16):
                    raise UserError(f"{where}: q_out must be 1..16, got {q_out!r}")
                if act != ("sign" if q_out == 1 else "relu"):
                    raise UserError(f"{where}: act must be {'sign' if q_out == 1 else 'relu'} at q_out={q_out}, got {act!r}")
            if q is not None and (q_w != q or (not last and q_out != q)):
                raise UserError(f"{where}: q_w/q_out {q_w}/{q_out} differ from the model's uniform q={q}")
            shift = layer.get("pp_shift")
            if not (_is_int(shift) and SHIFT_RANGE[0] <= shift <= SHIFT_RANGE[1]):
                raise UserError(f"{where}: pp_shift must be an integer 1..62, got {shift!r}")
            w_kind = layer.get("w_kind", "uniform")
            if w_kind not in ("uniform", "pot"):
                raise UserError(f"{where}: w_kind must be 'uniform' or 'pot', got {w_kind!r}")
            if w_kind == "pot" and not POT_BITS[0] <= q_w <= POT_BITS[1]:
                raise UserError(f"{where}: power-of-two weights need q_w 2..6, got {q_w!r}")
            lo, hi = weight_range(q_w, w_kind)
            for key, dtype, shape, vrange in (
                    ("weight", weight_dtype(q_w, w_kind), wshape, (lo, hi)),
                    ("pp_mult", np.dtype("int32"), (o,), (-MULT_MAX, MULT_MAX)),
                    ("pp_bias", np.dtype("int64"), (o,), None)):
                aname = layer.get(key)
                if not isinstance(aname, str) or aname not in model.arrays:
                    raise UserError(f"{where}: array {key} {aname!r} is missing")
                arr = model.arrays[aname]
                if arr.dtype != dtype or arr.shape != shape:
                    raise UserError(f"{where}: array {aname!r} is {arr.dtype}{list(arr.shape)}, expected {dtype}{list(shape)}")
                if vrange and arr.size and (arr.min() < vrange[0] or arr.max() > vrange[1]):
                    raise UserError(f"{where}: array {aname!r} has values in [{arr.min()}, {arr.max()}], expected [{vrange[0]}, {vrange[1]}]")
                if key == "weight" and w_kind == "pot" and not is_pot_array(arr, q_w):
                    raise UserError(f"{where}: array {aname!r} holds a value that is not 0 or ±2^j (j ≤ {max_exponent(q_w)})")
                if key == "weight" and w_kind == "uniform" and q_w == 1 and np.any(arr == 0):
                    raise UserError(f"{where}: array {aname!r} holds 0, but Q=1 weights are -1 or +1")
                used_arrays.add(aname)
            prev_q = q_out
        else:
            raise UserError(f"{where}: unknown kind {kind!r} (expected conv3x3, maxpool2x2, dense)")
        prev_shape = out_shape
    if layers[-1].get("kind") == "maxpool2x2":
        raise UserError(f"{source}: the last layer must be dense or conv3x3")
    if set(infos) != set(model.arrays) or set(model.arrays) != used_arrays:
        extra = sorted((set(infos) ^ set(model.arrays)) | (set(model.arrays) - used_arrays))
        raise UserError(f"{source}: arrays table and layers disagree (array {extra[0]!r})")


# -- file I/O ------------------------------------------------------------------------------------

def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))), allow_pickle=False)
    return buf.getvalue()


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def save(model: IntModel, path: str | os.PathLike) -> None:
    """Write `model` as a .qjm file (atomically; the same model always gives the same bytes).

    The header's "arrays" table is recomputed (dtype, shape and the sha256 of each stored .npy
    member) and stored back into `model.header`.
    """
    members = {name: _npy_bytes(model.arrays[name]) for name in sorted(model.arrays)}
    header = copy.deepcopy(model.header)
    header["arrays"] = {name: {"dtype": str(model.arrays[name].dtype), "shape": list(model.arrays[name].shape),
                               "sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()}
    validate(IntModel(header, model.arrays), "model to save")
    model.header = header
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w") as zf:
        _zip_write(zf, "header.json", (json.dumps(header, indent=2, sort_keys=False) + "\n").encode())
        for name, data in members.items():
            _zip_write(zf, f"arrays/{name}.npy", data)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> IntModel:
    """Read and fully validate a .qjm file; any problem is a one-line UserError."""
    path = Path(path)
    source = f"model file {str(path)!r}"
    if not path.is_file():
        raise UserError(f"{source} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                header = json.loads(zf.read("header.json"))
            except KeyError:
                raise UserError(f"{source} has no header.json (not a qjoule model)") from None
            if not isinstance(header, dict):
                raise UserError(f"{source}: header.json is not an object")
            if header.get("format") != FORMAT:
                raise UserError(f"{source} is not a qjoule integer model (format {header.get('format')!r}, expected {FORMAT!r})")
            if header.get("version") != VERSION:
                raise UserError(f"{source} has format version {header.get('version')!r}, this qjoule reads version {VERSION}")
            infos = header.get("arrays")
            if not isinstance(infos, dict):
                raise UserError(f"{source}: header has no 'arrays' table")
            arrays = {}
            for name, info in infos.items():
                try:
                    data = zf.read(f"arrays/{name}.npy")
                except KeyError:
                    raise UserError(f"{source}: array {name!r} is missing from the archive") from None
                if not isinstance(info, dict) or hashlib.sha256(data).hexdigest() != info.get("sha256"):
                    raise UserError(f"{source}: array {name!r} is corrupt (sha256 mismatch)")
                arr = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
                if str(arr.dtype) != info.get("dtype") or list(arr.shape) != info.get("shape"):
                    raise UserError(f"{source}: array {name!r} is {arr.dtype}{list(arr.shape)}, header says {info.get('dtype')}{info.get('shape')}")
                arrays[name] = arr
    except UserError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, UnicodeDecodeError) as e:
        # json.JSONDecodeError is a ValueError; a truncated zip is BadZipFile or EOFError.
        reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise UserError(f"{source} is truncated or corrupt ({reason})") from None
    model = IntModel(header, arrays)
    validate(model, source)
    return model


# -- random models for hardware tests --------------------------------------------------------------

def random_model(input_shape, classes: int, blocks: int, widths, q: int, seed: int, w_kind: str = "uniform",
                 q_per_layer=None) -> IntModel:
    """A random but valid integer model of the topology family at uniform `q`.

    `w_kind="pot"` draws power-of-two weights (0 and ±2^j, both ±2^K always present);
    `q_per_layer` (one Q per conv/dense layer) overrides `q` for a mixed-precision model.

    Weights are uniform over the whole Q range and every weight array holds both extremes.
    Post-processing is fitted to the accumulators of a batch of random images so the codes of
    every hidden channel spread over [0, L(Q)] with some clipping at both ends (about a quarter
    of the channels get a negative multiplier), sign layers split around the median, and logits
    span a few hundred. Deterministic in `seed`.
    """
    from . import golden
    from .netstats import describe_topology

    from .mixed import check_q_per_layer

    if q_per_layer is None and not (_is_int(q) and 1 <= q <= 16):
        raise UserError(f"q must be 1..16, got {q!r}")
    if w_kind not in ("uniform", "pot"):
        raise UserError(f"w_kind must be 'uniform' or 'pot', got {w_kind!r}")
    rng = np.random.default_rng(seed)
    shapes = describe_topology(tuple(input_shape), classes, blocks, widths)
    n_weight = sum(shape["kind"] != "maxpool2x2" for shape in shapes)
    qs = list(check_q_per_layer(q_per_layer, n_weight)) if q_per_layer is not None else [q] * n_weight
    if w_kind == "pot" and any(not POT_BITS[0] <= ql <= POT_BITS[1] for ql in qs):
        raise UserError(f"power-of-two weights need q 2..6, got {qs!r}")
    q_iter = iter(qs)
    widths_list = [widths] * 3 if _is_int(widths) else list(widths)
    header: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "q": qs[0] if len(set(qs)) == 1 else None,
        "input": {"channels": input_shape[0], "height": input_shape[1], "width": input_shape[2], "bits": 8},
        "classes": classes, "layers": [], "arrays": {},
        "source": {"dataset": None, "random_seed": seed, "blocks": blocks, "widths": widths_list},
    }
    arrays: dict[str, np.ndarray] = {}
    x = rng.integers(0, 256, size=(64, *input_shape), dtype=np.int64)  # calibration batch
    q_in = 8
    for i, shape in enumerate(shapes):
        name, kind = shape["name"], shape["kind"]
        layer = {"name": name, "kind": kind, "in_shape": list(shape["in_shape"]), "out_shape": list(shape["out_shape"]),
                 "q_in": q_in}
        if kind == "maxpool2x2":
            layer["q_out"] = q_in
            x = golden.maxpool2x2(x)
        else:
            last = i == len(shapes) - 1
            q = next(q_iter)
            lo, hi = weight_range(q, w_kind)
            o = shape["out_shape"][0]
            k_shape = (o, shape["in_shape"][0], 3, 3) if kind == "conv3x3" else (o, shape["in_shape"][0])
            w = random_weights(rng, q, w_kind, k_shape)
            flat = w.reshape(-1)
            flat[0], flat[-1] = lo, hi  # both extremes always present
            q_out = None if last else q
            act = "none" if last else ("sign" if q == 1 else "relu")
            acc = (golden.conv3x3_acc(x, w, q_in) if kind == "conv3x3"
                   else golden.dense_acc(x.reshape(len(x), -1), w, q_in))
            a, b = _spread_affine(acc, q_out, rng)
            mult, bias, s = fold_postprocess(a, b, q_out)
            layer.update({"q_w": q, "q_out": q_out, "act": act})
            if w_kind == "pot":
                layer["w_kind"] = "pot"
            layer.update({"weight": f"{name}.weight", "pp_mult": f"{name}.pp_mult", "pp_bias": f"{name}.pp_bias",
                          "pp_shift": s})
            arrays[f"{name}.weight"] = w.astype(weight_dtype(q, w_kind))
            arrays[f"{name}.pp_mult"] = mult
            arrays[f"{name}.pp_bias"] = bias
            x = golden.postprocess(acc, mult, bias, s, q_out, act)
            q_in = q_out
        header["layers"].append(layer)
    header["arrays"] = {n: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": ""} for n, a in sorted(arrays.items())}
    model = IntModel(header, arrays)
    validate(model, "random model")
    return model


def _spread_affine(acc: np.ndarray, q_out: int | None, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel A, B so that A·acc + B spreads the calibration accumulators over the output range."""
    per_channel = np.moveaxis(acc, 1, 0).reshape(acc.shape[1], -1).astype(np.float64)
    p_lo = np.percentile(per_channel, 10, axis=1)
    p_hi = np.percentile(per_channel, 90, axis=1)
    span = np.maximum(p_hi - p_lo, 1.0)
    sign = np.where(rng.random(len(span)) < 0.25, -1.0, 1.0)
    if q_out is None:
        out_span, centre = 256.0, 0.0            # logits: a few hundred around 0
    elif q_out == 1:
        out_span, centre = 2.0, 0.0              # threshold near the median
    else:
        out_span, centre = float((1 << q_out) - 1), ((1 << q_out) - 1) / 2.0
    a = sign * out_span / span
    b = centre - a * (p_lo + p_hi) / 2.0
    if q_out == 1:
        b = -a * np.median(per_channel, axis=1)
    return a, b
