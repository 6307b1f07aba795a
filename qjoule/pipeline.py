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


def _generate(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .gateware.top import QjouleAccel
    from .hw.verilog import emit_verilog
    from .program import board_config_for_model
    from .sw import intmodel

    model = intmodel.load(ctx.outputs["train"]["model"])
    cfg = board_config_for_model(ctx.params["board"], model)
    (stage / "qjoule_accel.v").write_text(emit_verilog(QjouleAccel(cfg), "qjoule_accel"))
    (stage / "accel.json").write_text(cfg.to_json())
    folder = ctx.step_dir("generate")
    return {"verilog": str(folder / "qjoule_accel.v"), "config": str(folder / "accel.json"),
            "p": cfg.parallelism, "rows": cfg.rows, "cols": cfg.cols, "lanes": cfg.lanes}


def _simulate(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .config import AccelConfig
    from .sim.simulate import pick_images, simulate
    from .sw import intmodel

    model_path = ctx.outputs["train"]["model"]
    model = intmodel.load(model_path)
    cfg = AccelConfig.load(ctx.outputs["generate"]["config"])
    images = pick_images(ctx.params["dataset"], ctx.params["sim_images"], 0, model.input_shape)
    result = simulate(model_path=model_path, cfg=cfg, images=images, work=stage, sim=ctx.params["sim"],
                      seed=ctx.params["seed"], reproduce="qjoule flow (step simulate)")
    write_json(stage / "result.json", result)
    return {key: result.get(key) for key in ("match", "images", "cycles", "cycles_per_image", "utilization",
                                              "simulator", "error")} | {
        "activity": str(ctx.step_dir("simulate") / "activity.json"), "per_layer": result["per_layer"]}


def _check_simulate(ctx: FlowContext, outputs: dict[str, Any]) -> None:
    if not outputs["match"]:
        raise StepCheckFailed(f"the RTL differs from the golden model or stopped: {outputs.get('error') or 'mismatch'}; "
                              f"see {ctx.step_dir('simulate')}/result.json")


def _calibrate(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .sw.calibrate import calibrate, read_activity
    from .sw.energy_profiles import load_profile

    base = load_profile(ctx.params["profile"])
    activity = Path(ctx.outputs["simulate"]["activity"])
    profile, report = calibrate(read_activity(activity, base), base, None, [str(activity)])
    write_json(stage / "profile.json", profile.to_dict())
    write_json(stage / "calibration.json", report)
    held = report["held_out_layers"]["mean_abs_rel_error"]
    return {"profile": str(ctx.step_dir("calibrate") / "profile.json"), "held_out_layer_error": held,
            "per_q": report["per_q"]}


def _synth(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .config import AccelConfig
    from .hw.synth import synthesize

    cfg = AccelConfig.load(ctx.outputs["generate"]["config"])
    report = synthesize(cfg, ctx.params["board"], stage / "build")
    write_json(stage / "report.json", report)
    return {k: report.get(k) for k in ("board", "device", "q", "p", "luts", "ffs", "dsps", "brams",
                                       "fmax_mhz", "target_mhz", "timing_met", "seconds", "check")}


def _check_synth(ctx: FlowContext, outputs: dict[str, Any]) -> None:
    if not outputs["check"]["ok"]:
        raise StepCheckFailed(f"the synthesized design holds less logic than the config implies "
                              f"({outputs['ffs']} FFs, {outputs['luts']} LUTs): something was optimized away")


def _energy(ctx: FlowContext, stage: Path) -> dict[str, Any]:
    from .sw import intmodel
    from .sw.energy_model import network_energy
    from .sw.energy_profiles import load_profile

    model = intmodel.load(ctx.outputs["train"]["model"])
    calibrated = ctx.outputs.get("calibrate", {}).get("profile")
    profile = load_profile(calibrated or ctx.params["profile"])
    per_memory = [network_energy(model.layers, model.q, m, profile) for m in MEMORIES_MB]
    name = f"calibrated from {ctx.params['profile']}" if calibrated else ctx.params["profile"]
    write_json(stage / "energy.json", {"profile": name, "results": per_memory})
    return {"profile": name, "unit": per_memory[0]["unit"],
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
    train_keys = ("dataset", "q", "blocks", "width", "epochs", "seed")
    key_train = lambda ctx: {k: ctx.params[k] for k in train_keys}  # noqa: E731
    key_hw = lambda ctx: {**key_train(ctx), "board": ctx.params["board"]}  # noqa: E731
    key_sim = lambda ctx: {**key_hw(ctx), "sim": ctx.params["sim"], "sim_images": ctx.params["sim_images"]}  # noqa: E731
    key_energy = lambda ctx: {**key_sim(ctx), "profile": ctx.params["profile"]}  # noqa: E731
    return [
        Step("train", _train, _check_train, key=key_train),
        Step("generate", _generate, key=key_hw),
        Step("simulate", _simulate, _check_simulate, key=key_sim),
        Step("calibrate", _calibrate, key=key_energy),
        Step("energy", _energy, _check_energy, key=key_energy),
        Step("synth", _synth, _check_synth, key=key_hw),
        Step("report", _report, key=lambda ctx: ctx.params),
    ]
