"""`qjoule flow`: the main job, end to end, as named steps that resume."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("train -> export -> generate -> simulate (bit-exact check) -> calibrate -> energy -> synth -> report, "
        "resumable step by step (writes flow.json, report/report.md)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="data set (default digits)")
    p.add_argument("--q", default="4", help="bit-width 1..16 (default 4)")
    p.add_argument("--blocks", type=int, default=1, help="conv layers per block (default 1)")
    p.add_argument("--width", type=int, default=32, help="filters per block (default 32)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="moons2017", help="base energy profile, calibrated by the flow (default moons2017)")
    p.add_argument("--board", default="ulx3s-85f", help="FPGA board: ulx3s-85f (default) or icebreaker")
    p.add_argument("--sim", default="icarus", help="RTL simulator: icarus (default) or verilator")
    p.add_argument("--sim-images", type=int, default=2, help="test images run on the RTL (default 2)")
    p.add_argument("--skip", default="", help="comma-separated steps to skip")
    p.add_argument("--out", required=True, type=Path, help="flow folder: one sub-folder per step, flow.json")


def run(args: argparse.Namespace) -> int:
    from qjoule.errors import UserError
    from qjoule.flow import FlowContext, run_flow
    from qjoule.pipeline import flow_steps
    from qjoule.sw.quant import parse_q

    q = parse_q(args.q)
    if q is None:
        raise UserError("--q must be 1..16 for the flow: the float baseline has no integer model or hardware")
    from qjoule.config import check_board
    from qjoule.sim.runner import check_simulator

    check_board(args.board)
    check_simulator(args.sim)
    for name in ("blocks", "width", "epochs", "sim_images"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)!r}")
    params = {"dataset": args.dataset, "q": q, "blocks": args.blocks, "width": args.width,
              "epochs": args.epochs, "seed": args.seed, "profile": args.profile, "board": args.board,
              "sim": args.sim, "sim_images": args.sim_images}
    skip = {s for s in args.skip.split(",") if s}
    record = run_flow(flow_steps(), FlowContext(args.out, params), skip=skip)
    if "failed_step" in record:
        step = next(s for s in record["steps"] if s["name"] == record["failed_step"])
        raise UserError(f"flow stopped at step {step['name']!r}: {step['error']}"
                        + (f" (log: {step['log']})" if "log" in step else ""))
    print(f"[flow] done in {record['seconds']:.1f} s; report: {args.out / 'report' / 'report.md'}")
    return 0
