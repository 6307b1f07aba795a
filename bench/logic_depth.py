"""Which register paths of a build would fail a clock, before place and route: a per-hop delay
estimate on the Yosys netlist (`qjoule.hw.logic_depth`), grouped by start and end register.

    .venv/bin/python bench/logic_depth.py --netlist BUILD/top.json [--clock MHZ] [--top 30] [--out logic_depth.json]
    .venv/bin/python bench/logic_depth.py --q 4 [--board icebreaker] [--rows 2 --cols 2] [--build build/logic_depth] ...

With --netlist it reads a netlist `qjoule synth` wrote (`<out>/build/top.json`, ECP5 or iCE40);
otherwise it runs the Yosys script of --board (default ulx3s-85f) on its board config (ULX3S:
about 3 minutes at 2x2, 10 at 8x8; iCEBreaker: under a minute), which is the slow step. --clock
defaults to the board's target (ULX3S 100 MHz, iCEBreaker 42); with --netlist and no --board, the
board of the netlist's family. Prints the slowest groups and writes every failing endpoint to --out.
The figures are estimates without placement (see the module's calibration note): read the
ranking and the logic levels; the routed Fmax is `qjoule synth`'s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from qjoule.config import board_config
from qjoule.errors import UserError
from qjoule.hw import synth
from qjoule.hw.boards import Board, board
from qjoule.hw.logic_depth import TimingGraph, group_endpoints


#: the board whose target a netlist's clock defaults to, by the netlist's family
BOARD_OF_FAMILY = {"ecp5": "ulx3s-85f", "ice40": "icebreaker"}


def synthesize_netlist(b: Board, q: int, rows: int | None, cols: int | None, build_dir: Path) -> Path:
    """Board `b`'s config at Q (optionally rows x cols) through the board's Yosys script."""
    cfg = board_config(b.name, q)
    if rows is not None or cols is not None:   # (0 is bad input for the config to refuse, not "not given")
        cfg = cfg.replace(rows=cfg.rows if rows is None else rows, cols=cfg.cols if cols is None else cols)
    synth.check_sprams(cfg, b)      # before Yosys, as `qjoule synth` refuses it
    return synth.yosys_netlist(synth.lane_pairs_for(cfg, b), b, build_dir)   # as `qjoule synth` builds it


def read_graph(args) -> tuple[Path, TimingGraph, Board]:
    """The netlist (synthesized first without --netlist), its timing graph and its board."""
    b = board(args.board) if args.board else None
    if args.netlist:
        netlist = args.netlist
    else:
        b = b or board("ulx3s-85f")
        netlist = synthesize_netlist(b, args.q, args.rows, args.cols, args.build / f"{b.name}_q{args.q}")
    graph = TimingGraph(json.loads(Path(netlist).read_text()))
    family = graph.model.name.lower()
    if b and b.family != family:
        raise UserError(f"--board {b.name} is an {b.family} board, the netlist is {graph.model.name}")
    return Path(netlist), graph, b or board(BOARD_OF_FAMILY[family])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--netlist", type=Path, help="a Yosys JSON netlist (an ECP5 or iCE40 build's top.json)")
    src.add_argument("--q", type=int, help="synthesize the board config at this Q")
    ap.add_argument("--board", help="ulx3s-85f (the default for --q) or icebreaker")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--build", type=Path, default=Path("build/logic_depth"))
    ap.add_argument("--clock", type=float, help="MHz (default: the board's target, ULX3S 100, iCEBreaker 42)")
    ap.add_argument("--top", type=int, default=30, help="groups to print")
    ap.add_argument("--out", type=Path, default=Path("logic_depth.json"))
    args = ap.parse_args(argv)
    if args.clock is not None and args.clock <= 0:
        print(f"logic_depth: --clock must be > 0 MHz, got {args.clock}", file=sys.stderr)
        return 2
    try:
        netlist, graph, b = read_graph(args)
    except (UserError, ValueError, OSError, subprocess.CalledProcessError) as e:   # Yosys failing too
        print(f"logic_depth: {e}", file=sys.stderr)
        return 2
    clock = b.default_mhz if args.clock is None else args.clock
    limit = 1000.0 / clock
    endpoints = graph.endpoints(limit)
    groups = group_endpoints(endpoints)
    worst = endpoints[0].ns if endpoints else None
    print(f"{netlist}: {len(endpoints)} endpoints over {limit:.2f} ns in {len(groups)} groups"
          + (f", slowest {worst} ns (estimate {1000 / worst:.1f} MHz)" if worst else ""))
    print(f"{'ends':>5} {'ns':>6} {'lvl':>3}  start -> end  (end's source)")
    for g in groups[:args.top]:
        print(f"{g['endpoints']:>5} {g['worst_ns']:>6} {g['levels']:>3}  {g['start']} -> {g['end']}  ({g['source']})")
    args.out.write_text(json.dumps({"netlist": str(netlist), "family": graph.model.name, "board": b.name,
                                    "clock_mhz": clock, "limit_ns": round(limit, 3),
                                    "endpoints": len(endpoints), "worst_ns": worst, "groups": groups}, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
