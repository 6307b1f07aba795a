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
    assert [row["layer"] for row in result["per_layer"]] == ["A1", "A.pool", "B1", "B.pool", "C1", "C.pool", "fc"]
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
