"""PNG plots of an energy study (matplotlib, Agg backend, no timestamps in the files).

- `complexity.png`: MACs, model size and largest feature map vs error, one curve per Q through
  that Q's Pareto set (Fig. 4);
- `energy_<M>.png`: energy vs error per Q at one memory size, each Q's Pareto front drawn as a
  line and the overall front ringed (Fig. 5 and 6);
- `breakdown_<M>.png`: the energy breakdown of each Q's minimum-energy network at the tightest
  error every Q reaches (the largest of the per-Q best errors), as stacked bars;
- `memory_sweep.png`: each Q's minimum energy at that error vs M from 0.001 to 100 Mb (Fig. 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .energy_model import TERMS
from .energy_study import q_label
from .pareto import min_energy_at, pareto_front

# Fixed colours per Q so that every figure reads the same.
_COLOURS = {"1": "tab:red", "2": "tab:orange", "3": "tab:olive", "4": "tab:green", "5": "tab:cyan",
            "6": "tab:pink", "8": "tab:blue", "16": "tab:purple", "float": "black"}
_TERM_COLOURS = {"compute": "tab:blue", "local": "tab:orange", "main": "tab:green", "dram": "tab:red"}


def _colour(q: str) -> str:
    return _COLOURS.get(q, "tab:gray")


def _label(q: str) -> str:
    return "float" if q == "float" else f"int{q}"


def _save(fig, path: Path) -> None:
    # No Software/date metadata: the same study gives the same bytes.
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches="tight")


def write_plots(result: dict[str, Any], out: Path) -> list[str]:
    """Write all plots of `result` (an energy.json dict) into `out`; returns the file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = result["networks"]
    unit = result["unit"]
    by_q = {q: [n for n in nets if q_label(n["q"]) == q] for q in result["qs"]}
    names = []

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title in zip(axes, ("macs_hw", "model_bits", "max_feature_map_bits"),
                              ("MACs (first layer x ceil(8/Q))", "model size [bits]", "largest feature map [bits]")):
        for q, members in by_q.items():
            # All networks faintly, the line through this Q's Pareto set (as the paper's Fig. 4).
            errors, values = [n["test_error"] for n in members], [n["stats"][key] for n in members]
            ax.plot([100 * e for e in errors], values, "o", color=_colour(q), alpha=0.35, ms=4)
            front = pareto_front(errors, values)
            ax.plot([100 * errors[i] for i in front], [values[i] for i in front],
                    "o-", color=_colour(q), label=_label(q), ms=4, lw=1.2)
        ax.set_xlabel("test error [%]")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    _save(fig, out / "complexity.png")
    plt.close(fig)
    names.append("complexity.png")

    for m in result["memory"]:
        key = m["label"]
        front = result["pareto"][key]
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for q, members in by_q.items():
            ax.plot([100 * n["test_error"] for n in members], [n["energy"][key]["E_inf"] for n in members],
                    "o", color=_colour(q), alpha=0.45, ms=4)
            f = [nets[i] for i in front["per_q"][q]]
            ax.plot([100 * n["test_error"] for n in f], [n["energy"][key]["E_inf"] for n in f],
                    "-", color=_colour(q), label=_label(q), lw=1.5)
        overall = [nets[i] for i in front["all"]]
        ax.plot([100 * n["test_error"] for n in overall], [n["energy"][key]["E_inf"] for n in overall],
                "o", mfc="none", mec="k", ms=9, label="overall Pareto front")
        ax.set_yscale("log")
        ax.set_xlabel("test error [%]")
        ax.set_ylabel(f"energy per inference [{unit}]")
        ax.set_title(f"energy vs error, on-chip memory {_memory_text(m)}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        name = f"energy_{_file_label(key)}.png"
        _save(fig, out / name)
        plt.close(fig)
        names.append(name)

        target, picks = _common_picks(by_q, key)
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        bottom = [0.0] * len(picks)
        for term in TERMS:
            values = [n["energy"][key][term] for _, n in picks]
            ax.bar([_label(q) for q, _ in picks], values, bottom=bottom, color=_TERM_COLOURS[term], label=term)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel(f"energy per inference [{unit}]")
        ax.set_title(f"minimum-energy network per Q at error <= {100 * target:.2f}%, {_memory_text(m)}", fontsize=9)
        ax.legend(fontsize=8)
        name = f"breakdown_{_file_label(key)}.png"
        _save(fig, out / name)
        plt.close(fig)
        names.append(name)
    sweep = result["memory_sweep"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for q, values in sweep["per_q"].items():
        ax.plot(sweep["memory_mb"], values, "-", color=_colour(q), label=_label(q), lw=1.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("on-chip memory M [Mb] (weights M, activations M)")
    ax.set_ylabel(f"minimum energy per inference [{unit}]")
    ax.set_title(f"each Q's minimum energy at error <= {100 * sweep['target_error']:.2f}%", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out / "memory_sweep.png")
    plt.close(fig)
    names.append("memory_sweep.png")
    return names


def _file_label(label: str) -> str:
    """`2` -> `2Mb`; a config scenario keeps its name."""
    return label if label.startswith("config-") else f"{label}Mb"


def _memory_text(m: dict[str, Any]) -> str:
    if m["weights_mb"] == m["activations_mb"]:
        return f"M = {m['weights_mb']:g} Mb"
    return f"{m['label']}: weights {m['weights_mb']:.3g} Mb, activations {m['activations_mb']:.3g} Mb"


def _common_picks(by_q: dict[str, list[dict]], key: str) -> tuple[float, list[tuple[str, dict]]]:
    """Each Q's minimum-energy network at the tightest error every Q reaches."""
    target = max(min(n["test_error"] for n in members) for members in by_q.values())
    picks = []
    for q, members in by_q.items():
        k = min_energy_at([n["test_error"] for n in members], [n["energy"][key]["E_inf"] for n in members], target)
        picks.append((q, members[k]))
    return target, picks


def write_calibration_plot(report: dict[str, Any], path: Path) -> None:
    """Measured vs modelled energy per layer: the per-Q fit in sample, and each Q predicted by the
    laws fitted without it (leave one Q out), one colour per Q, the line y = x."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True)
    panels = [("per-Q fit, in sample", report["in_sample"]["per_q_tables"]["layers"]),
              ("laws without that Q (held out)", [row for r in report["held_out_q"] for row in r["layers"]])]
    values = [v for _, rows in panels for row in rows for v in (row["measured"], row["predicted"]) if v > 0]
    for ax, (title, rows) in zip(axes, panels):
        for q in sorted({row["q"] for row in rows}):
            pts = [(row["measured"], row["predicted"]) for row in rows if row["q"] == q and row["measured"] > 0
                   and row["predicted"] > 0]
            ax.plot([m for m, _ in pts], [p for _, p in pts], "o", color=_colour(str(q)), label=_label(str(q)),
                    ms=4, alpha=0.8)
        if values:
            ax.plot([min(values), max(values)], [min(values), max(values)], "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured energy per layer [{report['unit']}]")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"model [{report['unit']}]")
    axes[0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
