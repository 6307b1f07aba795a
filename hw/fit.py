"""Design-space searches on top of `synthesize`: the largest array that fits a board and meets its
clock (`fit`), and area / Fmax / p per Q (`sweep_q`).

`fit` walks a chain of array shapes, each twice the PEs of the one before ((1,1), (1,2), (2,2),
(2,4), ...), and bisects it with real place-and-route runs: a shape passes when it fits the device
and meets the clock. Before any run, `estimate` (block RAMs and SPRAMs from the memories' shapes,
DSPs from `dsp_demand`, LUTs from per-lane figures measured by bench/synth_pe_area.py) prunes
shapes that cannot fit; a pruned shape counts as a failure without place and route. The search assumes that
a larger array never fits or closes timing where a smaller one did not. Every shape tried,
pruned or run, is in the result.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from qjoule.config import AccelConfig
from qjoule.errors import UserError

from .boards import Board, board

__all__ = ["estimate", "fit", "shape_chain", "sweep_q", "PRUNE_MARGIN"]

#: A shape is pruned when an estimate exceeds the device by more than this factor (the LUT
#: estimate is rough; block RAMs and DSPs are close to what the tools report).
PRUNE_MARGIN = 1.25

# LUT4 per lane MAC, measured per PE (bench/synth_pe_area.py, docs/results.md), and per
# post-processing column; the sequencer and the input unit on top.
_LUTS_PER_LANE = {"ecp5": {1: 15, 2: 24.5, 4: 78, 8: 40, 16: 93}, "ice40": {1: 12, 2: 24, 4: 60, 8: 189, 16: 688}}
_LUTS_PER_COLUMN = 1000
#: The sequencer, input unit and host link on top of the lanes and columns. iCE40: logic cells
#: (ICESTORM_LC, a LUT4 and a flip-flop each; most of this logic's flip-flops take a cell of their
#: own), from the UP5K build of the whole accelerator with the UART link at 1×1, Q = 4, with
#: the icebreaker's compact control and no dump engine: 4,872 cells = 3,632 + 4 lanes × 60 +
#: 1 column × 1,000 (docs/results.md, "Session 5: the UP5K"; 6,396 in session 4 and 7,742 in
#: session 3, before the input unit, post-processing, link and sequencer were narrowed). The
#: other Q measured against the estimate: 1: 5,030 (est. 4,824), 2: 4,606 (4,824), 8: 4,833
#: (4,672), 16: 5,209 (4,652; its 48-bit bias and 45-bit accumulator widen the post-processing).
_LUTS_FIXED = {"ecp5": 3000, "ice40": 3632}
#: LUT4 per lane whose product is in a DSP block (iCE40 `ice40_dsp_products`): its lane-sum and
#: accumulator share.
_LUTS_PER_DSP_LANE = 20


def _lane_luts(family: str, q: int) -> float:
    table = _LUTS_PER_LANE[family]
    known = max(k for k in table if k <= q)  # Q between the measured ones: the next lower
    return table[known] * q / known if known < 8 <= q else table[known]


def _memory_blocks(b: Board, width: int, depth: int, granularity: int) -> int:
    """Block RAMs for a `width` × `depth` memory written `granularity` bits at a time."""
    if b.family == "ecp5":
        # DP16KD: 16k×1 .. 512×36; byte enables (9-bit bytes) only at widths 18 and 36. A block
        # written by parts holds whole lanes (one per byte, or one alone) or bits of one lane.
        shapes = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
        best = None
        for d, w in shapes:
            deep = math.ceil(depth / d)
            if granularity >= width:
                n = math.ceil(width / w) * deep
            elif w <= granularity and granularity % w == 0:
                n = width // w * deep                      # each lane over granularity/w blocks
            elif w >= 18 and granularity <= 9:
                n = math.ceil(width // granularity / (w // 9)) * deep   # a lane per byte
            elif w >= granularity:
                n = width // granularity * deep            # a lane per block
            else:
                continue  # a block's word would straddle two lanes
            best = n if best is None else min(best, n)
        return best
    # iCE40 EBR (4 kb, per-bit write mask): 256×16 .. 2048×2
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in [(256, 16), (512, 8), (1024, 4), (2048, 2)])


def estimate(cfg: AccelConfig, board_name: str, design: str = "accel") -> dict:
    """Rough resource demand of `design` ("accel": the whole accelerator; "datapath": the MAC array
    and post-processing, no memories) for `cfg` on a board (for pruning). Block RAMs: the
    activation and weight buffers unless in SPRAM (`act_memory`, `weight_memory`: one
    SB_SPRAM256KA per bank half; ceil(C·D/16) for the weights), the param buffer and the layer
    table (LAYER_BITS-wide entries, or 32-bit words with `layer_table` "words"); the UART host
    link's buffers are not counted."""
    from qjoule.gateware.buffers import spram_count
    from qjoule.gateware.pe import ice40_dsp_products
    from qjoule.program import (LAYER_BITS, LAYER_WORDS, MAX_LAYERS, WORD_BITS, bank_depth, param_word_bits,
                                param_words, weight_word_bits)

    from .synth import dsp_demand

    b = board(board_name)
    lane = _LUTS_PER_DSP_LANE if b.family == "ice40" and ice40_dsp_products(cfg) else _lane_luts(b.family, cfg.q)
    # `lut_lanes` above Q = 4 build their products from LUTs: the iCE40's per-lane figures are of
    # LUT products at every Q (an ECP5 build measured 52,559 LUT4 at 8×8, Q = 8, all lanes so)
    lut_lane = _lane_luts("ice40", cfg.q) if cfg.q > 4 else lane
    pes = cfg.rows * cfg.cols
    lanes_and_columns = (pes * ((cfg.lanes - cfg.lut_lanes) * lane + cfg.lut_lanes * lut_lane)
                         + cfg.cols * _LUTS_PER_COLUMN)
    if design == "datapath":
        return {"luts": round(lanes_and_columns), "dsps": dsp_demand(cfg, b), "brams": 0, "sprams": 0}
    brams = sprams = 0
    if cfg.act_memory == "spram":
        sprams += cfg.rows * 2 * spram_count(cfg.datapath, bank_depth(cfg))
    else:
        brams += cfg.rows * _memory_blocks(b, cfg.datapath, 2 * bank_depth(cfg), cfg.q)
    if cfg.weight_memory == "spram":
        sprams += spram_count(weight_word_bits(cfg), cfg.weight_words)
    else:
        brams += _memory_blocks(b, weight_word_bits(cfg), cfg.weight_words, weight_word_bits(cfg))
    brams += _memory_blocks(b, param_word_bits(cfg), param_words(cfg), param_word_bits(cfg))
    if cfg.layer_table == "words":
        brams += _memory_blocks(b, WORD_BITS, MAX_LAYERS * LAYER_WORDS, WORD_BITS)
    else:
        brams += _memory_blocks(b, LAYER_BITS, MAX_LAYERS, LAYER_BITS)
    return {"luts": round(_LUTS_FIXED[b.family] + lanes_and_columns), "dsps": dsp_demand(cfg, b), "brams": brams,
            "sprams": sprams}


def _over(est: dict, b: Board) -> str | None:
    """The first resource the estimate overflows (SPRAMs: at all; block RAMs and LUTs: by more
    than PRUNE_MARGIN), as a phrase."""
    if est.get("sprams", 0) > b.sprams:
        return f"estimated {est['sprams']} sprams > {b.sprams}"
    for key, avail in (("brams", b.brams), ("luts", b.luts)):
        if est[key] > PRUNE_MARGIN * avail:
            return f"estimated {est[key]} {key} > {PRUNE_MARGIN} x {avail}"
    return None


def shape_chain(max_rows: int = 64, max_cols: int = 64) -> list[tuple[int, int]]:
    """(1,1), (1,2), (2,2), (2,4), (4,4), ...: each shape twice the PEs of the one before."""
    chain, r, c = [(1, 1)], 1, 1
    while True:
        if c <= r:
            c *= 2
        else:
            r *= 2
        if r > max_rows or c > max_cols:
            return chain
        chain.append((r, c))


Synth = Callable[[AccelConfig, Path], dict]


def fit(base: AccelConfig, board_name: str, build_dir: Path, synth: Synth, *, design: str = "accel",
        chain: list[tuple[int, int]] | None = None, progress=None) -> dict:
    """The largest shape of `chain` (default `shape_chain()`) at `base`'s Q that fits and meets the
    clock. `synth(cfg, build_dir)` runs place and route and returns its report (raising UserError
    when the design does not fit). Returns {"best": report or None, "tried": [...]}."""
    b = board(board_name)
    chain = chain or shape_chain()
    tried: list[dict] = []
    results: dict[int, bool] = {}

    def attempt(i: int) -> bool:
        if i in results:
            return results[i]
        rows, cols = chain[i]
        cfg = base.replace(rows=rows, cols=cols)
        est = estimate(cfg, board_name, design)
        entry = {"rows": rows, "cols": cols, "p": cfg.parallelism, "estimate": est}
        reason = _over(est, b)
        if reason is not None:
            entry.update(outcome="pruned", reason=reason)
            ok = False
        else:
            try:
                report = synth(cfg, Path(build_dir) / f"r{rows}c{cols}")
            except UserError as e:
                if "does not fit" not in str(e):
                    raise
                entry.update(outcome="does not fit", reason=str(e))
                ok = False
            else:
                report.pop("yosys_cells", None)
                ok = bool(report["timing_met"]) and report["check"]["ok"]
                entry.update(outcome="pass" if ok else ("timing missed" if not report["timing_met"] else "check failed"),
                             report=report)
        tried.append(entry)
        if progress is not None:
            progress(entry)
        results[i] = ok
        return ok

    # Bisect for the last index that passes: lo passes (or is -1), hi fails (or is len).
    lo, hi = -1, len(chain)
    # Every shape the estimate rules out is recorded as pruned; the search starts from the largest
    # one it admits, so a board that holds it costs one run.
    admitted = [i for i, (r, c) in enumerate(chain)
                if _over(estimate(base.replace(rows=r, cols=c), board_name, design), b) is None]
    for i in range(len(chain)):
        if i not in admitted:
            attempt(i)
    if admitted:
        top = admitted[-1]
        if attempt(top):
            lo = top
        else:
            hi = top
    else:
        hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    best = next((t["report"] for t in tried if t["outcome"] == "pass" and (t["rows"], t["cols"]) == chain[lo]), None) \
        if lo >= 0 else None
    return {"best": best, "tried": tried}


def sweep_q(configs: list[AccelConfig], build_dir: Path, synth: Synth, *, progress=None) -> list[dict]:
    """One synthesis per config (one per Q); a config that does not fit is a row with its error."""
    rows = []
    for cfg in configs:
        try:
            report = synth(cfg, Path(build_dir) / f"q{cfg.q}")
        except UserError as e:
            if "does not fit" not in str(e):
                raise
            report = {"q": cfg.q, "p": cfg.parallelism, "rows": cfg.rows, "cols": cfg.cols, "error": str(e)}
        report.pop("yosys_cells", None)
        rows.append(report)
        if progress is not None:
            progress(report)
    return rows
