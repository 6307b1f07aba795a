"""Area of a board's config at each Q without routing: Yosys, then nextpnr's packer.

    .venv/bin/python bench/area_per_q.py [--board ulx3s-85f] [--qs 1,2,4,8,16] [--build build/area_per_q]
        [--out area_per_q.json]

A full place and route of the 8x8 ULX3S config takes 17-30 minutes per Q; the packed cell counts
(LUT4 = TRELLIS_COMB or ICESTORM_LC, FF, DSP, block RAM) come out of `nextpnr --pack-only` in about
two minutes, so the area per lane of every Q is cheap to measure. Fmax needs `qjoule synth`.
The design is the one `qjoule synth` builds (whole accelerator behind the UART link, the same
Yosys script). Prints a table and writes the rows to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from qjoule.config import board_config
from qjoule.errors import UserError
from qjoule.hw import synth
from qjoule.hw.boards import board, platform_for

#: nextpnr's packed cell names per family: logic, flip-flops, DSPs, block RAM (an iCE40 logic
#: cell holds a LUT4 and a flip-flop: its packer does not count them apart)
CELLS = {"ecp5": ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD"),
         "ice40": ("ICESTORM_LC", None, "ICESTORM_DSP", "ICESTORM_RAM")}


def nextpnr_device_args(b, platform) -> list[str]:
    if b.family == "ecp5":   # LFE5U-85F -> --85k; Amaranth's package name -> nextpnr's (BG381 -> CABGA381)
        package = platform._nextpnr_package_options[platform.package].upper()
        return [f"--{platform.device.split('-')[1].lower().rstrip('f')}k", "--package", package]
    return [f"--{platform.device.lower().removeprefix('ice40')}", "--package", platform.package.lower()]


def area(board_name: str, q: int, build_dir: Path) -> dict:
    b = board(board_name)
    cfg = synth.lane_pairs_for(board_config(board_name, q), b)  # as `qjoule synth` builds it
    start = time.monotonic()
    synth.yosys_netlist(cfg, b, build_dir)
    top = synth.TOP
    # (relative paths inside the build folder: the YoWASP tools see only the folder they run in)
    subprocess.run([Path(sys.executable).parent / f"yowasp-nextpnr-{b.family}", "--quiet",
                    *nextpnr_device_args(b, platform_for(b, float(b.default_mhz))),
                    "--json", f"{top}.json", *(["--lpf", f"{top}.lpf"] if b.family == "ecp5" else ["--pcf", f"{top}.pcf"]),
                    "--pack-only", "--log", "pack.log"], cwd=build_dir, check=True)
    used = {name: int(n) for name, n in re.findall(r"^Info:\s+(\w+):\s+(\d+)/", (build_dir / "pack.log").read_text(), re.M)}
    logic, ffs, dsps, brams = (used.get(name, 0) if name else None for name in CELLS[b.family])
    return {"board": b.name, "q": q, "rows": cfg.rows, "cols": cfg.cols, "lanes": cfg.lanes, "p": cfg.parallelism,
            "dsp_pairs": synth.lane_pairs_on(cfg, b),
            "luts": logic, "ffs": ffs, "dsps": dsps, "brams": brams,
            "luts_per_lane": round(logic / cfg.parallelism, 1), "dsps_per_lane": round(dsps / cfg.parallelism, 3),
            "seconds": round(time.monotonic() - start, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="ulx3s-85f")
    ap.add_argument("--qs", default="1,2,4,8,16")
    ap.add_argument("--build", type=Path, default=Path("build/area_per_q"))
    ap.add_argument("--out", type=Path, default=Path("area_per_q.json"))
    args = ap.parse_args(argv)
    try:
        board(args.board)
        qs = [int(x) for x in args.qs.split(",")]
    except (UserError, ValueError) as e:
        print(f"area_per_q: {e}" if isinstance(e, UserError) else
              f"area_per_q: --qs must be comma-separated integers, got {args.qs!r}", file=sys.stderr)
        return 2
    rows = []
    print(f"{'q':>3} {'p':>5} {'LUT4':>7} {'FF':>7} {'DSP':>4} {'BRAM':>4} {'LUT4/lane':>9} {'DSP/lane':>8} {'s':>6}")
    for q in qs:
        try:
            row = area(args.board, q, args.build / f"{args.board}_q{q}")
        except UserError as e:   # (a Q outside 1..16, a config that does not fit)
            print(f"area_per_q: {e}", file=sys.stderr)
            return 2
        rows.append(row)
        print(f"{q:>3} {row['p']:>5} {row['luts']:>7} {'-' if row['ffs'] is None else row['ffs']:>7} {row['dsps']:>4} {row['brams']:>4} "
              f"{row['luts_per_lane']:>9} {row['dsps_per_lane']:>8} {row['seconds']:>6}", flush=True)
        args.out.write_text(json.dumps({"board": args.board, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
