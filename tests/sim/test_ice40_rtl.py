"""The icebreaker (iCE40 UP5K) board config at Q = 4 and 8 in Icarus against the golden model,
exact equality, every layer: activation and weight buffers in SPRAM (the SB_SPRAM256KA model),
the layer table as 32-bit words assembled by the sequencer. Random valid/ready gaps and
backpressure as in test_accel_rtl.py."""

import numpy as np
import pytest

from qjoule.config import board_config
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("q", [4, 8])
def test_icebreaker_network_every_layer(tmp_path, q):
    cfg = board_config("icebreaker", q)
    assert (cfg.act_memory, cfg.weight_memory, cfg.layer_table) == ("spram", "spram", "words")
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

    cfg = board_config("icebreaker", 4).replace(weight_buffer_bits=200 * 16)
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=2)
    prog = encode(model, cfg)
    assert [prog.layers[i].name for i in prog.external] == ["B1", "C1"]
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(9).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=9)
    assert outcome.passed
    assert not failures(tb), failures(tb)
