"""Integer export: a trained QNN -> an IntModel (docs/contract.md "Post-processing").

Bias and batch norm fold into one per-channel fixed-point step. With input scale s_in (1/255
for pixels, 1/L(Q) for codes, 1 for ±1), weight scale s_w, batch norm γ, β, μ, σ = sqrt(var + eps)
and output scale L_out (L(Q) for codes, 1 for sign bits, 2^8 for logits):

    A_c = γ_c / σ_c · s_in · s_w · L_out
    B_c = (β_c + γ_c · (β_lin,c − μ_c) / σ_c) · L_out

and `intmodel.fold_postprocess` turns (A, B) into (pp_mult, pp_bias, pp_shift). All of it in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError
from . import intmodel
from .quant import act_scale, weight_scale

LOGIT_SCALE = 2 ** 8
PIXEL_SCALE = 1.0 / 255.0


def affine_params(linear: torch.nn.Module, bn: torch.nn.Module, s_in: float, s_w: float,
                  l_out: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of one layer in float64: code ≈ A · acc + B."""
    gamma = bn.weight.detach().double().cpu().numpy()
    beta = bn.bias.detach().double().cpu().numpy()
    mean = bn.running_mean.detach().double().cpu().numpy()
    sigma = np.sqrt(bn.running_var.detach().double().cpu().numpy() + bn.eps)
    beta_lin = (linear.bias.detach().double().cpu().numpy() if linear.bias is not None
                else np.zeros_like(gamma))
    a = gamma / sigma * s_in * s_w * l_out
    b = (beta + gamma * (beta_lin - mean) / sigma) * l_out
    return a, b


def layer_scales(qnn) -> list[dict[str, Any]]:
    """Per weight layer: its spec, modules and the scales (s_in, s_w, L_out, q_in, q_out) export uses."""
    q = qnn.q
    out, q_in = [], 8
    for spec, stage in zip(qnn.specs, qnn.stages):
        if spec["kind"] == "maxpool2x2":
            continue
        last = spec["kind"] == "dense"
        linear = stage["conv"] if spec["kind"] == "conv3x3" else stage["linear"]
        s_in = PIXEL_SCALE if not out else act_scale(q)  # the first weight layer reads pixels
        l_out = LOGIT_SCALE if last else (1.0 if q == 1 else float((1 << q) - 1))
        out.append({"spec": spec, "linear": linear, "bn": stage["bn"], "s_in": s_in, "s_w": weight_scale(q),
                    "l_out": l_out, "q_in": q_in, "q_out": None if last else q})
        q_in = q
    return out


def export(qnn, source: dict[str, Any] | None = None) -> intmodel.IntModel:
    """Fold a trained QNN (qjoule.sw.topology.QNN, eval-mode statistics) into an IntModel."""
    if getattr(qnn, "w_kind", "uniform") != "uniform" or getattr(qnn, "q_per_layer", None) is not None:
        from .mixed import export_model  # power-of-two weights or a Q per layer: per-layer scales
        return export_model(qnn, source)
    q = qnn.q
    if q is None:
        raise UserError("a float (q='float') network cannot be exported: the integer model needs Q 1..16")
    scales = {s["spec"]["name"]: s for s in layer_scales(qnn)}
    header: dict[str, Any] = {
        "format": intmodel.FORMAT, "version": intmodel.VERSION, "q": q,
        "input": {"channels": qnn.input_shape[0], "height": qnn.input_shape[1], "width": qnn.input_shape[2], "bits": 8},
        "classes": qnn.classes, "layers": [], "arrays": {},
        "source": source or {},
    }
    arrays: dict[str, np.ndarray] = {}
    q_in = 8
    for spec in qnn.specs:
        name = spec["name"]
        layer = {"name": name, "kind": spec["kind"], "in_shape": list(spec["in_shape"]),
                 "out_shape": list(spec["out_shape"]), "q_in": q_in}
        if spec["kind"] == "maxpool2x2":
            layer["q_out"] = q_in
        else:
            s = scales[name]
            a, b = affine_params(s["linear"], s["bn"], s["s_in"], s["s_w"], s["l_out"])
            mult, bias, shift = intmodel.fold_postprocess(a, b, s["q_out"])
            act = "none" if s["q_out"] is None else ("sign" if q == 1 else "relu")
            layer.update({"q_w": q, "q_out": s["q_out"], "act": act, "weight": f"{name}.weight",
                          "pp_mult": f"{name}.pp_mult", "pp_bias": f"{name}.pp_bias", "pp_shift": shift})
            arrays[f"{name}.weight"] = s["linear"].integer_weight().cpu().numpy().astype(intmodel.weight_dtype(q))
            arrays[f"{name}.pp_mult"] = mult
            arrays[f"{name}.pp_bias"] = bias
            q_in = s["q_out"]
        header["layers"].append(layer)
    header["arrays"] = {n: {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": ""} for n, v in sorted(arrays.items())}
    model = intmodel.IntModel(header, arrays)
    intmodel.validate(model, "exported model")
    return model
