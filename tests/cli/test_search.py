"""qjoule search: a tiny NSGA-II search over per-layer Q, its Pareto front, resuming and bad input."""

import json

import pytest

from qjoule.cli import main
from qjoule.search import nondominated

TINY = ["--epochs", "1", "--width", "4", "--population", "2", "--choices", "1,2,4,8"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch
    torch.set_num_threads(1)


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_nondominated_by_hand():
    points = [(0.1, 5), (0.2, 3), (0.2, 4), (0.1, 5), (0.3, 3), (0.05, 9)]
    # (0.2, 4) is dominated by (0.2, 3); the second (0.1, 5) is a repeat; (0.3, 3) by (0.2, 3)
    assert nondominated(points) == [0, 1, 5]
    assert nondominated([(1, 1, 1), (1, 1, 0), (0, 2, 2)]) == [1, 2]


def test_tiny_search_front_is_consistent_and_resumes(tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "--dataset", "digits", "--objectives", "error,energy,memory", "--trials", "3",
                 *TINY, "--out", str(out)]) == 0
    result = json.loads((out / "pareto.json").read_text())
    trials = result["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2]
    objectives = result["objectives"]
    assert objectives == ["error", "energy", "memory"]
    points = {t["trial"]: [t[o] for o in objectives] for t in trials}
    front = {t["trial"] for t in result["pareto"]}
    assert front
    for t in trials:
        assert len(t["q_per_layer"]) == 4 and set(t["q_per_layer"]) <= {1, 2, 4, 8}
        assert 0.0 <= t["error"] <= 1.0 and t["energy"] > 0 and t["memory"] > 0
        dominated = any(_dominates(points[o], points[t["trial"]]) for o in points)
        repeat = any(points[o] == points[t["trial"]] and o < t["trial"] for o in points)
        assert (t["trial"] in front) == (not dominated and not repeat)
    csv_lines = (out / "pareto.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("trial,q_per_layer,error,energy,memory")

    # Deterministic: the same search in another folder writes the same bytes.
    first_bytes = (out / "pareto.json").read_bytes()
    assert main(["search", "--dataset", "digits", "--objectives", "error,energy,memory", "--trials", "3",
                 *TINY, "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "pareto.json").read_bytes() == first_bytes

    # A rerun with more trials continues: the finished trials are kept as they were.
    assert main(["search", "--dataset", "digits", "--objectives", "error,energy,memory", "--trials", "4",
                 *TINY, "--out", str(out)]) == 0
    again = json.loads((out / "pareto.json").read_text())
    assert again["trials"][:3] == trials and len(again["trials"]) == 4
    assert "(0 run now)" not in capsys.readouterr().out

    # The same spec with the count reached runs nothing; a different spec is refused untouched.
    assert main(["search", "--objectives", "error,energy,memory", "--trials", "4", *TINY, "--out", str(out)]) == 0
    assert "(0 run now)" in capsys.readouterr().out
    assert main(["search", "--objectives", "error,energy", "--trials", "4", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objectives" in err[0]
    assert json.loads((out / "pareto.json").read_text()) == again


def test_pot_search_trains_pot_networks(tmp_path):
    out = tmp_path / "pot"
    assert main(["search", "--weights", "pot", "--trials", "2", "--epochs", "1", "--width", "4", "--population", "2",
                 "--choices", "2,3,4", "--out", str(out)]) == 0
    trials = json.loads((out / "pareto.json").read_text())["trials"]
    assert len(trials) == 2 and all(set(t["q_per_layer"]) <= {2, 3, 4} for t in trials)
    assert all(t["w_kinds"] == ["pot"] for t in trials)
    assert json.loads((out / "search.json").read_text())["spec"]["w_kind"] == "pot"


@pytest.mark.parametrize("args,needle", [
    (["--objectives", "energy,memory"], "--objectives"),
    (["--objectives", "error,latency"], "--objectives"),
    (["--choices", "0,2"], "--choices"),
    (["--choices", "2,x"], "--choices"),
    (["--trials", "0"], "--trials"),
    (["--memory", "-1"], "--memory"),
    (["--profile", "nosuchprofile"], "nosuchprofile"),
    (["--weights", "pot", "--choices", "1,2,4"], "PoT"),
])
def test_bad_input_one_line_exit_2(args, needle, tmp_path, capsys):
    base = {"--trials": "2", "--objectives": "error,energy"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["search", "--out", str(tmp_path / "s")] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "s").exists()
