"""The sweep engine on a real Optuna SQLite study: every point once, retries, refusals.

These tests drive `run_worker` with a small deterministic train function so they exercise the
scheduling (grid hand-out, retries, duplicates, resume) in a second; the CLI tests with real
training are in test_sweep_cli.py.
"""

import json

import pytest

from qjoule.errors import UserError
from qjoule.sweep import Grid, collect_results, default_storage, grid_state, open_study, run_worker, write_results


def _grid(**kw):
    return Grid(**{"dataset": "digits", "blocks": (1, 2), "widths": (4, 8), "qs": ("1", "float"), "epochs": 1, **kw})


def _fake_train(calls, fail=None):
    fail = dict(fail or {})

    def train(grid, params, run_dir):
        key = f"q{params['q']}-b{params['blocks']}-w{params['width']}"
        calls.append(key)
        if fail.get(key, 0) > 0:
            fail[key] -= 1
            raise RuntimeError(f"diverged at {key}")
        return {"q": params["q"], "blocks": params["blocks"], "width": params["width"],
                "test_error": 0.01 * params["width"], "dataset": grid.dataset}
    return train


def test_every_point_exactly_once(tmp_path):
    grid = _grid()
    study, _ = open_study(default_storage(tmp_path), grid, create=True)
    calls = []
    run_worker(study, grid, tmp_path, train=_fake_train(calls), log=lambda m: None)
    assert sorted(calls) == sorted(f"q{q}-b{b}-w{w}" for b in (1, 2) for w in (4, 8) for q in ("1", "float"))
    records, failed = collect_results(study, grid)
    assert len(records) == 8 and failed == []


def test_failed_run_is_retried_once_then_recorded(tmp_path):
    grid = _grid(blocks=(1,), widths=(4,))
    study, _ = open_study(default_storage(tmp_path), grid, create=True)
    calls = []
    run_worker(study, grid, tmp_path, train=_fake_train(calls, fail={"q1-b1-w4": 1, "qfloat-b1-w4": 2}),
               log=lambda m: None)
    assert calls.count("q1-b1-w4") == 2 and calls.count("qfloat-b1-w4") == 2
    records, failed = collect_results(study, grid)
    assert [r["q"] for r in records] == ["1"]
    assert failed == [{"point": "qfloat-b1-w4", "errors": ["RuntimeError: diverged at qfloat-b1-w4"] * 2}]


def test_rerun_does_not_redo_finished_points(tmp_path):
    grid = _grid()
    url = default_storage(tmp_path)
    study, _ = open_study(url, grid, create=True)

    calls = []

    def interrupted_after_three(grid_, params, run_dir):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _fake_train(calls)(grid_, params, run_dir)

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, grid, tmp_path, train=interrupted_after_three, log=lambda m: None)
    assert len(calls) == 3
    study, _ = open_study(url, grid, create=False)
    more = []
    run_worker(study, grid, tmp_path, train=_fake_train(more), log=lambda m: None)
    assert len(more) == 5 and not set(more) & set(calls)
    records, _ = collect_results(study, grid)
    assert len(records) == 8
    assert all(s.failures == 0 for s in grid_state(study, grid).values())


def test_different_grid_refused_and_study_untouched(tmp_path):
    url = default_storage(tmp_path)
    study, _ = open_study(url, _grid(), create=True)
    with pytest.raises(UserError, match=r"different grid \(widths=\[4, 8\], not \[4, 16\]\)"):
        open_study(url, _grid(widths=(4, 16)), create=False)
    assert len(study.get_trials()) == 0


@pytest.mark.parametrize("kw, msg", [
    ({"qs": ()}, "--q is empty"),
    ({"blocks": (0,)}, "--blocks value 0 must be >= 1"),
    ({"qs": ("17",)}, "--q value '17' must be 1..16 or 'float'"),
])
def test_bad_grid(kw, msg):
    with pytest.raises(UserError, match=msg):
        _grid(**kw)


def test_bad_storage_url(tmp_path):
    with pytest.raises(UserError, match="cannot open sweep storage 'nosuchdb://x'"):
        open_study("nosuchdb://x", _grid(), create=True)


def test_results_files(tmp_path):
    write_results(tmp_path, [{"q": "4", "blocks": 1, "width": 8, "test_error": 0.1}])
    assert json.loads((tmp_path / "results.json").read_text())[0]["width"] == 8
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,q,blocks,width") and lines[1].startswith(",4,1,8")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_killed_between_suggestions_is_ignored(tmp_path):
    """A worker killed after suggesting only some parameters leaves a trial that names no point."""
    import optuna

    grid = _grid(blocks=(1,), widths=(4,))
    study, _ = open_study(default_storage(tmp_path), grid, create=True)
    partial = study.ask()
    partial.suggest_categorical("blocks", [1])
    study.tell(partial, state=optuna.trial.TrialState.FAIL)
    calls = []
    run_worker(study, grid, tmp_path, train=_fake_train(calls), log=lambda m: None)
    records, failed = collect_results(study, grid)
    assert sorted(r["q"] for r in records) == ["1", "float"] and failed == []
    assert sorted(calls) == ["q1-b1-w4", "qfloat-b1-w4"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_owner_waits_for_a_lower_trial_that_has_not_named_its_point(tmp_path):
    """Trial 0 exists but writes its parameters only later: trial 1, on the same point, must defer."""
    import threading

    from qjoule.sweep import _owner

    grid = _grid(blocks=(1,), widths=(4,), qs=("1",))
    study, _ = open_study(default_storage(tmp_path), grid, create=True)
    first, second = study.ask(), study.ask()
    assert _owner(study, "q1-b1-w4", second.number, wait_seconds=0.3) is None   # trial 0 never claims

    def claim_later():
        for name, values in (("blocks", [1]), ("width", [4]), ("q", ["1"])):
            first.suggest_categorical(name, values)

    timer = threading.Timer(0.5, claim_later)
    timer.start()
    try:
        assert _owner(study, "q1-b1-w4", second.number, wait_seconds=20) == first.number
    finally:
        timer.join()
    assert _owner(study, "q1-b1-w4", first.number) is None


CLAIM_WAITING = """
import sys, time
from pathlib import Path
from optuna.trial import TrialState
from qjoule.sweep import open_study
url, ready, index, workers = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
study, _ = open_study(url, None, create=False)
ids = [t._trial_id for t in study.get_trials(states=(TrialState.WAITING,))]
(ready / index).touch()
while len(list(ready.iterdir())) < workers:   # start claiming together
    time.sleep(0.001)
print(sum(study._storage.set_trial_state_values(i, TrialState.RUNNING) for i in ids))
"""


def test_a_waiting_trial_is_claimed_by_one_worker_on_sqlite(tmp_path):
    """Retries wait as WAITING trials; several workers claiming at once must get each exactly once
    (SQLite ignores SELECT ... FOR UPDATE: without BEGIN IMMEDIATE two workers both got one)."""
    import subprocess
    import sys

    import optuna

    url = default_storage(tmp_path)
    study, _ = open_study(url, _grid(blocks=(1,), widths=(4,), qs=("1",)), create=True)
    for _ in range(20):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, params={"q": "1"},
            distributions={"q": optuna.distributions.CategoricalDistribution(["1"])}))
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_WAITING, url, str(ready), str(i), "3"],
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    claims = [int(p.communicate(timeout=120)[0].split()[-1]) for p in procs]
    assert sum(claims) == 20, claims
