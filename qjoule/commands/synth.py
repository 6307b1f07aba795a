"""`qjoule synth`: synthesize the accelerator for an FPGA board and report area and Fmax.

Three modes: one build (the default); `--fit`, the largest array (rows, cols) at the given Q that
fits the device and meets the clock, found by place and route (qjoule.hw.fit.fit); `--sweep-q`,
one build per Q with the table of area, Fmax and p.
"""

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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default=None, metavar="FILE", help="an accel.json config instead of the board variant")
    source.add_argument("--model", default=None, metavar="INT_MODEL",
                        help="size the board's config to this integer model (.qjm) at its Q and weight kind: "
                             "the bitstream `qjoule run --board` expects")
    parser.add_argument("--clock", type=float, default=None, metavar="MHZ",
                        help="target clock (default: 100 for ulx3s-85f, 42 for icebreaker)")
    parser.add_argument("--design", default="accel", choices=("accel", "datapath"),
                        help="accel: the whole accelerator (default); datapath: MAC array + post-processing only")
    parser.add_argument("--top", default="host", choices=("host", "scan"),
                        help="board top of the accelerator: host = the UART host link (default, the bitstream "
                             "to use), scan = every port through scan registers (for measurements)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fit", action="store_true",
                      help="find the largest rows x cols at this Q that fits the device and meets the clock")
    mode.add_argument("--sweep-q", default=None, metavar="Q,Q,...",
                      help="one build per Q (e.g. 1,2,4,8,16): area, Fmax and p per Q")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (report.json, accel.json, build/)")


def _sweep_qs(text: str) -> list[int]:
    from qjoule.errors import UserError

    try:
        qs = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--sweep-q must be a comma-separated list of integers 1..16, got {text!r}") from None
    bad = [q for q in qs if not 1 <= q <= 16]
    if bad or len(set(qs)) != len(qs):
        raise UserError(f"--sweep-q must list distinct Qs in 1..16, got {text!r}")
    return qs


def config_from_args(args: argparse.Namespace, q: int | None = None):
    """The config to build: --config FILE, else the board's config at Q (per-Q sizes included),
    with --rows/--cols/--datapath on top; with --model, that config at the model's Q sized to it."""
    from qjoule.config import AccelConfig, board_config, default_datapath
    from qjoule.errors import UserError

    check_board(args.board)
    q = args.q if q is None else q
    changes = {k: getattr(args, k) for k in ("rows", "cols", "datapath") if getattr(args, k) is not None}
    if getattr(args, "model", None) is not None:
        from qjoule.program import board_config_for_model
        from qjoule.sw import intmodel

        model = intmodel.load(args.model)
        if q is not None and q != model.q:
            raise UserError(f"--q {q} does not match the model's Q={model.q!r} ({args.model})")
        return board_config_for_model(args.board, model, **changes)
    if args.config is not None:
        cfg = AccelConfig.load(args.config)
        if q is not None and q != cfg.q:
            changes = {"q": q, "datapath": default_datapath(q), **changes}
        return cfg.replace(**changes) if changes else cfg
    return board_config(args.board, q, **changes)


def run(args: argparse.Namespace) -> int:
    from qjoule.errors import UserError

    check_board(args.board)
    if args.fit and (args.rows is not None or args.cols is not None):
        raise UserError("--fit searches rows and cols itself; drop --rows/--cols")
    if args.fit and args.model is not None:
        raise UserError("--fit searches the board config's array shapes, --model sizes one config to a model; "
                        "drop one (synthesize the shape --fit found with --rows/--cols --model)")
    if args.sweep_q is not None:
        if args.q is not None:
            raise UserError("--sweep-q gives the Qs; drop --q")
        if args.model is not None:
            raise UserError("--model fixes Q (the model's); drop --sweep-q or --model")
        return _run_sweep(args, _sweep_qs(args.sweep_q))
    cfg = config_from_args(args)
    if args.fit:
        return _run_fit(args, cfg)
    return _run_one(args, cfg)


def _synth(args):
    from qjoule.hw.synth import synthesize

    return lambda cfg, build: synthesize(cfg, args.board, build, clock_mhz=args.clock, design=args.design,
                                         top=args.top)


def _run_one(args, cfg) -> int:
    from tqdm import tqdm

    from qjoule.hw.synth import format_table
    from qjoule.io import staged_output, write_json

    key = {"board": args.board, "config": cfg.to_dict(), "clock": args.clock, "design": args.design, "top": args.top}
    with staged_output(args.out, "synth", key) as stage:
        with tqdm(total=1, desc=f"synth {args.board} q={cfg.q}", file=sys.stderr, leave=False) as bar:
            report = _synth(args)(cfg, stage / "build")
            bar.update()
        report["bitstream"] = f"build/top.{'bit' if report['device'].startswith('LFE5') else 'bin'}"
        write_json(stage / "accel.json", cfg.to_dict())
        write_json(stage / "report.json", report)

    print(format_table([report]))
    print(f"wrote {args.out}/report.json", file=sys.stderr)
    return _check_ok(report)


def _check_ok(report: dict) -> int:
    check = report["check"]
    if check["ok"]:
        return 0
    print(f"error: the synthesized design holds less than the config implies ({report['ffs']} FFs, "
          f"expected at least {check['min_ffs']}; {report['luts']} LUTs, expected at least "
          f"{check['min_luts']}): logic was optimized away", file=sys.stderr)
    return 1


def _run_sweep(args, qs: list[int]) -> int:
    from tqdm import tqdm

    from qjoule.hw.fit import sweep_q
    from qjoule.hw.synth import SWEEP_COLUMNS, format_table
    from qjoule.io import staged_output, write_json

    configs = [config_from_args(args, q) for q in qs]
    key = {"board": args.board, "configs": [c.to_dict() for c in configs], "clock": args.clock, "design": args.design, "top": args.top}
    with staged_output(args.out, "synth", key) as stage:
        with tqdm(total=len(configs), desc=f"synth {args.board} sweep q", file=sys.stderr, leave=False) as bar:
            reports = sweep_q(configs, stage / "build", _synth(args), progress=lambda r: bar.update())
        write_json(stage / "report.json", {"board": args.board, "design": args.design, "mode": "sweep-q",
                                           "reports": reports})
    print(format_table(reports, SWEEP_COLUMNS))
    print(f"wrote {args.out}/report.json", file=sys.stderr)
    return max((_check_ok(r) for r in reports if "check" in r), default=0)


def _run_fit(args, base) -> int:
    from tqdm import tqdm

    from qjoule.hw.fit import fit
    from qjoule.io import staged_output, write_json

    key = {"board": args.board, "config": base.to_dict(), "clock": args.clock, "design": args.design, "top": args.top, "mode": "fit"}
    with staged_output(args.out, "synth", key) as stage:
        with tqdm(desc=f"fit {args.board} q={base.q}", file=sys.stderr, leave=False) as bar:
            result = fit(base, args.board, stage / "build", _synth(args), design=args.design,
                         progress=lambda e: bar.update())
        write_json(stage / "report.json", {"board": args.board, "design": args.design, "mode": "fit", "q": base.q,
                                           **result})
    for t in result["tried"]:
        fmax = t.get("report", {}).get("fmax_mhz", "-")
        print(f"{t['rows']:>4} x {t['cols']:<4} p={t['p']:<6} {t['outcome']:<14} fmax={fmax}  {t.get('reason', '')}")
    best = result["best"]
    if best is None:
        print(f"no array shape fits {args.board} at q={base.q} and meets the clock", file=sys.stderr)
        return 1
    print(f"largest: {best['rows']} x {best['cols']} (p = {best['p']}, {best['fmax_mhz']} MHz)")
    print(f"wrote {args.out}/report.json", file=sys.stderr)
    return 0
