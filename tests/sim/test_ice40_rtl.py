"""The icebreaker (iCE40 UP5K) board config at Q = 4 and 8 in Icarus against the golden model,
exact equality, every layer: activation and weight buffers in SPRAM (the SB_SPRAM256KA model),
the layer table as 32-bit words assembled by the sequencer into the compact layer register.
Random valid/ready gaps and backpressure as in test_accel_rtl.py. The board config has no dump
engine (`debug_dump` false): the every-layer runs add it back, the others run it as built."""

import numpy as np
import pytest

from qjoule.config import board_config
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("q", [4, 8])
def test_icebreaker_network_every_layer(tmp_path, q):
    cfg = board_config("icebreaker", q, debug_dump=True)
    assert (cfg.act_memory, cfg.weight_memory, cfg.layer_table, cfg.compact_control) == ("spram", "spram", "words", True)
    model = intmodel.random_model((1, 8, 8), 10, 2, 8, q, seed=11)  # 6 conv, 3 max-pool, dense
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(4).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=4)
    assert outcome.passed
    assert not failures(tb), failures(tb)


def test_icebreaker_q4_external_weights_into_spram(tmp_path):
    """Weights that do not fit stream in per image and are written into the weight SPRAM while
    the sequencer waits (its one port then writes, not reads): 200 words, B1 and C1 external."""
    from qjoule.program import encode

    cfg = board_config("icebreaker", 4, debug_dump=True).replace(weight_buffer_bits=200 * 16)
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=2)
    prog = encode(model, cfg)
    assert [prog.layers[i].name for i in prog.external] == ["B1", "C1"]
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(9).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=9)
    assert outcome.passed
    assert not failures(tb), failures(tb)


@pytest.mark.parametrize("q", [2, 8])
def test_icebreaker_as_built_logits_only(tmp_path, q):
    """The board config as `qjoule synth` builds it (no dump engine, two tile-metadata entries, one
    logit register): four images' logits, with output backpressure on the logit words."""
    cfg = board_config("icebreaker", q)
    assert not cfg.debug_dump and cfg.tile_meta_depth == 2
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, q, seed=5)
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(6).integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=6, debug=False,
                              stall_probability=0.5)
    assert outcome.passed and tb["error"] is None
    results = tb["jobs"][0]["images"]
    assert len(results) == 4
    for image in results:   # (logits only: `failures` asks for every layer)
        assert image["match"] and image["compared"] == ["logits"], image
