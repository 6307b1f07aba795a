"""Area and Fmax per Q on a board: the measured form of "the same area holds more intQ MACs".

    .venv/bin/python bench/synth_sweep.py --board ulx3s-85f [--qs 1,2,4,8,16] [--design accel|datapath]
        [--rows R --cols C] [--clock MHZ] [--build DIR] [--out synth_<board>.json]

Synthesizes the board's config at each Q (qjoule.config.board_config; qjoule.hw.synth, the same flow
as `qjoule synth`), prints a table (LUT4 and DSP per lane, Fmax, peak GOPS = 2·p·Fmax) and writes the reports as JSON.
Targets (issue 6): Fmax >= 100 MHz on ulx3s-85f for every Q, >= 42 MHz on the iCEBreaker.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qjoule.config import BOARD_VARIANTS, board_config
from qjoule.errors import UserError
from qjoule.hw.synth import synthesize

COLUMNS = ("q", "p", "luts", "ffs", "dsps", "brams", "luts_per_lane", "dsps_per_lane", "fmax_mhz",
           "target_mhz", "timing_met", "peak_gops", "seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", required=True, choices=sorted(BOARD_VARIANTS))
    parser.add_argument("--qs", default="1,2,4,8,16")
    parser.add_argument("--design", default="accel", choices=("accel", "datapath"))
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--cols", type=int, default=None)
    parser.add_argument("--clock", type=float, default=None)
    parser.add_argument("--build", default=None, help="build folder (default: build/synth_<board>)")
    parser.add_argument("--out", default=None, help="JSON file (default: synth_<board>.json)")
    args = parser.parse_args()
    build = Path(args.build or f"build/synth_{args.board}")
    changes = {k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v is not None}
    reports = []
    print("  ".join(f"{c:>13}" for c in COLUMNS), flush=True)
    for q in (int(v) for v in args.qs.split(",")):
        cfg = board_config(args.board, q, **changes)  # the board's config at Q, per-Q sizes included
        try:
            report = synthesize(cfg, args.board, build / f"q{q}", clock_mhz=args.clock, design=args.design)
        except UserError as e:  # e.g. does not fit: a result of the sweep, recorded, not fatal
            reports.append({"q": q, "p": cfg.parallelism, "error": str(e)})
            print(f"{q:>13}  {cfg.parallelism:>13}  error: {e}", flush=True)
            continue
        report.pop("yosys_cells")
        path = report.get("critical_path") or {}
        print(f"  critical path {path.get('delay_ns')} ns: {path.get('from')} -> {path.get('to')}", flush=True)
        reports.append(report)
        print("  ".join(f"{report[c]!s:>13}" for c in COLUMNS), flush=True)
    out = Path(args.out or f"synth_{args.board}.json")
    out.write_text(json.dumps({"board": args.board, "design": args.design, "reports": reports}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
