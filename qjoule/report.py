"""`OUT/report/report.md`: the flow's figures in one readable page, with PNG plots beside it."""

from __future__ import annotations

from pathlib import Path

from .flow import FlowContext


def write_flow_report(ctx: FlowContext, stage: Path) -> Path:
    o = ctx.outputs
    lines = [f"# qjoule flow: {ctx.params['dataset']}, Q = {ctx.params['q']}", ""]
    lines += ["| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in ctx.params.items()]
    if "train" in o:
        m = o["train"]["metrics"]
        lines += ["", "## Training and export", "",
                  "| figure | value |", "|---|---|",
                  f"| test accuracy (fake-quantized PyTorch) | {m['test_accuracy']:.4f} |",
                  f"| test accuracy (integer golden model) | {m['int_test_accuracy']:.4f} |",
                  f"| prediction agreement | {m['int_agreement']:.4f} |",
                  f"| MACs per inference | {m['macs']:,} |",
                  f"| weights | {m['weights']:,} |",
                  f"| model size | {m['model_bits'] / 8 / 1024:.1f} KiB |",
                  f"| largest feature map | {m['max_feature_map_bits'] / 8 / 1024:.1f} KiB |",
                  f"| training time | {m['train_seconds']:.1f} s |"]
    if "generate" in o:
        g = o["generate"]
        lines += ["", "## Accelerator", "",
                  f"`{g['verilog']}`: {g['rows']}×{g['cols']} array, {g['lanes']} lanes per PE, p = {g['p']} lane MACs per cycle."]
    if "simulate" in o:
        sim = o["simulate"]
        lines += ["", f"## RTL simulation ({sim['simulator']})", "",
                  f"{sim['images']} test images, every layer compared with the golden model: "
                  f"**{'bit-exact' if sim['match'] else 'MISMATCH'}**. "
                  f"{sim['cycles_per_image']:.0f} cycles per image, MAC utilization {sim['utilization']:.1%}.", "",
                  "| layer | kind | cycles | utilization | lane MACs (measured) | MACs (model N_c) |",
                  "|---|---|---|---|---|---|"]
        for row in sim["per_layer"]:
            util = "-" if row["utilization"] in (None, 0) else f"{row['utilization']:.1%}"
            lines.append(f"| {row['layer']} | {row['kind']} | {row['cycles']} | {util} | "
                         f"{row.get('mac_lane_ops', '-')} | {row.get('model_macs', '-')} |")
    if "calibrate" in o:
        held = o["calibrate"]["held_out_layer_error"]
        lines += ["", "## Calibration", "",
                  "Per-event energies fitted to the simulated activity (toggles × per-bit energy of the base profile)"
                  + (f"; held-out layers mean |error| {held:.1%}." if held is not None else ".")]
    if "energy" in o:
        e = o["energy"]
        lines += ["", f"## Energy per inference ({e['profile']} profile, unit {e['unit']})", "",
                  "| on-chip memory (Mb) | E_inf |", "|---|---|"]
        lines += [f"| {m} | {v:.4g} |" for m, v in e["E_inf"].items()]
        lines += ["", "Breakdown at 2 Mb: " + ", ".join(f"{k} = {v:.4g}" for k, v in e["breakdown_2mb"].items())]
        _plot_breakdown(e["breakdown_2mb"], e["unit"], stage / "energy_breakdown.png")
        lines += ["", "![energy breakdown](energy_breakdown.png)"]
    if "synth" in o:
        r = o["synth"]
        lines += ["", f"## FPGA ({r['board']}, {r['device']})", "",
                  "| LUTs | FFs | DSPs | BRAMs | Fmax (MHz) | target (MHz) | timing met | seconds |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {r['luts']} | {r['ffs']} | {r['dsps']} | {r['brams']} | {r['fmax_mhz']:.1f} | {r['target_mhz']} | "
                  f"{'yes' if r['timing_met'] else 'NO'} | {r['seconds']:.0f} |"]
    path = stage / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot_breakdown(breakdown: dict[str, float], unit: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(breakdown)
    ax.bar(names, [breakdown[n] for n in names], color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    ax.set_ylabel(f"energy ({unit})")
    ax.set_title("energy per inference at M = 2 Mb")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
