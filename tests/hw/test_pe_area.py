"""qjoule.hw.pe_area: one PE through Yosys. The mapping rules of issue 6: lane products in LUT
logic at Q <= 4, DSPs at Q >= 8 on the ECP5 (never on the UP5K, whose DSPs serve post-processing)."""

import pytest

from qjoule.hw.pe_area import pe_cells

pytestmark = pytest.mark.synth


def test_ecp5_small_q_products_in_luts_large_q_in_dsps():
    q4, q8 = pe_cells("ecp5", 4), pe_cells("ecp5", 8)
    assert q4["dsps"] == 0 and q4["luts"] > 0
    assert 1 <= q8["dsps"] <= q8["lanes"]


def test_ice40_products_all_in_luts():
    assert pe_cells("ice40", 8)["dsps"] == 0


def test_pot_lanes_free_the_dsps_a_uniform_q6_pe_takes_on_ecp5():
    uniform, pot = pe_cells("ecp5", 6), pe_cells("ecp5", 6, weights="pot")
    assert uniform["dsps"] >= 1 and pot["dsps"] == 0 and uniform["lanes"] == pot["lanes"]
