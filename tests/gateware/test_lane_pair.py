"""Which configs pair their lane products (gateware/lane_pair.py). The paired products themselves
are checked through the array, exhaustively at Q = 5 and 6: tests/gateware/test_array.py
(test_paired_columns_give_each_pe_its_exact_lane_sum)."""

import pytest

from qjoule.config import variant
from qjoule.gateware.lane_pair import DSP_PAIR_MAX_Q, DSP_PAIR_MIN_Q, pairs_lanes


@pytest.mark.parametrize("q", [4, 7, 8])
def test_no_pairs_outside_their_q_range(q):
    assert not DSP_PAIR_MIN_Q <= q <= DSP_PAIR_MAX_Q
    assert not pairs_lanes(variant("tiny", q))


def test_pairs_need_two_columns_uniform_weights_and_the_switch():
    assert pairs_lanes(variant("tiny", 5))
    assert not pairs_lanes(variant("tiny", 5, cols=1))
    assert not pairs_lanes(variant("tiny", 5, dsp_pairs=False))
    assert not pairs_lanes(variant("tiny", 5, weights="pot"))
