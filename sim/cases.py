"""Randomized verification cases: small networks built around one random layer shape.

A case is drawn from a seed: Q, array shape (R, C), a conv layer whose channel counts do and do
not fill the lanes, an optional max-pool, and a dense layer giving the logits; weights are uniform
over the Q range with the extremes forced in (`weight_range` ends) and, with some probability,
a whole output channel at the most negative code. Post-processing is fitted so codes spread over
the output range with clipping at both ends. Everything is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qjoule.config import AccelConfig, variant
from qjoule.sw import golden
from qjoule.sw.intmodel import IntModel, fold_postprocess, random_weights, weight_dtype, weight_range


@dataclasses.dataclass(frozen=True)
class Case:
    seed: int
    cfg: AccelConfig
    model: IntModel
    images: np.ndarray

    def describe(self) -> str:
        conv = self.model.layers[0]
        return (f"seed {self.seed}: Q={self.cfg.q} R={self.cfg.rows} C={self.cfg.cols} S={self.cfg.lanes} "
                f"conv {conv['in_shape']}->{conv['out_shape']}, {len(self.model.layers)} layers")


def _fit_postprocess(acc: np.ndarray, q_out: int | None, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel affine map spreading accumulators over the output range, some channels negative."""
    per_channel = np.moveaxis(acc, 1, 0).reshape(acc.shape[1], -1).astype(np.float64)
    lo, hi = np.percentile(per_channel, 10, axis=1), np.percentile(per_channel, 90, axis=1)
    span = np.maximum(hi - lo, 1.0) * np.where(rng.random(len(lo)) < 0.25, -1.0, 1.0)
    out = 256.0 if q_out is None else (2.0 if q_out == 1 else float((1 << q_out) - 1))
    centre = 0.0 if q_out in (None, 1) else out / 2
    a = out / span
    return fold_postprocess(a, centre - a * (lo + hi) / 2, q_out)


def build_model(q: int, image_shape: tuple[int, int, int], plan: list[tuple[str, int | None]], seed: int,
                extreme_channel: bool = False, w_kind: str = "uniform") -> IntModel:
    """A valid integer model from a plan of ("conv3x3", out_channels) / ("maxpool2x2", None) /
    ("dense", classes) steps (the last, and only the last, is dense). `w_kind="pot"`: power-of-two
    weights (0 and ±2^j, j ≤ K, drawn uniformly over those values), q 2..6."""
    rng = np.random.default_rng(seed)
    lo, hi = weight_range(q, w_kind)
    x = rng.integers(0, 256, size=(24, *image_shape), dtype=np.int64)
    layers, arrays, q_in, shape = [], {}, 8, list(image_shape)
    convs = 0
    for k, (kind, out) in enumerate(plan):
        # conv i -> L{i}, the max-pool after it -> P{i}, the dense layer -> fc
        name = {"conv3x3": f"L{convs}", "maxpool2x2": f"P{convs - 1}", "dense": "fc"}[kind]
        convs += kind == "conv3x3"
        last = k == len(plan) - 1
        if kind == "maxpool2x2":
            x = golden.maxpool2x2(x)
            new = [shape[0], shape[1] // 2, shape[2] // 2]
            layers.append({"name": name, "kind": kind, "in_shape": shape, "out_shape": new, "q_in": q_in, "q_out": q_in})
            shape = new
            continue
        fan_in = shape[0] if kind == "conv3x3" else int(np.prod(shape))
        w_shape = (out, shape[0], 3, 3) if kind == "conv3x3" else (out, fan_in)
        w = random_weights(rng, q, w_kind, w_shape)
        w.reshape(-1)[:2] = [lo, hi]
        if extreme_channel and kind == "conv3x3":
            w[0] = lo  # one output channel at the most negative code everywhere
        acc = golden.conv3x3_acc(x, w, q_in) if kind == "conv3x3" else golden.dense_acc(x.reshape(len(x), -1), w, q_in)
        q_out = None if last else q
        act = "none" if last else ("sign" if q == 1 else "relu")
        mult, bias, s = _fit_postprocess(acc, q_out, rng)
        new = [out, shape[1], shape[2]] if kind == "conv3x3" else [out]
        layers.append({"name": name, "kind": kind, "in_shape": shape if kind == "conv3x3" else [fan_in],
                       "out_shape": new, "q_in": q_in, "q_w": q, "q_out": q_out, "act": act,
                       **({"w_kind": "pot"} if w_kind == "pot" else {}),
                       "weight": f"{name}.weight", "pp_mult": f"{name}.pp_mult", "pp_bias": f"{name}.pp_bias",
                       "pp_shift": s})
        arrays[f"{name}.weight"] = w.astype(weight_dtype(q, w_kind))
        arrays[f"{name}.pp_mult"], arrays[f"{name}.pp_bias"] = mult, bias
        x = golden.postprocess(acc, mult, bias, s, q_out, act)
        shape, q_in = new, q_out
    header = {"format": "qjoule-int-model", "version": 1, "q": q,
              "input": {"channels": image_shape[0], "height": image_shape[1], "width": image_shape[2], "bits": 8},
              "classes": plan[-1][1], "layers": layers, "arrays": {}, "source": {"random_case_seed": seed}}
    return IntModel(header, arrays)


#: The bit-widths random power-of-two cases draw from (the PoT code space: 2..6).
POT_QS = (2, 3, 4, 5, 6)


def random_case(seed: int, qs: tuple[int, ...] = (1, 2, 3, 4, 5, 8, 16), images: int = 2,
                weights: str = "uniform") -> Case:
    """`weights="pot"`: power-of-two weights on shift-and-accumulate lanes (pass qs from POT_QS);
    the same draws otherwise, so a seed gives the same shapes for either kind."""
    rng = np.random.default_rng([seed, 0x71])
    q = int(rng.choice(qs))
    cfg = variant("tiny", q=q, rows=int(rng.integers(1, 4)), cols=int(rng.integers(1, 4)), weights=weights)
    case = _draw_case(rng, seed, cfg, images, weights)
    dense_inputs = int(np.prod(case.model.layers[-1]["in_shape"]))
    if dense_inputs > cfg.max_dense_inputs:  # a wide map at low Q: grow the limit (the acc width follows)
        case = dataclasses.replace(case, cfg=cfg.replace(max_dense_inputs=1 << (dense_inputs - 1).bit_length()))
    return case


def case_for_config(seed: int, cfg: AccelConfig, images: int = 2) -> Case:
    """A randomized layer case (as `random_case` draws them) for a given accelerator: the
    randomized campaign picks Q and the array shape itself and batches many cases on one build."""
    return _draw_case(np.random.default_rng([seed, 0x72]), seed, cfg, images, cfg.weights)


def _draw_case(rng, seed: int, cfg: AccelConfig, images: int, weights: str) -> Case:
    q, s = cfg.q, cfg.lanes
    channels_in = int(rng.integers(1, 4))
    # Output channels that fill the lanes exactly, and ones that leave lanes empty.
    channels_out = int(rng.choice([s, 2 * s, max(1, s - 1), s + 1, int(rng.integers(1, 2 * s + 2))]))
    channels_out = max(1, min(channels_out, 24))
    h, w = int(rng.integers(2, 8)), int(rng.integers(2, 8))
    plan: list[tuple[str, int | None]] = [("conv3x3", channels_out)]
    if rng.random() < 0.5 and h >= 2 and w >= 2:
        plan.append(("maxpool2x2", None))
    if rng.random() < 0.4:
        plan.append(("conv3x3", int(rng.integers(1, 2 * s + 2))))
    plan.append(("dense", int(rng.integers(2, 11))))
    model = build_model(q, (channels_in, h, w), plan, seed, extreme_channel=bool(rng.random() < 0.3), w_kind=weights)
    pixels = rng.integers(0, 256, size=(images, channels_in, h, w), dtype=np.uint8)
    pixels[0].reshape(-1)[: max(1, pixels[0].size // 4)] = 255  # saturated pixels: first-layer extremes
    return Case(seed, cfg, model, pixels)
