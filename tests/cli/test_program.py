"""qjoule.program: activation layout, lane packing, field packing (hand-computed values)."""

import json

import numpy as np
import pytest

from qjoule.config import AccelConfig
from qjoule.program import (LAYER_FIELDS, MapLayout, layout_codes, layout_image, pack_fields, pack_lanes,
                            read_codes, split_words, join_words, unpack_fields, unpack_lanes)


def test_locate_by_hand():
    # C=5 at S=4 -> G=2; H·W = 15 raster positions at R=2 -> 8 pixel tiles, 16 words per bank.
    layout = MapLayout(channels=5, height=3, width=5, rows=2, lanes=4)
    assert layout.groups == 2 and layout.tiles == 8 and layout.words_per_bank == 16
    assert (layout.wdiv_g, layout.wmod) == (4, 1)   # W = 5 = 2·R + 1
    assert layout.locate(0, 0, 0) == (0, 0)
    assert layout.locate(0, 1, 1) == (1, 1)
    assert layout.locate(1, 0, 0) == (1, 4)         # i = 5: bank 1, address (5 div 2)·2
    assert layout.locate(2, 4, 1) == (0, 7 * 2 + 1)  # i = 14


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 8])
def test_consecutive_raster_positions_hit_distinct_banks(rows):
    layout = MapLayout(channels=3, height=3, width=7, rows=rows, lanes=2)
    pixels = [(h, w) for h in range(3) for w in range(7)]
    for start in range(len(pixels) - rows + 1):   # windows that span a row end too
        banks = {layout.locate(*pixels[start + r], 0)[0] for r in range(rows)}
        assert len(banks) == rows
    # and no two pixels share (bank, address), all inside the words per bank
    seen = {layout.locate(h, w, g) for h, w in pixels for g in range(layout.groups)}
    assert len(seen) == 3 * 7 * layout.groups
    assert max(addr for _, addr in seen) < layout.words_per_bank


def test_pack_lanes_twos_complement():
    assert pack_lanes([1, -1, 0, -8], 4) == 0x8 << 12 | 0xF << 4 | 1
    assert unpack_lanes(0x8F1, 4, 3) == [1, 15, 8]


@pytest.mark.parametrize("q, d, rows", [(1, 16, 3), (2, 16, 2), (3, 15, 1), (4, 16, 2), (8, 16, 3)])
def test_layout_round_trip(q, d, rows):
    cfg = AccelConfig(q=q, datapath=d, rows=rows, cols=2, max_channels=16)
    rng = np.random.default_rng(q)
    codes = rng.integers(0, 1 << q, size=(7, 4, 5))
    layout, banks = layout_codes(codes, cfg)
    assert len(banks) == rows and all(len(b) == layout.words_per_bank for b in banks)
    assert np.array_equal(read_codes(layout, banks, cfg), codes)


def test_image_planes_by_hand():
    cfg = AccelConfig(q=3, datapath=6, rows=1, cols=1, max_channels=4)
    pixels = np.array([[[0b10_110_101]]])  # one pixel, chunks low first: 5, 6, 2
    layout, banks = layout_image(pixels, cfg)
    assert layout.planes == 3 and layout.groups == 3
    assert banks[0] == [5, 6, 2]


def test_fields_round_trip_and_range():
    values = {name: (1 << bits) - 1 - i % 2 for i, (name, bits) in enumerate(LAYER_FIELDS)}
    assert unpack_fields(LAYER_FIELDS, pack_fields(LAYER_FIELDS, values)) == values
    with pytest.raises(Exception, match="kind=4 does not fit 2 bits"):
        pack_fields(LAYER_FIELDS, {"kind": 4})
    assert split_words(0x12_3456_789A, 40) == [0x3456789A, 0x12]
    with pytest.raises(ValueError):
        split_words(1 << 40, 40)
    assert join_words([0x6789ABCD, 0x12345]) == 0x1_2345_6789_ABCD


@pytest.mark.parametrize("fold", [1, 3, 9])
def test_folded_first_layer_equals_the_conv(fold):
    from qjoule.program import fold_image, fold_weight
    from qjoule.sw import golden
    rng = np.random.default_rng(fold)
    img = rng.integers(0, 256, size=(2, 5, 4))
    w = rng.integers(-8, 8, size=(3, 2, 3, 3))
    v_img, v_w = fold_image(img, fold), fold_weight(w, fold)
    assert v_img.shape == (2 * fold, 5, 4)
    # the folded weights on the centre taps only, as the sequencer issues them
    centre = np.zeros((3, 2 * fold, 3, 3), dtype=np.int64)
    th, tw = v_w.shape[2:]
    centre[:, :, 1 - th // 2:1 + th // 2 + 1, 1 - tw // 2:1 + tw // 2 + 1] = v_w
    assert np.array_equal(golden.conv3x3_acc(v_img[None], centre, 8), golden.conv3x3_acc(img[None], w, 8))


def test_choose_fold():
    from qjoule.program import choose_fold
    # R = 8 (the drain takes R cycles a tile), Q = 8 (S = 2, P = 1): fold 1 = 9 cycles, fold 3 =
    # 2 groups x 3 taps = 6 -> 8, fold 9 = 5 groups x 1 tap = 5 -> 8: the smaller of the tie
    assert choose_fold(1, 2, rows=8, passes=1) == 3
    assert choose_fold(1, 4) == 3      # 1 group x 3 taps beats 1 x 9; 3 groups x 1 tap ties -> smaller
    assert choose_fold(1, 16) == 9     # 9 of 16 lanes, one tap
    assert choose_fold(1, 1) == 1      # no lanes to fill
    assert choose_fold(3, 4) == 9      # 27 channels: 7 groups x 1 tap < 9 x 1 or 3 x 3
    assert choose_fold(16, 16) == 1
    # 8 rows take 8 cycles to post-process: fold 3's 6-cycle tiles (2 passes) gain nothing over
    # fold 9's, and fold 1's 18 cycles lose
    assert choose_fold(1, 4, rows=8, passes=2) == 3
    assert choose_fold(1, 16, rows=8, passes=8) == 9
    # RGB, 16 rows: fold 9 is 7 groups x 2 passes = 14 -> 17 cycles (feeder), folds 1 and 3 take 18
    assert choose_fold(3, 4, rows=16, passes=2) == 9
    assert choose_fold(3, 4, rows=20, passes=2) == 1    # 21 cycles whatever the fold: the smallest


def _tiny(q=4, **changes):
    base = dict(q=q, datapath=16, rows=2, cols=2, act_buffer_bits=8192, weight_buffer_bits=8192,
                max_channels=16, max_height=8, max_width=8, max_dense_inputs=256, max_classes=10)
    return AccelConfig(**{**base, **changes})


def test_param_words_by_hand():
    from qjoule.program import PARAM_META_FIELDS, param_words_for
    cfg = _tiny(cols=2)  # S = 4
    words = param_words_for([3, -1, 5], [10, -20, 30], cfg)
    assert len(words) == 2
    meta0 = unpack_fields(PARAM_META_FIELDS, words[0] & ((1 << 48) - 1))
    meta1 = unpack_fields(PARAM_META_FIELDS, words[1] & ((1 << 48) - 1))
    assert meta0 == {"group_first": 0, "lane_skip": 0, "n_groups": 1, "c_valid": 2}
    assert meta1 == {"group_first": 0, "lane_skip": 2, "n_groups": 1, "c_valid": 1}
    col1 = words[0] >> (48 + 82)
    assert col1 & ((1 << 18) - 1) == (1 << 18) - 1              # mult -1
    assert (col1 >> 18) & ((1 << 64) - 1) == (1 << 64) - 20      # bias -20
    assert words[1] >> (48 + 82) == 0                            # column past the last channel


def test_dense_weights_follow_the_buffer_order():
    from qjoule.program import dense_weight_words
    cfg = _tiny(cols=1, datapath=8)  # S = 2 lanes of 4 bits
    # input map (3 channels, 1 row, 2 columns), contract flatten index = (c*1 + h)*2 + w
    w = np.array([[1, 2, 3, 4, 5, 6]])
    words = dense_weight_words(w, (3, 1, 2), cfg)
    # order (h, w, group): (0,0,g0) lanes c0,c1 -> w[0], w[2]; (0,0,g1) -> c2 -> w[4], pad
    assert words == [pack_lanes([1, 3], 4), pack_lanes([5, 0], 4), pack_lanes([2, 4], 4), pack_lanes([6, 0], 4)]


def test_encode_misfits_are_one_line_and_say_by_how_much():
    from qjoule.errors import UserError
    from qjoule.program import encode
    from qjoule.sw.intmodel import random_model
    model = random_model((1, 8, 8), 10, 1, 12, 4, seed=0)
    encode(model, _tiny(act_buffer_bits=2 * 2 * 128 * 16))
    with pytest.raises(UserError, match=r"output channels 12 > max_channels 8 \(by 4\)"):
        encode(model, _tiny(max_channels=8))
    # (unfused: A1's 8x8 map of 3 groups is stored, 32 tiles x 3 = 96 words; fused: only its pooled 4x4)
    with pytest.raises(UserError, match=r"output map words per bank 96 > act_half_words/rows 64 \(by 32\)"):
        encode(model, _tiny(act_buffer_bits=2 * 2 * 64 * 16, fuse_pool=False))
    encode(model, _tiny(act_buffer_bits=2 * 2 * 64 * 16))
    with pytest.raises(UserError, match=r"model Q=4 does not match the accelerator's q=2"):
        encode(model, _tiny(q=2))
    # B1: 6 tiles of 2 output channels x 3 input groups of 4 lanes x 9 taps = 162 words
    with pytest.raises(UserError, match=r"largest layer's weight words 162 > weight_words 32 \(by 130\)"):
        encode(model, _tiny(weight_buffer_bits=32 * 32))


def test_fold_falls_back_when_the_folded_image_does_not_fit():
    from qjoule.program import encode
    from qjoule.sw.intmodel import random_model
    model = random_model((3, 8, 8), 10, 1, 4, 4, seed=0)  # RGB at S=4: fold 9 preferred
    def cfg(words):  # `words` per bank and half
        return AccelConfig(q=4, datapath=16, rows=2, cols=2, act_buffer_bits=2 * 2 * words * 16,
                           weight_buffer_bits=8192, max_channels=16, max_height=8, max_width=8,
                           max_dense_inputs=256, max_classes=10)
    # image words per bank: 64 pixels / R = 32 pixel tiles x 2 planes x ceil(fold*3/4) groups
    assert encode(model, cfg(448)).fold == 9      # 7 groups: 448 words
    assert encode(model, cfg(447)).fold == 3      # 3 groups: 192
    assert encode(model, cfg(191)).fold == 1      # 1 group: 64


def test_encode_refuses_pot_and_mixed_models():
    import copy
    from qjoule.errors import UserError
    from qjoule.program import encode
    from qjoule.sw.intmodel import IntModel, random_model
    model = random_model((1, 8, 8), 10, 1, 4, 4, seed=0)
    pot = IntModel(copy.deepcopy(model.header), model.arrays)
    pot.header["layers"][2]["w_kind"] = "pot"
    with pytest.raises(UserError, match=r"model has power-of-two \(PoT\) weights at 4 bits \(layer 'B1'\), "
                                        r"the config is uniform Q=4"):
        encode(pot, _tiny())
    mixed = IntModel(copy.deepcopy(model.header), model.arrays)
    mixed.header["q"] = None
    with pytest.raises(UserError, match="per-layer Qs"):
        encode(mixed, _tiny())


# -- power-of-two weights ------------------------------------------------------------------------

def test_pot_weight_lane_codes_by_hand():
    from qjoule.errors import UserError
    from qjoule.program import weight_lane
    from qjoule.sw.pot import pot_codes, pot_values
    # B = 3: K = 2, w_int ∈ {0, ±1, ±2, ±4}; e = K − log2|w| + 1, sign at bit 2.
    expect = {0: 0b000, 4: 0b001, 2: 0b010, 1: 0b011, -4: 0b101, -2: 0b110, -1: 0b111}
    assert {w: weight_lane(w, 3, "pot") for w in expect} == expect
    for b in range(2, 7):  # the contract's pot_codes agree at every bit-width
        sign, e = pot_codes(pot_values(b), b)
        assert [weight_lane(int(w), b, "pot") for w in pot_values(b)] == [int(s) << (b - 1) | int(x) for s, x in zip(sign, e)]
    for bad in (3, 8, -6):
        with pytest.raises(UserError, match=f"weight {bad} is not a 3-bit power-of-two weight"):
            weight_lane(bad, 3, "pot")


def test_pot_conv_weight_words_by_hand():
    from qjoule.program import conv_weight_words
    # Q = 3, D = 6: S = 2 lanes; one column. Weight (1 out, 2 in, 3, 3): word (group 0, kh, kw)
    # holds in-channel 0 in lane 0 and in-channel 1 in lane 1.
    cfg = AccelConfig(q=3, datapath=6, rows=1, cols=1, max_channels=8, weights="pot")
    w = np.zeros((1, 2, 3, 3), dtype=np.int64)
    w[0, 0, 0, 0], w[0, 1, 0, 0] = 4, -1      # codes 0b001, 0b111
    w[0, 0, 2, 2], w[0, 1, 2, 2] = -2, 0      # codes 0b110, 0b000
    words = conv_weight_words(w, cfg)
    assert len(words) == 9
    assert words[0] == 0b111_001 and words[8] == 0b000_110 and set(words[1:8]) == {0}


def test_encode_pot_model_on_pot_config_and_mismatches():
    import copy
    from qjoule.errors import UserError
    from qjoule.program import encode, model_weights, unpack_lanes
    from qjoule.sw.intmodel import IntModel, random_model
    from qjoule.sw.pot import pot_codes
    model = random_model((1, 8, 8), 10, 1, 4, 3, seed=0, w_kind="pot")
    cfg = AccelConfig(q=3, datapath=15, rows=2, cols=2, max_channels=16, max_height=8, max_width=8,
                      max_dense_inputs=256, max_classes=10, weights="pot")
    prog = encode(model, cfg)
    # fc (dense, 4 inputs = 4 channels x 1 x 1 after the pools, 10 outputs): tile t, column c, lane s
    # holds weight[t*2 + c, s]; its (sign, e) codes are the contract's.
    fc = prog.layers[-1]
    weight = model.arrays[model.layer("fc")["weight"]].astype(np.int64)
    sign, e = pot_codes(weight, 3)
    codes = sign << 2 | e
    for t, word in enumerate(fc.weights):
        for c in range(2):
            lanes = unpack_lanes(word >> (c * 15), 3, 5)
            assert lanes[:4] == [int(v) for v in codes[t * 2 + c]] and lanes[4] == 0
    uniform = random_model((1, 8, 8), 10, 1, 4, 3, seed=0)
    with pytest.raises(UserError, match=r"model has uniform weights at 3 bits \(layer 'A1'\), the config is "
                                        r"power-of-two \(PoT\) Q=3 \(config field weights='pot'\)"):
        encode(uniform, cfg)
    with pytest.raises(UserError, match=r"model has power-of-two \(PoT\) weights at 3 bits \(layer 'A1'\), "
                                        r"the config is uniform Q=3"):
        encode(model, cfg.replace(weights="uniform"))
    with pytest.raises(UserError, match="model Q=3 does not match the accelerator's q=4"):
        encode(model, cfg.replace(q=4, datapath=16))
    assert (model_weights(model), model_weights(uniform)) == ("pot", "uniform")
    half = IntModel(copy.deepcopy(model.header), model.arrays)  # one layer uniform, the rest PoT
    del half.header["layers"][-1]["w_kind"]
    assert model_weights(half) == "uniform"
    with pytest.raises(UserError, match="model has uniform weights at 3 bits \\(layer 'fc'\\)"):
        encode(half, cfg)


def test_variant_for_model_takes_the_models_q_and_weight_kind():
    # simulate, run and the flow build their default config this way: a PoT model must get PoT lanes.
    from qjoule.program import encode, size_for_model, variant_for_model
    from qjoule.sw.intmodel import random_model
    pot = random_model((1, 8, 8), 10, 1, 4, 3, seed=0, w_kind="pot")
    cfg = variant_for_model("tiny", pot)
    assert (cfg.q, cfg.weights) == (3, "pot")
    encode(pot, size_for_model(pot, cfg))
    uniform = random_model((1, 8, 8), 10, 1, 4, 5, seed=0)
    assert (variant_for_model("ulx3s", uniform).q, variant_for_model("ulx3s", uniform).weights) == (5, "uniform")


def test_encode_fuses_each_pool_into_the_conv_before_it():
    from qjoule.program import LAYER_FIELDS, encode, layer_fields, program_section, unpack_fields
    from qjoule.sw.intmodel import random_model
    model = random_model((1, 12, 12), 10, 1, 8, 4, seed=1)   # A1 12x12, B1 6x6, C1 3x3 (odd: not fused)
    prog = encode(model, _tiny(max_height=12, max_width=12, act_buffer_bits=32768), debug=True)
    assert [p.label for p in prog.layers] == ["A1+A.pool", "B1+B.pool", "C1", "C.pool", "fc"]
    assert [p.output_name for p in prog.layers] == ["A.pool", "B.pool", "C1", "C.pool", "fc"]
    a1, b1, c1, cpool, fc = (p.entry for p in prog.layers)
    # the halves alternate per programmed layer; a fused conv's out_* describe the pooled map
    assert [e["in_half"] for e in (a1, b1, c1, cpool, fc)] == [0, 1, 0, 1, 0]
    assert (a1["fused_pool"], a1["height"], a1["width"], a1["out_height"], a1["out_width"]) == (1, 12, 12, 6, 6)
    # 8 channels at S = 4: 2 groups; 36 pooled pixels on R = 2: 18 words per bank per group
    assert (a1["out_groups"], a1["out_words"], a1["tiles"]) == (2, 36, 72)
    assert (b1["fused_pool"], b1["out_height"], b1["out_width"], b1["out_words"]) == (1, 3, 3, 2 * 5)
    assert c1.get("fused_pool", 0) == 0 and cpool["kind"] == 1
    assert prog.layers[0].macs == 8 * 12 * 12 * 9 * 1
    # the table entry holds the field: 381 + 1 bits, still 12 words
    cfg = prog.cfg
    fields = layer_fields(cfg)
    assert [name for name, _ in fields][-1] == "fused_pool" and sum(b for _, b in fields) == 382
    words = program_section([a1], prog.image, prog.fold, cfg)
    entry = unpack_fields(fields, sum(w << (32 * k) for k, w in enumerate(words[-12:])))
    assert entry["fused_pool"] == 1 and entry["out_width"] == 6
    assert len(LAYER_FIELDS) == len(fields) + 3   # (the per-layer-mode fields stay last)


def test_encode_keeps_pool_layers_without_fusion():
    from qjoule.program import encode, layer_fields
    from qjoule.sw.intmodel import random_model
    model = random_model((1, 8, 8), 10, 1, 8, 4, seed=1)
    for cfg in (_tiny(fuse_pool=False), _tiny(rows=3), _tiny(rows=6)):
        prog = encode(model, cfg)
        assert [p.label for p in prog.layers] == [layer["name"] for layer in model.layers]
        assert "fused_pool" not in dict(layer_fields(cfg))


def test_fuse_pool_round_trips_and_is_validated():
    from qjoule.errors import UserError
    cfg = _tiny(fuse_pool=False)
    assert json.loads(cfg.to_json())["fuse_pool"] is False
    assert AccelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert "fuse_pool" not in json.loads(_tiny().to_json())   # the default stays out (older JSON reads as before)
    with pytest.raises(UserError, match=r"^fuse_pool must be true or false, got 'yes'$"):
        _tiny(fuse_pool="yes")


def test_line_buffer_covers_the_widest_map():
    from qjoule.program import line_buffer_shape
    # ulx3s-like: R = 8 (4 pair banks), 64 wide: a partner 32 pairs = 8 tiles back, 10 slots -> 4 bits;
    # 512 channels at S = 4: 128 groups -> 7 bits
    cfg = AccelConfig(q=4, datapath=16, rows=8, cols=8, max_channels=512, max_width=64)
    assert line_buffer_shape(cfg) == (4, 7, 4)
    # R = 2: one pair per tile, 8 wide: 4 pairs back + 2 slots = 6 -> 3 bits; 16 channels / 4 lanes: 2 bits
    assert line_buffer_shape(_tiny()) == (1, 2, 3)


def test_debug_dump_and_compact_control_round_trip_and_are_validated():
    from qjoule.config import board_config
    from qjoule.errors import UserError
    cfg = _tiny(debug_dump=False, compact_control=True)
    data = json.loads(cfg.to_json())
    assert (data["debug_dump"], data["compact_control"]) == (False, True)
    assert AccelConfig.from_dict(data) == cfg
    assert not {"debug_dump", "compact_control"} & set(json.loads(_tiny().to_json()))   # defaults stay out
    for field in ("debug_dump", "compact_control"):
        with pytest.raises(UserError, match=rf"^{field} must be true or false, got 1$"):
            _tiny(**{field: 1})
    ice = board_config("icebreaker", 4)
    assert (ice.debug_dump, ice.compact_control, ice.tile_meta_depth) == (False, True, 2)
    assert _tiny().tile_meta_depth == _tiny(rows=1).tile_meta_depth == _tiny(compact_control=True).tile_meta_depth == 4


def test_encode_refuses_a_debug_program_without_the_dump_engine():
    from qjoule.config import board_config
    from qjoule.errors import UserError
    from qjoule.program import encode
    from qjoule.sw.intmodel import random_model
    model = random_model((1, 8, 8), 10, 1, 8, 4, seed=1)
    cfg = board_config("icebreaker", 4)
    with pytest.raises(UserError, match=r"^config 'icebreaker' has no debug-dump engine \(debug_dump false\): run "
                                        r"without per-layer dumps \(qjoule simulate --no-dump\), or use a config with "
                                        r"debug_dump true$"):
        encode(model, cfg, debug=True)
    assert not any(plan.entry["dump"] for plan in encode(model, cfg).layers)
    assert any(plan.entry["dump"] for plan in encode(model, cfg.replace(debug_dump=True), debug=True).layers)


@pytest.mark.parametrize("q", [1, 2, 4, 8, 16])
def test_compact_layer_register_holds_every_field_at_the_config_bounds(q):
    """The compact layer register and tile metadata keep only the low bits of each field: a model
    at the icebreaker config's largest input (32×32) and channels still fits them, every field."""
    from qjoule.config import board_config
    from qjoule.gateware.sequencer import layer_layout, layer_register_layout, tile_param_layout
    from qjoule.program import PARAM_META_FIELDS, bank_depth, encode, unpack_fields
    from qjoule.sw.intmodel import random_model
    # (room for six 64-channel convs' params, and a random model's widest biases)
    cfg = board_config("icebreaker", q, pp_channels=1024, pp_bias_bits=64)
    act_addr_bits = (bank_depth(cfg) - 1).bit_length()
    layout, meta = layer_register_layout(cfg, act_addr_bits, cfg.weight_words), tile_param_layout(cfg, act_addr_bits)
    assert layout.size < layer_layout(cfg).size and meta.size < 48   # (narrower: 204 < 381 and 19 < 48 bits at Q = 4 here)
    # the largest image and widest first conv whose maps fill a bank half (32 kb halves at Q 1, 2,
    # where the image's 8/Q pixel planes allow 11x11 and 16x16; 256 kb at Q >= 4)
    side, width = {1: (11, 16), 2: (16, 16), 4: (32, 64), 8: (32, 32), 16: (32, 16)}[q]
    model = random_model((1, side, side), 10, 2, width, q, seed=3)
    prog = encode(model, cfg)
    entries = [plan.entry for plan in prog.layers]
    tops = {name: max(e.get(name, 0) for e in entries) for name, _ in layout}
    assert tops["height"] == side and tops["tiles"] == side * side and tops["out_tiles"] == width
    for name, field in layout:
        assert tops[name] < 1 << field.shape.width, name
    for plan in prog.layers:
        for word in plan.params:
            values = unpack_fields(PARAM_META_FIELDS, word)
            for name, field in meta:
                assert values[name] < 1 << field.shape.width, name
