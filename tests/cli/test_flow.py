"""The step framework: outputs flow between steps, checks stop the flow, finished steps resume."""

import json

import pytest

from qjoule.errors import UserError
from qjoule.flow import FlowContext, Step, StepCheckFailed, run_flow


def _steps(calls, fail_check=False):
    def first(ctx, stage):
        calls.append("first")
        (stage / "a.txt").write_text(str(ctx.params["x"]))
        return {"value": ctx.params["x"] * 2}

    def second(ctx, stage):
        calls.append("second")
        return {"value": ctx.outputs["first"]["value"] + 1}

    def check_second(ctx, outputs):
        if fail_check:
            raise StepCheckFailed(f"value {outputs['value']} is wrong")

    return [Step("first", first, key=lambda ctx: {"x": ctx.params["x"]}),
            Step("second", second, check_second)]


def test_outputs_flow_and_record_written(tmp_path):
    calls = []
    record = run_flow(_steps(calls), FlowContext(tmp_path, {"x": 3}), log=lambda m: None)
    assert [s["status"] for s in record["steps"]] == ["ok", "ok"]
    assert record["steps"][1]["outputs"] == {"value": 7}
    assert json.loads((tmp_path / "flow.json").read_text())["steps"][0]["outputs"] == {"value": 6}
    assert (tmp_path / "first" / "a.txt").read_text() == "3"


def test_failed_check_stops_and_leaves_no_step_output(tmp_path):
    calls = []
    record = run_flow(_steps(calls, fail_check=True), FlowContext(tmp_path, {"x": 1}), log=lambda m: None)
    assert record["failed_step"] == "second"
    assert record["steps"][1]["error"] == "value 3 is wrong"
    assert not (tmp_path / "second").exists()


def test_rerun_resumes_finished_steps(tmp_path):
    calls = []
    run_flow(_steps(calls, fail_check=True), FlowContext(tmp_path, {"x": 1}), log=lambda m: None)
    calls.clear()
    record = run_flow(_steps(calls), FlowContext(tmp_path, {"x": 1}), log=lambda m: None)
    assert calls == ["second"]
    assert [s["status"] for s in record["steps"]] == ["resumed", "ok"]


def test_other_parameters_or_foreign_folder_refused(tmp_path):
    run_flow(_steps([]), FlowContext(tmp_path / "f", {"x": 1}), log=lambda m: None)
    with pytest.raises(UserError, match="holds a flow with x=1, not 2"):
        run_flow(_steps([]), FlowContext(tmp_path / "f", {"x": 2}), log=lambda m: None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="holds no qjoule flow"):
        run_flow(_steps([]), FlowContext(tmp_path / "mine", {"x": 1}), log=lambda m: None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_exception_in_step_is_reported_with_a_log(tmp_path):
    def broken(ctx, stage):
        raise RuntimeError("tool crashed")

    record = run_flow([Step("broken", broken)], FlowContext(tmp_path, {}), log=lambda m: None)
    entry = record["steps"][0]
    assert entry["status"] == "failed" and entry["error"] == "RuntimeError: tool crashed"
    assert "Traceback" in (tmp_path / "broken.error.log").read_text()


def test_skip(tmp_path):
    calls = []
    steps = _steps(calls)[:1]
    record = run_flow(steps, FlowContext(tmp_path, {"x": 1}), skip={"first"}, log=lambda m: None)
    assert record["steps"][0]["status"] == "skipped" and calls == []
