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
    # icebreaker (1 column, acc_bits 24 -> acc_hi 8 bits): lane products in LUTs up to Q = 4.
    assert variant("icebreaker", 4).acc_bits == 24
    assert dsp_demand(variant("icebreaker", 4), board("icebreaker")) == 1 * 2
    assert dsp_demand(variant("icebreaker", 4, cols=4), board("icebreaker")) == 4 * 2
    # Above Q = 4 the lane products take one SB_MAC16 each where they fit the UP5K's 8 next to the
    # post-processing's: one PE at Q = 8 (acc_bits 29: 2 lanes + 2) and 16 (acc_bits 45: 1 + 3),
    # not four columns at Q = 16 (4 + 4·3 > 8: LUT products, the post-processing's 12 only).
    from qjoule.config import board_config
    from qjoule.gateware.pe import ice40_dsp_products
    assert dsp_demand(variant("icebreaker", 8), board("icebreaker")) == 2 + 2
    assert dsp_demand(variant("icebreaker", 16), board("icebreaker")) == 1 + 3
    assert dsp_demand(variant("icebreaker", 16, cols=4), board("icebreaker")) == 4 * (1 + 2)
    assert [ice40_dsp_products(board_config("icebreaker", q)) for q in (2, 4, 8, 16)] == [False, False, True, True]
    assert not ice40_dsp_products(variant("tiny", 8))   # 2x2 PEs x 2 lanes + 2 x 2 post-processing
    # Power-of-two lanes shift: at Q = 6 no lane block, only post-processing (acc_bits 52 ->
    # acc_hi 36 bits -> two blocks, plus acc_lo × m), where the uniform array asks for 128 more.
    pot = variant("ulx3s", 6, weights="pot")
    assert pot.acc_bits == 52
    assert dsp_demand(pot, board("ulx3s-85f")) == 8 * 3
    # Uniform Q = 6: columns 2k, 2k + 1 share a block per lane (gateware/lane_pair.py): 8 rows × 4
    # pairs × 2 lanes; unpaired (dsp_pairs off) 8·8 PEs × 2 lanes.
    assert dsp_demand(variant("ulx3s", 6), board("ulx3s-85f")) == 8 * 4 * 2 + 8 * 2
    assert dsp_demand(variant("ulx3s", 6, dsp_pairs=False), board("ulx3s-85f")) == 8 * 8 * 2 + 8 * 2
    # Q = 5 (3 lanes): 96 + 16 fits the 156 blocks paired, 192 + 16 would not; an odd column has
    # its own block per lane.
    assert dsp_demand(variant("ulx3s", 5), board("ulx3s-85f")) == 8 * 4 * 3 + 8 * 2
    assert dsp_demand(variant("ulx3s", 5, cols=7), board("ulx3s-85f")) == 8 * 4 * 3 + 7 * 2
    # lut_lanes: the first lanes of every PE build their products in LUTs (Q = 8: one of two),
    # and a config with them is not paired (Q = 6: 8·8 PEs × 1 lane in blocks).
    assert dsp_demand(variant("ulx3s", 8, lut_lanes=1), board("ulx3s-85f")) == 8 * 8 * 1 + 16
    assert dsp_demand(variant("ulx3s", 8, lut_lanes=2), board("ulx3s-85f")) == 16
    assert dsp_demand(variant("ulx3s", 6, lut_lanes=1), board("ulx3s-85f")) == 8 * 8 * 1 + 8 * 2
    # The ULX3S board config at Q >= 7: every lane product in LUTs (no build with them in DSPs
    # routed at 8×8), the blocks for the post-processing only; Q = 5, 6 stay paired.
    from qjoule.config import board_config as board_cfg
    assert [board_cfg("ulx3s-85f", q).lut_lanes for q in (4, 5, 6, 7, 8, 16)] == [0, 0, 0, 2, 2, 1]
    assert dsp_demand(board_cfg("ulx3s-85f", 8), board("ulx3s-85f")) == 16
    assert dsp_demand(board_cfg("ulx3s-85f", 16), board("ulx3s-85f")) == 8 * 3
    # On iCE40 the lanes are never paired (LUT products there).
    assert dsp_demand(variant("tiny", 5), board("icebreaker")) == 2 * 2


def test_lane_pairs_are_dropped_when_even_paired_dsps_do_not_fit():
    from qjoule.hw.synth import lane_pairs_for

    ulx3s = board("ulx3s-85f")
    assert lane_pairs_for(variant("ulx3s", 5), ulx3s).dsp_pairs
    # 16 rows: 16·4·3 + 16 = 208 > 156 blocks: the multiplies go to LUTs, unpaired.
    assert not lane_pairs_for(variant("ulx3s", 5, rows=16), ulx3s).dsp_pairs
    assert lane_pairs_for(variant("ulx3s", 8, rows=16), ulx3s) == variant("ulx3s", 8, rows=16)


def test_cli_config_choice(tmp_path):
    import argparse

    from qjoule.commands.synth import config_from_args

    def args(**kw):
        base = {"board": "icebreaker", "q": None, "rows": None, "cols": None, "datapath": None, "config": None,
                "model": None}
        return argparse.Namespace(**{**base, **kw})

    cfg = config_from_args(args(q=8, rows=3))
    assert (cfg.name, cfg.q, cfg.datapath, cfg.rows, cfg.cols) == ("icebreaker", 8, 16, 3, 1)
    path = tmp_path / "accel.json"
    path.write_text(variant("tiny", 2).to_json())
    cfg = config_from_args(args(config=str(path), cols=5))
    assert (cfg.name, cfg.q, cfg.cols) == ("tiny", 2, 5)
    with pytest.raises(UserError, match="datapath must be a positive multiple of q=3"):
        config_from_args(args(q=3, datapath=16))


def test_cli_config_from_a_model(tmp_path):
    """--model: the board's config at the model's Q and weight kind, sized to it (the config the
    flow and `qjoule run --board` use); --q must agree with the model."""
    import argparse

    from qjoule.commands.synth import config_from_args
    from qjoule.program import size_for_model
    from qjoule.sim.cases import build_model
    from qjoule.sw import intmodel

    model = build_model(2, (1, 8, 8), [("conv3x3", 8), ("maxpool2x2", None), ("dense", 10)], seed=3)
    path = tmp_path / "m.qjm"
    intmodel.save(model, path)
    base = {"board": "ulx3s-85f", "q": None, "rows": None, "cols": None, "datapath": None, "config": None,
            "model": str(path)}
    cfg = config_from_args(argparse.Namespace(**base))
    assert cfg == size_for_model(model, variant("ulx3s", 2))
    assert cfg.act_buffer_bits < variant("ulx3s", 2).act_buffer_bits  # sized down to the small net
    cfg = config_from_args(argparse.Namespace(**{**base, "cols": 4}))
    assert (cfg.q, cfg.rows, cfg.cols) == (2, 8, 4)
    with pytest.raises(UserError, match=r"--q 4 does not match the model's Q=2"):
        config_from_args(argparse.Namespace(**{**base, "q": 4}))
    for argv, message in ((["--fit"], "--fit searches the board config's array shapes"),
                          (["--sweep-q", "2,4"], "--model fixes Q")):
        assert main(["synth", "--board", "ulx3s-85f", "--model", str(path), *argv,
                     "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_board_config_sizes_q1_to_fit_the_ulx3s():
    from qjoule.config import board_config
    from qjoule.hw.fit import estimate
    from qjoule.program import LAYER_BITS

    # Block RAMs by hand (DP16KD: 16k×1 .. 512×36, byte enables only at 18/36 wide).
    # Q = 4: act 8 banks × 8192×16 in 4-bit lanes = 8 × (4 lanes × 2 blocks of 4096×4) = 64;
    # weights 8192×128 as 2048×9 = 15 × 4 = 60; params 544×704 as 512×36 = 20 × 2 = 40;
    # layer table 32×381 = 11 blocks of 512×36.
    assert LAYER_BITS == 381
    assert estimate(board_config("ulx3s-85f", 4), "ulx3s-85f")["brams"] == 64 + 60 + 40 + 11
    # Q = 1: every bit lane of a bank is its own 16k×1 block (8 × 16 = 128 at any depth), so
    # the board config halves the weights (4096×128: 15 × 2 = 30) and fits the params in 512
    # words (20 blocks): 189 of 208.
    q1 = board_config("ulx3s-85f", 1)
    assert (q1.q, q1.datapath, q1.weight_buffer_bits, q1.pp_channels) == (1, 16, 512 * 1024, 3840)
    assert estimate(q1, "ulx3s-85f")["brams"] == 128 + 30 + 20 + 11
    assert estimate(variant("ulx3s", 1), "ulx3s-85f")["brams"] == 128 + 60 + 40 + 11 > 208
    # other Qs at D = 16: the plain variant (Q >= 7: with every lane product in LUTs)
    assert board_config("ulx3s-85f", 4) == variant("ulx3s", 4)
    assert board_config("ulx3s-85f", 8) == variant("ulx3s", 8, lut_lanes=2)
    # D < 16 (Q = 5: D = 15): 1 Mb would make a bank half 4369 words, so each bank 8738 deep; the
    # board config keeps 4096 words per half (2·8·4096·15 bits), 8192×15 per bank in 5-bit lanes:
    # a lane per 2048×9 block (a 4-bit-wide one would straddle two lanes), 3 × 4 = 12 blocks.
    # Every such Q stays within 10 blocks of Q = 4's estimate (which places 190 of 208).
    from qjoule.hw.fit import _memory_blocks
    from qjoule.program import bank_depth
    ulx3s = board("ulx3s-85f")
    assert _memory_blocks(ulx3s, 15, 8192, 5) == 12
    assert _memory_blocks(ulx3s, 16, 8192, 4) == 8       # 4096×4: a lane over one block, 2 deep
    assert _memory_blocks(ulx3s, 15, 8192, 3) == 10      # 4096×4: a 3-bit lane per block
    q4_blocks = estimate(board_config("ulx3s-85f", 4), "ulx3s-85f")["brams"]
    for q in (3, 5, 6, 7, 12):
        cfg = board_config("ulx3s-85f", q)
        assert cfg.act_buffer_bits == 2 * 8 * 4096 * cfg.datapath and bank_depth(cfg) == 4096
        assert estimate(cfg, "ulx3s-85f")["brams"] <= q4_blocks + 10
        assert estimate(cfg, "ulx3s-85f")["brams"] < estimate(variant("ulx3s", q), "ulx3s-85f")["brams"]
    assert estimate(variant("ulx3s", 3), "ulx3s-85f")["brams"] > 208


def test_icebreaker_board_config_fits_the_up5k_memories():
    from qjoule.config import board_config
    from qjoule.hw.fit import _over, estimate
    from qjoule.program import LAYER_BITS

    # Q = 4: act buffer 2 SPRAMs (one per half, 16k × 16), weights 16k × 16 in one; EBRs (iCE40:
    # 256×16 .. 2048×2): params 256 words × 98 bits (48 meta + 18 mult + 32 bias) = 7 × 1 in
    # 256×16; the layer table as 32 × 12 = 384 words × 32 bits = 4 × 1 in 512×8.
    cfg = board_config("icebreaker", 4)
    assert (cfg.act_memory, cfg.weight_memory, cfg.layer_table, cfg.rows, cfg.cols) == ("spram", "spram", "words", 1, 1)
    est = estimate(cfg, "icebreaker")
    assert (est["sprams"], est["brams"]) == (2 + 1, 7 + 4)
    # The memories fit; the logic is 4,872 cells measured (docs/results.md, session 5): 3,632
    # fixed + 4 lanes × 60 + 1 column × 1,000, so --fit tries it with a P&R run, and a 1×2 array
    # (8 lanes, 2 columns) too (within the 1.25 prune margin); 1×4 at Q = 2 (32 lanes) is pruned.
    assert est["luts"] == 3632 + 4 * 60 + 1000
    assert _over(est, board("icebreaker")) is None
    big = estimate(cfg.replace(cols=2), "icebreaker")
    assert big["luts"] == 3632 + 8 * 60 + 2 * 1000
    assert _over(big, board("icebreaker")) is None
    assert _over(estimate(board_config("icebreaker", 2).replace(cols=4), "icebreaker"), board("icebreaker")) == \
        "estimated 8400 luts > 1.25 x 5280"   # 3,632 + 32 lanes × 24 + 4 × 1,000
    # Q = 8, 16: the lane products in SB_MAC16 (20 LUT4 per lane for its sum and accumulator share)
    assert estimate(board_config("icebreaker", 16), "icebreaker")["luts"] == 3632 + 1 * 20 + 1000
    # The same config with a wide table: 293-bit entries take 19 blocks of 256×16 (32 deep).
    assert estimate(cfg.replace(layer_table="wide"), "icebreaker")["brams"] == 7 + -(-LAYER_BITS // 16)
    # Everything in block RAM: the act buffer (2 × 16k words × 16 bits in 4-bit lanes) alone
    # needs 2 × 64 = 128 of the 30 EBRs; more SPRAMs than the four: refused by the estimate.
    assert estimate(cfg.replace(act_memory="bram"), "icebreaker")["brams"] == 128 + 11
    assert "sprams > 4" in _over(estimate(cfg.replace(rows=2, cols=2), "icebreaker"), board("icebreaker"))
    # Q = 1, 2: nibble masks cannot write 1-/2-bit lanes: the act buffer is 32 kb of block RAM
    # (8 blocks); Q = 8: a 40-bit bias (106-bit param words: still 7 blocks); Q = 16: 48 (8).
    q1 = board_config("icebreaker", 1)
    assert (q1.act_memory, q1.act_buffer_bits) == ("bram", 32 * 1024)
    assert estimate(q1, "icebreaker")["brams"] == 8 + 7 + 4 and estimate(q1, "icebreaker")["sprams"] == 1
    assert estimate(board_config("icebreaker", 8), "icebreaker")["brams"] == 7 + 4
    assert estimate(board_config("icebreaker", 16), "icebreaker")["brams"] == 8 + 4


def test_shape_chain_doubles_the_pes():
    from qjoule.hw.fit import shape_chain

    assert shape_chain(8, 8) == [(1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8)]


def test_fit_bisects_with_place_and_route_and_records_every_shape(tmp_path):
    from qjoule.hw.fit import fit

    runs = []

    def fake_synth(cfg, build):
        # Fits up to 8 PEs; 4x4 and above do not fit; 2x4 misses the clock only above 8 PEs.
        runs.append((cfg.rows, cfg.cols))
        if cfg.rows * cfg.cols > 8:
            raise UserError("the design does not fit iCE40UP5K: 6000 ICESTORM_LC needed, 5280 available")
        return {"rows": cfg.rows, "cols": cfg.cols, "p": cfg.parallelism, "fmax_mhz": 50.0, "timing_met": True,
                "check": {"ok": True}, "yosys_cells": {}}

    chain = [(1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8)]
    result = fit(variant("tiny", 4), "ulx3s-85f", tmp_path, fake_synth, chain=chain)
    assert (result["best"]["rows"], result["best"]["cols"]) == (2, 4)
    # The largest admitted shape first (8x8: one run), then bisection: 3 more runs, no shape twice.
    assert runs[0] == (8, 8) and len(runs) == 4 and len(set(runs)) == 4
    assert [(t["rows"], t["cols"], t["outcome"]) for t in result["tried"]] == \
        [(r, c, "pass" if r * c <= 8 else "does not fit") for r, c in runs]
    assert "yosys_cells" not in result["best"]


def test_fit_prunes_shapes_the_estimate_rules_out(tmp_path):
    from qjoule.hw.fit import fit

    runs = []

    def fake_synth(cfg, build):
        runs.append((cfg.rows, cfg.cols))
        return {"rows": cfg.rows, "cols": cfg.cols, "p": cfg.parallelism, "fmax_mhz": 50.0,
                "timing_met": cfg.rows * cfg.cols <= 2, "check": {"ok": True}}

    # 64x64 PEs at Q = 4 (p = 16,384) is estimated at over a million LUT4 of 83,640: never built.
    chain = [(1, 1), (1, 2), (2, 2), (64, 64)]
    result = fit(variant("tiny", 4), "ulx3s-85f", tmp_path, fake_synth, chain=chain)
    assert (64, 64) not in runs and runs[0] == (2, 2)
    assert (result["best"]["rows"], result["best"]["cols"]) == (1, 2)
    outcomes = {(t["rows"], t["cols"]): t["outcome"] for t in result["tried"]}
    assert outcomes == {(64, 64): "pruned", (2, 2): "timing missed", (1, 1): "pass", (1, 2): "pass"}


@pytest.mark.parametrize("argv, message", [
    (["--fit", "--rows", "2"], "--fit searches rows and cols itself"),
    (["--sweep-q", "1,x"], "--sweep-q must be a comma-separated list"),
    (["--sweep-q", "1,17"], "--sweep-q must list distinct Qs in 1..16"),
    (["--sweep-q", "1,2", "--q", "4"], "--sweep-q gives the Qs; drop --q"),
])
def test_cli_fit_and_sweep_bad_input(tmp_path, capsys, argv, message):
    assert main(["synth", "--board", "icebreaker", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_critical_path_summary():
    from qjoule.hw.synth import critical_path

    pnr = {"critical_paths": [{"from": "clk", "to": "clk", "path": [
        {"type": "clk-to-q", "from": {"cell": "a"}, "to": {"cell": "a"}, "delay": 0.5},
        {"type": "routing", "from": {"cell": "a"}, "to": {"cell": "b"}, "delay": 1.25,
         "sources": ["/work/main/gateware/pe.py:146"]},
        {"type": "logic", "from": {"cell": "b"}, "to": {"cell": "b"}, "delay": 0.75},
        {"type": "routing", "from": {"cell": "b"}, "to": {"cell": "c"}, "delay": 2.0,
         "sources": ["/work/main/gateware/pe.py:146", "/x/gateware/array.py:7"]},
        {"type": "setup", "from": {"cell": "c"}, "to": {"cell": "c"}, "delay": 0.25}]}]}
    assert critical_path(pnr) == {"from": "a", "to": "c", "delay_ns": 4.75, "logic_ns": 1.5, "routing_ns": 3.25,
                                  "cells": ["a", "b", "c"], "sources": ["pe.py:146", "array.py:7"]}
    assert critical_path({}) is None


@pytest.mark.slow
@pytest.mark.synth
def test_cli_sweep_q_on_icebreaker_tiny_datapath(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["synth", "--board", "icebreaker", "--config", _tiny_config(tmp_path), "--design", "datapath",
                 "--rows", "1", "--cols", "2", "--sweep-q", "2,4", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["q"] for r in report["reports"]] == [2, 4]
    for r in report["reports"]:
        assert r["p"] == 1 * 2 * (16 // r["q"]) and r["check"]["ok"]
        assert r["peak_gops"] == round(2 * r["p"] * r["fmax_mhz"] / 1000, 2)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["q", "rows", "cols", "p"] and len(table) == 3


@pytest.mark.slow
@pytest.mark.synth
def test_cli_fit_on_icebreaker_tiny_datapath(tmp_path, capsys):
    out = tmp_path / "fit"
    code = main(["synth", "--board", "icebreaker", "--config", _tiny_config(tmp_path), "--design", "datapath",
                 "--q", "4", "--fit", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    tried = {(t["rows"], t["cols"]): t for t in report["tried"]}
    assert (4, 4) in tried and tried[(4, 4)]["outcome"] == "pruned"  # estimated above the UP5K
    passed = [k for k, t in tried.items() if t["outcome"] == "pass"]
    if code == 0:
        best = (report["best"]["rows"], report["best"]["cols"])
        assert best == max(passed, key=lambda k: k[0] * k[1])
        # the next larger shape was tried and failed (or was pruned)
        assert any(t["outcome"] != "pass" and k[0] * k[1] > best[0] * best[1] for k, t in tried.items())
    else:
        assert not passed


def _tiny_config(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(variant("tiny", 4).to_json())
    return str(path)


def test_failed_build_keeps_its_logs_beside_out(tmp_path, monkeypatch, capsys):
    """--out stays all or nothing; the failed build's logs go to <out>.failed and the one-line
    error names that path (the staging folder it was in is gone)."""
    import qjoule.commands.synth as synth_cmd

    def failing(args):
        def run(cfg, build):
            build.mkdir(parents=True)
            (build / "top.tim").write_text("Info: ICESTORM_LC: 7742/ 5280 146%\n")
            (build / "top.json").write_text("{}")  # a netlist: not kept
            raise UserError(f"the design does not fit iCE40UP5K; log: {str(build / 'top.tim')!r}")
        return run

    monkeypatch.setattr(synth_cmd, "_synth", failing)
    out = tmp_path / "o"
    assert main(["synth", "--board", "icebreaker", "--q", "4", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (tqdm's bar aside)
    assert len(err) == 1 and str(tmp_path / "o.failed" / "top.tim") in err[0]
    assert (tmp_path / "o.failed" / "top.tim").read_text().startswith("Info: ICESTORM_LC: 7742")
    assert not (tmp_path / "o.failed" / "top.json").exists() and not out.exists()


def test_too_many_sprams_is_refused_before_any_tool_runs(tmp_path):
    """2×2 PEs: 2 banks × 2 halves = 4 SPRAMs + 2 for the 32-bit weight words, of the UP5K's 4;
    the ULX3S has none. One line, by how much, and no build folder."""
    from qjoule.config import board_config

    cfg = board_config("icebreaker", 4).replace(rows=2, cols=2, act_buffer_bits=2 * 2 * 1024 * 16)
    with pytest.raises(UserError, match=r"does not fit iCE40UP5K: 6 SB_SPRAM256KA needed .*4 available \(2 too many\)"):
        synthesize(cfg, "icebreaker", tmp_path / "build")
    with pytest.raises(UserError, match=r"does not fit LFE5U-85F: 3 SB_SPRAM256KA needed .*0 available"):
        synthesize(board_config("icebreaker", 4), "ulx3s-85f", tmp_path / "build")
    assert not (tmp_path / "build").exists()



def test_synthesis_keeps_every_replica_register(tmp_path, yosys_env):
    # Two copies of a register with an asynchronous reset (the ULX3S accelerator's domain), two
    # without reset, two plain copies without the attribute (of another value, so they do not
    # fold into a kept replica): after the build's keep step and
    # Yosys' merging, the REPLICA copies are all there and only the plain pair is folded.
    import subprocess

    from amaranth.back import rtlil
    from amaranth.hdl import Cat, ClockDomain, ClockSignal, ResetSignal, Signal

    from qjoule.gateware import REPLICA
    from qjoule.hw.synth import KEEP_REPLICAS

    m = Module()
    m.domains.accel = ClockDomain("accel", async_reset=True)
    d = Signal(4)
    regs = [Signal(4, name=f"async{k}", attrs={REPLICA: 1}) for k in range(2)]
    regs += [Signal(4, name=f"plain_replica{k}", reset_less=True, attrs={REPLICA: 1}) for k in range(2)]
    regs += [Signal(4, name=f"plain{k}", reset_less=True) for k in range(2)]
    m.d.accel += [reg.eq(d if k < 4 else ~d) for k, reg in enumerate(regs)]
    y = Signal(24)
    m.d.comb += y.eq(Cat(*regs))
    (tmp_path / "t.il").write_text(rtlil.convert(m, ports=[d, y, ClockSignal("accel"), ResetSignal("accel")]))
    script = f"read_rtlil t.il; {KEEP_REPLICAS}; proc; opt -full; tee -q -o stat.json stat -json"
    subprocess.run([yosys_env, "-q", "-p", script], cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    # 4 replicas of 4 bits kept apart, the plain pair folded into one: 5 registers
    assert sum(n for kind, n in cells.items() if "dff" in kind) == 5, cells


def test_sigterm_stops_the_tools_and_leaves_no_output(tmp_path):
    # `qjoule synth` stopped by SIGTERM while a tool runs: the tool (here a stand-in for Yosys
    # that sleeps) is killed with it, --out is not left behind, and the exit code says so.
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pid_file = tmp_path / "tool.pid"
    fake = tmp_path / "fake_yosys.sh"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    fake.chmod(0o755)
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "qjoule.cli", "synth", "--board", "icebreaker", "--q", "4",
                             "--out", str(out)], env={**os.environ, "YOSYS": str(fake)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), proc.communicate()[1]
    time.sleep(0.5)  # (the pid is written before `exec sleep`)
    tool = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and "qjoule: terminated" in err
    assert not out.exists()

    def running(pid):  # (a killed process may linger as a zombie until it is reaped)
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running(tool) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(tool)
