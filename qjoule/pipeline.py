"""The steps of `qjoule flow`: one trained network carried from data to a report.

Each step calls the same Python API as its own command (`qjoule train`, `qjoule energy`, ...),
works in `OUT/<step>/` and returns what later steps need; its check states what must hold before
the flow goes on. See qjoule.flow for resume/skip/failure semantics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .flow import FlowContext, Step, StepCheckFailed
from .io import write_json

#: Integer model vs fake-quantized PyTorch model: predictions may differ only at rounding ties.
MIN_EXPORT_AGREEMENT = 0.99
MEMORIES_MB = (0.5, 2.0, 100.0)


def _train(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .sw.quant import parse_q
    from .sw.train import TrainConfig, train

    p = ctx.params
    config = TrainConfig(dataset=p["dataset"], q=parse_q(str(p["q"])), blocks=p["blocks"], width=p["width"],
                         epochs=p["epochs"], seed=p["seed"])
    metrics = train(config, stage, progress=True)
    return {"metrics": metrics, "model": str(ctx.step_dir("train") / "model.qjm")}


def _check_train(ctx: FlowContext, outputs: dict[str, Any]) -> None:
    agreement = outputs["metrics"]["int_agreement"]
    if agreement is None:
        raise StepCheckFailed("the float baseline has no integer model; the flow needs --q 1..16")
    if agreement < MIN_EXPORT_AGREEMENT:
        raise StepCheckFailed(f"the integer model agrees with the PyTorch model on only {agreement:.3%} of test "
                              f"images (expected >= {MIN_EXPORT_AGREEMENT:.0%}): export is wrong")


def _energy(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .sw import intmodel
    from .sw.energy_model import network_energy
    from .sw.energy_profiles import load_profile

    model = intmodel.load(ctx.outputs["train"]["model"])
    profile = load_profile(ctx.params["profile"])
    per_memory = [network_energy(model.layers, model.q, m, profile) for m in MEMORIES_MB]
    write_json(stage / "energy.json", {"profile": ctx.params["profile"], "results": per_memory})
    return {"profile": ctx.params["profile"], "unit": per_memory[0]["unit"],
            "E_inf": {str(m): r["E_inf"] for m, r in zip(MEMORIES_MB, per_memory)},
            "breakdown_2mb": {k: per_memory[1][k] for k in ("E_C", "E_W", "E_A", "E_DRAM")}}


def _check_energy(ctx: FlowContext, outputs: dict[str, Any]) -> None:
    values = list(outputs["E_inf"].values())
    if not all(v > 0 for v in values):
        raise StepCheckFailed(f"energy per inference must be positive, got {values}")
    if sorted(values, reverse=True) != values:
        raise StepCheckFailed(f"energy must not grow with on-chip memory, got {outputs['E_inf']}")


def _report(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .report import write_flow_report

    path = write_flow_report(ctx, stage)
    return {"report": str(ctx.step_dir("report") / path.name)}


def flow_steps() -> list[Step]:
    key_train = lambda ctx: {k: ctx.params[k] for k in ("dataset", "q", "blocks", "width", "epochs", "seed")}  # noqa: E731
    return [
        Step("train", _train, _check_train, key=key_train),
        Step("energy", _energy, _check_energy, key=lambda ctx: {**key_train(ctx), "profile": ctx.params["profile"]}),
        Step("report", _report, key=lambda ctx: ctx.params),
    ]
