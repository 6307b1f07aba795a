"""`qjoule synth`: synthesize the accelerator for an FPGA board and report area and Fmax."""

from __future__ import annotations

import argparse
import sys

from qjoule.config import BOARD_VARIANTS, check_board

HELP = "synthesize, place and route the accelerator for a board (YoWASP tools); report LUTs, FFs, DSPs, BRAMs and Fmax"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", required=True, metavar="BOARD", help=f"one of: {', '.join(BOARD_VARIANTS)}")
    parser.add_argument("--q", type=int, default=None, metavar="Q", help="bit-width 1..16 (default: the board variant's)")
    parser.add_argument("--rows", type=int, default=None, metavar="R", help="array rows (default: the board variant's)")
    parser.add_argument("--cols", type=int, default=None, metavar="C", help="array columns (default: the board variant's)")
    parser.add_argument("--datapath", type=int, default=None, metavar="D", help="operand word bits (default: the largest multiple of Q <= 16)")
    parser.add_argument("--config", default=None, metavar="FILE", help="an accel.json config instead of the board variant")
    parser.add_argument("--clock", type=float, default=None, metavar="MHZ",
                        help="target clock (default: 100 for ulx3s-85f, 42 for icebreaker)")
    parser.add_argument("--design", default="accel", choices=("accel", "datapath"),
                        help="accel: the whole accelerator (default); datapath: MAC array + post-processing only")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (report.json, accel.json, build/)")


def config_from_args(args: argparse.Namespace):
    from qjoule.config import AccelConfig, variant

    check_board(args.board)
    changes = {k: getattr(args, k) for k in ("rows", "cols", "datapath") if getattr(args, k) is not None}
    if args.config is not None:
        cfg = AccelConfig.load(args.config)
        if args.q is not None:
            changes["q"] = args.q
        return cfg.replace(**changes) if changes else cfg
    return variant(BOARD_VARIANTS[args.board], args.q, **changes)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from qjoule.hw.synth import format_table, synthesize
    from qjoule.io import staged_output, write_json

    cfg = config_from_args(args)
    key = {"board": args.board, "config": cfg.to_dict(), "clock": args.clock, "design": args.design}
    with staged_output(args.out, "synth", key) as stage:
        with tqdm(total=1, desc=f"synth {args.board} q={cfg.q}", file=sys.stderr, leave=False) as bar:
            report = synthesize(cfg, args.board, stage / "build", clock_mhz=args.clock, design=args.design)
            bar.update()
        report["bitstream"] = f"build/top.{'bit' if report['device'].startswith('LFE5') else 'bin'}"
        write_json(stage / "accel.json", cfg.to_dict())
        write_json(stage / "report.json", report)

    print(format_table([report]))
    check = report["check"]
    print(f"wrote {args.out}/report.json", file=sys.stderr)
    if not check["ok"]:
        print(f"error: the synthesized design holds less than the config implies ({report['ffs']} FFs, "
              f"expected at least {check['min_ffs']}; {report['luts']} LUTs, expected at least "
              f"{check['min_luts']}): logic was optimized away", file=sys.stderr)
        return 1
    return 0
