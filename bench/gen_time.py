"""Generation time of `qjoule_accel` Verilog for the board-sized configs, and its determinism.

For each (variant, Q): elaborate QjouleAccel and convert it to Verilog twice (the second run
checks byte-identical output), print a table and write JSON.

    .venv/bin/python bench/gen_time.py [--variants ulx3s] [--qs 1 4 8] [--out bench/gen_time.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from qjoule.config import variant
from qjoule.gateware.top import QjouleAccel
from qjoule.hw.verilog import emit_verilog


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["ulx3s"])
    ap.add_argument("--qs", nargs="+", type=int, default=[1, 4, 8])
    ap.add_argument("--out", default="bench/gen_time.json")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'variant':>10} {'q':>3} {'R':>3} {'C':>3} {'p':>5} {'seconds':>8} {'lines':>8} {'identical':>9}")
    for name in args.variants:
        for q in args.qs:
            cfg = variant(name, q=q)
            t0 = time.perf_counter()
            text = emit_verilog(QjouleAccel(cfg), "qjoule_accel")
            seconds = time.perf_counter() - t0
            again = emit_verilog(QjouleAccel(cfg), "qjoule_accel")
            row = {"variant": name, "q": q, "rows": cfg.rows, "cols": cfg.cols, "p": cfg.parallelism,
                   "seconds": round(seconds, 2), "lines": len(text.splitlines()),
                   "sha256": hashlib.sha256(text.encode()).hexdigest(), "identical": text == again}
            rows.append(row)
            print(f"{name:>10} {q:>3} {cfg.rows:>3} {cfg.cols:>3} {cfg.parallelism:>5} {row['seconds']:>8} "
                  f"{row['lines']:>8} {str(row['identical']):>9}")
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
