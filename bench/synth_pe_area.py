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
from pathlib import Path

from qjoule.hw.pe_area import FAMILIES, pe_cells

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
