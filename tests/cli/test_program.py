"""qjoule.program: activation layout, lane packing, field packing (hand-computed values)."""

import numpy as np
import pytest

from qjoule.config import AccelConfig
from qjoule.program import (LAYER_FIELDS, MapLayout, layout_codes, layout_image, pack_fields, pack_lanes,
                            read_codes, split_words, join_words, unpack_fields, unpack_lanes)


def test_locate_by_hand():
    # C=5 at S=4 -> G=2; W=5 at R=2 -> 3 columns per bank.
    layout = MapLayout(channels=5, height=3, width=5, rows=2, lanes=4)
    assert layout.groups == 2 and layout.bank_cols == 3 and layout.row_stride == 6
    assert layout.locate(0, 0, 0) == (0, 0)
    assert layout.locate(0, 1, 1) == (1, 1)
    assert layout.locate(2, 4, 1) == (0, (2 * 3 + 2) * 2 + 1)


@pytest.mark.parametrize("rows", [1, 2, 3, 4])
def test_consecutive_columns_hit_distinct_banks(rows):
    layout = MapLayout(channels=3, height=2, width=11, rows=rows, lanes=2)
    for start in range(-1, 11 - rows + 1):
        banks = {(start + r) % rows for r in range(rows)}
        assert len(banks) == rows
    # and no two pixels share (bank, address)
    seen = {layout.locate(h, w, g) for h in range(2) for w in range(11) for g in range(layout.groups)}
    assert len(seen) == 2 * 11 * layout.groups


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
    assert choose_fold(1, 4) == 3      # 1 group x 3 taps beats 1 x 9; 3 groups x 1 tap ties -> smaller
    assert choose_fold(1, 16) == 9     # 9 of 16 lanes, one tap
    assert choose_fold(1, 1) == 1      # no lanes to fill
    assert choose_fold(3, 4) == 9      # 27 channels: 7 groups x 1 tap < 9 x 1 or 3 x 3
    assert choose_fold(16, 16) == 1
