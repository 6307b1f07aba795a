"""`qjoule simulate`: test images through the generated RTL, every layer checked bit for bit."""

from __future__ import annotations

import argparse
import sys

HELP = "run test images through the generated Verilog (cocotb + Icarus/Verilator) and check it bit for bit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="FILE", help="integer model (.qjm)")
    p.add_argument("--q", type=int, default=None, help="expected Q (checked against the model)")
    p.add_argument("--config", default=None, metavar="FILE", help="accelerator config (accel.json); default: tiny at the model's Q")
    p.add_argument("--sim", default="icarus", help="icarus (default) or verilator")
    p.add_argument("--dataset", default="digits", help="test images from this data set (default digits)")
    p.add_argument("--images", type=int, default=4, help="number of test images (default 4)")
    p.add_argument("--first-image", type=int, default=0, help="index of the first test image (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random gaps and backpressure")
    p.add_argument("--no-dump", action="store_true", help="compare logits only (no per-layer dump)")
    p.add_argument("--out", required=True, metavar="DIR")


def run(args: argparse.Namespace) -> int:
    from qjoule.io import staged_output, write_json
    from qjoule.sim.simulate import config_for, pick_images, reproduce_command, simulate
    from qjoule.sw import intmodel

    model = intmodel.load(args.model)
    cfg = config_for(model, args.config, args.q)
    images = pick_images(args.dataset, args.images, args.first_image, model.input_shape)
    key = {"model": args.model, "config": cfg.to_dict(), "sim": args.sim, "dataset": args.dataset,
           "images": args.images, "first_image": args.first_image, "seed": args.seed, "dump": not args.no_dump}
    with staged_output(args.out, "simulate", key) as stage:
        result = simulate(model_path=args.model, cfg=cfg, images=images, work=stage, sim=args.sim, seed=args.seed,
                          debug=not args.no_dump, reproduce=reproduce_command(sys.argv[1:]))
        write_json(stage / "result.json", result)
    if result.get("error"):
        print(f"FAILED: {result['error']}; log: {result['log']}; waveform: {result['waveform']}; "
              f"reproduce: {result['reproduce']}", file=sys.stderr)
        return 1
    for row in result["per_layer"]:
        util = f"{row['utilization']:.1%}" if row["utilization"] is not None else "-"
        print(f"  {row['layer']:>8} {row['kind']:>10} {row['cycles']:>9} cycles  utilization {util}")
    print(f"{'MATCH' if result['match'] else 'MISMATCH'}: {result['images']} images, {result['cycles']} cycles "
          f"({result['sim_cycles_per_second']} cycles/s on {result['simulator']}); {args.out}/result.json")
    if not result["match"]:
        m = result["first_mismatch"]
        print(f"first mismatch: image {m['image']} layer {m['layer']} index {m['index']}: expected {m['expected']}, "
              f"got {m['got']}; seed {args.seed}; reproduce: {result['reproduce']}; waveform: {result['waveform']}",
              file=sys.stderr)
        return 1
    return 0
