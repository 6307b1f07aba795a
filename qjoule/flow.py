"""A flow of named steps, each checked after it runs (FINN's `step(model, cfg) -> model` idea).

A step works in its own folder `OUT/<name>/`, written whole or not at all (`staged_output`), and
returns a JSON-able dict of outputs that later steps read from `ctx.outputs[name]`. After each
step its `check` runs; a failed run or check stops the flow with the step's name, the reason and
the log. Finished steps are resumed, not redone, when the flow runs again with the same key; any
step can be skipped. `OUT/flow.json` records every step's status, outputs and timing.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .io import RUN_MARKER, staged_output, write_json

StepFn = Callable[["FlowContext", Path], dict[str, Any]]
CheckFn = Callable[["FlowContext", dict[str, Any]], None]


class StepCheckFailed(Exception):
    """Raised by a step's check: the step ran but its result is wrong."""


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    check: CheckFn | None = None
    #: The parameters that decide this step's result; a change reruns it.
    key: Callable[["FlowContext"], dict[str, Any]] = lambda ctx: {}


@dataclasses.dataclass
class FlowContext:
    out: Path
    params: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def step_dir(self, name: str) -> Path:
        return self.out / name


def run_flow(steps: list[Step], ctx: FlowContext, skip: set[str] = frozenset(),
             log: Callable[[str], None] = print) -> dict[str, Any]:
    unknown = set(skip) - {s.name for s in steps}
    if unknown:
        raise UserError(f"unknown step {sorted(unknown)[0]!r} in --skip; steps: {', '.join(s.name for s in steps)}")
    _check_same_flow(ctx)
    ctx.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"params": ctx.params, "steps": []}
    started = time.monotonic()
    try:
        for step in steps:
            entry = _run_step(step, ctx, skip, log)
            record["steps"].append(entry)
            if entry["status"] == "failed":
                record["failed_step"] = step.name
                break
    finally:
        record["seconds"] = round(time.monotonic() - started, 3)
        write_json(ctx.out / "flow.json", record)
    return record


def _check_same_flow(ctx: FlowContext) -> None:
    """Resume only a flow with the same parameters; never write into someone else's folder."""
    if not ctx.out.exists() or not any(ctx.out.iterdir()):
        return
    try:
        previous = json.loads((ctx.out / "flow.json").read_text())["params"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"--out {str(ctx.out)!r} is not empty and holds no qjoule flow; choose a new or empty folder") from None
    params = json.loads(json.dumps(ctx.params))
    if previous != params:
        name = next(k for k in sorted(set(previous) | set(params)) if previous.get(k) != params.get(k))
        raise UserError(f"--out {str(ctx.out)!r} holds a flow with {name}={previous.get(name)!r}, not "
                        f"{params.get(name)!r}; choose a new folder or the same parameters to resume")


def _run_step(step: Step, ctx: FlowContext, skip: set[str], log: Callable[[str], None]) -> dict[str, Any]:
    folder = ctx.step_dir(step.name)
    key = {"params": step.key(ctx)}
    if step.name in skip:
        log(f"[flow] {step.name}: skipped")
        return {"name": step.name, "status": "skipped"}
    previous = _finished(folder, key)
    if previous is not None:
        ctx.outputs[step.name] = previous
        log(f"[flow] {step.name}: resumed from {folder}")
        return {"name": step.name, "status": "resumed", "outputs": previous}
    log(f"[flow] {step.name}: running")
    started = time.monotonic()
    entry: dict[str, Any] = {"name": step.name}
    try:
        with staged_output(folder, f"flow-step-{step.name}", key) as stage:
            outputs = step.run(ctx, stage)
            if step.check is not None:
                step.check(ctx, outputs)
            write_json(stage / "step.json", outputs)
    except (UserError, StepCheckFailed) as e:
        entry.update(status="failed", error=str(e))
    except Exception as e:  # a bug or tool failure inside a step: keep the traceback in a log
        log_path = ctx.out / f"{step.name}.error.log"
        log_path.write_text(traceback.format_exc())
        entry.update(status="failed", error=f"{e.__class__.__name__}: {e}".splitlines()[0], log=str(log_path))
    else:
        ctx.outputs[step.name] = outputs
        entry.update(status="ok", outputs=outputs)
    entry["seconds"] = round(time.monotonic() - started, 3)
    if entry["status"] == "failed":
        log(f"[flow] {step.name}: FAILED: {entry['error']}" + (f" (log: {entry['log']})" if "log" in entry else ""))
    else:
        log(f"[flow] {step.name}: ok in {entry['seconds']:.1f} s")
    return entry


def _finished(folder: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The outputs of a finished step with the same key, else None."""
    try:
        marker = json.loads((folder / RUN_MARKER).read_text())
        outputs = json.loads((folder / "step.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return outputs if marker.get("key") == json.loads(json.dumps(key)) else None
