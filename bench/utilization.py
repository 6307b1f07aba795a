"""MAC utilization of the accelerator per layer: ideal cycles (MACs / p) / measured cycles.

`util(P)` counts the first layer's ceil(8/Q) pixel passes as work (the paper's first-layer
factor), i.e. it measures the schedule rather than the Q-bit datapath's pixel penalty.

Runs random networks of the topology family through `QjouleAccel` in the Amaranth simulator
(logits only, no debug dump), checks the logits against the golden model, and prints a table per
network plus the whole-network figure; writes everything to JSON. A conv with a fused max-pool
(config `fuse_pool`, the default where R is a power of two) is one layer, named "A1+A.pool";
`--no-fuse-pool` runs every pool as its own layer (the figures before fusion). `schedule` is what the layer's
loop nest alone costs (`schedule_cycles`), so cycles − schedule is setup and drain overhead.

    .venv/bin/python bench/utilization.py [--quick] [--no-fuse-pool] [--out bench/utilization.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from qjoule.config import variant
from qjoule.gateware.streams import simulate
from qjoule.gateware.top import QjouleAccel
from qjoule.program import encode, size_for_model
from qjoule.sw import golden
from qjoule.sw.intmodel import random_model

# (name, variant, q, input shape, blocks, width, rows, cols)
CASES = [
    *((f"digits-F32-q{q}", "tiny", q, (1, 8, 8), 1, 32, None, None) for q in (1, 2, 4, 8)),
    ("cifar16-F32-q4-R4C4", "tiny", 4, (3, 16, 16), 1, 32, 4, 4),
    # board-sized array (R = 8) on 28-, 14- and 7-wide maps: raster tiles span row ends
    *((f"mnist28-F32-q{q}-ulx3s", "ulx3s", q, (1, 28, 28), 1, 32, None, None) for q in (1, 2, 4, 8)),
]
QUICK = [CASES[2]]


def run_case(name, base, q, shape, blocks, width, rows, cols, seed=0, fuse_pool=True):
    changes = {k: v for k, v in (("rows", rows), ("cols", cols)) if v is not None}
    cfg = variant(base, q=q, fuse_pool=fuse_pool, **changes)
    model = random_model(shape, 10, blocks, width, q, seed=seed)
    # buffers sized so every layer's weights stay on chip: this measures the compute schedule
    # (external weights would add their stream-in time, which is DRAM traffic, not MAC utilization)
    cfg = size_for_model(model, cfg, keep=changes)
    prog = encode(model, cfg)
    image = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    t0 = time.time()
    res = simulate(QjouleAccel(cfg), prog.setup_words + prog.image_words(image), prog.output_word_count(),
                   mark=len(prog.setup_words))
    wall = time.time() - t0
    logits, _ = prog.decode(res.outputs)
    match = bool(np.array_equal(logits, golden.run(model, image[None]).logits[0]))
    p = cfg.parallelism
    rows_out = []
    for i, plan in enumerate(prog.layers):
        cycles, mac_cycles = res.layer_cycles.get(i, [0, 0])
        ideal = plan.macs / p
        # the first layer's 8-bit pixels need ceil(8/Q) passes through the Q-bit lanes (paper §III)
        hw_ideal = ideal * (cfg.first_layer_passes if i == 0 else 1)
        rows_out.append({"layer": plan.label, "kind": plan.kind, "macs": plan.macs, "ideal_cycles": ideal,
                         "schedule_cycles": schedule_cycles(plan, cfg, prog.fold),
                         "ideal_cycles_with_passes": hw_ideal, "cycles": cycles, "array_cycles": mac_cycles,
                         "utilization": ideal / cycles if cycles and plan.macs else None,
                         "utilization_with_passes": hw_ideal / cycles if cycles and plan.macs else None})
    total_macs = sum(r["macs"] for r in rows_out)
    total_cycles = sum(r["cycles"] for r in rows_out)
    image_load = res.first_busy_cycle - res.mark_cycle
    return {"name": name, "config": cfg.to_dict(), "p": p, "match": match, "layers": rows_out,
            "fold": prog.fold, "image_load_cycles": image_load,
            "counted": "network cycles = the sum of every layer's busy cycles (conv, pool, dense, with each "
                       "layer's setup and drain), from the run's start to the logits; the image load before the "
                       "run (IMAGE section into the buffer) and the program/weights setup are not counted",
            "total_cycles": total_cycles, "total_ideal_cycles": total_macs / p,
            "utilization": total_macs / p / total_cycles,
            "utilization_with_image_load": total_macs / p / (total_cycles + image_load),
            "sim_seconds": round(wall, 1)}


def schedule_cycles(plan, cfg, fold) -> int:
    """The layer's cycles if nothing but its schedule cost time (no setup, no drain tail): conv =
    pixel tiles × output tiles × max(array cycles of a tile, R) (the drain post-processes one row
    of a tile per cycle); max-pool = its read steps; dense = one cycle per position and group."""
    e, r = plan.entry, cfg.rows
    if plan.kind == "conv3x3":
        taps = 9 // (fold if e["first"] else 1)
        tile = e["passes"] * e["pass_groups"] * taps
        return -(-e["height"] * e["width"] // r) * e["out_tiles"] * max(tile, r)
    if plan.kind == "maxpool2x2":
        if r % 2 == 0 and r >= 4:
            return e["out_height"] * -(-e["out_width"] // (r // 2)) * e["groups"] * 2
        return e["out_height"] * e["out_width"] * e["groups"] * (2 if r >= 2 else 4)
    return e["height"] * e["width"] * e["groups"] * e["out_tiles"]


def print_case(r):
    cfg = r["config"]
    print(f"\n{r['name']}: q={cfg['q']} D={cfg['datapath']} R={cfg['rows']} C={cfg['cols']} p={r['p']}  "
          f"logits {'match' if r['match'] else 'MISMATCH'} golden  ({r['sim_seconds']} s simulated)")
    print(f"  {'layer':>10} {'kind':>10} {'MACs':>9} {'ideal':>9} {'schedule':>9} {'cycles':>8} {'util':>7} {'util(P)':>8}")
    for row in r["layers"]:
        util = f"{row['utilization']:.1%}" if row["utilization"] is not None else "-"
        util_p = f"{row['utilization_with_passes']:.1%}" if row["utilization"] is not None else "-"
        print(f"  {row['layer']:>10} {row['kind']:>10} {row['macs']:>9} {row['ideal_cycles']:>9.0f} "
              f"{row['schedule_cycles']:>9} {row['cycles']:>8} "
              f"{util:>7} {util_p:>8}")
    print(f"  {'network':>10} {'':>10} {'':>9} {r['total_ideal_cycles']:>9.0f} "
          f"{sum(row['schedule_cycles'] for row in r['layers']):>9} {r['total_cycles']:>8} {r['utilization']:>7.1%}")
    print(f"  image load (first-layer fold {r['fold']}): {r['image_load_cycles']} cycles before the run starts "
          f"(not in the network total; with it: {r['utilization_with_image_load']:.1%})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small case only")
    ap.add_argument("--case", action="append", default=None, help="run only the named case(s)")
    ap.add_argument("--no-fuse-pool", action="store_true", help="run every max-pool as its own layer (config fuse_pool off)")
    ap.add_argument("--out", default="bench/utilization.json")
    args = ap.parse_args(argv)
    results = []
    cases = [c for c in CASES if c[0] in args.case] if args.case else (QUICK if args.quick else CASES)
    for case in cases:
        r = run_case(*case, fuse_pool=not args.no_fuse_pool)
        print_case(r)
        results.append(r)
    print(f"\n{'case':>24} {'hidden 3x3 convs':>24} {'network':>8} {'+image load':>12}")
    for r in results:
        hidden = " ".join(f"{row['utilization']:.1%}" for row in r["layers"][1:] if row["kind"] == "conv3x3")
        print(f"{r['name']:>24} {hidden:>24} {r['utilization']:>8.1%} {r['utilization_with_image_load']:>12.1%}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"\nwrote {args.out}")
    return 0 if all(r["match"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
