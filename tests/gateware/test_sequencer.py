"""One hidden conv3x3 layer (and the pixel layer before it) run by the sequencer from its buffers,
every output code equal to the golden model's conv3x3_acc + postprocess."""

import numpy as np
import pytest

from qjoule.config import AccelConfig, default_datapath
from qjoule.sw import golden


def _cfg(q, rows, cols):
    return AccelConfig(q=q, datapath=default_datapath(q), rows=rows, cols=cols, act_buffer_bits=32 * 1024,
                       weight_buffer_bits=32 * 1024, max_channels=32, max_height=16, max_width=16,
                       max_dense_inputs=512, max_classes=8, name="test")


# (q, R, C, hidden input channels, hidden output channels): S = 16/q lanes at q | 16, 5 at q = 3.
CASES = [
    (4, 2, 2, 8, 5),    # input channels fill the lanes (S=4, G=2); partial last output tile
    (4, 3, 1, 3, 4),    # 3 of 4 lanes; R=3 does not divide W=5
    (2, 1, 3, 8, 7),    # S=8 filled; C=3
    (8, 2, 3, 2, 3),    # S=2 filled
    (1, 3, 2, 16, 3),   # Q=1: XNOR lanes, S=16 filled
    (1, 2, 1, 5, 2),    # Q=1, 5 of 16 lanes (masked lanes must add 0, not -1)
    (3, 2, 2, 4, 3),    # Q=3: D=15, S=5
    (5, 3, 2, 3, 2),    # Q=5: D=15, S=3 filled
    (16, 2, 1, 2, 3),   # Q=16: one lane, one pass
]


@pytest.mark.parametrize("q, rows, cols, cin, cout", CASES)
def test_conv_layer_matches_golden(model_builder, accel_run, q, rows, cols, cin, cout):
    cfg = _cfg(q, rows, cols)
    model = model_builder(q, (2, 4, 5), [cin, cout], classes=3, seed=q * 100 + rows * 10 + cols)
    image = np.random.default_rng(7).integers(0, 256, size=(2, 4, 5), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    hidden = model.layer("L1")
    acc = golden.conv3x3_acc(x.outputs["L0"], model.arrays[hidden["weight"]], q)
    expected = golden.postprocess(acc, model.arrays[hidden["pp_mult"]], model.arrays[hidden["pp_bias"]],
                                  hidden["pp_shift"], q, hidden["act"])[0]
    assert len(np.unique(expected)) > 1  # the test would not see a stuck output otherwise
    assert np.array_equal(layers["L0"], x.outputs["L0"][0])
    assert np.array_equal(layers["L1"], expected)
    assert np.array_equal(logits, x.logits[0])


def test_conv_with_gaps_and_backpressure(model_builder, accel_run):
    cfg = _cfg(4, 2, 2)
    model = model_builder(4, (1, 5, 4), [4, 6], classes=3, seed=5)
    image = np.random.default_rng(3).integers(0, 256, size=(1, 5, 4), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=11)[0]
    x = golden.run(model, image[None])
    for name in ("L0", "L1"):
        assert np.array_equal(layers[name], x.outputs[name][0])
    assert np.array_equal(logits, x.logits[0])


@pytest.mark.parametrize("q, rows, cols", [(4, 1, 2), (1, 3, 1), (2, 3, 2), (8, 2, 2), (4, 4, 2), (2, 6, 1)])
def test_maxpool_layers_odd_sizes(model_builder, accel_run, q, rows, cols):
    # 5x7 input: both pools drop an odd last row/column (floor), R = 3 makes the two input
    # columns of an output wrap around the banks; R = 4, 6 pool R/2 output columns per step.
    cfg = _cfg(q, rows, cols)
    model = model_builder(q, (1, 5, 7), [5, 6], classes=3, seed=q + rows, pool_after=(0, 1))
    image = np.random.default_rng(q).integers(0, 256, size=(1, 5, 7), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    assert layers["P0"].shape == (5, 2, 3) and layers["P1"].shape == (6, 1, 1)
    for name in ("L0", "P0", "L1", "P1"):
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


def test_short_tiles_under_output_backpressure(model_builder, accel_run):
    # Q=16 (one lane), R=1, C=3: the dense layer's tiles last 3 cycles while sending a tile's
    # logits takes 6 words under random backpressure, so the drain backs up into the array.
    cfg = _cfg(16, 1, 3)
    model = model_builder(16, (1, 4, 4), [5, 3], classes=7, seed=3, pool_after=(0, 1))
    image = np.random.default_rng(1).integers(0, 256, size=(1, 4, 4), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=6)[0]
    x = golden.run(model, image[None])
    for name in layers:
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])
