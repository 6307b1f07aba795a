"""Synthesis flow: the pieces that need no tools (fast), and one real iCE40 build (marker synth)."""

import json

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from qjoule.cli import main
from qjoule.config import variant
from qjoule.errors import UserError
from qjoule.hw.boards import board
from qjoule.hw.scan import ScanWrapper
from qjoule.hw.synth import _failure, build_design, check_cells, format_table, synthesize


class Invert(wiring.Component):
    a: In(3)
    b: In(2)
    y: Out(5)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(~(self.b << 3 | self.a))
        return m


def test_scan_wrapper_reaches_every_port_bit():
    """Bits shifted in at sdi drive the inputs (first bit in lands in the highest input bit); each
    capture loads all outputs, which then leave at sdo lowest bit first."""
    dut = ScanWrapper(Invert())
    assert (dut.scan_in_bits, dut.scan_out_bits) == (5, 5)
    pattern = [1, 0, 1, 1, 0]  # after 5 shifts: scan_in = 0b01101 (last bit in is the top)
    seen = []

    async def testbench(ctx):
        for bit in pattern:
            ctx.set(dut.sdi, bit)
            await ctx.tick()
        for _ in range(12):
            seen.append(ctx.get(dut.sdo))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    # Captures happen at edges 5 and 10 and sample the outputs before the edge. At edge 5 four bits
    # are in: scan_in = 0b11010 (last in at the top), so a = 0b010, b = 0b11 and y = ~0b11010 =
    # 0b00101, read out lowest bit first. At edge 10 only zeros (sdi stayed 0) are in: y = 0b11111.
    assert seen[0:5] == [1, 0, 1, 0, 0]
    assert seen[5:10] == [1, 1, 1, 1, 1]


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown board 'de10'.*ulx3s-85f.*icebreaker"):
        board("de10")
    with pytest.raises(UserError, match="unknown design 'cpu'"):
        build_design(variant("tiny", 4), "cpu")  # refused before anything is built


def test_cli_bad_board_is_a_one_line_error(tmp_path, capsys):
    assert main(["synth", "--board", "de10", "--q", "4", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown board 'de10'" in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_bad_q_is_a_one_line_error(tmp_path, capsys):
    assert main(["synth", "--board", "icebreaker", "--q", "17", "--out", str(tmp_path / "o")]) == 2
    assert "q must be 1..16" in capsys.readouterr().err


def test_overfull_device_says_by_how_much(tmp_path):
    (tmp_path / "top.tim").write_text(
        "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    6000/   5280   113%\n"
        "Info: \t        ICESTORM_RAM:       0/     30     0%\nERROR: Unable to place cell\n")
    message = _failure(board("icebreaker"), tmp_path, tmp_path / "build.log")
    assert "6000 ICESTORM_LC needed, 5280 available (720 too many, 114%)" in message
    assert str(tmp_path / "top.tim") in message
    (tmp_path / "top.tim").write_text("ERROR: routing failed\n")
    assert "place and route for icebreaker failed" in _failure(board("icebreaker"), tmp_path, tmp_path / "build.log")


def test_cell_check_catches_a_missing_array():
    cfg = variant("tiny", 4)  # 2×2 PEs, 22-bit accumulators, 4 lanes each
    scan_bits = 489
    floor = 2 * 2 * 22 + scan_bits
    good = check_cells(cfg, scan_bits, {"ffs": floor, "luts": 5000, "dsps": 0})
    assert good["ok"] and good["min_ffs"] == floor
    # An array optimized away leaves only the wrapper's scan registers.
    assert not check_cells(cfg, scan_bits, {"ffs": floor - 22, "luts": 5000, "dsps": 0})["ok"]
    assert not check_cells(cfg, scan_bits, {"ffs": floor, "luts": 2 * 2 * 4 - 1, "dsps": 0})["ok"]


def test_table_has_a_header_and_one_line_per_report():
    report = {"board": "icebreaker", "q": 4, "p": 16, "luts": 100, "ffs": 50, "dsps": 1, "brams": 0,
              "fmax_mhz": 50.5, "target_mhz": 42.0, "timing_met": True, "seconds": 3.0}
    lines = format_table([report, {**report, "q": 8}]).splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["board", "q", "p"]
    assert lines[2].split()[1] == "8"


@pytest.mark.synth
def test_icebreaker_tiny_datapath_builds(tmp_path):
    cfg = variant("tiny", 2, rows=1, cols=2)
    report = synthesize(cfg, "icebreaker", tmp_path / "build", design="datapath")
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert report["p"] == 1 * 2 * 8
    assert report["check"]["ok"], report["check"]
    assert 0 < report["luts"] <= 5280 and report["ffs"] >= report["check"]["min_ffs"]
    assert report["fmax_mhz"] > 0 and report["timing_met"] == (report["fmax_mhz"] >= 42.0)
    assert (tmp_path / "build" / "top.bin").stat().st_size > 0
    json.dumps(report)


def test_dsp_demand_by_hand():
    from qjoule.hw.synth import dsp_demand

    # ulx3s (8×8, ECP5 18×18 blocks): Q = 4 products stay in LUTs; each of the 8 post-processing
    # columns needs one block for acc_lo × m and one for acc_hi × m (25 − 16 = 9 bits).
    assert dsp_demand(variant("ulx3s", 4), board("ulx3s-85f")) == 8 * 2
    # Q = 8: 8·8 PEs × 2 lanes, one block each, plus the 16 above.
    assert dsp_demand(variant("ulx3s", 8), board("ulx3s-85f")) == 128 + 16
    # Q = 16: acc_bits 45, acc_hi 29 bits -> two blocks.
    assert dsp_demand(variant("ulx3s", 16), board("ulx3s-85f")) == 64 + 8 * 3
    # icebreaker (4 columns, acc_bits 24 -> acc_hi 8 bits): lane products in LUTs at every Q.
    assert variant("icebreaker", 4).acc_bits == 24
    assert dsp_demand(variant("icebreaker", 4), board("icebreaker")) == 4 * 2
    assert dsp_demand(variant("icebreaker", 16), board("icebreaker")) == 4 * (1 + 2)


def test_cli_config_choice(tmp_path):
    import argparse

    from qjoule.commands.synth import config_from_args

    def args(**kw):
        base = {"board": "icebreaker", "q": None, "rows": None, "cols": None, "datapath": None, "config": None}
        return argparse.Namespace(**{**base, **kw})

    cfg = config_from_args(args(q=8, rows=3))
    assert (cfg.name, cfg.q, cfg.datapath, cfg.rows, cfg.cols) == ("icebreaker", 8, 16, 3, 4)
    path = tmp_path / "accel.json"
    path.write_text(variant("tiny", 2).to_json())
    cfg = config_from_args(args(config=str(path), cols=5))
    assert (cfg.name, cfg.q, cfg.cols) == ("tiny", 2, 5)
    with pytest.raises(UserError, match="datapath must be a positive multiple of q=3"):
        config_from_args(args(q=3, datapath=16))
