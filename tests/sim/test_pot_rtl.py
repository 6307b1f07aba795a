"""Power-of-two weights on the generated Verilog (Icarus, cocotb) against the golden model, exact
equality at every layer: trained digits PoT networks at 3 and 4 bits, random topology-family PoT
networks at 6 bits (the code space's top: weights up to ±2^30; 2 and 5 bits under `slow`), and
randomized PoT layers from seeds (two here, 100 under `slow`), all on shift-and-accumulate lanes
(config weights="pot"). Five RTL builds in the default suite. The same checks as tests/sim/test_accel_rtl.py does for uniform intQ.
"""

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.sim.cases import POT_QS, random_case
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_cases, run_jobs
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


def _assert_all_match(tb):
    assert not failures(tb), failures(tb)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits PoT networks trained briefly (the RTL check needs real weights, not accuracy)."""
    import torch

    from qjoule.sw import data
    from qjoule.sw.train import TrainConfig, train

    torch.set_num_threads(1)
    ds = data.load("digits")
    models = {}
    for b in (3, 4):
        out = tmp_path_factory.mktemp(f"train-pot{b}")
        train(TrainConfig(q=b, w_kind="pot", width=8, epochs=2, seed=b), out, progress=False, ds=ds)
        models[b] = out / "model.qjm"
    return models, ds.test_x[:2]


@pytest.mark.parametrize("b", [3, 4])
def test_trained_digits_pot_network(trained, tmp_path, b):
    models, images = trained
    model = intmodel.load(models[b])
    kinds = {layer.get("w_kind") for layer in model.layers if layer["kind"] != "maxpool2x2"}
    assert kinds == {"pot"}
    # the trained weights use the zero code and both signs (the lanes' gating and negation run)
    weights = np.concatenate([model.arrays[layer["weight"]].ravel() for layer in model.layers if "weight" in layer])
    assert (weights == 0).any() and (weights < 0).any() and (weights > 0).any()
    tb, outcome, _ = run_jobs([{"model": models[b], "images": images}], variant("tiny", q=b, weights="pot"),
                              tmp_path, seed=b)
    assert outcome.passed
    _assert_all_match(tb)


@pytest.mark.parametrize("b", [6, pytest.param(2, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_random_pot_network(tmp_path, b):
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, b, seed=b, w_kind="pot")
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(b).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    images[0, 0, :4] = 255  # saturated pixels: every first-layer pass at its largest chunk
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], variant("tiny", q=b, weights="pot"),
                              tmp_path / "sim", seed=b)
    assert outcome.passed
    _assert_all_match(tb)


def _run_random_pot_layers(seeds, tmp_path):
    cases = [random_case(seed, qs=POT_QS, weights="pot") for seed in seeds]
    assert all(case.cfg.weights == "pot" for case in cases)
    ran, found = run_cases(cases, tmp_path)
    assert ran == len(seeds) and not found, found


def test_randomized_pot_layers_fixed_set(tmp_path):
    _run_random_pot_layers([2, 3], tmp_path)  # Q = 3 and Q = 2 (4 is the trained network's)


@pytest.mark.slow
def test_randomized_pot_layers_campaign(tmp_path):
    _run_random_pot_layers(range(1000, 1100), tmp_path)
