"""Power-of-two (shift-and-accumulate) array vs the multiplier array at the same lanes: area, Fmax, energy.

    .venv/bin/python bench/pot_area.py [--qs 3,4] [--boards ulx3s-85f,icebreaker] [--no-pnr]
        [--rows R --cols C] [--memory 2] [--build build/pot_area] [--out pot_area.json]

1. One PE per weight kind (Yosys only, seconds): LUT4 (an ECP5 CCU2C carry cell counts as 2),
   flip-flops and DSPs per lane, on synth_ecp5 (ulx3s variant) and synth_ice40 (icebreaker
   variant, products in LUTs as on the UP5K). This isolates the lane: same Q, same lanes S = D/Q.
2. The datapath alone (hw/datapath.py: MacArray + one PostProcess per column, the same design
   `bench/synth_sweep.py --design datapath` places) through Yosys + nextpnr on each board
   (qjoule.hw.synth.synthesize): LUT4, DSP, Fmax of the PoT array vs the multiplier array.
3. Modeled energy (qjoule.sw.energy_model, profiles moons2017 and horowitz45): a PoT lane MAC is
   priced at the uniform MAC energy times the measured area ratio (LUT4 + FF per lane, PoT over
   uniform, the ECP5 and the iCE40 PE) — switched capacitance taken as proportional to the logic a lane occupies, a
   named assumption; memories, words and DRAM traffic are the same Q bits for both kinds. Reported
   per MAC and for the digits network (blocks 1, width 32, 8x8) at --memory Mb, against the
   paper's (Przewlocka-Rus & Kryjak) >= 1.4x.

Prints tables and writes every figure to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qjoule.config import BOARD_VARIANTS, variant
from qjoule.hw.pe_area import FAMILIES
from qjoule.hw.pe_area import pe_cells as hw_pe_cells

KINDS = ("uniform", "pot")
#: PE designs compared: (label, weights, lut_products override, pot_hold_zero). "uniform-dsp" is
#: the multiplier PE with its lane products written as multiplies (ECP5 maps them to MULT18X18D);
#: "pot-hold" is the PoT PE with clock-gated lanes (no flop toggle on zero weights, plus a mask).
PE_DESIGNS = {
    "uniform": ("uniform", None, False),
    "uniform-dsp": ("uniform", False, False),
    "pot": ("pot", None, False),
    "pot-hold": ("pot", None, True),
}
PAPER_RATIO = 1.4


def pe_cells(family: str, q: int, design: str) -> dict:
    """One PE (a design of PE_DESIGNS) through Yosys alone: cell counts per PE and per lane."""
    weights, lut_products, hold_zero = PE_DESIGNS[design]
    return {**hw_pe_cells(family, q, weights=weights, lut_products=lut_products, pot_hold_zero=hold_zero),
            "design": design}


def datapath_pnr(board: str, q: int, weights: str, build: Path, changes: dict) -> dict:
    from qjoule.errors import UserError
    from qjoule.hw.synth import synthesize

    cfg = variant(BOARD_VARIANTS[board], q, weights=weights, **changes)
    try:
        report = synthesize(cfg, board, build / f"{board}-q{q}-{weights}", design="datapath")
    except UserError as e:  # e.g. does not fit: recorded, not fatal
        return {"board": board, "q": q, "weights": weights, "p": cfg.parallelism, "error": str(e)}
    report.pop("yosys_cells")
    return {"weights": weights, **report}


def energy_ratios(qs, area_ratio: dict[str, dict[int, float]], memory_mb: float) -> list[dict]:
    """Uniform over PoT inference energy when only the MAC energy changes (by the area ratio of
    each family's PE)."""
    from qjoule.sw.energy_model import network_energy
    from qjoule.sw.energy_profiles import load_profile
    from qjoule.sw.netstats import describe_topology

    layers = describe_topology((1, 8, 8), 10, 1, 32)
    rows = []
    for profile_name in ("moons2017", "horowitz45"):
        profile = load_profile(profile_name)
        for family, ratios in area_ratio.items():
            for q in qs:
                e = network_energy(layers, q, memory_mb, profile)
                compute = e["compute"]
                pot_total = e["E_inf"] - compute + compute * ratios[q]
                rows.append({"profile": profile_name, "area_from": family, "q": q, "memory_mb": memory_mb,
                             "unit": e["unit"], "mac_energy_ratio": round(1.0 / ratios[q], 3),
                             "compute_share": round(compute / e["E_inf"], 3),
                             "E_inf_uniform": e["E_inf"], "E_inf_pot": pot_total,
                             "network_energy_ratio": round(e["E_inf"] / pot_total, 3)})
    return rows


def table(rows: list[dict], cols: tuple[str, ...]) -> str:
    lines = ["  ".join(f"{c:>14}" for c in cols)]
    lines += ["  ".join(f"{r.get(c, '-')!s:>14}" for c in cols) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qs", default="3,4")
    parser.add_argument("--boards", default="ulx3s-85f,icebreaker")
    parser.add_argument("--no-pnr", action="store_true", help="PE area and energy only (no place and route)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--cols", type=int, default=None)
    parser.add_argument("--memory", type=float, default=2.0, help="on-chip memory M in Mb for the energy model")
    parser.add_argument("--build", default="build/pot_area")
    parser.add_argument("--out", default="pot_area.json")
    args = parser.parse_args()
    qs = [int(v) for v in args.qs.split(",")]
    boards = [b for b in args.boards.split(",") if b]
    changes = {k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v is not None}

    pe = []
    for family in FAMILIES:
        for q in qs:
            for design in PE_DESIGNS:
                if design == "uniform-dsp" and family != "ecp5":
                    continue  # the UP5K's 8 DSPs stay with post-processing: its lanes are always LUTs
                pe.append(pe_cells(family, q, design))
                print(f"PE {family} q={q} {design}: {pe[-1]['luts_per_lane']} LUT4/lane", file=sys.stderr, flush=True)
    print("One PE, Yosys only:")
    print(table(pe, ("family", "q", "design", "lanes", "acc_bits", "luts", "ffs", "dsps", "luts_per_lane",
                     "ffs_per_lane", "dsps_per_lane")))

    def per_lane(family, q, design):
        r = next(r for r in pe if (r["family"], r["q"], r["design"]) == (family, q, design))
        return r["luts_per_lane"] + r["ffs_per_lane"]
    area_ratio = {family: {q: per_lane(family, q, "pot") / per_lane(family, q, "uniform") for q in qs}
                  for family in FAMILIES}

    pnr = []
    if not args.no_pnr:
        for board in boards:
            for q in qs:
                for kind in KINDS:
                    print(f"place and route: datapath {board} q={q} {kind} ...", file=sys.stderr, flush=True)
                    pnr.append(datapath_pnr(board, q, kind, Path(args.build), changes))
        print("\nDatapath (array + post-processing), Yosys + nextpnr:")
        print(table(pnr, ("board", "q", "weights", "p", "acc_bits", "luts", "ffs", "dsps", "luts_per_lane",
                          "fmax_mhz", "seconds", "error")))

    energy = energy_ratios(qs, area_ratio, args.memory)
    print(f"\nModeled energy, uniform / PoT (MAC priced by the PE area ratio; paper: >= {PAPER_RATIO}x):")
    print(table(energy, ("profile", "area_from", "q", "memory_mb", "mac_energy_ratio", "compute_share",
                         "network_energy_ratio")))
    Path(args.out).write_text(json.dumps({"args": vars(args), "pe": pe, "area_ratio_pot_over_uniform": area_ratio,
                                          "datapath": pnr, "energy": energy, "paper_ratio": PAPER_RATIO},
                                         indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
