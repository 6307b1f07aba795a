"""`qjoule prove`: formal checks of the gateware with SymbiYosys + Boolector (hw/formal*.py)."""

from __future__ import annotations

import argparse
import sys

HELP = "prove the PE, post-processing, streams and sequencer properties formally (SymbiYosys); writes DIR/prove.json"

WHATS = ("pe", "postproc", "streams", "sequencer", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--q", default=None, metavar="Q",
                   help="prove the PE (and post-processing) at this Q only (1..16; default: every Q for the PE)")
    p.add_argument("--what", default="all", metavar="WHAT",
                   help=f"which properties: {', '.join(WHATS)}, or a property name (default: all)")
    p.add_argument("--config", default=None, metavar="FILE", help="accelerator config JSON (default: the default variant)")
    p.add_argument("--variant", default=None, metavar="NAME", help="config variant (default, tiny, ulx3s, icebreaker)")
    p.add_argument("--timeout", default="1200", metavar="S", help="solver time limit per property in seconds (default 1200)")
    p.add_argument("--out", required=True, metavar="DIR")


def select(args: argparse.Namespace):
    """(config, checks) the arguments ask for; UserError on bad input."""
    from qjoule.argtypes import integer
    from qjoule.config import AccelConfig, variant
    from qjoule.errors import UserError
    from qjoule.hw.formal import GROUPS, checks

    q = None if args.q is None else integer(args.q, "--q", 1)
    if q is not None and q > 16:
        raise UserError(f"--q must be 1..16, got {args.q!r}")
    if args.config is not None and args.variant is not None:
        raise UserError("--config and --variant are exclusive")
    if args.config is not None:
        cfg = AccelConfig.load(args.config)
    else:
        cfg = variant(args.variant or "default")
    if q is not None and q != cfg.q:
        from qjoule.config import default_datapath
        cfg = cfg.replace(q=q, datapath=default_datapath(q))
    every = checks(cfg, qs=None if q is None else [q])
    if args.what == "all":
        return cfg, every
    if args.what in GROUPS:
        return cfg, [c for c in every if c.group == args.what]
    named = [c for c in every if c.name == args.what]
    if not named:
        known = ", ".join(list(WHATS) + [c.name for c in every])
        raise UserError(f"unknown property {args.what!r}; known: {known}")
    return cfg, named


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from qjoule.argtypes import integer
    from qjoule.hw.formal import find_solver, run_check
    from qjoule.io import staged_output, write_json

    timeout = integer(args.timeout, "--timeout", 1)
    cfg, selected = select(args)
    find_solver()  # a missing tool is a one-line error before anything is written
    key = {"config": cfg.to_dict(), "what": args.what, "q": args.q, "timeout": timeout}
    outcomes = []
    with staged_output(args.out, "prove", key) as stage:
        with tqdm(selected, desc="prove", unit="property", file=sys.stderr) as bar:
            for check in bar:
                bar.set_postfix_str(check.name)
                outcome = run_check(check, stage, timeout=timeout)
                outcomes.append(outcome)
                tqdm.write(f"{outcome.status:5s} {outcome.seconds:8.1f} s  {check.name}  ({outcome.mode} "
                           f"depth {outcome.depth}) {outcome.detail}", file=sys.stderr)
        write_json(stage / "prove.json", {
            "config": cfg.to_dict(),
            "engine": "smtbmc boolector",
            "passed": all(o.status == "pass" for o in outcomes),
            "properties": [{**o.to_dict(), "note": c.note} for o, c in zip(outcomes, selected)],
        })
    failed = [o for o in outcomes if o.status != "pass"]
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} properties pass; wrote {args.out}/prove.json", file=sys.stderr)
    return 0 if not failed else 1
