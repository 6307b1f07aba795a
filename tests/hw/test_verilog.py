"""Verilog emission: deterministic text, and Verilator -Wall lint of the datapath."""

import gc
import os
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from qjoule.config import variant
from qjoule.gateware.array import MacArray
from qjoule.gateware.pe import ProcessingElement
from qjoule.gateware.postproc import PostProcess
from qjoule.hw.verilog import LINT_WAIVERS, emit_verilog, lint_verilog


def test_same_config_gives_byte_identical_verilog():
    first = emit_verilog(MacArray(variant("tiny", 3)), "mac_array")
    second = emit_verilog(MacArray(variant("tiny", 3)), "mac_array")
    assert first == second
    assert "module mac_array(" in first
    # No source locations (they would tie the text to the checkout's paths).
    assert ".py:" not in first
    assert first != emit_verilog(MacArray(variant("tiny", 4)), "mac_array")


def test_yosys_variable_points_at_a_tool():
    emit_verilog(ProcessingElement(variant("tiny", 2)), "pe")
    assert os.path.exists(os.environ["YOSYS"])


def test_module_name_must_be_an_identifier():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the refused component is never built
        with pytest.raises(ValueError, match="'2pe'"):
            emit_verilog(ProcessingElement(variant("tiny", 2)), "2pe")
        gc.collect()


@pytest.mark.parametrize("q", [1, 2, 3, 4, 5, 8, 16])
@pytest.mark.parametrize("component", [ProcessingElement, MacArray, PostProcess])
def test_lint_clean(component, q):
    cfg = variant("tiny", q, rows=2, cols=3)
    result = lint_verilog(emit_verilog(component(cfg), "dut"), "dut")
    assert result.errors == ()
    assert result.warnings == ()


def test_lint_reports_findings_and_errors():
    """The checker is not blind: a truncating assignment is a finding, a syntax error an error."""
    bad_width = "module t(input [7:0] a, output [3:0] y);\n  assign y = a;\nendmodule\n"
    result = lint_verilog(bad_width, "t")
    assert any("WIDTHTRUNC" in w for w in result.warnings) and not result.clean
    broken = "module t(input a, output y)\n  assign y = a;\nendmodule\n"
    assert lint_verilog(broken, "t").errors
    assert "WIDTHTRUNC" not in LINT_WAIVERS
