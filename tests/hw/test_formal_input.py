"""Formal checks of the input side (hw/formal_input.py): the accelerator input's scoreboard and the
host link's output streams hold, a link with a dropped ready term fails with a trace, and the
bounded checks reach the transfers and writes they constrain."""

from __future__ import annotations

import pytest

from qjoule.config import variant
from qjoule.hw.formal import Check, run_check
from qjoule.hw.formal_input import (ACCEL_CUT, INPUT_DEPTH, LINK_ARGS, LINK_DEPTH, AccelInputHarness,
                                    DroppedReadyHostLink, HostLinkStreamHarness, input_checks)

TINY = variant("tiny", q=4)


def prove(tmp_path, name, build, depth, script=()):
    outcome = run_check(Check(name, "test", build, "bmc", depth, script=script), tmp_path, timeout=900)
    assert outcome.status != "error", outcome.detail
    return outcome


def assert_counterexample(tmp_path, outcome):
    assert outcome.status == "fail", outcome.detail
    assert outcome.detail.startswith("counterexample")
    assert "$enddefinitions" in (tmp_path / outcome.trace).read_text()


def never(harness_cls, signal_of):
    """A harness subclass that also asserts `signal_of(harness)` is always 0: failing it shows the
    event happens within the depth (the bounded check is not vacuous there)."""
    from amaranth.hdl import Assert

    class Reach(harness_cls):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            m.d.comb += Assert(signal_of(self) == 0)
            return m

    return Reach


def test_check_names():
    assert [c.name for c in input_checks(TINY)] == ["streams.accel_in.tiny.q4", "streams.host_link"]


def test_host_link_streams_hold(tmp_path):
    assert prove(tmp_path, "link", lambda: HostLinkStreamHarness(), LINK_DEPTH).status == "pass"


def test_host_link_dropped_ready_fails_with_trace(tmp_path):
    outcome = prove(tmp_path, "link_weak", lambda: HostLinkStreamHarness(dut=DroppedReadyHostLink(**LINK_ARGS)),
                    LINK_DEPTH)
    assert_counterexample(tmp_path, outcome)


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["words", "tx"])
def test_host_link_check_reaches_transfers(tmp_path, stream):
    def transfer(h):
        port = getattr(h._link, stream)
        return port.valid & port.ready
    outcome = prove(tmp_path, stream, lambda: never(HostLinkStreamHarness, transfer)(), LINK_DEPTH)
    assert_counterexample(tmp_path, outcome)


@pytest.mark.slow
def test_accel_input_scoreboard_holds(tmp_path):
    assert prove(tmp_path, "in", lambda: AccelInputHarness(TINY), INPUT_DEPTH, ACCEL_CUT).status == "pass"


@pytest.mark.slow
@pytest.mark.parametrize("buffer", ["weights", "params"])
def test_accel_input_check_reaches_writes(tmp_path, buffer):
    outcome = prove(tmp_path, buffer, lambda: never(AccelInputHarness, lambda h: h.buffers[buffer].wr_en)(TINY),
                    INPUT_DEPTH, ACCEL_CUT)
    assert_counterexample(tmp_path, outcome)
