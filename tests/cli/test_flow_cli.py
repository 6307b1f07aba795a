"""`qjoule flow` end to end on the digits default (small network), resume and bad input."""

import json
import subprocess
import sys


def _flow(out, *extra):
    return subprocess.run([sys.executable, "-m", "qjoule", "flow", "--width", "8", "--epochs", "2", *extra,
                           "--out", str(out)], capture_output=True, text=True, timeout=600)


def test_flow_runs_every_step_and_resumes(tmp_path):
    out = tmp_path / "flow"
    first = _flow(out)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((out / "flow.json").read_text())
    assert all(s["status"] == "ok" for s in record["steps"]), record
    train = json.loads((out / "train" / "metrics.json").read_text())
    assert train["q"] == 4 and train["int_agreement"] >= 0.99
    assert "## Energy per inference" in (out / "report" / "report.md").read_text()
    second = _flow(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [s["status"] for s in json.loads((out / "flow.json").read_text())["steps"]][:2] == ["resumed", "resumed"]


def test_flow_bad_input_is_one_line(tmp_path):
    for extra, message in ((["--q", "float"], "qjoule: error: --q must be 1..16 for the flow"),
                           (["--q", "17"], "qjoule: error: --q must be 1..16 or 'float', got '17'"),
                           (["--skip", "nope"], "qjoule: error: unknown step 'nope' in --skip")):
        result = _flow(tmp_path / "f", *extra)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "f" / "train").exists()
