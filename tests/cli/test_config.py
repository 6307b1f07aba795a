"""AccelConfig: validation, derived values checked by hand, JSON round trip, variants."""

import json

import pytest

from qjoule.config import AccelConfig, default_datapath, variant
from qjoule.errors import UserError


def test_derived_values_by_hand():
    cfg = AccelConfig(q=4, datapath=16, rows=2, cols=3, max_channels=8, max_dense_inputs=16)
    assert cfg.lanes == 4
    assert cfg.parallelism == 2 * 3 * 4
    assert cfg.max_reduction == 72
    # First layer dominates: 9·8 taps × 8 (|w| max) × 255 = 146880 -> ceil(log2) = 18, +1 sign.
    assert cfg.acc_bits == 19
    assert cfg.first_layer_passes == 2


def test_acc_bits_q1_and_q16():
    # Q = 1: hidden products are ±1, pixels give ±255 over 9·C taps.
    cfg = AccelConfig(q=1, datapath=16, max_channels=64, max_dense_inputs=1024)
    # The pixel sum dominates: 9·64·255 = 146880 -> ceil(log2) = 18, +1 sign.
    assert cfg.acc_bits == 19
    cfg16 = AccelConfig(q=16, datapath=16, max_channels=512, max_dense_inputs=8192)
    # hidden: 8192 · 2^15 · 65535 ~ 2^44 -> 45 bits
    assert cfg16.acc_bits == 45


@pytest.mark.parametrize("q", range(1, 17))
def test_default_datapath_is_a_multiple(q):
    d = default_datapath(q)
    assert d % q == 0 and q <= d <= 16
    assert variant("tiny", q=q).lanes == d // q


@pytest.mark.parametrize("changes, fragment", [
    ({"q": 0}, "q must be 1..16, got 0"),
    ({"q": 17, "datapath": 17}, "q must be 1..16, got 17"),
    ({"q": 3, "datapath": 16}, "multiple of q=3, got 16"),
    ({"rows": 0}, "rows must be >= 1, got 0"),
    ({"cols": -1}, "cols must be >= 1, got -1"),
    ({"memory_pipeline": 3}, "memory_pipeline must be one of 0, 1, 2 (register stages after a buffer read), got 3"),
    ({"memory_pipeline": 1, "act_memory": "spram"}, "needs act_memory and weight_memory 'bram', got 'spram' and 'bram'"),
    ({"q": 8, "lut_lanes": 3}, "lut_lanes must be 0..2 (the lanes of a PE), got 3"),
    ({"q": 8, "lut_lanes": -1}, "lut_lanes must be 0..2 (the lanes of a PE), got -1"),
    ({"q": 4, "lut_lanes": 1, "weights": "pot"}, "lut_lanes applies to uniform weights at one Q; got lut_lanes=1 with weights 'pot'"),
])
def test_bad_values_name_the_value(changes, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        AccelConfig(**changes)


def test_json_round_trip(tmp_path):
    cfg = variant("ulx3s", q=3)
    path = tmp_path / "accel.json"
    path.write_text(cfg.to_json())
    assert AccelConfig.load(path) == cfg
    data = json.loads(path.read_text())
    assert data["derived"]["p"] == cfg.parallelism
    assert data["memory_pipeline"] == 2 and cfg.read_latency == 3
    # a field at its default stays out of the JSON (and so out of config_id)
    assert "memory_pipeline" not in json.loads(variant("tiny").to_json())
    assert "lut_lanes" not in json.loads(variant("tiny").to_json())
    halved = variant("ulx3s", q=8, lut_lanes=1)
    path.write_text(halved.to_json())
    assert AccelConfig.load(path) == halved and json.loads(path.read_text())["lut_lanes"] == 1


def test_load_rejects_wrong_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        AccelConfig.load(bad)
    bad.write_text(json.dumps({"format": "qjoule-accel-config", "version": 99}))
    with pytest.raises(UserError, match="version 99"):
        AccelConfig.load(bad)
    with pytest.raises(UserError, match="does not exist"):
        AccelConfig.load(tmp_path / "missing.json")


def test_unknown_variant():
    with pytest.raises(UserError, match="unknown config variant 'nope'"):
        variant("nope")
