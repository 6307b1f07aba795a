"""hw/logic_depth.py: arrival times on hand-built ECP5 and iCE40 netlists, checked by hand; bench/logic_depth.py."""

import json

import pytest

from qjoule.hw.logic_depth import (CARRY_NS, CLK_TO_Q_NS, ECP5, ICE40, LUT_NS, ROUTE_NS, SETUP_NS, TimingGraph,
                                   group_endpoints)


def _cell(type_, src="", **ports):
    """ports: name=(direction, [bits])"""
    return {"type": type_, "attributes": {"src": src},
            "port_directions": {p: d for p, (d, _) in ports.items()},
            "connections": {p: bits for p, (_, bits) in ports.items()}}


def _ff(d, q, src):
    return _cell("TRELLIS_FF", src, CLK=("input", [1]), DI=("input", [d]), Q=("output", [q]))


def _lut(inputs, z):
    return _cell("LUT4", **{p: ("input", [b]) for p, b in zip("ABCD", inputs)}, Z=("output", [z]))


def _netlist(cells, names):
    return {"modules": {"top": {"attributes": {"top": 1}, "cells": cells,
                                "netnames": {n: {"bits": bits, "hide_name": 0} for n, bits in names.items()}}}}


def _chain():
    """a -> LUT -> CCU2C (A0 -> COUT) -> CCU2C (CIN -> S0) -> b; a -> LUT -> c; b's second-hop net is autonamed."""
    cells = {
        "ff_a": _ff(10, 2, "/work/main/gateware/top.py:5"),
        "lut1": _lut([2, "0"], 3),
        "carry0": _cell("CCU2C", A0=("input", [3]), B0=("input", ["0"]), CIN=("input", ["0"]),
                        S0=("output", [20]), COUT=("output", [4])),
        "carry1": _cell("CCU2C", A0=("input", ["0"]), CIN=("input", [4]), S0=("output", [5]), COUT=("output", [21])),
        "ff_b": _ff(5, 6, "/work/main/gateware/sequencer.py:42|other.py:1"),
        "lut2": _lut([2], 7),
        "ff_c": _ff(7, 8, "/work/main/gateware/top.py:9"),
    }
    names = {"clk": [1], "a": [2], "a_d": [10], "x": [3], "$auto$c": [4], "sum": [5], "b": [6],
             "b_TRELLIS_FF_Q_DI_LUT4_Z": [6], "y": [7], "c_TRELLIS_FF_Q": [8]}
    return _netlist(cells, names)


def test_arrival_is_the_hand_sum_of_the_hops():
    g = TimingGraph(_chain())
    lut = ROUTE_NS + LUT_NS
    assert g.arrival(5) == pytest.approx(CLK_TO_Q_NS + lut + lut + CARRY_NS)
    assert g.arrival(7) == pytest.approx(CLK_TO_Q_NS + lut)
    assert g.path(5) == [2, 3, 4, 5]


def test_only_endpoints_over_the_limit_are_reported_with_their_registers():
    g = TimingGraph(_chain())
    to_b = CLK_TO_Q_NS + 2 * (ROUTE_NS + LUT_NS) + CARRY_NS + ROUTE_NS + SETUP_NS   # 4.53 ns
    to_c = CLK_TO_Q_NS + ROUTE_NS + LUT_NS + ROUTE_NS + SETUP_NS                   # 3.04 ns
    (e,) = g.endpoints(limit_ns=(to_b + to_c) / 2)
    assert (e.ns, e.register, e.port, e.start, e.levels, e.source) == (round(to_b, 2), "b", "DI", "a", 3,
                                                                       "gateware/sequencer.py:42")
    both = g.endpoints(limit_ns=to_c - 0.01)
    assert [x.ns for x in both] == [round(to_b, 2), round(to_c, 2)]
    # c's only net name is autonamed by Yosys: the register is named by its source line
    assert both[1].register == "<gateware/top.py:9>"
    assert group_endpoints(both)[0] == {"start": "a", "end": "b", "endpoints": 1, "worst_ns": round(to_b, 2),
                                        "levels": 3, "source": "gateware/sequencer.py:42"}


def test_a_combinational_loop_is_an_error_not_a_hang():
    cells = {"ff": _ff(3, 2, ""), "l1": _lut([2, 4], 3), "l2": _lut([3], 4)}
    with pytest.raises(ValueError, match="combinational loop"):
        TimingGraph(_netlist(cells, {"a": [2], "b": [3], "c": [4]})).arrival(3)


def test_a_netlist_without_registers_of_either_family_is_refused():
    cells = {"lut": _lut([2], 3), "ram": _cell("RAMB36E1", CLKARDCLK=("input", [1]), DOADO=("output", [4]))}
    with pytest.raises(ValueError, match=r"no ECP5 \(TRELLIS_FF, DP16KD\) or iCE40 \(SB_DFF\*.*\) registers"):
        TimingGraph(_netlist(cells, {}))
    mixed = {"ff": _ff(2, 3, ""), "sb": _sb_ff("SB_DFF", 3, 4)}
    with pytest.raises(ValueError, match="mixes ECP5 and iCE40"):
        TimingGraph(_netlist(mixed, {}))


# --- iCE40 (UP5K): the same graph with the iCE40 model, chosen from the cell types -----------------

def _sb_ff(type_, d, q, src="", **more):
    """an iCE40 flip-flop; more: E/R/S=bit"""
    ports = {"C": ("input", [1]), "D": ("input", [d]), "Q": ("output", [q])}
    ports.update({p: ("input", [b]) for p, b in more.items()})
    return _cell(type_, src, **ports)


def _sb_lut(inputs, o):
    """inputs: {"I0": bit, ...}"""
    return _cell("SB_LUT4", **{p: ("input", [b]) for p, b in inputs.items()}, O=("output", [o]))


def _sb_carry(ci, i0, i1, co):
    return _cell("SB_CARRY", CI=("input", [ci]), I0=("input", [i0]), I1=("input", [i1]), CO=("output", [co]))


def _ice40_chain():
    """a -> LUT(I0) -> LUT(I3) -> b.D, the last LUT driving b alone (packed in b's logic cell); the
    first LUT also drives c.D, whose LUT is shared: c gets a pass-through LUT."""
    cells = {
        "ff_a": _sb_ff("SB_DFF", 10, 2, "/work/main/gateware/top.py:5"),
        "l1": _sb_lut({"I0": 2, "I1": "0"}, 3),
        "l2": _sb_lut({"I2": 2, "I3": 3}, 4),
        "ff_b": _sb_ff("SB_DFFN", 4, 5, "/work/main/gateware/top.py:7"),
        "ff_c": _sb_ff("SB_DFF", 3, 6, "/work/main/gateware/top.py:9"),
    }
    return _netlist(cells, {"a": [2], "x": [3], "y": [4], "b": [5], "c": [6]})


def test_ice40_lut_chain_into_a_flip_flop():
    g = TimingGraph(_ice40_chain())
    assert g.model is ICE40
    # by hand: 1.39 + (1.8 + 1.29) + (1.8 + 0.87) = 7.15 ns
    assert g.arrival(4) == pytest.approx(7.15)
    assert g.path(4) == [2, 3, 4]
    to_b, to_c = 7.15, 1.39 + (1.8 + 1.29) + (1.8 + 1.29)   # b: no route, no setup; c: 7.57 ns
    assert [(e.register, e.port, e.ns, e.levels, e.start) for e in g.endpoints(limit_ns=7.0)] == [
        ("c", "D", round(to_c, 2), 1, "a"), ("b", "D", round(to_b, 2), 2, "a")]


def test_ice40_carry_chain_costs_the_carry_per_bit_and_no_route_into_the_sum_lut():
    """a -> SB_CARRY (I0 -> CO) -> SB_CARRY (CI -> CO) -> SB_CARRY (CI -> CO) -> LUT (I3) -> s.D, an
    SB_DFFE enabled by another flip-flop; the chain's first CI is a constant. A carry whose CI comes
    from a flip-flop instead goes through a feed-in logic cell, routed."""
    cells = {
        "ff_a": _sb_ff("SB_DFF", 10, 2),
        "c0": _sb_carry("0", 2, "1", 3),
        "c1": _sb_carry(3, "0", "0", 4),
        "c2": _sb_carry(4, "0", "0", 5),
        "sum": _sb_lut({"I1": "0", "I2": "0", "I3": 5}, 6),
        "ff_s": _sb_ff("SB_DFFE", 6, 7, E=11),
        "ff_e": _sb_ff("SB_DFF", 12, 11),
        "fed": _sb_carry(2, "0", "0", 8),
    }
    g = TimingGraph(_netlist(cells, {"a": [2], "s": [7], "en": [11]}))
    # by hand: 1.39 + (1.8 + 0.68) + 0.28 + 0.28 = 4.43 ns at the last CO; + 0.66 + 0.87 = 5.96 ns
    assert g.arrival(5) == pytest.approx(4.43)
    assert g.arrival(6) == pytest.approx(5.96)
    assert g.arrival(8) == pytest.approx(1.39 + 1.8 + 0.68)
    assert g.path(6) == [2, 3, 4, 5, 6]
    # s.D: the sum LUT drives s alone (packed, no route); s.E: 1.39 + a route, no setup = 3.19 ns
    assert [(e.register, e.port, e.ns, e.levels) for e in g.endpoints(limit_ns=3.1)] == [
        ("s", "D", 5.96, 4), ("s", "E", 3.19, 0)]


def test_ice40_enable_reset_and_block_ram_endpoints():
    """a -> LUT(I1) -> the E (enable) and R (reset) of an SB_DFFER and a RAM's RADDR; the RAM's
    RDATA starts a path into a flip-flop through the LUT packed with that flip-flop."""
    cells = {
        "ff_a": _sb_ff("SB_DFF", 10, 2),
        "l1": _sb_lut({"I1": 2}, 3),
        "ff_e": _sb_ff("SB_DFFER", 20, 21, "/work/main/gateware/sequencer.py:42", E=3, R=3),
        "ram": _cell("SB_RAM40_4K", "/work/main/gateware/memory.py:12", RCLK=("input", [1]), WCLK=("input", [1]),
                     RADDR=("input", [3, "0"]), RCLKE=("input", ["1"]), RDATA=("output", [30, 31])),
        "l2": _sb_lut({"I0": 30, "I1": 31}, 32),
        "ff_r": _sb_ff("SB_DFF", 32, 33, "/work/main/gateware/top.py:3"),
    }
    g = TimingGraph(_netlist(cells, {"a": [2], "x": [3], "en_q": [21], "rdata": [30, 31], "r": [33]}))
    at_x = 1.39 + 1.8 + 1.24                                   # 4.43 ns
    assert g.arrival(3) == pytest.approx(at_x)
    by_port = {(e.register, e.port): e for e in g.endpoints(limit_ns=0.0)}
    assert by_port["en_q", "E"].ns == round(at_x + 1.8, 2)                 # 6.23: route, no setup
    assert by_port["en_q", "R"].ns == round(at_x + 1.8 + 0.53, 2)          # 6.76: route + SR setup
    assert by_port["rdata", "RADDR"].ns == round(at_x + 1.8 + 0.4, 2)     # 6.63: route + RAM setup
    # the RAM is a start point: RCLK -> RDATA 1.18 + (1.8 + 1.29) through the LUT packed with r
    e = by_port["r", "D"]
    assert (e.ns, e.start, e.levels) == (round(1.18 + 1.8 + 1.29, 2), "rdata", 1)
    assert e.ns == 4.27 and ("r", "C") not in by_port and not any(p.endswith("CLK") for _, p in by_port)


def test_ice40_mac16_is_combinational_unless_its_registers_are_used():
    def mac(**params):
        cell = _cell("SB_MAC16", CLK=("input", ["0"]), A=("input", [2]), B=("input", ["0"]), O=("output", [3]))
        cell["parameters"] = dict(params)
        return cell
    cells = {"ff_a": _sb_ff("SB_DFF", 10, 2), "mac": mac(TOPOUTPUT_SELECT="11", A_REG="0"),
             "ff_o": _sb_ff("SB_DFF", 3, 4)}
    names = {"a": [2], "product": [3], "o": [4]}
    g = TimingGraph(_netlist(cells, names))
    assert g.arrival(3) == pytest.approx(1.39 + 1.8 + 10.8)   # 13.99 ns
    assert {e.register for e in g.endpoints(limit_ns=3.2)} == {"o"}     # (a.D, undriven: 3.09 ns)
    cells["mac"] = mac(TOPOUTPUT_SELECT="01")          # the accumulator register drives O
    g = TimingGraph(_netlist(cells, names))
    assert g.arrival(3) == pytest.approx(1.9)
    # now an endpoint too, at its data input (CLK is its clock, B a constant)
    assert {(e.register, e.port, e.ns) for e in g.endpoints(limit_ns=3.2)} == {
        ("product", "A", round(1.39 + 1.8 + 0.4, 2)), ("o", "D", round(1.9 + 1.8 + 1.29, 2))}


def test_the_family_constants_the_tests_sum_by_hand():
    # the hand sums above are written out in ns; they hold only for these constants
    assert (ICE40.ROUTE_NS, ICE40.CLK_TO_Q_NS, ICE40.LUT_NS, ICE40.CARRY_NS) == (
        1.8, 1.39, {"I0": 1.29, "I1": 1.24, "I2": 1.21, "I3": 0.87}, 0.28)
    assert (ROUTE_NS, LUT_NS, CLK_TO_Q_NS) == (1.0, 0.42, 0.52) and ECP5.name == "ECP5"


def test_bench_reads_a_netlist_and_writes_the_groups(load_bench, tmp_path, capsys):
    netlist, out = tmp_path / "top.json", tmp_path / "depth.json"
    netlist.write_text(json.dumps(_chain()))
    bench = load_bench("logic_depth")
    assert bench.main(["--netlist", str(netlist), "--clock", "250", "--out", str(out)]) == 0   # 4 ns
    report = json.loads(out.read_text())
    assert (report["endpoints"], report["worst_ns"], report["limit_ns"]) == (1, 4.53, 4.0)
    assert [(g["start"], g["end"]) for g in report["groups"]] == [("a", "b")]
    assert "1 endpoints over 4.00 ns" in capsys.readouterr().out
    assert bench.main(["--netlist", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "logic_depth: " in capsys.readouterr().err
    # a zero array size is refused by the config, before any synthesis and with nothing written
    build, bad_out = tmp_path / "build", tmp_path / "bad.json"
    assert bench.main(["--q", "4", "--rows", "0", "--build", str(build), "--out", str(bad_out)]) == 2
    assert capsys.readouterr().err.strip() == "logic_depth: rows must be >= 1, got 0"
    assert not build.exists() and not bad_out.exists()


def test_bench_takes_the_clock_default_from_the_board_or_the_netlists_family(load_bench, tmp_path, capsys):
    ice40, ecp5, out = tmp_path / "up5k.json", tmp_path / "ecp5.json", tmp_path / "depth.json"
    ice40.write_text(json.dumps(_ice40_chain()))
    ecp5.write_text(json.dumps(_chain()))
    bench = load_bench("logic_depth")

    def report(*argv):
        assert bench.main([*argv, "--out", str(out)]) == 0
        r = json.loads(out.read_text())
        return r["family"], r["board"], r["clock_mhz"], r["limit_ns"], r["endpoints"]
    assert report("--netlist", str(ice40), "--board", "icebreaker") == ("iCE40", "icebreaker", 42.0, 23.81, 0)
    assert report("--netlist", str(ice40)) == ("iCE40", "icebreaker", 42.0, 23.81, 0)
    assert report("--netlist", str(ice40), "--clock", "150") == ("iCE40", "icebreaker", 150.0, 6.667, 2)  # 7.57, 7.15
    assert report("--netlist", str(ecp5)) == ("ECP5", "ulx3s-85f", 100.0, 10.0, 0)
    capsys.readouterr()
    # a board of the other family, or an unknown one: one line, exit 2
    assert bench.main(["--netlist", str(ecp5), "--board", "icebreaker", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "logic_depth: --board icebreaker is an ice40 board, the netlist is ECP5\n"
    assert bench.main(["--netlist", str(ice40), "--board", "nexys", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "logic_depth: unknown board 'nexys'; known: ulx3s-85f, icebreaker\n"
    # --q with an unknown board is refused before any synthesis
    build = tmp_path / "build"
    assert bench.main(["--q", "4", "--board", "nexys", "--build", str(build), "--out", str(out)]) == 2
    assert "unknown board 'nexys'" in capsys.readouterr().err and not build.exists()
