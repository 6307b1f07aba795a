"""activity.json from a real Icarus run: counts that must equal hand-derived values where the
energy model's assumptions hold, and the differences reported where they do not."""

import json
from pathlib import Path

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.sim.cases import build_model
from qjoule.sim.simulate import simulate
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


def _valid_taps(h, w):
    """3×3 taps inside an h×w image, summed over output pixels (padding taps excluded)."""
    rows = np.array([min(y + 1, h - 1) - max(y - 1, 0) + 1 for y in range(h)])
    cols = np.array([min(x + 1, w - 1) - max(x - 1, 0) + 1 for x in range(w)])
    return int(rows.sum() * cols.sum())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # Q = 4, S = 4 lanes, R = C = 2, 4×4 maps (two full row tiles). L1: 8 input channels (fill the
    # lanes), 4 outputs (two full column tiles): the model's assumptions hold. L2: 4 -> 5 channels
    # (a partial column tile). L3: 5 input channels (the second lane group 1/4 full).
    cfg = variant("tiny", q=4, rows=2, cols=2)
    model = build_model(4, (3, 4, 4), [("conv3x3", 8), ("conv3x3", 4), ("conv3x3", 5), ("conv3x3", 4), ("dense", 5)],
                        seed=3)
    work = tmp_path_factory.mktemp("activity")
    path = work / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 4), dtype=np.uint8)
    result = simulate(model_path=str(path), cfg=cfg, images=images, work=work / "sim", debug=False)
    activity = json.loads((work / "sim" / "activity.json").read_text())
    return cfg, model, result, activity


def test_schema_and_layers(run):
    cfg, model, result, activity = run
    assert result["match"] and result["activity"] == "activity.json"
    assert activity["format"] == "qjoule-activity" and activity["version"] == 1 and activity["q"] == 4
    assert [l["name"] for l in activity["layers"]] == [l["name"] for l in model.layers]
    for layer in activity["layers"]:
        assert set(layer["buffers"]) >= {"act_main", "weight_main", "act_local", "weight_local"}
        assert layer["cycles"] > 0 and layer["toggles"]["mac"] > 0


def test_lane_macs_equal_the_model_where_its_assumptions_hold(run):
    cfg, model, result, activity = run
    l1 = activity["layers"][1]
    # Every lane of every column does a useful MAC on every valid tap: the exact count.
    assert l1["mac_lane_ops"] == 2 * _valid_taps(4, 4) * 8 * 4
    # The energy model's N_c counts the padding taps too; the difference is reported, not hidden.
    row = result["per_layer"][1]
    assert row["model_macs"] == 2 * 4 * 4 * 9 * 8 * 4
    assert row["mac_difference"] == l1["mac_lane_ops"] - row["model_macs"] < 0
    # Post-processing: one operation per output value.
    assert l1["postproc_ops"] == 2 * 4 * 4 * 4
    # Local register files: one activation word per row and one weight word per column per array cycle.
    array_cycles = l1["buffers"]["act_local"]["writes"]["words"] // cfg.rows
    assert l1["buffers"]["weight_local"]["writes"]["words"] == array_cycles * cfg.cols
    assert l1["buffers"]["act_local"]["reads"]["words"] == array_cycles * cfg.rows * cfg.cols


def test_partial_tiles_and_empty_lanes_are_reported(run):
    cfg, model, result, activity = run
    l2, l3 = activity["layers"][2], activity["layers"][3]
    # Empty lanes are masked: only the 5 real input channels count.
    assert l3["mac_lane_ops"] == 2 * _valid_taps(4, 4) * 5 * 4
    # A partial column tile still runs its idle column: counted as work the array did, and the
    # difference to the model's N_c shows it.
    assert l2["mac_lane_ops"] == 2 * _valid_taps(4, 4) * 4 * 6
    assert result["per_layer"][2]["mac_difference"] == l2["mac_lane_ops"] - 2 * 4 * 4 * 9 * 4 * 5
    for layer in (l2, l3):
        assert layer["idle_lane_cycles"] == layer["cycles"] * cfg.parallelism - layer["mac_lane_ops"] > 0


def test_external_words_in_are_the_image_and_out_are_the_logits(run):
    cfg, model, result, activity = run
    # Logits-only run: the last layer sends 5 logits of 64 bits (2 words each) per image.
    assert sum(l["external"]["words_out"] for l in activity["layers"]) == 2 * 5 * 2


@pytest.fixture(scope="module")
def dumped(run, tmp_path_factory):
    """The same design, model and images with the per-layer debug dump on."""
    cfg, model, result, activity = run
    work = tmp_path_factory.mktemp("activity-dump")
    path = work / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 4), dtype=np.uint8)
    text = (Path(activity["run"]["model"]).parent / "sim" / "qjoule_accel.v").read_text()
    dumped = simulate(model_path=str(path), cfg=cfg, images=images, work=work / "sim", debug=True, verilog_text=text)
    return dumped, json.loads((work / "sim" / "activity.json").read_text())


def test_debug_dump_is_reported_apart_from_the_layers(run, dumped):
    from qjoule.program import encode

    cfg, model, _, plain = run
    result, activity = dumped
    assert result["match"]
    program = encode(model, cfg, debug=True)
    for i, (a, b, plan) in enumerate(zip(activity["layers"], plain["layers"], program.layers)):
        # the layer's own work is the same with and without the dump ...
        for key in ("mac_lane_ops", "postproc_ops"):
            assert a[key] == b[key], (a["name"], key)
        for buffer in ("weight_main", "act_local", "weight_local"):
            assert a["buffers"][buffer] == b["buffers"][buffer], (a["name"], buffer)
        assert a["buffers"]["act_main"]["writes"] == b["buffers"]["act_main"]["writes"]
        assert a["external"]["words_in"] == b["external"]["words_in"]
        if i < len(program.layers) - 1:  # (the logits leave under random backpressure: cycles vary)
            assert a["cycles"] == b["cycles"], a["name"]
            assert a["external"] == b["external"], a["name"]
        # ... and the dump's words are the layer's output map, R banks x chunks per address, per image
        words = plan.entry["out_words"] * cfg.rows * -(-cfg.datapath // 32) * 2 if plan.entry["dump"] else 0
        assert a["debug_dump"]["words_out"] == words, a["name"]
        assert (a["debug_dump"]["cycles"] > 0) == bool(words)
        assert 0 < a["debug_dump"]["act_main_reads"]["words"] <= words or not words
    total_out = sum(l["external"]["words_out"] + l["debug_dump"]["words_out"] for l in activity["layers"])
    assert total_out == 2 * program.output_word_count()


def test_a_fused_pool_counts_in_its_conv(tmp_path):
    # tiny (R = C = 2, Q = 4: S = 4 lanes): L0 4 channels on 4x4, its pool fused (the conv's writer
    # stores the 2x2 pooled map), L1, fc. The activity keeps one entry per model layer; the pool's
    # is empty, its work is in L0's.
    cfg = variant("tiny", q=4, rows=2, cols=2)
    model = build_model(4, (1, 4, 4), [("conv3x3", 4), ("maxpool2x2", None), ("conv3x3", 4), ("dense", 3)], seed=5)
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(1).integers(0, 256, size=(2, 1, 4, 4), dtype=np.uint8)
    result = simulate(model_path=str(path), cfg=cfg, images=images, work=tmp_path / "sim", debug=True)
    activity = json.loads((tmp_path / "sim" / "activity.json").read_text())
    assert result["match"]
    assert [row["label"] for row in result["per_layer"]] == ["L0+P0", "L1", "fc"]
    assert [layer["name"] for layer in activity["layers"]] == ["L0", "P0", "L1", "fc"]
    l0, p0 = activity["layers"][0], activity["layers"][1]
    assert p0["cycles"] == p0["mac_lane_ops"] == p0["postproc_ops"] == 0
    assert p0["buffers"]["act_main"]["writes"]["words"] == 0 and p0["debug_dump"]["words_out"] == 0
    # L0 post-processes the whole 4x4x4 conv map but writes only the pooled 2x2 pixels: one word
    # (4 channels in 4 lanes) per pixel, once per output tile of C = 2 channels, per image
    assert l0["postproc_ops"] == 2 * 4 * 4 * 4
    assert l0["buffers"]["act_main"]["writes"]["words"] == 2 * (2 * 2) * 2
    # L1 runs on the pooled 2x2 map (4 channels fill the lanes, 4 outputs: two column tiles)
    assert activity["layers"][2]["mac_lane_ops"] == 2 * _valid_taps(2, 2) * 4 * 4


def test_next_state_temporaries_are_the_registers_d_inputs():
    # Yosys' Verilog: `$3` only feeds a register (its enable multiplexer), `$4` is logic of its
    # own (a product read by a register and an output), named per instance-path module.
    from qjoule.sim.activity import next_state_temporaries

    verilog = """module qjoule_accel(clk);
  always @(posedge clk)
    r <= \\$3 ;
  assign \\$4 = a * b;
endmodule
module \\qjoule_accel.seq.pp0 (clk);
  always @(posedge clk)
    s1_mult <= \\$14 ;
  always @(posedge clk)
    s2_p <= \\$4 + 1'h1;
  always @* begin
    \\$14 = s1_mult;
    if (load) \\$14 = i__payload[39:22];
  end
endmodule
"""
    assert next_state_temporaries(verilog) == {("", "$3"), ("seq.pp0", "$14")}
