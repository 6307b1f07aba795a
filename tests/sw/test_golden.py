"""The golden model against hand-computed values and against naive loop references written here."""

import itertools

import numpy as np
import pytest

from qjoule.errors import UserError
from qjoule.sw import golden, intmodel


# -- pixel chunks --------------------------------------------------------------------------------

def test_pixel_chunks_hand_values():
    # 182 = 0b10_110_110 at Q = 3: chunks 6, 6, 2 (low first; the top chunk has only 2 bits).
    assert [int(c) for c in golden.pixel_chunks(182, 3)] == [6, 6, 2]
    assert [int(c) for c in golden.pixel_chunks(182, 1)] == [0, 1, 1, 0, 1, 1, 0, 1]
    assert [int(c) for c in golden.pixel_chunks(182, 5)] == [22, 5]
    assert [int(c) for c in golden.pixel_chunks(182, 8)] == [182]
    assert [int(c) for c in golden.pixel_chunks(255, 16)] == [255]


@pytest.mark.parametrize("q", range(1, 17))
def test_pixel_chunks_reassemble_every_pixel(q):
    pixels = np.arange(256)
    chunks = golden.pixel_chunks(pixels, q)
    assert len(chunks) == -(-8 // q)
    assert all(c.min() >= 0 and c.max() <= 2 ** q - 1 for c in chunks)
    assert np.array_equal(sum(c << (j * q) for j, c in enumerate(chunks)), pixels)


@pytest.mark.parametrize("q", [1, 2, 3, 5, 8])
def test_first_layer_by_chunks_equals_plain_dot_product(q):
    rng = np.random.default_rng(q)
    x = rng.integers(0, 256, size=(3, 2, 5, 4))
    w = rng.integers(-8, 8, size=(3, 2, 3, 3))
    plain = golden.conv3x3_acc(x, w, 8)
    by_passes = sum(golden.conv3x3_acc(chunk, w, 16) << (j * q)  # chunk codes are plain values
                    for j, chunk in enumerate(golden.pixel_chunks(x, q)))
    assert np.array_equal(plain, by_passes)


# -- accumulation ----------------------------------------------------------------------------------

def _naive_conv(x, w, q_in):
    n, c, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd), dtype=object)
    for b, o, i, j in itertools.product(range(n), range(w.shape[0]), range(h), range(wd)):
        total = 0
        for ci, dy, dx in itertools.product(range(c), range(3), range(3)):
            y, xx = i + dy - 1, j + dx - 1
            if 0 <= y < h and 0 <= xx < wd:  # padding adds nothing
                v = int(x[b, ci, y, xx])
                total += int(w[o, ci, dy, dx]) * ((2 * v - 1) if q_in == 1 else v)
        out[b, o, i, j] = total
    return out


def test_conv_hand_values_padding_is_zero_at_q1():
    ones = np.ones((1, 1, 2, 2), dtype=np.int64)
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    # Every 3x3 window of a 2x2 image holds the 4 pixels and 5 padded positions.
    assert golden.conv3x3_acc(ones, w, 1).tolist() == [[[[4, 4], [4, 4]]]]
    assert golden.conv3x3_acc(0 * ones, w, 1).tolist() == [[[[-4, -4], [-4, -4]]]]  # not -9: padding is 0
    assert golden.conv3x3_acc(3 * ones, w, 2).tolist() == [[[[12, 12], [12, 12]]]]


@pytest.mark.parametrize("q_in", [1, 2, 3, 4, 8, 16])
def test_conv_matches_naive_loops(q_in):
    rng = np.random.default_rng(100 + q_in)
    top = 1 if q_in == 1 else (255 if q_in == 8 else 2 ** q_in - 1)
    x = rng.integers(0, top + 1, size=(2, 3, 5, 6))
    wq = max(q_in, 2)
    w = rng.integers(-(2 ** (wq - 1)), 2 ** (wq - 1), size=(4, 3, 3, 3))
    got = golden.conv3x3_acc(x, w, q_in)
    assert got.dtype == np.int64
    assert np.array_equal(got, _naive_conv(x, w, q_in).astype(np.int64))


@pytest.mark.parametrize("q_in", [1, 4, 8, 16])
def test_dense_matches_naive_loops(q_in):
    rng = np.random.default_rng(q_in)
    top = 1 if q_in == 1 else (255 if q_in == 8 else 2 ** q_in - 1)
    x = rng.integers(0, top + 1, size=(3, 7))
    w = rng.integers(-8, 8, size=(5, 7))
    vals = 2 * x - 1 if q_in == 1 else x
    expected = [[sum(int(w[o, k]) * int(vals[n, k]) for k in range(7)) for o in range(5)] for n in range(3)]
    assert golden.dense_acc(x, w, q_in).tolist() == expected


def test_extreme_accumulator_q16_largest_reduction_exact():
    # Q = 16, K = 2^20 / 9 channels: every weight -2^15, every code 2^16 - 1.
    c = (1 << 20) // 9
    x = np.full((1, c, 1, 1), 2 ** 16 - 1)
    w = np.full((1, c, 3, 3), -(2 ** 15))
    assert int(golden.conv3x3_acc(x, w, 16)[0, 0, 0, 0]) == -c * 2 ** 15 * (2 ** 16 - 1)


def test_out_of_range_codes_rejected():
    with pytest.raises(ValueError):
        golden.conv3x3_acc(np.full((1, 1, 2, 2), 2), np.ones((1, 1, 3, 3)), 1)
    with pytest.raises(ValueError):
        golden.dense_acc(np.full((1, 2), 16), np.ones((1, 2)), 4)


# -- post-processing -------------------------------------------------------------------------------

def test_postprocess_hand_values():
    acc = np.array([[5, -5]])
    m, b = np.array([3, 3]), np.array([1, 1])
    # (15 + 1) >> 2 = 4; (-15 + 1) >> 2 = floor(-14 / 4) = -4
    assert golden.postprocess(acc, m, b, 2, None, "none").tolist() == [[4, -4]]
    assert golden.postprocess(acc, m, b, 2, 2, "relu").tolist() == [[3, 0]]
    assert golden.postprocess(acc, m, b, 2, 3, "relu").tolist() == [[4, 0]]
    assert golden.postprocess(acc, m, b, 2, 1, "sign").tolist() == [[1, 0]]


def test_postprocess_sign_boundary_and_per_channel_axis():
    # acc·m + b = 0 -> +1 (bit 1); = -1 -> bit 0. Channels run along axis 1 of (N, C, H, W).
    acc = np.array([[[[1]], [[1]]]])
    assert golden.postprocess(acc, np.array([2, 2]), np.array([-2, -3]), 5, 1, "sign").ravel().tolist() == [1, 0]
    acc = np.arange(8).reshape(1, 2, 2, 2)
    out = golden.postprocess(acc, np.array([1, -1]), np.array([0, 0]), 1, None, "none")
    assert out.tolist() == [[[[0, 0], [1, 1]], [[-2, -3], [-3, -4]]]]


def test_postprocess_beyond_int64_is_exact():
    acc = np.array([[2 ** 50, -(2 ** 50)]])
    m = np.array([2 ** 17 - 1, 2 ** 17 - 1])
    b = np.array([0, 2 ** 40])
    expected = [(2 ** 50 * (2 ** 17 - 1)) >> 62, (-(2 ** 50) * (2 ** 17 - 1) + 2 ** 40) >> 62]
    assert golden.postprocess(acc, m, b, 62, None, "none").tolist() == [expected]
    assert golden.postprocess(acc, m, b, 40, 16, "relu").tolist() == [[65535, 0]]
    assert golden.postprocess(acc, m, b, 40, 1, "sign").tolist() == [[1, 0]]


# -- max-pool --------------------------------------------------------------------------------------

def test_maxpool_floor_drops_odd_edge():
    x = np.array([[[[1, 2, 9],
                    [3, 4, 9],
                    [9, 9, 9]]]])
    assert golden.maxpool2x2(x).tolist() == [[[[4]]]]
    bits = np.array([[[[0, 0, 1, 0], [0, 0, 0, 0]]]])
    assert golden.maxpool2x2(bits).tolist() == [[[[0, 1]]]]  # OR of bits


# -- whole model ---------------------------------------------------------------------------------

def _hand_model():
    """1x2x2 input -> conv (1 channel, Q=2) -> pool -> dense (2 classes)."""
    layers = [
        {"name": "A1", "kind": "conv3x3", "in_shape": [1, 2, 2], "out_shape": [1, 2, 2], "q_in": 8, "q_w": 2,
         "q_out": 2, "act": "relu", "weight": "A1.weight", "pp_mult": "A1.pp_mult", "pp_bias": "A1.pp_bias", "pp_shift": 4},
        {"name": "A.pool", "kind": "maxpool2x2", "in_shape": [1, 2, 2], "out_shape": [1, 1, 1], "q_in": 2, "q_out": 2},
        {"name": "fc", "kind": "dense", "in_shape": [1], "out_shape": [2], "q_in": 2, "q_w": 2, "q_out": None,
         "act": "none", "weight": "fc.weight", "pp_mult": "fc.pp_mult", "pp_bias": "fc.pp_bias", "pp_shift": 1},
    ]
    w = np.zeros((1, 1, 3, 3), dtype=np.int8)
    w[0, 0, 1, 1] = 1   # centre tap only: acc = pixel
    arrays = {"A1.weight": w, "A1.pp_mult": np.array([1], np.int32), "A1.pp_bias": np.array([0], np.int64),
              "fc.weight": np.array([[1], [-2]], np.int8), "fc.pp_mult": np.array([2, 2], np.int32),
              "fc.pp_bias": np.array([0, 8], np.int64)}
    header = {"format": "qjoule-int-model", "version": 1, "q": 2,
              "input": {"channels": 1, "height": 2, "width": 2, "bits": 8}, "classes": 2, "layers": layers,
              "arrays": {n: {} for n in arrays}}
    return intmodel.IntModel(header, arrays)


def test_run_hand_model():
    model = _hand_model()
    intmodel.validate(model)
    images = np.array([[[[10, 40], [20, 30]]], [[[0, 5], [15, 2]]]], dtype=np.uint8)
    r = golden.run(model, images)
    assert r.accs["A1"].tolist() == [[[[10, 40], [20, 30]]], [[[0, 5], [15, 2]]]]
    # codes: clip(p >> 4, 0, 3): 0,2(40>>4),1,1 and 0,0,0,0
    assert r.outputs["A1"].tolist() == [[[[0, 2], [1, 1]]], [[[0, 0], [0, 0]]]]
    assert r.outputs["A.pool"].tolist() == [[[[2]]], [[[0]]]]
    # logits: (2·[2, -4] + [0, 8]) >> 1 = [2, 0]; (2·[0, 0] + [0, 8]) >> 1 = [0, 4]
    assert r.logits.tolist() == [[2, 0], [0, 4]]
    assert r.predictions.tolist() == [0, 1]
    assert r.accs["fc"].tolist() == [[2, -4], [0, 0]]


def test_run_rejects_wrong_image_shape():
    with pytest.raises(UserError, match=r"\(N, 1, 2, 2\)"):
        golden.run(_hand_model(), np.zeros((1, 1, 8, 8), np.uint8))


@pytest.mark.parametrize("q", [1, 2, 3, 4, 5, 8, 16])
def test_run_random_model_composes_the_layer_functions(q):
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, q, seed=q)
    images = np.random.default_rng(7).integers(0, 256, size=(16, 1, 8, 8), dtype=np.uint8)
    r = golden.run(model, images)
    x = images.astype(np.int64)
    for layer in model.layers:
        if layer["kind"] == "maxpool2x2":
            x = golden.maxpool2x2(x)
        else:
            w = model.arrays[layer["weight"]]
            acc = (golden.conv3x3_acc(x, w, layer["q_in"]) if layer["kind"] == "conv3x3"
                   else golden.dense_acc(x.reshape(len(x), -1), w, layer["q_in"]))
            assert np.array_equal(r.accs[layer["name"]], acc)
            x = golden.postprocess(acc, model.arrays[layer["pp_mult"]], model.arrays[layer["pp_bias"]],
                                   layer["pp_shift"], layer["q_out"], layer["act"])
        assert np.array_equal(r.outputs[layer["name"]], x)
    assert r.logits.shape == (16, 10)
    assert np.array_equal(r.predictions, np.argmax(x, axis=1))


def test_large_reductions_exact_on_both_matmul_paths():
    # Q = 16 codes and weights, K = 4096 random terms: bound below 2^53 (the float64 BLAS path).
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2 ** 16, size=(3, 4096))
    w = rng.integers(-(2 ** 15), 2 ** 15, size=(4, 4096))
    expected = (x.astype(object) @ w.T.astype(object)).tolist()
    assert golden.dense_acc(x, w, 16).tolist() == expected
    # Weights far beyond any Q range push the bound past 2^53: the int64 path, still exact.
    w_big = rng.integers(-(2 ** 40), 2 ** 40, size=(2, 7))
    x_small = rng.integers(0, 256, size=(2, 7))
    assert golden.dense_acc(x_small, w_big, 8).tolist() == (x_small.astype(object) @ w_big.T.astype(object)).tolist()


def test_conv_batch_chunks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 16, size=(7, 2, 4, 5))
    w = rng.integers(-8, 8, size=(3, 2, 3, 3))
    whole = golden.conv3x3_acc(x, w, 4)
    monkeypatch.setattr(golden, "_IM2COL_VALUES", 2 * 9 * 4 * 5 * 3)  # 3 images per chunk: 3 + 3 + 1
    assert np.array_equal(golden.conv3x3_acc(x, w, 4), whole)
    assert np.array_equal(whole, _naive_conv(x, w, 4).astype(np.int64))


def test_postprocess_bias_at_int64_minimum():
    # np.abs(-2^63) wraps to a negative number; the overflow bound must still see its magnitude.
    acc = np.array([[3], [-7]], dtype=np.int64)
    mult = np.array([5], dtype=np.int64)
    bias = np.array([-(1 << 63)], dtype=np.int64)
    got = golden.postprocess(acc, mult, bias, 60, None, "none")
    expected = [[(3 * 5 - (1 << 63)) >> 60], [(-7 * 5 - (1 << 63)) >> 60]]
    assert got.tolist() == expected
