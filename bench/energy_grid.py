"""Throughput of the vectorized energy model: topologies x Q x memory sizes per second.

    .venv/bin/python bench/energy_grid.py [--out energy_grid.json]

The grid is the paper's topology family on CIFAR-10 shapes (blocks 1..3, widths 32..512 step 32),
Q = 1..16 and float, and log-spaced memory sizes; each row times `evaluate` (all terms, the
per-layer DRAM overflow included) as the best of several repeats. Target: >= 1,000,000 points/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from qjoule.sw.energy_model import evaluate, net_arrays
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.netstats import describe_topology

TARGET = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="energy_grid.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    topologies = [describe_topology((3, 32, 32), 10, b, w) for b in (1, 2, 3) for w in range(32, 513, 32)]
    nets = net_arrays(topologies)
    qs = np.array(list(range(1, 17)) + [32], dtype=float)
    profile = load_profile("moons2017")
    rows = []
    for n_memory in (16, 256, 1024):
        memory = np.logspace(-1, 2, n_memory)
        points = len(nets) * len(qs) * len(memory)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            r = evaluate(nets, qs[None, :, None], memory[None, None, :], profile)
            best = min(best, time.perf_counter() - start)
        assert r["E_inf"].shape == (len(nets), len(qs), len(memory)) and np.isfinite(r["E_inf"]).all()
        rows.append({"topologies": len(nets), "qs": len(qs), "memory_sizes": len(memory), "points": points,
                     "seconds": best, "points_per_second": points / best})

    print(f"{'topologies':>10} {'Qs':>4} {'memories':>9} {'points':>10} {'seconds':>9} {'points/s':>12}")
    for row in rows:
        print(f"{row['topologies']:>10} {row['qs']:>4} {row['memory_sizes']:>9} {row['points']:>10} "
              f"{row['seconds']:>9.4f} {row['points_per_second']:>12,.0f}")
    best_rate = max(row["points_per_second"] for row in rows)
    print(f"target {TARGET:,} points/s: {'met' if best_rate >= TARGET else 'NOT met'} (best {best_rate:,.0f})")
    with open(args.out, "w") as f:
        json.dump({"benchmark": "energy_grid", "target_points_per_second": TARGET, "rows": rows,
                   "met": best_rate >= TARGET, "python": platform.python_version(),
                   "numpy": np.__version__, "machine": platform.machine()}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
