"""The full digits sweep (issue 7): blocks 1,2 x width 16,32,64 x Q 1,2,4,8,float, then `qjoule energy`.

Runs `qjoule sweep` into OUT/sweep (resumable: a rerun on a finished folder trains nothing) and
`qjoule energy` on its results into OUT/energy, then prints, per memory size and error target,
the minimum-energy network overall and each Q's minimum, as a Markdown table, and writes
OUT/summary.json. Wall times are of this invocation.

    nice -n 10 .venv/bin/python bench/digits_sweep.py --workers 2 --out /work/runs/digits_full
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

GRID = ["--dataset", "digits", "--blocks", "1,2", "--width", "16,32,64", "--q", "1,2,4,8,float"]


def qjoule(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "qjoule", *args])
    if proc.returncode != 0:
        sys.exit(f"qjoule {args[0]} failed (exit {proc.returncode})")
    return time.perf_counter() - start


def table(energy: dict, memory: str) -> list[str]:
    qs = energy["qs"]
    rows = [f"| error ≤ | best network | E_inf [{energy['unit']}] | " + " | ".join(f"Q={q}" for q in qs) + " |",
            "|---|---|---|" + "---|" * len(qs)]
    for s in energy["selections"]:
        if s["memory"] != memory:
            continue
        best = s["best"]
        head = f"{best['name']} | {best['E_inf']:.4g}" if best else "unreachable | —"
        cells = [f"{v['E_inf']:.3g} ({v['name'].split('-', 2)[2].removesuffix('-s0')})" if v else "—"
                 for v in (s["per_q"][q] for q in qs)]
        rows.append(f"| {100 * s['target_error']:.2f}% | {head} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="2")
    p.add_argument("--epochs", default="10")
    p.add_argument("--memory", default="2", help="memory size (Mb) of the printed table (one of --energy-memory)")
    p.add_argument("--energy-memory", default="0.5,2,100")
    p.add_argument("--target-error", default=None, help="error targets for qjoule energy (default: its own)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    sweep_s = qjoule("sweep", *GRID, "--epochs", args.epochs, "--workers", args.workers, "--out", str(args.out / "sweep"))
    results = args.out / "sweep" / "results.json"
    targets = ["--target-error", args.target_error] if args.target_error else []
    energy_s = qjoule("energy", "--results", str(results), "--memory", args.energy_memory, *targets,
                      "--out", str(args.out / "energy"))
    energy = json.loads((args.out / "energy" / "energy.json").read_text())
    records = json.loads(results.read_text())
    lines = table(energy, args.memory)
    print(f"\nmemory {args.memory} Mb; {len(records)} networks; per-Q cells: E_inf (network)")
    print("\n".join(lines))
    summary = {"grid": GRID + ["--epochs", args.epochs], "workers": int(args.workers),
               "networks": len(records), "train_seconds_sum": round(sum(r["train_seconds"] for r in records), 1),
               "sweep_wall_seconds": round(sweep_s, 1), "energy_wall_seconds": round(energy_s, 1),
               "memory": args.memory, "table": lines, "summary": energy["summary"]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
