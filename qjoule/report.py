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
    if "energy" in o:
        e = o["energy"]
        lines += ["", f"## Energy per inference ({e['profile']} profile, unit {e['unit']})", "",
                  "| on-chip memory (Mb) | E_inf |", "|---|---|"]
        lines += [f"| {m} | {v:.4g} |" for m, v in e["E_inf"].items()]
        lines += ["", "Breakdown at 2 Mb: " + ", ".join(f"{k} = {v:.4g}" for k, v in e["breakdown_2mb"].items())]
        _plot_breakdown(e["breakdown_2mb"], e["unit"], stage / "energy_breakdown.png")
        lines += ["", "![energy breakdown](energy_breakdown.png)"]
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
