"""Fixtures for the accelerator tests: small hand-built integer models and a run helper."""

from __future__ import annotations

import numpy as np
import pytest

from qjoule.program import encode
from qjoule.sw import golden
from qjoule.sw.intmodel import IntModel, fold_postprocess, weight_dtype, weight_range


def _spread(acc: np.ndarray, q_out: int | None, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel affine map spreading the accumulators over the output range (some clipping)."""
    per_channel = np.moveaxis(acc, 1, 0).reshape(acc.shape[1], -1).astype(np.float64)
    lo, hi = np.percentile(per_channel, 15, axis=1), np.percentile(per_channel, 85, axis=1)
    span = np.maximum(hi - lo, 1.0) * np.where(rng.random(len(lo)) < 0.3, -1.0, 1.0)
    out = 256.0 if q_out is None else (2.0 if q_out == 1 else float((1 << q_out) - 1))
    centre = 0.0 if q_out in (None, 1) else out / 2
    a = out / span
    return a, centre - a * (lo + hi) / 2


def build_model(q: int, image_shape, convs, classes: int, seed: int, pool_after=()) -> IntModel:
    """conv3x3 layers with `convs` output channels (pools after the listed conv indices), then dense."""
    rng = np.random.default_rng(seed)
    lo, hi = weight_range(q)
    x = rng.integers(0, 256, size=(32, *image_shape), dtype=np.int64)
    layers, arrays, q_in = [], {}, 8
    shape = list(image_shape)
    plan = []
    for i, c in enumerate(convs):
        plan.append(("conv3x3", f"L{i}", c))
        if i in pool_after:
            plan.append(("maxpool2x2", f"P{i}", None))
    plan.append(("dense", "fc", classes))
    for k, (kind, name, out) in enumerate(plan):
        last = k == len(plan) - 1
        if kind == "maxpool2x2":
            x = golden.maxpool2x2(x)
            new = [shape[0], shape[1] // 2, shape[2] // 2]
            layers.append({"name": name, "kind": kind, "in_shape": shape, "out_shape": new, "q_in": q_in, "q_out": q_in})
            shape = new
            continue
        k_shape = (out, shape[0], 3, 3) if kind == "conv3x3" else (out, int(np.prod(shape)))
        w = rng.choice(np.array([-1, 1]), size=k_shape) if q == 1 else rng.integers(lo, hi + 1, size=k_shape)
        w.reshape(-1)[:2] = [lo, hi]
        acc = golden.conv3x3_acc(x, w, q_in) if kind == "conv3x3" else golden.dense_acc(x.reshape(len(x), -1), w, q_in)
        q_out = None if last else q
        act = "none" if last else ("sign" if q == 1 else "relu")
        mult, bias, s = fold_postprocess(*_spread(acc, q_out, rng), q_out)
        new = [out, shape[1], shape[2]] if kind == "conv3x3" else [out]
        layers.append({"name": name, "kind": kind, "in_shape": shape if kind == "conv3x3" else [int(np.prod(shape))],
                       "out_shape": new, "q_in": q_in, "q_w": q, "q_out": q_out, "act": act,
                       "weight": f"{name}.weight", "pp_mult": f"{name}.pp_mult", "pp_bias": f"{name}.pp_bias",
                       "pp_shift": s})
        arrays[f"{name}.weight"] = w.astype(weight_dtype(q))
        arrays[f"{name}.pp_mult"], arrays[f"{name}.pp_bias"] = mult, bias
        x = golden.postprocess(acc, mult, bias, s, q_out, act)
        shape, q_in = new, q_out
    header = {"format": "qjoule-int-model", "version": 1, "q": q,
              "input": {"channels": image_shape[0], "height": image_shape[1], "width": image_shape[2], "bits": 8},
              "classes": classes, "layers": layers, "arrays": {}, "source": {}}
    return IntModel(header, arrays)


def run_on_accel(model, cfg, images, *, gap_seed=None, debug=True):
    """Program once, run each image; returns (per-image (logits, layer codes), golden result, SimResult list)."""
    from qjoule.gateware.streams import simulate
    from qjoule.gateware.top import QjouleAccel

    prog = encode(model, cfg, debug=debug)
    n = prog.output_word_count()
    words = list(prog.setup_words)
    for img in images:
        words += prog.image_words(img)
    res = simulate(QjouleAccel(cfg), words, n * len(images), gap_seed=gap_seed, runs=len(images))
    decoded = [prog.decode(res.outputs[i * n:(i + 1) * n]) for i in range(len(images))]
    return decoded, golden.run(model, np.asarray(images)), res


@pytest.fixture
def accel_run():
    return run_on_accel


@pytest.fixture
def model_builder():
    return build_model
