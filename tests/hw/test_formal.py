"""Formal checks (hw/formal*.py): the proofs pass on the real gateware, and weakened designs fail
with a counterexample trace (so the checks can fail). Fast ones here; every Q in the slow set."""

from __future__ import annotations

import pytest

from qjoule.config import VARIANTS, variant
from qjoule.hw.formal import Check, run_check
from qjoule.hw.formal_pe import AccRangeHarness, PEHarness, activation_bound, required_acc_bits, small_lane_config

def prove(tmp_path, name, build, mode="prove", depth=5):
    outcome = run_check(Check(name, "test", build, mode, depth), tmp_path, timeout=600)
    assert outcome.status != "error", outcome.detail
    return outcome


def assert_counterexample(tmp_path, outcome):
    assert outcome.status == "fail", outcome.detail
    assert outcome.detail.startswith("counterexample")
    trace = tmp_path / outcome.trace
    assert trace.exists() and "$enddefinitions" in trace.read_text()


# -- PE ------------------------------------------------------------------------------------------

def test_activation_bound_by_hand():
    # default: 512 channels, 8192 dense inputs. Q = 4: hidden 8192 codes of 15, first 4608 pixels of 255.
    cfg = variant("default", q=4)
    assert activation_bound(cfg) == max(8192 * 15, 9 * 512 * 255) == 1_175_040
    # Q = 1: ±1 lanes count 1 each; the first layer's pixels dominate
    assert activation_bound(variant("default", q=1)) == 9 * 512 * 255


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_acc_bits_formula_is_the_narrowest_width(name):
    # required_acc_bits searches the narrowest width holding [-w_neg·U, w_pos·U]; config.acc_bits
    # is the closed form. Q = 4 default by hand: U = 1_175_040, -8·U = -9_400_320 needs 25 bits.
    assert required_acc_bits(variant("default", q=4)) == 25
    for q in range(1, 17):
        cfg = VARIANTS[name].replace(q=q, datapath=q, act_memory="bram", weight_memory="bram")
        assert cfg.acc_bits == required_acc_bits(cfg), q


def test_acc_bits_q1_power_of_two_dense_bound():
    # 4096 products of +1 sum to 4096: the positive end needs the 14th bit (13 signed bits hold 4095).
    cfg = variant("default", q=1).replace(max_channels=1, max_dense_inputs=4096)
    assert cfg.acc_bits == required_acc_bits(cfg) == 14


def test_pe_datapath_q4_proven(tmp_path):
    cfg = small_lane_config(variant("default"), 4)
    outcome = prove(tmp_path, "pe_q4", lambda: PEHarness(cfg))
    assert outcome.status == "pass", outcome.detail
    assert outcome.trace is None


def test_pe_width_q4_proven(tmp_path):
    cfg = small_lane_config(variant("default"), 4)
    outcome = prove(tmp_path, "width_q4", lambda: AccRangeHarness(cfg), depth=2)
    assert outcome.status == "pass", outcome.detail


# A config whose bounds are reached in a few cycles: 1 channel, 16 dense inputs -> U = 9·255 = 2295,
# acc_bits = 16 at Q = 4 (-8·2295 = -18360 < -2^14).
SMALL = small_lane_config(variant("default"), 4).replace(max_channels=1, max_dense_inputs=16)


def test_small_config_widths_by_hand():
    assert activation_bound(SMALL) == 2295 and SMALL.acc_bits == 16 == required_acc_bits(SMALL)


def test_pe_one_bit_narrower_fails_with_trace(tmp_path):
    outcome = prove(tmp_path, "pe_narrow", lambda: PEHarness(SMALL, acc_bits=SMALL.acc_bits - 1, exact=True),
                    mode="bmc", depth=8)
    assert_counterexample(tmp_path, outcome)


def test_width_one_bit_narrower_fails_with_trace(tmp_path):
    outcome = prove(tmp_path, "width_narrow", lambda: AccRangeHarness(SMALL, acc_bits=SMALL.acc_bits - 1), depth=8)
    assert_counterexample(tmp_path, outcome)


@pytest.mark.slow
def test_width_full_small_config_proven(tmp_path):
    outcome = prove(tmp_path, "width_small", lambda: AccRangeHarness(SMALL), depth=2)
    assert outcome.status == "pass", outcome.detail


@pytest.mark.slow
@pytest.mark.parametrize("q", range(1, 17))
def test_pe_every_q_proven(tmp_path, q):
    cfg = small_lane_config(variant("default"), q)
    for name, build, depth in (("datapath", lambda: PEHarness(cfg), 5), ("width", lambda: AccRangeHarness(cfg), 2)):
        outcome = prove(tmp_path, f"{name}_q{q}", build, depth=depth)
        assert outcome.status == "pass", (name, outcome.detail)


@pytest.mark.slow
def test_pe_ulx3s_proven(tmp_path):
    cfg = variant("ulx3s")
    for name, build, depth in (("datapath", lambda: PEHarness(cfg), 5), ("width", lambda: AccRangeHarness(cfg), 2)):
        outcome = prove(tmp_path, f"{name}_ulx3s", build, depth=depth)
        assert outcome.status == "pass", (name, outcome.detail)


# -- post-processing --------------------------------------------------------------------------------

@pytest.mark.slow
def test_postproc_formula_holds(tmp_path):
    from qjoule.hw.formal_postproc import postproc_checks
    checks = postproc_checks(variant("default", q=4))
    assert [c.name for c in checks] == ["postproc.formula.default.q4"]
    for check in checks:
        outcome = run_check(check, tmp_path, timeout=900)
        assert outcome.status == "pass", (check.name, outcome.detail)


def test_postproc_wrong_rounding_fails_with_trace(tmp_path):
    # the unit itself with a bias one too large: the formula check must see it in the first output
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from qjoule.gateware.postproc import PostProcess
    from qjoule.hw.formal_postproc import PostProcHarness

    cfg = variant("default", q=4)

    class BiasPlusOne(wiring.Component):
        def __init__(self):
            self.inner = PostProcess(cfg)
            super().__init__(self.inner.signature)

        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner = self.inner
            m.d.comb += [inner.i.valid.eq(self.i.valid), inner.i.payload.eq(self.i.payload),
                         inner.i.payload.bias.eq(self.i.payload.bias + 1), self.i.ready.eq(inner.i.ready),
                         self.o.valid.eq(inner.o.valid), self.o.payload.eq(inner.o.payload),
                         inner.o.ready.eq(self.o.ready)]
            return m

    outcome = prove(tmp_path, "pp_bias", lambda: PostProcHarness(cfg, dut=BiasPlusOne()), mode="bmc", depth=9)
    assert_counterexample(tmp_path, outcome)


# -- streams -----------------------------------------------------------------------------------------

def test_postproc_stream_scoreboard_holds(tmp_path):
    from qjoule.hw.formal_streams import PP_STREAM_DEPTH, PostProcStreamHarness
    cfg = variant("tiny", q=4)
    outcome = prove(tmp_path, "pp_stream", lambda: PostProcStreamHarness(cfg), mode="bmc", depth=PP_STREAM_DEPTH)
    assert outcome.status == "pass", outcome.detail


def test_dropped_ready_term_fails_with_trace(tmp_path):
    from qjoule.hw.formal_streams import PP_STREAM_DEPTH, DroppedReadyPostProcess, PostProcStreamHarness
    cfg = variant("tiny", q=4)
    outcome = prove(tmp_path, "pp_stream_weak", lambda: PostProcStreamHarness(cfg, dut=DroppedReadyPostProcess(cfg)),
                    mode="bmc", depth=PP_STREAM_DEPTH)
    assert_counterexample(tmp_path, outcome)


# -- sequencer ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sequencer_bounds_hold(tmp_path):
    from qjoule.hw.formal_sequencer import sequencer_checks
    checks = sequencer_checks(variant("tiny", q=4))
    assert [c.name.split(".")[2] for c in checks] == ["conv", "dense", "pool", "first", "logits", "fused"]
    for check in checks:
        outcome = run_check(check, tmp_path, timeout=900)
        assert outcome.status == "pass", (check.name, outcome.detail)


# -- CLI -----------------------------------------------------------------------------------------------

def test_cli_unknown_property_is_one_line_exit_2(tmp_path, capsys):
    from qjoule.cli import main
    code = main(["prove", "--what", "pe.nonexistent", "--q", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "unknown property 'pe.nonexistent'" in err[0] and "pe.datapath.q4.lanes4" in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_missing_solver_says_how_to_install(tmp_path, capsys, monkeypatch):
    from qjoule.cli import main
    from qjoule.hw import formal
    monkeypatch.setattr(formal, "TOOLS", formal.TOOLS + ("no-such-solver-qjoule",))
    code = main(["prove", "--what", "pe", "--q", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no-such-solver-qjoule" in err[0] and "bash scripts/setup.sh" in err[0]


def test_cli_proves_one_property_and_writes_json(tmp_path):
    import json
    from qjoule.cli import main
    out = tmp_path / "o"
    assert main(["prove", "--what", "pe.width.q4.lanes4", "--q", "4", "--out", str(out)]) == 0
    report = json.loads((out / "prove.json").read_text())
    assert report["passed"] is True
    (prop,) = report["properties"]
    assert prop["name"] == "pe.width.q4.lanes4" and prop["status"] == "pass" and prop["mode"] == "prove"
    assert prop["trace"] is None and prop["seconds"] > 0
    assert (out / "pe.width.q4.lanes4" / "design.il").exists()


# -- the bounded checks reach what they constrain (not vacuous) ---------------------------------

def _reach(tmp_path, name, harness_cls, cfg, never, depth):
    """A harness subclass asserting `never(harness)` is always 0 must fail: the event happens."""
    from amaranth.hdl import Assert

    class Reach(harness_cls):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            m.d.comb += Assert(never(self) == 0)
            return m

    return prove(tmp_path, name, lambda: Reach(cfg), mode="bmc", depth=depth)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv", "dense", "pool", "first", "logits", "fused"])
def test_sequencer_bounds_reach_reads_and_writes(tmp_path, kind):
    from qjoule.hw.formal_sequencer import SequencerBoundsHarness, seq_depth
    SEQ_DEPTH = seq_depth(kind)
    cfg = variant("tiny", q=4)
    harness = type("Kind", (SequencerBoundsHarness,), {"__init__": lambda self, c: SequencerBoundsHarness.__init__(self, c, kind)})
    if kind == "pool":   # reads: a pool read at the buffer
        read = lambda h: h.pool_read
    else:                # reads: data of an issued read feeding a valid array row
        read = lambda h: h._seq.probes["row_valid"] & h._seq.probes["en"].replicate(cfg.rows)
    assert_counterexample(tmp_path, _reach(tmp_path, "reads", harness, cfg, read, SEQ_DEPTH))
    if kind != "logits":  # the logits layer writes no activations (asserted by the check itself)
        writes = _reach(tmp_path, "writes", harness, cfg, lambda h: h._seq.act.wr_en[0], SEQ_DEPTH)
        assert_counterexample(tmp_path, writes)


@pytest.mark.slow
def test_accel_out_check_reaches_output_words(tmp_path):
    from qjoule.hw.formal_streams import SEQ_OUT_DEPTH, SequencerOutHarness
    outcome = _reach(tmp_path, "out", SequencerOutHarness, variant("tiny", q=4), lambda h: h._seq.out.valid,
                     SEQ_OUT_DEPTH)
    assert_counterexample(tmp_path, outcome)
