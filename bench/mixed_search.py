"""Energy saved by per-layer mixed precision vs the best uniform Q at equal accuracy (digits).

    .venv/bin/python bench/mixed_search.py [--out mixed_search.json] [--trials 60] [--epochs 5]
                                           [--width 16] [--memory 2] [--profile moons2017]

One NSGA-II study (qjoule.search, objectives error and energy, choices 1,2,3,4,5,6,8) whose first
trials are the uniform assignments Q,Q,Q,Q, so uniform and mixed networks are trained and
evaluated by the same code. For every accuracy level a uniform network reaches (its integer
test error e), the bench compares the least energy of a uniform network with error <= e against
the least energy of any assignment with error <= e, and reports the saving 1 − E_mixed/E_uniform
(the paper, Timeloop on Eyeriss/Simba: up to 37% at no accuracy loss). Writes the table as JSON.

The search selects on the test split (digits has no validation split), which flatters the chosen
assignments; so every row with a saving is re-checked: both assignments are trained again with
`--check-seeds` other seeds and their mean integer test errors are reported side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from qjoule.search import SearchSpec, collect, default_storage, open_study, run_search
from qjoule.sw import data
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.pareto import min_energy_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mixed_search.json")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--memory", type=float, default=2.0)
    parser.add_argument("--profile", default="moons2017")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-seeds", default="1,2,3", help="seeds of the re-check trainings")
    parser.add_argument("--folder", default=None, help="keep the study here (default: a temporary folder)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    spec = SearchSpec(dataset="digits", objectives=("error", "energy"), width=args.width, epochs=args.epochs,
                      seed=args.seed, profile=args.profile, memory_mb=args.memory, population=10)
    ds = data.load("digits")
    profile = load_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        study = open_study(default_storage(folder), spec)
        if not study.trials:
            for q in spec.choices:   # the uniform networks first, in the same study
                study.enqueue_trial({f"q{i}": q for i in range(4)})
        run_search(study, spec, args.trials, ds, profile, n_layers=4)
        results = collect(study, spec)
    trials = results["trials"]
    uniform = [t for t in trials if len(set(t["q_per_layer"])) == 1]
    errors = [t["error"] for t in trials]
    energies = [t["energy"] for t in trials]
    u_errors = [t["error"] for t in uniform]
    u_energies = [t["energy"] for t in uniform]
    rows = []
    print(f"\n{'error <=':>8} {'uniform Q':>9} {'E uniform':>10} {'best assignment':>15} {'E best':>10} {'saving':>7}")
    for level in sorted(set(u_errors)):
        iu = min_energy_at(u_errors, u_energies, level)
        im = min_energy_at(errors, energies, level)
        u, m = uniform[iu], trials[im]
        saving = 1.0 - m["energy"] / u["energy"]
        rows.append({"error_level": level, "uniform": u, "best": m, "saving": saving})
        print(f"{level:>8.4f} {u['q_per_layer'][0]:>9} {u['energy']:>10.1f} {','.join(map(str, m['q_per_layer'])):>15} "
              f"{m['energy']:>10.1f} {saving:>7.1%}")
    from qjoule.search import evaluate_assignment
    import dataclasses
    check_seeds = [int(v) for v in args.check_seeds.split(",") if v.strip()]
    if check_seeds:
        print(f"\nre-check with seeds {check_seeds}: mean integer test error")
        print(f"{'uniform':>9} {'error':>7}   {'assignment':>12} {'error':>7} {'saving':>7}")
    for row in rows:
        if row["saving"] <= 0 or not check_seeds:
            continue
        for side in ("uniform", "best"):
            errs = [evaluate_assignment(dataclasses.replace(spec, seed=sd), row[side]["q_per_layer"], ds, profile)["error"]
                    for sd in check_seeds]
            row[f"{side}_check_errors"] = errs
        mu, mb = (sum(row[f"{k}_check_errors"]) / len(check_seeds) for k in ("uniform", "best"))
        row["check_mean_errors"] = {"uniform": mu, "best": mb}
        print(f"{','.join(map(str, row['uniform']['q_per_layer'])):>9} {mu:>7.4f}   "
              f"{','.join(map(str, row['best']['q_per_layer'])):>12} {mb:>7.4f} {row['saving']:>7.1%}")
    best = max(rows, key=lambda r: r["saving"])
    print(f"largest saving {best['saving']:.1%} at error <= {best['error_level']:.4f} "
          f"(uniform Q={best['uniform']['q_per_layer'][0]} vs {','.join(map(str, best['best']['q_per_layer']))})")
    with open(args.out, "w") as f:
        json.dump({"bench": "mixed_search", "spec": spec.to_dict(), "trials": len(trials), "rows": rows,
                   "pareto": results["pareto"], "all_trials": trials}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
