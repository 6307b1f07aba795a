"""`qjoule energy`: energy per inference of trained networks and the minimum-energy choice per Q."""

from __future__ import annotations

import argparse
import sys

from qjoule.errors import UserError

HELP = "energy per inference of trained networks (Moons et al. model) and the minimum-energy network per memory size and error target"


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} expects comma-separated numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{what} expects at least one number, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, metavar="FILE",
                        help="training results: a JSON list of metrics records, one metrics.json, or a folder of them")
    parser.add_argument("--profile", default="moons2017", metavar="P",
                        help="energy profile: moons2017 (default), horowitz45, or a profile .json (e.g. from qjoule calibrate)")
    parser.add_argument("--memory", default="0.5,2,100", metavar="MB,..",
                        help="on-chip memory sizes M in Mb (2^20 bits), comma-separated (default 0.5,2,100)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="an accelerator config (AccelConfig JSON): adds its weight/activation buffers as a memory "
                             "scenario and takes p(Q) from its array (rows x cols x lanes)")
    parser.add_argument("--target-error", default=None, metavar="E,..",
                        help="test-error targets as fractions, comma-separated (default: the best error of each Q)")
    parser.add_argument("--error", default="test_error", choices=("test_error", "int_test_error"),
                        help="which error to rank by: the trained model's (default) or the exported integer model's")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a profile parameter (repeatable), e.g. --set alpha=1.5 --set p_table.4=64")
    parser.add_argument("--no-plots", action="store_true", help="write energy.json only")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (energy.json and PNG plots)")


def run(args: argparse.Namespace) -> int:
    from qjoule.io import staged_output, write_json
    from qjoule.config import AccelConfig
    from qjoule.sw.energy_profiles import accelerator_parallelism, load_profile, parse_overrides
    from qjoule.sw.energy_study import load_results, memory_scenarios, study, unreachable_targets

    overrides = parse_overrides(args.set)
    profile = load_profile(args.profile)
    config = AccelConfig.load(args.config) if args.config else None
    if config is not None:
        profile = profile.with_overrides(accelerator_parallelism(config), f"AccelConfig {config.name!r}: rows x cols x lanes")
    if overrides:
        profile = profile.with_overrides(overrides)
    memory = memory_scenarios(_floats(args.memory, "--memory"), config)
    targets = _floats(args.target_error, "--target-error") if args.target_error is not None else None
    records = load_results(args.results)
    result = study(records, profile, memory, targets, args.error)

    key = {"results": str(args.results), "profile": args.profile, "memory": [m.to_dict() for m in memory],
           "config": config.to_dict() if config else None, "targets": targets,
           "set": overrides, "error": args.error, "plots": not args.no_plots}
    with staged_output(args.out, "energy", key) as stage:
        write_json(stage / "energy.json", result)
        if not args.no_plots:
            from qjoule.sw.energy_plots import write_plots
            write_plots(result, stage)

    print(f"{'memory':>8} {'error <=':>9} {'best':>6} {'E_inf [' + result['unit'] + ']':>16} {'spread':>8} {'int8/int4':>10}  network")
    for s in result["selections"]:
        best = s["best"]
        cells = (f"{best['q']:>6} {best['E_inf']:>16.4g} " if best else f"{'-':>6} {'unreachable':>16} ")
        cells += f"{s['spread']:>8.3g} " if s["spread"] else f"{'-':>8} "
        cells += f"{s['int8_over_int4']:>10.3g}" if s["int8_over_int4"] else f"{'-':>10}"
        print(f"{s['memory']:>8} {100 * s['target_error']:>8.2f}% {cells}  {best['name'] if best else ''}")
    print(f"wrote {args.out}/energy.json", file=sys.stderr)
    missed = unreachable_targets(result)
    if missed and targets is not None:
        best = min(n["test_error"] for n in result["networks"])
        raise UserError(f"target error {missed[0]!r} is reached by no network (best test_error {best!r}); "
                        f"recorded as unreachable in {args.out}/energy.json")
    return 0
