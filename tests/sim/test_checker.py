"""qjoule.sim.checker: first differences and the failure lines of a testbench result."""

import numpy as np

from qjoule.sim.checker import failures, first_difference


def _image(match=True, compared=("L0", "logits"), mismatch=None):
    return {"image": 0, "match": match, "compared": list(compared), "first_mismatch": mismatch}


def test_failures_of_an_exact_result_is_empty():
    assert failures({"error": None, "jobs": [{"model": "m.qjm", "images": [_image(), _image()]}]}) == []


def test_failures_names_mismatches_errors_and_partial_comparisons():
    assert failures(None) == ["the testbench wrote no result"]
    assert failures({"error": "hang at layer 2", "jobs": []}) == ["hang at layer 2"]
    tb = {"error": None, "jobs": [{"model": "m.qjm", "images": [
        _image(match=False, mismatch={"layer": "L0", "index": [0, 1, 2]}), _image(compared=("logits",))]}]}
    assert failures(tb) == ["m.qjm image 0: {'layer': 'L0', 'index': [0, 1, 2]}",
                            "m.qjm image 0: compared only ['logits']"]


def test_first_difference_is_the_first_in_c_order():
    expected = np.zeros((2, 3), dtype=np.int64)
    got = expected.copy()
    assert first_difference(expected, got) is None
    got[1, 0], got[1, 2] = 5, 7
    diff = first_difference(expected, got)
    assert diff == {"index": [1, 0], "expected": 0, "got": 5, "differing": 2, "of": 6}
