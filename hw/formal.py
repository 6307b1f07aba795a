"""Formal checks with SymbiYosys: the check list, and the runner that proves one check.

A *check* is a small harness component (free inputs = its ports, properties written with
`amaranth.hdl.Assert`/`Assume`) plus how to prove it: `prove` (k-induction, a proof for every
trace length) or `bmc` (bounded: every trace up to `depth` cycles). The harnesses live in
hw/formal_pe.py, formal_pot.py, formal_postproc.py, formal_streams.py and formal_sequencer.py; this module lists
them and runs `yowasp-sby` on each in its own folder, keeping the counterexample trace of a failure.

SymbiYosys calls plain `yosys`, `yosys-smtbmc` and `boolector`; scripts/setup.sh links those
names to the YoWASP tools in the venv. The YoWASP tools cannot see absolute paths under /tmp, so
sby runs with its folder as the working directory and relative paths only.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from qjoule.config import AccelConfig
from qjoule.errors import UserError

__all__ = ["GROUPS", "Check", "Outcome", "checks", "cut_modules", "find_solver", "run_check"]

GROUPS = ("pe", "postproc", "streams", "sequencer")
#: The programs sby needs on PATH (sby itself, and the names it calls).
TOOLS = ("yowasp-sby", "yosys", "yosys-smtbmc", "boolector")
ENGINE = "smtbmc boolector"


@dataclasses.dataclass(frozen=True)
class Check:
    """One property set to prove. `build()` returns the harness (elaborated only when run)."""

    name: str
    group: str
    build: Callable[[], object]
    mode: str        # "prove" (k-induction) or "bmc" (bounded)
    depth: int       # k for prove, the bound for bmc
    note: str = ""
    #: Yosys commands before `prep` (an abstraction: `cut_modules(...)`).
    script: tuple[str, ...] = ()


@dataclasses.dataclass
class Outcome:
    name: str
    group: str
    status: str              # pass | fail | error
    seconds: float
    mode: str
    depth: int
    trace: str | None        # counterexample VCD, relative to the run folder
    detail: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def tool_path() -> str:
    """PATH with the interpreter's own bin folder first (the venv holds the YoWASP tools)."""
    venv_bin = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join([venv_bin] + [p for p in parts if p and p != venv_bin])


def find_solver() -> str:
    """The sby executable; a one-line UserError if it or a tool it calls is missing."""
    path = tool_path()
    for tool in TOOLS:
        if shutil.which(tool, path=path) is None:
            raise UserError(f"formal tool {tool!r} is not installed (not on PATH); install it with `bash scripts/setup.sh`")
    return shutil.which("yowasp-sby", path=path)


def cut_modules(*modules: str) -> tuple[str, ...]:
    """Yosys commands replacing the named harness submodules (e.g. "top.accel.seq") by formal cut
    points: their contents removed, their outputs free in every cycle. An over-approximation (any
    behaviour of theirs is among the free ones), sound for properties about the rest."""
    return ("hierarchy -top top", "proc", "cutpoint " + " ".join(modules))



def sby_text(mode: str, depth: int, timeout: int | None, script: tuple[str, ...] = ()) -> str:
    options = [f"mode {mode}", f"depth {depth}"]
    if timeout:
        options.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *options, "",
        "[engines]", ENGINE, "",
        "[script]", "read_rtlil design.il", *script, "prep -flatten -top top", "",
        "[files]", "design.il", "",
    ])


def run_check(check: Check, folder: Path, *, timeout: int | None = 1200) -> Outcome:
    """Prove `check` in `folder`/<check.name>/ and return what sby found.

    The folder keeps design.il, check.sby, logfile.txt and, on a failure, trace.vcd (the
    counterexample); sby's own work files are removed.
    """
    from amaranth.back import rtlil

    sby = find_solver()
    work = Path(folder) / check.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    start = time.monotonic()
    try:
        (work / "design.il").write_text(rtlil.convert(check.build(), name="top", emit_src=False))
    except Exception as e:  # a harness that does not elaborate is an error of this check, not of the run
        return Outcome(check.name, check.group, "error", round(time.monotonic() - start, 2), check.mode, check.depth,
                       None, f"elaboration failed: {e.__class__.__name__}: {e}".splitlines()[0])
    (work / "check.sby").write_text(sby_text(check.mode, check.depth, timeout, check.script))
    env = {**os.environ, "PATH": tool_path()}
    # sby in its own process group, so an interrupted run does not leave the solver behind
    proc = subprocess.Popen([sby, "-f", "check.sby"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate()
    except BaseException:
        _kill_tree(proc.pid)
        proc.wait()
        raise
    seconds = round(time.monotonic() - start, 2)
    sby_dir = work / "check"
    status_file = sby_dir / "status"
    raw = status_file.read_text().split()[0] if status_file.exists() and status_file.read_text().strip() else "ERROR"
    if (sby_dir / "logfile.txt").exists():
        shutil.copy(sby_dir / "logfile.txt", work / "logfile.txt")
    else:
        (work / "logfile.txt").write_text(stdout)
    trace = None
    if raw == "FAIL" and (sby_dir / "engine_0" / "trace.vcd").exists():  # a counterexample (bmc or base case)
        shutil.copy(sby_dir / "engine_0" / "trace.vcd", work / "trace.vcd")
        trace = f"{check.name}/trace.vcd"
    shutil.rmtree(sby_dir, ignore_errors=True)
    status, detail = _classify(raw, check, stdout)
    return Outcome(check.name, check.group, status, seconds, check.mode, check.depth, trace, detail)


def _kill_tree(pid: int) -> None:
    """SIGTERM sby's process group and every process below it (sby starts its engines, smtbmc and
    boolector, in process groups of their own, so killing the group alone leaves them running)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    below, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for child in below:
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _classify(raw: str, check: Check, log: str) -> tuple[str, str]:
    if raw == "PASS":
        what = "proven for every trace length (k-induction)" if check.mode == "prove" \
            else f"holds on every trace of up to {check.depth} cycles (bounded)"
        return "pass", what
    if raw == "FAIL":
        where = [line.split("summary:", 1)[1].strip() for line in log.splitlines()
                 if "failed assertion" in line and "summary:" in line]
        return "fail", "counterexample: " + (where[0] if where else "see logfile.txt")
    if raw == "UNKNOWN":
        return "fail", f"not proven: induction did not close at depth {check.depth} (no counterexample up to it)"
    if raw == "TIMEOUT":
        return "error", "solver timeout"
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line]
    return "error", (errors[-1] if errors else f"sby ended with status {raw}")[:300]


# -- the check list --------------------------------------------------------------------------------

def checks(cfg: AccelConfig, *, qs: list[int] | None = None, groups: tuple[str, ...] = GROUPS) -> list[Check]:
    """The checks of `groups` for `cfg`. PE checks run at every Q in `qs` (default 1..16, each
    with 4 lanes and cfg's layer bounds) and at cfg's own Q and lane count."""
    found: list[Check] = []
    if "pe" in groups:
        from .formal_pe import pe_checks
        from .formal_pot import pot_checks
        found += pe_checks(cfg, qs)
        found += pot_checks(cfg, qs)
    if "postproc" in groups:
        from .formal_postproc import postproc_checks
        found += postproc_checks(cfg, qs)
    if "streams" in groups:
        from .formal_input import input_checks
        from .formal_streams import stream_checks
        found += stream_checks(cfg)
        found += input_checks(cfg)
    if "sequencer" in groups:
        from .formal_sequencer import sequencer_checks
        found += sequencer_checks(cfg)
    return found
