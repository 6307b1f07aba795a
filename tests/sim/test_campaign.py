"""The randomized campaign (bench/random_campaign.py): its plan, and the full run under `slow`."""

import json

import numpy as np
import pytest

@pytest.fixture(scope="module")
def campaign(load_bench):
    return load_bench("random_campaign")


def test_plan_covers_every_q_and_the_array_shapes(campaign):
    plan = campaign.plan(1000, 50, seed=0)
    kinds = [kind for _, cases in plan for kind, _ in cases]
    assert kinds.count("layer") == 1000 and kinds.count("network") == 50
    assert sorted(cfg.q for cfg, _ in plan) == list(range(1, 17))
    shapes = {(cfg.rows, cfg.cols) for cfg, _ in plan}
    assert (1, 1) in shapes and any(r != c for r, c in shapes) and any(r == c > 1 for r, c in shapes)
    assert all(sum(kind == "network" for kind, _ in cases) >= 3 for _, cases in plan)
    seeds = [s for _, cases in plan for _, s in cases]
    assert len(set(seeds)) == len(seeds)


def test_cases_fill_and_leave_lanes_and_are_reproducible(campaign):
    plan = campaign.plan(1000, 50, seed=0)
    cfg, cases = next((cfg, cases) for cfg, cases in plan if cfg.lanes == 4)
    filled, partial = 0, 0
    for kind, seed in cases[:40]:
        if kind != "layer":
            continue
        job = campaign.make_job(kind, seed, cfg)
        channels = job.model.layers[0]["out_shape"][0]
        filled += channels % cfg.lanes == 0
        partial += channels % cfg.lanes != 0
        again = campaign.make_job(kind, seed, cfg)
        assert job.model.header == again.model.header and np.array_equal(job.images, again.images)
        assert all(np.array_equal(job.model.arrays[k], again.model.arrays[k]) for k in job.model.arrays)
    assert filled and partial


def test_networks_fit_their_configuration(campaign):
    from qjoule.program import encode

    for cfg, cases in campaign.plan(1000, 50, seed=0)[:4]:
        for kind, seed in cases:
            if kind == "network":
                encode(campaign.network_job(seed, cfg).model, cfg, debug=True)  # raises if it does not fit


@pytest.mark.slow
@pytest.mark.rtl
def test_full_campaign_has_no_mismatch(campaign, tmp_path):
    """>= 1,000 random layers and 50 whole networks over Q = 1..16 on Verilator (about an hour on a
    loaded 2-core machine)."""
    out = tmp_path / "campaign.json"
    code = campaign.main(["--layers", "1000", "--networks", "50", "--sim", "verilator", "--workers", "2",
                          "--out", str(out)])
    summary = json.loads(out.read_text())["summary"]
    assert code == 0, summary
    assert summary["layers"] >= 1000 and summary["networks"] >= 50 and summary["mismatching_cases"] == 0
