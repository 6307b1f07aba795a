"""Per-layer mixed precision in hardware: what the run-time modes cost and what they buy.

    .venv/bin/python bench/mixed_hw.py [--families ecp5,ice40] [--no-area] [--no-cycles]
        [--width 16] [--images 2] [--work build/mixed_hw] [--out mixed_hw.json]

1. Area of one PE (qjoule.hw.pe_area, Yosys only, seconds): single-Q PEs at D = 16 (Q = 1, 2, 4,
   8) against multi-mode PEs (q_modes (2, 4), (4, 8), (2, 4, 8), (1, 2, 4, 8), first layer at
   mode 4 or 2), LUT4 (an ECP5 CCU2C counts 2), flip-flops, DSPs.
2. Cycles in simulation (cocotb + Icarus, the generated Verilog, results checked against the
   golden model): random topology-family networks (8x8 input, one block, --width channels) at a
   per-layer Q assignment on the multi-mode `tiny` config their layers need
   (program.variant_for_model), beside the same network at uniform Q on the single-Q `tiny`
   configs. Cycles per image, no debug dump, per layer too.

Prints two tables and writes every figure to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SINGLE = ((2, ()), (4, ()), (8, ()), (1, ()))
MULTI = ((2, (2, 4)), (4, (4, 8)), (4, (2, 4, 8)), (4, (1, 2, 4, 8)))
#: (per-layer Qs, uniform counterparts)
NETWORKS = (((4, 2, 8, 4), (4, 8)), ((2, 4, 2, 4), (2, 4)), ((8, 4, 2, 2), (2, 4, 8)), ((4, 1, 1, 1), (1, 4)))


def area(families: list[str]) -> list[dict]:
    from qjoule.hw.pe_area import pe_cells

    rows = []
    for family in families:
        for q, modes in SINGLE + MULTI:
            cell = pe_cells(family, q, q_modes=modes)
            rows.append({**cell, "q_modes": list(modes) or [q]})
            print(f"  {family:5s} modes {str(list(modes) or [q]):14s} D={cell['datapath']:2d} acc {cell['acc_bits']:2d} "
                  f"LUT4 {cell['luts']:5d}  FF {cell['ffs']:4d}  DSP {cell['dsps']}", file=sys.stderr, flush=True)
    return rows


def cycles(width: int, images: int, work: Path) -> list[dict]:
    from qjoule.config import variant
    from qjoule.program import variant_for_model
    from qjoule.sim.checker import failures
    from qjoule.sim.simulate import run_jobs
    from qjoule.sw import intmodel

    pixels = np.random.default_rng(0).integers(0, 256, size=(images, 1, 8, 8), dtype=np.uint8)
    rows = []
    for qs, uniform in NETWORKS:
        runs = [("mixed", qs)] + [(f"uniform Q={q}", (q,) * len(qs)) for q in uniform]
        for label, assignment in runs:
            model = intmodel.random_model((1, 8, 8), 10, 1, width, assignment[0], seed=1,
                                          q_per_layer=list(assignment))
            name = "-".join(map(str, assignment))
            path = work / f"{name}.qjm"
            path.parent.mkdir(parents=True, exist_ok=True)
            intmodel.save(model, path)
            cfg = variant_for_model("tiny", model) if model.q is None else variant("tiny", q=model.q)
            tb, outcome, seconds = run_jobs([{"model": path, "images": pixels}], cfg, work / f"sim-{name}",
                                            debug=False, waves=False)
            # (no debug dump: the logits alone are compared, so `failures` would flag "compared only")
            found = [line for line in failures(tb) if "compared only" not in line]
            per_image = tb["jobs"][0]["images"]
            layers = {row["layer"]: sum(next(x for x in im["per_layer"] if x["layer"] == row["layer"])["cycles"]
                                        for im in per_image) / len(per_image)
                      for row in per_image[0]["per_layer"]}
            row = {"network": list(qs), "run": label, "assignment": list(assignment), "modes": list(cfg.modes),
                   "datapath": cfg.datapath, "rows": cfg.rows, "cols": cfg.cols,
                   "cycles_per_image": sum(im["cycles"] for im in per_image) / len(per_image),
                   "layer_cycles": layers, "match": outcome.passed and not found}
            rows.append(row)
            print(f"  {str(list(qs)):14s} {label:13s} modes {str(row['modes']):10s} "
                  f"{row['cycles_per_image']:8.0f} cycles/image  match {row['match']}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="ecp5,ice40")
    p.add_argument("--no-area", action="store_true")
    p.add_argument("--no-cycles", action="store_true")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--work", default="build/mixed_hw")
    p.add_argument("--out", default="mixed_hw.json")
    args = p.parse_args(argv)
    result = {"area": [], "cycles": []}
    if not args.no_area:
        print("PE area (Yosys):", file=sys.stderr)
        result["area"] = area(args.families.split(","))
    if not args.no_cycles:
        print(f"cycles per image (Icarus, width {args.width}, tiny R=2 C=2):", file=sys.stderr)
        result["cycles"] = cycles(args.width, args.images, Path(args.work))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
