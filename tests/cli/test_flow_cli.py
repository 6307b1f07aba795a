"""`qjoule flow` end to end on the digits default (small network), resume and bad input."""

import json
import subprocess
import sys


def _flow(out, *extra):
    # Synthesis has its own tests (tests/hw); here the flow skips it to stay fast.
    return subprocess.run([sys.executable, "-m", "qjoule", "flow", "--width", "8", "--epochs", "2", "--sim-images", "1",
                           "--skip", "synth", *extra, "--out", str(out)], capture_output=True, text=True, timeout=900)


def test_flow_runs_every_step_and_resumes(tmp_path):
    out = tmp_path / "flow"
    first = _flow(out)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((out / "flow.json").read_text())
    statuses = {s["name"]: s["status"] for s in record["steps"]}
    assert statuses == {"train": "ok", "generate": "ok", "simulate": "ok", "calibrate": "ok", "energy": "ok",
                        "synth": "skipped", "report": "ok"}, record
    train = json.loads((out / "train" / "metrics.json").read_text())
    assert train["q"] == 4 and train["int_agreement"] >= 0.99
    result = json.loads((out / "simulate" / "result.json").read_text())
    assert result["match"] is True and (out / "simulate" / "activity.json").exists()
    report = (out / "report" / "report.md").read_text()
    assert "**bit-exact**" in report and "## Energy per inference (calibrated from moons2017" in report
    second = _flow(out)
    assert second.returncode == 0, second.stderr[-2000:]
    statuses = [s["status"] for s in json.loads((out / "flow.json").read_text())["steps"]]
    assert statuses[:5] == ["resumed"] * 5


def test_flow_bad_input_is_one_line(tmp_path):
    for extra, message in ((["--q", "float"], "qjoule: error: --q must be 1..16 for the flow"),
                           (["--q", "17"], "qjoule: error: --q must be 1..16 or 'float', got '17'"),
                           (["--skip", "nope"], "qjoule: error: unknown step 'nope' in --skip"),
                           (["--board", "de10"], "qjoule: error: unknown board 'de10'; known: ulx3s-85f, icebreaker"),
                           (["--sim", "vcs"], "qjoule: error: unknown simulator 'vcs'")):
        result = _flow(tmp_path / "f", *extra)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "f" / "train").exists()
