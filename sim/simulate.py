"""`qjoule simulate`: generate the RTL for a model, run test images through it in a real
simulator (cocotb + Icarus or Verilator), and check every layer against the golden model."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from qjoule.config import AccelConfig
from qjoule.errors import UserError
from qjoule.io import write_json
from qjoule.program import variant_for_model

from .runner import check_simulator, run_cocotb

TOPLEVEL = "qjoule_accel"

# Yosys writes every combinational `always @*` block with a dummy sensitivity on a register
# initialised to 0 at its declaration, so the block runs once at time 0. Icarus may run that
# initialiser before the blocks wait on it (a time-0 race, amaranth-lang/amaranth#1629), leaving
# combinational nets X until an input changes. The simulated copy therefore initialises those dummy
# registers one time step later; they drive nothing, so the logic is the generated logic.
_TIME0_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)\s+= 0;$", re.M)


def icarus_time0_safe(verilog: str) -> str:
    """The generated Verilog with Yosys's time-0 trigger registers initialised at #1 (see above)."""
    return _TIME0_TRIGGER.sub(lambda m: f"{m.group(1)}reg {m.group(2)} ;\n{m.group(1)}initial #1 {m.group(2)} = 1'h0;",
                              verilog)


def config_for(model, config_path: str | None, q: int | None) -> AccelConfig:
    """The accelerator to simulate: the given config file, else the `tiny` variant at the model's Q
    and weight kind; for a per-layer-Q model, with the modes its layers run at (`--q`: the first
    layer's mode)."""
    if model.q is None:  # per-layer Qs: encode checks the config's modes
        if config_path:
            return AccelConfig.load(config_path)
        if q is None:
            return variant_for_model("tiny", model)
        from qjoule.config import variant
        from qjoule.program import layer_modes, model_weights
        modes = layer_modes(model, q)
        return variant("tiny", q=q, q_modes=tuple(sorted(set(modes))), weights=model_weights(model))
    if q is not None and q != model.q:
        raise UserError(f"--q {q} does not match the model's Q {model.q}")
    cfg = AccelConfig.load(config_path) if config_path else variant_for_model("tiny", model)
    if cfg.q != model.q and not cfg.mixed:
        raise UserError(f"config Q {cfg.q} does not match the model's Q {model.q}")
    return cfg


def pick_images(dataset: str, count: int, first: int, input_shape) -> np.ndarray:
    from qjoule.sw import data

    if count < 1:
        raise UserError(f"--images must be >= 1, got {count!r}")
    ds = data.load(dataset)
    if tuple(ds.input_shape) != tuple(input_shape):
        raise UserError(f"data set {dataset!r} has images {tuple(ds.input_shape)}, the model takes {tuple(input_shape)}")
    n = len(ds.test_x)
    if first < 0 or first + count > n:
        raise UserError(f"images {first}..{first + count - 1} are out of range: the {dataset!r} test split has {n} (0..{n - 1})")
    return np.ascontiguousarray(ds.test_x[first:first + count])


def simulate(*, model_path: str, cfg: AccelConfig, images: np.ndarray, work: Path, sim: str = "icarus",
             seed: int = 0, gap_probability: float = 0.2, stall_probability: float = 0.2, debug: bool = True,
             reproduce: str = "", verilog_text: str | None = None) -> dict[str, Any]:
    """Run the images on the RTL in `work`; returns the result record (also written as result.json).
    `verilog_text`: simulate that Verilog instead of generating it (the same design twice)."""
    from qjoule.sw import intmodel

    model = intmodel.load(model_path)
    tb, outcome, seconds = run_jobs([{"model": model_path, "images": images}], cfg, work, sim=sim, seed=seed,
                                    gap_probability=gap_probability, stall_probability=stall_probability, debug=debug,
                                    verilog_text=verilog_text)
    if tb is None or tb.get("error"):
        return _failed(tb, outcome, sim, len(images), seconds, reproduce)
    result = summarize(tb["jobs"][0], cfg, sim, seconds, outcome, reproduce, tb.get("run", {}))
    if outcome.waves is not None:
        activity = write_activity(outcome.waves, cfg, model, model_path, len(images), sim, seed, debug, work)
        result["activity"] = "activity.json"
        _compare_with_model(result, activity, model)
    return result


def write_activity(waves: Path, cfg: AccelConfig, model, model_path: str, images: int, sim: str, seed: int,
                   debug: bool, work: Path) -> dict[str, Any]:
    import hashlib

    from .activity import capture

    run = {"name": Path(model_path).stem, "seed": seed, "simulator": sim, "model": str(model_path),
           "model_sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
           "debug_dump": debug}
    network = {"input": model.header["input"], "classes": model.classes,
               "layers": [{k: layer[k] for k in ("name", "kind", "in_shape", "out_shape")} for layer in model.layers]}
    from qjoule.program import encode
    hardware = [plan.name for plan in encode(model, cfg, debug=debug).layers]   # (fused pools run in their conv)
    verilog = (work / f"{TOPLEVEL}.v").read_text()
    activity = capture(waves, verilog, cfg, model.layers, images, run, network, hardware)
    write_json(work / "activity.json", activity)
    return activity


def _compare_with_model(result: dict[str, Any], activity: dict[str, Any], model) -> None:
    """Measured lane MACs beside the energy model's N_c: equal where its assumptions hold; the
    difference (padding taps the hardware skips, first-layer passes, empty lanes) is reported."""
    from qjoule.sw.netstats import network_stats

    q = model.q if model.q is not None else [layer["q_w"] for layer in model.layers if layer["kind"] != "maxpool2x2"]
    stats = {s.name: s for s in network_stats(model.layers, q).layers}
    images = result["images"]
    measured_by_name = {layer["name"]: layer for layer in activity["layers"]}
    for row in result["per_layer"]:
        measured = measured_by_name[row["layer"]]
        model_macs = stats[row["layer"]].macs * images
        row["mac_lane_ops"] = measured["mac_lane_ops"]
        row["model_macs"] = model_macs
        row["mac_difference"] = measured["mac_lane_ops"] - model_macs


def run_jobs(jobs: list[dict[str, Any]], cfg: AccelConfig, work: Path, *, sim: str = "icarus", seed: int = 0,
             gap_probability: float = 0.2, stall_probability: float = 0.2, debug: bool = True,
             waves: bool = True, verilog_text: str | None = None, max_cycles: int | None = None,
             stop_on_mismatch: bool = False):
    """Build the RTL for `cfg` once and run every job (model path + images [+ golden_model]) on it.

    `verilog_text` runs that Verilog instead of emitting it from `cfg` again (the same design on
    two simulators, or a mutant of it). `max_cycles`: how long an image may take before the run
    counts as hung (default: 10x the cycle estimate of the slowest job + 100,000).
    `stop_on_mismatch`: a job ends at its first differing image (mutation runs).

    Returns (testbench results, cocotb outcome, seconds). A model that does not fit the config
    fails here, before any simulation, with a one-line error.
    """
    from qjoule.gateware.top import QjouleAccel
    from qjoule.hw.verilog import emit_verilog
    from qjoule.program import encode
    from qjoule.sw import intmodel

    check_simulator(sim)
    work.mkdir(parents=True, exist_ok=True)
    budget, case_jobs = 0, []
    for i, job in enumerate(jobs):
        program = encode(intmodel.load(job["model"]), cfg, debug=debug)  # one line if it does not fit
        budget = max(budget, _cycle_budget(program, cfg))
        images_path = work / f"images-{i}.npy"
        np.save(images_path, np.asarray(job["images"]))
        case_jobs.append({"model": str(Path(job["model"]).resolve()), "images": str(images_path.resolve()),
                          **({"golden_model": str(Path(job["golden_model"]).resolve())} if job.get("golden_model") else {})})
    generated = verilog_text if verilog_text is not None else emit_verilog(QjouleAccel(cfg), TOPLEVEL)
    verilog = work / f"{TOPLEVEL}.v"
    verilog.write_text(generated)
    if sim == "icarus":  # Verilator evaluates every combinational block at start: no fix needed
        verilog = work / f"{TOPLEVEL}.sim.v"
        verilog.write_text(icarus_time0_safe(generated))
    (work / "accel.json").write_text(cfg.to_json())
    tb_result = work / "tb_result.json"
    case = {"config": str((work / "accel.json").resolve()), "jobs": case_jobs, "seed": seed, "debug": debug,
            "gap_probability": gap_probability, "stall_probability": stall_probability,
            "max_cycles": max_cycles or 10 * budget + 100_000, "stop_on_mismatch": stop_on_mismatch,
            "result": str(tb_result.resolve())}
    write_json(work / "case.json", case)
    started = time.monotonic()
    outcome = run_cocotb(verilog_path=verilog, toplevel=TOPLEVEL, test_module="qjoule.sim.tb_accel",
                         build_root=work / "build", sim=sim, seed=seed, waves=waves,
                         extra_env={"QJOULE_TB_CASE": str((work / "case.json").resolve())})
    seconds = time.monotonic() - started
    tb = json.loads(tb_result.read_text()) if tb_result.exists() else None
    return tb, outcome, seconds


def run_cases(cases, work: Path, *, sim: str = "icarus", waves: bool = True) -> tuple[int, list[str]]:
    """Run randomized cases (qjoule.sim.cases) on the RTL, one simulation per accelerator config.

    Returns (cases run, failures): each failure names the case and its first difference."""
    from qjoule.sw import intmodel

    from .checker import failures

    by_config: dict[AccelConfig, list] = {}
    for case in cases:
        by_config.setdefault(case.cfg, []).append(case)
    ran, found = 0, []
    for i, (cfg, group) in enumerate(sorted(by_config.items(), key=lambda kv: kv[1][0].seed)):
        jobs = []
        for case in group:
            path = Path(work) / f"case-{case.seed}.qjm"
            path.parent.mkdir(parents=True, exist_ok=True)
            intmodel.save(case.model, path)
            jobs.append({"model": path, "images": case.images})
        tb, outcome, _ = run_jobs(jobs, cfg, Path(work) / f"cfg-{i}", sim=sim, seed=group[0].seed, waves=waves)
        if tb is None or tb["error"] is not None:
            found += [f"{group[0].describe()}: {line}" for line in failures(tb)]
        else:
            for case, job in zip(group, tb["jobs"]):
                found += [f"{case.describe()}: {line}" for line in failures({"error": None, "jobs": [job]})]
        if not outcome.passed and not found:
            found.append(f"{group[0].describe()}: the cocotb test failed")
        ran += len(group)
    return ran, found


def _last_error(log: Path) -> str:
    """The last exception line of a cocotb log (the one-line reason a run died)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return f"no log at {log}"
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return errors[-1] if errors else (lines[-1] if lines else "empty log")


def _failed(tb, outcome, sim: str, images: int, seconds: float, reproduce: str) -> dict[str, Any]:
    """The result of a run that stopped before comparing everything (a hang, a protocol error)."""
    log = outcome.build_dir / "sim.log"
    error = (tb or {}).get("error") or _last_error(log)
    return {"match": False, "images": images, "simulator": sim, "error": error, "log": str(log),
            "waveform": str(outcome.waves) if outcome.waves else None, "reproduce": reproduce,
            "cycles": None, "utilization": None, "per_layer": [], "seconds": round(seconds, 3),
            "partial": (tb or {}).get("jobs", [])}


def _cycle_budget(program, cfg: AccelConfig) -> int:
    return sum(int(plan.macs / cfg.parallelism) + 1000 for plan in program.layers)


def summarize(tb: dict[str, Any], cfg: AccelConfig, sim: str, seconds: float, outcome, reproduce: str,
              run: dict[str, Any]) -> dict[str, Any]:
    images = tb["images"]
    match = all(r["match"] for r in images) and outcome.passed
    layers = [dict(row) for row in images[0]["per_layer"]]
    for row in layers:  # sum over images
        name = row["layer"]
        row["cycles"] = sum(next(x for x in r["per_layer"] if x["layer"] == name)["cycles"] for r in images)
        row["mac_cycles"] = sum(next(x for x in r["per_layer"] if x["layer"] == name)["mac_cycles"] for r in images)
        row["ideal_cycles"] = row["ideal_cycles"] * len(images)
        row["utilization"] = row["ideal_cycles"] / row["cycles"] if row["cycles"] else None
    cycles = sum(r["cycles"] for r in images)
    ideal = sum(row["ideal_cycles"] for row in layers)
    result = {"match": match, "images": len(images), "simulator": sim, "cycles": cycles,
              "cycles_per_image": cycles / len(images), "utilization": ideal / cycles if cycles else None,
              "per_layer": layers, "per_image": images, "external_words": tb["external_words"],
              "config": cfg.to_dict(), "seconds": round(seconds, 3),
              "build_seconds": round(outcome.build_seconds, 3),
              # the testbench's own clock: simulated cycles over the wall time of its jobs
              "sim_cycles_per_second": round(run["cycles"] / run["seconds"], 1) if run.get("seconds") else None,
              "activity": None}
    if not match:
        first = next((r for r in images if not r["match"]), None)
        result["first_mismatch"] = {"image": first["image"], **first["first_mismatch"]} if first else None
        result["reproduce"] = reproduce
        result["waveform"] = str(outcome.waves) if outcome.waves else None
    return result


def reproduce_command(argv: list[str]) -> str:
    return "qjoule " + " ".join(shlex.quote(a) for a in argv)
