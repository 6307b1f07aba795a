"""Per-layer mixed precision: one Q per conv/dense layer (docs/contract.md "Per-layer mixed precision").

Entry i of a per-layer list is the Q of the i-th conv/dense layer in network order: its weights
(q_w) and its output activations (q_out; the last layer outputs logits, so only q_w). A layer's
input Q is the previous layer's output Q (8-bit pixels for the first layer); a max-pool keeps the
Q of the codes it pools.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import UserError

#: The Qs a search picks from by default.
DEFAULT_CHOICES = (1, 2, 3, 4, 5, 6, 8)


def weight_layer_names(layers: Sequence[dict]) -> list[str]:
    """Names of the conv/dense layers of a layer list (described or from a .qjm header), in order."""
    return [layer["name"] for layer in layers if layer["kind"] != "maxpool2x2"]


def check_q_per_layer(qs, expected: int | None = None, flag: str = "q_per_layer") -> tuple[int, ...]:
    """Validate a per-layer Q list: integers 1..16, and `expected` of them when given."""
    try:
        qs = tuple(qs)
    except TypeError:
        raise UserError(f"{flag} must be a list of integers 1..16, got {qs!r}") from None
    for q in qs:
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16:
            raise UserError(f"{flag} entries must be integers 1..16, got {q!r}")
    if expected is not None and len(qs) != expected:
        raise UserError(f"{flag} needs one Q per conv/dense layer: expected {expected} entries, got {len(qs)}")
    if not qs:
        raise UserError(f"{flag} is empty")
    return qs


def parse_q_list(text: str, flag: str = "--q-per-layer") -> tuple[int, ...]:
    """'4,2,2,8' -> (4, 2, 2, 8); anything else is a one-line UserError."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        qs = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"{flag} must be comma-separated integers 1..16, got {text!r}") from None
    return check_q_per_layer(qs, None, flag)


def layer_qs(layers: Sequence[dict], q_per_layer: Sequence[int]) -> list[dict]:
    """Copies of `layers` with q_in/q_w/q_out filled from a per-layer list (header semantics)."""
    names = weight_layer_names(layers)
    qs = check_q_per_layer(q_per_layer, len(names))
    out, q_in, it = [], 8, iter(qs)
    for index, layer in enumerate(layers):
        layer = dict(layer)
        layer["q_in"] = q_in
        if layer["kind"] == "maxpool2x2":
            layer["q_out"] = q_in
        else:
            q = next(it)
            last = index == len(layers) - 1
            layer["q_w"] = q
            layer["q_out"] = None if last else q
            q_in = q if not last else q_in
        out.append(layer)
    return out


def layer_bits(layers: Sequence[dict]) -> list[int]:
    """The Q each layer's energy is priced at: q_w for conv/dense, the pooled codes' Q for max-pool."""
    bits = []
    for layer in layers:
        q = layer.get("q_w") if layer["kind"] != "maxpool2x2" else layer.get("q_in")
        if isinstance(q, bool) or not isinstance(q, int):
            raise UserError(f"layer {layer.get('name')!r} has no integer {'q_w' if layer['kind'] != 'maxpool2x2' else 'q_in'}")
        bits.append(q)
    return bits


# -- export ------------------------------------------------------------------------------------------

def export_model(qnn, source: dict | None = None):
    """Fold a trained QNN at any per-layer Q and weight kind into an IntModel.

    The same fold as qjoule.sw.export.export (which it matches byte for byte on uniform networks),
    with each layer's own scales: s_in from the previous layer's Q (1/255 for pixels), s_w from the
    layer's q_w and weight kind (2^−(Q−1), 1 at Q = 1, 2^−K for power-of-two weights) and L_out
    from its q_out. The header's "q" is the common Q, or null when the layers differ; power-of-two
    layers carry "w_kind": "pot".
    """
    import numpy as np

    from . import intmodel
    from .export import LOGIT_SCALE, PIXEL_SCALE, affine_params
    from .quant import act_scale

    if qnn.is_float:
        raise UserError("a float (q='float') network cannot be exported: the integer model needs Q 1..16")
    header: dict = {
        "format": intmodel.FORMAT, "version": intmodel.VERSION,
        "q": qnn.q if len(set(qnn.q_layers)) == 1 else None,
        "input": {"channels": qnn.input_shape[0], "height": qnn.input_shape[1], "width": qnn.input_shape[2], "bits": 8},
        "classes": qnn.classes, "layers": [], "arrays": {}, "source": source or {},
    }
    arrays: dict = {}
    q_in = 8
    for index, (spec, stage) in enumerate(zip(qnn.specs, qnn.stages)):
        name = spec["name"]
        layer = {"name": name, "kind": spec["kind"], "in_shape": list(spec["in_shape"]),
                 "out_shape": list(spec["out_shape"]), "q_in": q_in}
        if spec["kind"] == "maxpool2x2":
            layer["q_out"] = q_in
        else:
            linear = stage["conv"] if spec["kind"] == "conv3x3" else stage["linear"]
            q_w = linear.q
            last = index == len(qnn.specs) - 1
            q_out = None if last else q_w
            s_in = PIXEL_SCALE if q_in == 8 and index == 0 else act_scale(q_in)
            l_out = LOGIT_SCALE if last else (1.0 if q_out == 1 else float((1 << q_out) - 1))
            a, b = affine_params(linear, stage["bn"], s_in, linear.weight_step(), l_out)
            mult, bias, shift = intmodel.fold_postprocess(a, b, q_out)
            act = "none" if last else ("sign" if q_out == 1 else "relu")
            layer.update({"q_w": q_w, "q_out": q_out, "act": act})
            if linear.w_kind != "uniform":
                layer["w_kind"] = linear.w_kind
            layer.update({"weight": f"{name}.weight", "pp_mult": f"{name}.pp_mult", "pp_bias": f"{name}.pp_bias",
                          "pp_shift": shift})
            arrays[f"{name}.weight"] = linear.integer_weight().cpu().numpy().astype(intmodel.weight_dtype(q_w, linear.w_kind))
            arrays[f"{name}.pp_mult"] = mult
            arrays[f"{name}.pp_bias"] = bias
            q_in = q_out if q_out is not None else q_in
        header["layers"].append(layer)
    header["arrays"] = {n: {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": ""} for n, v in sorted(arrays.items())}
    model = intmodel.IntModel(header, arrays)
    intmodel.validate(model, "exported model")
    return model
