"""Whole-network RTL simulation speed: Icarus vs Verilator, same test, one run each.

The test: a random topology-family network (digits shape 1x8x8, width 8, Q = 4) on the `tiny`
accelerator, N images through the cocotb testbench (every layer dumped and checked against the
golden model, random gaps and backpressure on both streams, waveform on, as `qjoule simulate`
runs it). Each simulator builds once (timed apart) and then runs the test once. The speed is the
testbench's simulated clock cycles over the wall time of its jobs (simulator start-up excluded;
the run's whole wall time is listed too). Target: Verilator >= 5x Icarus after its build.

    nice .venv/bin/python bench/sim_speed.py [--images 8] [--out bench/sim_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qjoule.config import variant
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel


def measure(sim: str, model_path: Path, images: np.ndarray, work: Path, waves: bool) -> dict:
    tb, outcome, _ = run_jobs([{"model": model_path, "images": images}], variant("tiny", q=4), work, sim=sim,
                              seed=0, waves=waves)
    match = bool(tb and tb["error"] is None and outcome.passed
                 and all(r["match"] for j in tb["jobs"] for r in j["images"]))
    run = (tb or {}).get("run", {"cycles": 0, "seconds": 0.0})
    return {"simulator": sim, "waves": waves, "match": match, "build_seconds": round(outcome.build_seconds, 1),
            "run_seconds": round(outcome.test_seconds, 2), "cycles": run["cycles"], "jobs_seconds": run["seconds"],
            "cycles_per_second": round(run["cycles"] / run["seconds"]) if run["seconds"] else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--no-waves", action="store_true", help="run without a waveform (no activity)")
    parser.add_argument("--out", default="bench/sim_speed.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0)
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, 1, 8, 8), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qjoule-simspeed-") as tmp:
        path = Path(tmp) / "model.qjm"
        intmodel.save(model, path)
        for sim in ("icarus", "verilator"):
            # a fresh work folder per simulator: the build is timed, never reused from an earlier run
            rows.append(measure(sim, path, images, Path(tmp) / sim, waves=not args.no_waves))
    icarus, verilator = rows
    speedup = (verilator["cycles_per_second"] / icarus["cycles_per_second"]
               if icarus["cycles_per_second"] and verilator["cycles_per_second"] else None)
    print(f"{'simulator':<10} {'match':>5} {'build s':>8} {'run s':>7} {'cycles':>8} {'jobs s':>7} {'cycles/s':>9}")
    for r in rows:
        print(f"{r['simulator']:<10} {str(r['match']):>5} {r['build_seconds']:>8} {r['run_seconds']:>7} "
              f"{r['cycles']:>8} {r['jobs_seconds']:>7} {r['cycles_per_second']:>9}")
    print(f"Verilator / Icarus: {speedup:.1f}x (target >= 5x)" if speedup else "speed-up not measured")
    result = {"test": {"model": "random_model((1,8,8), 10 classes, 1 block, width 8, Q=4, seed 0)",
                       "config": "tiny q=4", "images": args.images, "waves": not args.no_waves,
                       "debug_dump": True, "gap_probability": 0.2, "stall_probability": 0.2},
              "rows": rows, "speedup": round(speedup, 2) if speedup else None,
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
