"""Formal checks of the power-of-two-weight PE (hw/formal_pot.py): proofs pass on the real gateware,
weakened twins (one accumulator bit fewer, a wrong shift) fail with a counterexample trace."""

from __future__ import annotations

import pytest

from qjoule.config import VARIANTS, board_config, variant
from qjoule.hw.formal import Check, run_check
from qjoule.hw.formal_pe import PE_DEPTH, AccRangeHarness, activation_bound, required_acc_bits
from qjoule.hw.formal_pot import PotLaneIdentity, PotPEHarness, WrongShiftPE, pot_checks, pot_lane_config


def prove(tmp_path, name, build, mode="prove", depth=PE_DEPTH):
    outcome = run_check(Check(name, "test", build, mode, depth), tmp_path, timeout=600)
    assert outcome.status != "error", outcome.detail
    return outcome


def assert_counterexample(tmp_path, outcome):
    assert outcome.status == "fail", outcome.detail
    assert outcome.detail.startswith("counterexample")
    trace = tmp_path / outcome.trace
    assert trace.exists() and "$enddefinitions" in trace.read_text()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_pot_acc_bits_formula_is_the_narrowest_width(name):
    # weights ±2^K: the sum lies in [-2^K·U, 2^K·U]. Default Q = 3 by hand: K = 2, U = 9·512·255 =
    # 1_175_040, 4·U = 4_700_160 needs 24 signed bits (2^22 = 4_194_304 < 4·U <= 2^23 - 1).
    assert required_acc_bits(pot_lane_config(variant("default"), 3)) == 24
    for q in range(2, 7):
        cfg = VARIANTS[name].replace(q=q, datapath=q, weights="pot", act_memory="bram", weight_memory="bram")
        assert cfg.acc_bits == required_acc_bits(cfg), q


def test_check_list_covers_every_pot_q_and_the_config():
    names = [c.name for c in pot_checks(variant("ulx3s"))]
    for q in range(2, 7):
        for kind in ("datapath", "hold_zero", "width"):
            assert f"pe.pot.{kind}.q{q}.lanes4" in names
        assert f"pe.pot.lane_identity.q{q}" in names
    assert "pe.pot.datapath.ulx3s.q4.lanes4" in names
    assert [c.name for c in pot_checks(variant("default", q=8))][-1] == "pe.pot.width.q6.lanes4"  # no own PE at Q=8


def test_lane_identity_q4_proven(tmp_path):
    assert prove(tmp_path, "identity", lambda: PotLaneIdentity(4), depth=1).status == "pass"


def test_pot_datapath_q4_proven(tmp_path):
    cfg = pot_lane_config(variant("default"), 4)
    outcome = prove(tmp_path, "pot_q4", lambda: PotPEHarness(cfg))
    assert outcome.status == "pass", outcome.detail


def test_pot_width_q4_proven(tmp_path):
    cfg = pot_lane_config(variant("default"), 4)
    outcome = prove(tmp_path, "pot_width_q4", lambda: AccRangeHarness(cfg), depth=2)
    assert outcome.status == "pass", outcome.detail


def test_wrong_shift_fails_with_trace(tmp_path):
    cfg = pot_lane_config(variant("default"), 3)
    outcome = prove(tmp_path, "pot_shift", lambda: PotPEHarness(cfg, pe=WrongShiftPE(cfg)), mode="bmc", depth=6)
    assert_counterexample(tmp_path, outcome)


# Bounds reached in a few cycles: 1 channel, 16 dense inputs -> U = 9·255 = 2295; Q = 3: |w| <= 4,
# sums in [-9180, 9180]: 15 signed bits (2^13 = 8192 < 9180 <= 2^14).
SMALL = pot_lane_config(variant("default"), 3).replace(max_channels=1, max_dense_inputs=16)


def test_small_pot_config_widths_by_hand():
    assert activation_bound(SMALL) == 2295 and SMALL.acc_bits == 15 == required_acc_bits(SMALL)


def test_pot_one_bit_narrower_fails_with_trace(tmp_path):
    outcome = prove(tmp_path, "pot_narrow", lambda: PotPEHarness(SMALL, acc_bits=SMALL.acc_bits - 1, exact=True),
                    mode="bmc", depth=8)
    assert_counterexample(tmp_path, outcome)


def test_pot_width_one_bit_narrower_fails_with_trace(tmp_path):
    outcome = prove(tmp_path, "pot_width_narrow", lambda: AccRangeHarness(SMALL, acc_bits=SMALL.acc_bits - 1), depth=8)
    assert_counterexample(tmp_path, outcome)


@pytest.mark.slow
def test_pot_full_width_small_config_holds(tmp_path):
    # the same bounded run at the full width passes: the narrow failure is the width, not the harness
    outcome = prove(tmp_path, "pot_exact", lambda: PotPEHarness(SMALL, exact=True), mode="bmc", depth=8)
    assert outcome.status == "pass", outcome.detail


@pytest.mark.slow
@pytest.mark.parametrize("q", range(2, 7))
def test_pot_every_q_proven(tmp_path, q):
    for check in pot_checks(variant("default"), [q]):
        outcome = run_check(check, tmp_path, timeout=900)
        assert outcome.status == "pass", (check.name, outcome.detail)


@pytest.mark.slow
def test_pot_board_variant_proven(tmp_path):
    cfg = board_config("ulx3s-85f", 4, weights="pot")
    for build, depth in ((lambda: PotPEHarness(cfg), PE_DEPTH), (lambda: AccRangeHarness(cfg), 2)):
        outcome = prove(tmp_path, "board", build, depth=depth)
        assert outcome.status == "pass", outcome.detail
