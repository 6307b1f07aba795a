"""The icebreaker (iCE40 UP5K) board config in Icarus against the golden model, exact equality,
every layer: activation and weight buffers in SPRAM (the SB_SPRAM256KA model), the layer table
as 32-bit words assembled by the sequencer. Random valid/ready gaps and backpressure as in
test_accel_rtl.py."""

import numpy as np
import pytest

from qjoule.config import board_config
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel

pytestmark = pytest.mark.rtl


def test_icebreaker_q4_network_every_layer(tmp_path):
    cfg = board_config("icebreaker", 4)
    assert (cfg.act_memory, cfg.weight_memory, cfg.layer_table) == ("spram", "spram", "words")
    model = intmodel.random_model((1, 8, 8), 10, 2, 8, 4, seed=11)  # conv, conv, pool, conv, conv, pool, dense
    path = tmp_path / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(4).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    tb, outcome, _ = run_jobs([{"model": path, "images": images}], cfg, tmp_path / "sim", seed=4)
    assert outcome.passed
    assert not failures(tb), failures(tb)
