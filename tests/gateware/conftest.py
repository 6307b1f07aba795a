"""Fixtures for the accelerator tests: small hand-built integer models and a run helper."""

from __future__ import annotations

import numpy as np
import pytest

from qjoule.program import encode
from qjoule.sim import cases
from qjoule.sw import golden
from qjoule.sw.intmodel import IntModel


def build_model(q: int, image_shape, convs, classes: int, seed: int, pool_after=()) -> IntModel:
    """conv3x3 layers with `convs` output channels (pools after the listed conv indices), then dense."""
    plan = []
    for i, channels in enumerate(convs):
        plan.append(("conv3x3", channels))
        if i in pool_after:
            plan.append(("maxpool2x2", None))
    return cases.build_model(q, tuple(image_shape), plan + [("dense", classes)], seed)


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
