"""`qjoule sweep` with real training: resume after a killed worker, two workers without overlap."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from qjoule.sweep import Grid, grid_state, open_study

GRID = ["--dataset", "digits", "--blocks", "1", "--width", "4,8", "--q", "2,float", "--epochs", "3"]


def _sweep(out, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "qjoule", "sweep", *GRID, *extra, "--out", str(out)],
                            env={**os.environ, "QJOULE_SWEEP_HEARTBEAT": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _complete_trials(out):
    try:
        with sqlite3.connect(out / "sweep.db") as db:
            return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _check_one_record_per_point(out):
    records = json.loads((out / "results.json").read_text())
    assert sorted((str(r["q"]), r["width"]) for r in records) == [("2", 4), ("2", 8), ("float", 4), ("float", 8)]
    study, grid = open_study(f"sqlite:///{out / 'sweep.db'}", None, create=False)
    trained = [t for t in study.get_trials() if "metrics" in t.user_attrs]
    assert len(trained) == 4, [t.params for t in trained]
    return study, grid


def test_killed_sweep_resumes_without_redoing_runs(tmp_path):
    out = tmp_path / "sweep"
    proc = _sweep(out)
    deadline = time.monotonic() + 120
    while _complete_trials(out) < 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial finished in 120 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _complete_trials(out)
    assert done_before < 4
    rerun = _sweep(out)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert output.count("training") == 4 - done_before, output
    study, grid = _check_one_record_per_point(out)
    assert all(s.complete is not None for s in grid_state(study, grid).values())


def test_two_workers_share_the_grid_without_overlap(tmp_path):
    out = tmp_path / "sweep"
    proc = _sweep(out, "--workers", "2")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    _check_one_record_per_point(out)


def test_different_grid_in_same_folder_is_refused(tmp_path):
    out = tmp_path / "sweep"
    first = _sweep(out)
    assert first.wait(timeout=300) == 0
    db_before = (out / "sweep.db").read_bytes()
    second = subprocess.run([sys.executable, "-m", "qjoule", "sweep", *GRID[:-2], "--epochs", "4", "--out", str(out)],
                            capture_output=True, text=True)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"qjoule: error: the sweep in 'sqlite:///{out / 'sweep.db'}' was made by a different grid "
        "(epochs=3, not 4); it is left untouched"]
    assert (out / "sweep.db").read_bytes() == db_before


@pytest.mark.parametrize("url", ["nosuchdb://x", "postgresql+psycopg://qjoule@127.0.0.1:1/sweep"])
def test_bad_storage_url_is_refused_and_existing_study_untouched(tmp_path, url):
    out = tmp_path / "sweep"
    out.mkdir()
    grid = Grid("digits", (1,), (4, 8), ("2", "float"), 3)
    open_study(f"sqlite:///{out / 'sweep.db'}", grid, create=True)
    (out / "sweep.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.run([sys.executable, "-m", "qjoule", "sweep", *GRID, "--storage", url, "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"qjoule: error: cannot open sweep storage {url!r}: "), proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
