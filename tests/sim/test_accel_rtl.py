"""The generated Verilog in Icarus (cocotb) against the golden model, exact equality, every layer.

Trained digits networks at Q = 1, 2, 4, 8; random topology-family networks at Q = 3 and 5;
randomized layers from seeds (a fixed set here, 200 under `slow`); random valid/ready gaps and
backpressure on both streams in every run; and the checker shown to catch a wrong result.
"""

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.sim.cases import random_case
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_cases, run_jobs
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


def _assert_all_match(tb):
    assert not failures(tb), failures(tb)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits networks trained briefly at each Q (the RTL check needs real weights, not accuracy)."""
    from qjoule.sw import data
    from qjoule.sw.train import TrainConfig, train

    ds = data.load("digits")
    models = {}
    for q in (1, 2, 4, 8):
        out = tmp_path_factory.mktemp(f"train-q{q}")
        train(TrainConfig(q=q, width=8, epochs=2, seed=q), out, progress=False, ds=ds)
        models[q] = out / "model.qjm"
    return models, ds.test_x[:2]


@pytest.mark.parametrize("q", [1, 2, 4, 8])
def test_trained_digits_network(trained, tmp_path, q):
    models, images = trained
    tb, outcome, _ = run_jobs([{"model": models[q], "images": images}], variant("tiny", q=q), tmp_path, seed=q)
    assert outcome.passed
    _assert_all_match(tb)


@pytest.mark.parametrize("q, memory_pipeline", [(3, 0), (5, 0), (4, 2), (6, 2)])
def test_random_network(tmp_path, q, memory_pipeline):
    # (memory_pipeline 2: the ulx3s board's registered buffer reads, on the tiny array; Q = 5 and 6
    # pair the two columns' lane products, gateware/lane_pair.py)
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, q, seed=q)
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(q).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    cfg = variant("tiny", q=q, memory_pipeline=memory_pipeline)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=q)
    assert outcome.passed
    _assert_all_match(tb)


def _run_random_layers(seeds, tmp_path):
    cases = [random_case(seed) for seed in seeds]
    ran, found = run_cases(cases, tmp_path)
    assert ran == len(seeds) and not found, found


def test_randomized_layers_fixed_set(tmp_path):
    _run_random_layers(range(12), tmp_path)


@pytest.mark.slow
def test_randomized_layers_campaign(tmp_path):
    _run_random_layers(range(100, 300), tmp_path)


def test_checker_catches_a_wrong_layer(tmp_path):
    """Program the RTL with one model and check it against a mutant: the first difference is named."""
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=7)
    good, bad = tmp_path / "good.qjm", tmp_path / "bad.qjm"
    intmodel.save(model, good)
    layer = model.layer("B1")
    arrays = dict(model.arrays)
    bias = arrays[layer["pp_bias"]].copy()
    bias[0] += 3 << layer["pp_shift"]  # channel 0 of B1 three codes higher (where not clipped)
    arrays[layer["pp_bias"]] = bias
    intmodel.save(intmodel.IntModel(model.header, arrays), bad)
    images = np.random.default_rng(1).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": good, "images": images, "golden_model": bad}], variant("tiny", q=4), tmp_path / "sim")
    assert not outcome.passed
    first = tb["jobs"][0]["images"][0]["first_mismatch"]
    # (tiny fuses B.pool into B1: the dump after B1 is the pooled map, compared with B.pool's)
    assert first["layer"] == "B.pool" and first["index"][0] == 0
    assert first["got"] != first["expected"]
    assert outcome.waves is not None and outcome.waves.exists()
