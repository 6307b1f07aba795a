"""hw/logic_depth.py: arrival times on hand-built ECP5 netlists, checked by hand; bench/logic_depth.py."""

import json

import pytest

from qjoule.hw.logic_depth import (CARRY_NS, CLK_TO_Q_NS, LUT_NS, ROUTE_NS, SETUP_NS, TimingGraph,
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


def test_a_netlist_without_ecp5_registers_is_refused():
    cells = {"ff": _cell("SB_DFF", C=("input", [1]), D=("input", [2]), Q=("output", [3]))}
    with pytest.raises(ValueError, match="no ECP5 registers"):
        TimingGraph(_netlist(cells, {}))


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
