"""Network statistics against counts worked out by hand."""

import pytest

from qjoule.errors import UserError
from qjoule.sw.netstats import (describe_topology, first_layer_factor, first_layer_passes,
                                network_stats, topology_stats)


def test_topology_names_shapes_and_floor_pooling():
    layers = describe_topology((1, 28, 28), 10, 2, (8, 16, 32))
    assert [l["name"] for l in layers] == ["A1", "A2", "A.pool", "B1", "B2", "B.pool",
                                           "C1", "C2", "C.pool", "fc"]
    assert [l["kind"] for l in layers] == ["conv3x3"] * 2 + ["maxpool2x2"] + ["conv3x3"] * 2 + \
        ["maxpool2x2"] + ["conv3x3"] * 2 + ["maxpool2x2", "dense"]
    shapes = {l["name"]: (l["in_shape"], l["out_shape"]) for l in layers}
    assert shapes["A1"] == ([1, 28, 28], [8, 28, 28])
    assert shapes["A2"] == ([8, 28, 28], [8, 28, 28])
    assert shapes["A.pool"] == ([8, 28, 28], [8, 14, 14])
    assert shapes["B.pool"] == ([16, 14, 14], [16, 7, 7])
    assert shapes["C1"] == ([16, 7, 7], [32, 7, 7])
    assert shapes["C.pool"] == ([32, 7, 7], [32, 3, 3])       # floor: the odd row/column is dropped
    assert shapes["fc"] == ([32 * 3 * 3], [10])
    assert set(layers[0]) == {"name", "kind", "in_shape", "out_shape"}


def test_stats_by_hand_q4():
    # (1,8,8), 1 block, width 4, 10 classes:
    # A1 1->4 @8x8: 64*4*9*1 = 2304 MACs, 36 w + 4 b, 256 out
    # B1 4->4 @4x4: 16*4*9*4 = 2304 MACs, 144 w + 4 b, 64 out
    # C1 4->4 @2x2:  4*4*9*4 =  576 MACs, 144 w + 4 b, 16 out
    # fc 4->10: 40 MACs, 40 w + 10 b, 10 out
    s = topology_stats((1, 8, 8), 10, 1, 4, 4)
    by = {l.name: l for l in s.layers}
    assert [by[n].macs for n in ("A1", "A.pool", "B1", "B.pool", "C1", "C.pool", "fc")] == \
        [2304, 0, 2304, 0, 576, 0, 40]
    assert by["B1"].weights == 144 and by["B1"].biases == 4 and by["B1"].weights_and_biases == 148
    assert by["A.pool"].activations == 0 and by["A.pool"].out_values == 64
    assert by["A1"].in_bits == 64 * 8 and by["B1"].in_bits == 64 * 4
    t = s.total
    assert t.macs == 5224
    assert t.weights_and_biases == 386 and t.weights == 364 and t.biases == 22
    assert t.activations == 256 + 64 + 16 + 10
    assert t.max_feature_map == 256 and t.max_feature_map_bits == 1024
    assert t.model_bits == 386 * 4
    assert t.first_layer_factor == 2.0 and t.first_layer_passes == 2
    assert t.macs_hw == 5224 + 2304
    assert t.input_values == 64 and t.input_shape == (1, 8, 8)
    # Taps off the zero padding: per axis 3n - 2 (8 -> 22, 4 -> 10, 2 -> 4).
    assert [by[n].valid_macs for n in ("A1", "B1", "C1", "fc")] == [4 * 1 * 22 * 22, 4 * 4 * 10 * 10, 4 * 4 * 4 * 4, 40]
    assert t.valid_macs == 1936 + 1600 + 256 + 40


def test_float_and_bias_width():
    s = topology_stats((1, 8, 8), 10, 1, 4, None)
    assert s.total.bits == 32 and s.total.model_bits == 386 * 32
    assert s.total.first_layer_factor == 0.25 and s.total.first_layer_passes == 1
    s = network_stats(describe_topology((1, 8, 8), 10, 1, 4), 2, bias_bits=24)
    assert s.total.model_bits == 364 * 2 + 22 * 24


@pytest.mark.parametrize("q,f,passes", [(1, 8.0, 8), (2, 4.0, 4), (3, 8 / 3, 3), (8, 1.0, 1), (16, 0.5, 1)])
def test_first_layer_factor(q, f, passes):
    assert first_layer_factor(q) == f and first_layer_passes(q) == passes


def test_header_layers_with_extra_keys():
    header_layers = [
        {"name": "A1", "kind": "conv3x3", "in_shape": [1, 8, 8], "out_shape": [32, 8, 8],
         "q_in": 8, "q_w": 4, "q_out": 4, "act": "relu", "weight": "A1.weight", "pp_shift": 21},
        {"name": "A.pool", "kind": "maxpool2x2", "in_shape": [32, 8, 8], "out_shape": [32, 4, 4],
         "q_in": 4, "q_out": 4},
        {"name": "fc", "kind": "dense", "in_shape": [512], "out_shape": [10], "q_in": 4, "act": "none"},
    ]
    t = network_stats(header_layers, 4).total
    assert t.macs == 64 * 32 * 9 + 512 * 10
    assert t.weights_and_biases == 32 * 9 + 32 + 5120 + 10
    assert t.activations == 2048 + 10
    assert t.max_feature_map == 2048
    d = network_stats(header_layers, 4).to_dict()
    assert d["total"]["macs"] == t.macs and d["layers"][0]["in_shape"] == [1, 8, 8]


@pytest.mark.parametrize("call,needle", [
    (lambda: describe_topology((1, 7, 8), 10, 1, 4), "(1, 7, 8)"),
    (lambda: describe_topology((1, 8, 8), 1, 1, 4), "classes"),
    (lambda: describe_topology((1, 8, 8), 10, 0, 4), "blocks"),
    (lambda: describe_topology((1, 8, 8), 10, 1, (4, 0, 4)), "widths"),
    (lambda: describe_topology((8, 8), 10, 1, 4), "input shape"),
    (lambda: topology_stats((1, 8, 8), 10, 1, 4, 0), "q must be"),
    (lambda: network_stats([{"name": "x", "kind": "conv5x5", "in_shape": [1], "out_shape": [1]}], 4), "conv5x5"),
    (lambda: network_stats([{"name": "p", "kind": "maxpool2x2", "in_shape": [2, 4, 4], "out_shape": [2, 3, 3]}], 4), "maxpool2x2"),
    (lambda: network_stats([{"name": "a", "kind": "dense", "in_shape": [4], "out_shape": [3]},
                            {"name": "b", "kind": "dense", "in_shape": [4], "out_shape": [2]}], 4), "chain"),
    (lambda: network_stats([], 4), "no layers"),
])
def test_bad_input_is_one_line_user_error(call, needle):
    with pytest.raises(UserError, match=None) as e:
        call()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_exported_model_header_counts_like_the_description():
    from qjoule.sw.intmodel import random_model
    model = random_model((1, 8, 8), 10, 2, (4, 8, 6), 3, seed=1)
    described = topology_stats((1, 8, 8), 10, 2, (4, 8, 6), 3)
    assert network_stats(model.layers, model.q).to_dict() == described.to_dict()
    # N_s counted from the model's own arrays: weights plus one bias per output channel.
    arrays = [model.arrays[l["weight"]] for l in model.layers if "weight" in l]
    assert described.total.weights_and_biases == sum(a.size + a.shape[0] for a in arrays)


def test_valid_macs_count_taps_off_padding_by_brute_force():
    for h, w in ((1, 1), (1, 5), (2, 3), (7, 7)):
        taps = sum(1 for y in range(h) for x in range(w) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if 0 <= y + dy < h and 0 <= x + dx < w)
        layer = {"name": "c", "kind": "conv3x3", "in_shape": [3, h, w], "out_shape": [2, h, w]}
        assert network_stats([layer], 4).layers[0].valid_macs == taps * 3 * 2
