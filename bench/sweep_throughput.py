"""Sweep throughput: the same grid run by `qjoule sweep` with 1 and with 2 local workers.

Each run is a fresh SQLite study in a temporary folder, timed from the command's start to its
exit (process start-up, data loading and the study's bookkeeping included: that is what a user
waits for). Runs per hour = grid points / wall time; the scaling ratio = mean runs per hour with
K workers / mean runs per hour with the first count given. Every worker trains with one torch
thread. "busy" = summed train_seconds / (wall time x workers): the share of worker time spent
in the training loop; the rest is start-up, export, the golden model's test pass, the study's
bookkeeping and a worker waiting for the last run of another. The load average before and after each run is
recorded, since the figure means little on a shared machine; on one, give the counts in ABBA
order (--workers 1,2,2,1) so a drifting load hits both alike. The default grid (8 points of 2-5 s
trainings each) is large enough that start-up does not hide the scaling; a grid of 1-second
trainings measures mostly process start-up.

    .venv/bin/python bench/sweep_throughput.py [--workers 1,2,2,1] [--json /work/runs/sweep_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_sweep(grid: list[str], workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="qjoule-sweep-bench-") as tmp:
        out = Path(tmp) / "sweep"
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "qjoule", "sweep", *grid, "--workers", str(workers),
                               "--out", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"sweep with {workers} worker(s) failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        records = json.loads((out / "results.json").read_text())
    train_seconds = sum(r["train_seconds"] for r in records)
    return {"workers": workers, "points": len(records), "wall_seconds": round(wall, 2),
            "runs_per_hour": round(3600 * len(records) / wall, 1),
            "train_seconds_sum": round(train_seconds, 2), "busy": round(train_seconds / (wall * workers), 3),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--blocks", default="1,2")
    p.add_argument("--width", default="32,64")
    p.add_argument("--q", default="2,4")
    p.add_argument("--epochs", default="10")
    p.add_argument("--workers", default="1,2,2,1", help="worker counts to run in this order; the first is the baseline")
    p.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    args = p.parse_args()
    grid = ["--dataset", args.dataset, "--blocks", args.blocks, "--width", args.width, "--q", args.q,
            "--epochs", args.epochs]
    rows = []
    for k in [int(v) for v in args.workers.split(",")]:
        print(f"sweep with {k} worker(s) ...", file=sys.stderr, flush=True)
        rows.append(run_sweep(grid, k))
    counts = list(dict.fromkeys(r["workers"] for r in rows))
    mean = {k: round(sum(r["runs_per_hour"] for r in rows if r["workers"] == k) / sum(r["workers"] == k for r in rows), 1)
            for k in counts}
    scaling = {k: round(mean[k] / mean[counts[0]], 3) for k in counts}

    print(f"grid: {' '.join(grid)} ({rows[0]['points']} points), {os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'wall s':>8} {'runs/h':>8} {'busy':>6} {'train s (sum)':>14} {'load before/after':>18}")
    for r in rows:
        print(f"{r['workers']:>7} {r['wall_seconds']:>8.1f} {r['runs_per_hour']:>8.1f} {r['busy']:>6.2f} "
              f"{r['train_seconds_sum']:>14.1f} {r['load_before']:>8.2f} / {r['load_after']:<8.2f}")
    for k in counts:
        print(f"{k} worker(s): {mean[k]:.1f} runs/h (mean), scaling {scaling[k]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"grid": grid, "cpus": os.cpu_count(), "rows": rows,
                                         "mean_runs_per_hour": mean, "scaling": scaling}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
