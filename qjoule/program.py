"""Host side of the accelerator: memory layouts, the layer program and the stream encoder.

Plain Python (no Amaranth, no torch): the gateware imports the field tables defined here, so the
host encoder and the hardware decode the same bits from one definition. docs/interface.md is the
prose form of this module.

Activation layout (one buffer half, R banks of D-bit words, S = D/Q lanes of Q bits): a feature
map (C, H, W) has G = ceil(C/S) channel groups; pixel (h, w), group g lives in bank w mod R at
address (h·ceil(W/R) + w div R)·G + g, channel g·S + s in lane s (bits [s·Q, (s+1)·Q)). Any R
consecutive columns hit R distinct banks, which is what lets the sequencer feed R output pixels
per cycle. The first layer's 8-bit pixels are stored as P = ceil(8/Q) chunk planes, plane j being
G_c = ceil(C/S) extra groups at group index j·G_c + g.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import numpy as np

from .config import PIXEL_BITS, PP_MULT_BITS, AccelConfig
from .errors import UserError

# -- stream framing ------------------------------------------------------------------------------

WORD_BITS = 32
SECTION_PROGRAM = 1
SECTION_PARAMS = 2
SECTION_WEIGHTS = 3
SECTION_IMAGE = 4
SECTION_NAMES = {SECTION_PROGRAM: "PROGRAM", SECTION_PARAMS: "PARAMS", SECTION_WEIGHTS: "WEIGHTS", SECTION_IMAGE: "IMAGE"}
#: Section header: type in bits [31:24], payload length in words in bits [23:0].
MAX_SECTION_WORDS = (1 << 24) - 1

KIND_CONV, KIND_POOL, KIND_DENSE = 0, 1, 2
KIND_CODES = {"conv3x3": KIND_CONV, "maxpool2x2": KIND_POOL, "dense": KIND_DENSE}
ACT_NONE, ACT_RELU, ACT_SIGN = 0, 1, 2
ACT_CODES = {"none": ACT_NONE, "relu": ACT_RELU, "sign": ACT_SIGN}

#: Layer-table entry, packed from bit 0 upwards in this order (the gateware builds its
#: StructLayout from the same list).
LAYER_FIELDS: tuple[tuple[str, int], ...] = (
    ("kind", 2),            # KIND_*
    ("act", 2),             # ACT_*
    ("last", 1),            # emit logits (dense only) instead of writing codes
    ("external", 1),        # this layer's WEIGHTS section follows in the input stream
    ("first", 1),           # input is 8-bit pixel planes (pixel_mode at Q = 1, pass shifts)
    ("dump", 1),            # debug: copy the output map to the output stream
    ("in_half", 1),         # the activation half holding the input map
    ("shift", 6),           # post-processing shift s
    ("passes", 4),          # P (1 unless first)
    ("lanes_last", 8),      # valid lanes of the last group of each pass (1..S)
    ("height", 16),         # input H
    ("width", 16),          # input W
    ("groups", 16),         # input groups G (P·G_c for the first layer)
    ("pass_groups", 16),    # G_c
    ("row_stride", 24),     # ceil(W/R)·G: address step of one input row
    ("out_height", 16),
    ("out_width", 16),
    ("out_groups", 16),
    ("out_row_stride", 24), # ceil(W_out/R)·G_out
    ("out_words", 24),      # words per bank of the output map (H_out·ceil(W_out/R)·G_out)
    ("out_tiles", 16),      # T = ceil(C_out/C) (conv, dense)
    ("weight_base", 24),    # weight-buffer address of tile 0
    ("weight_words", 24),   # weight-buffer words of the layer
    ("param_base", 16),     # param-buffer address of tile 0
)
LAYER_BITS = sum(bits for _, bits in LAYER_FIELDS)
LAYER_WORDS = -(-LAYER_BITS // WORD_BITS)

#: Per-output-tile metadata at the bottom of a param word, then C × (mult, bias).
PARAM_META_FIELDS: tuple[tuple[str, int], ...] = (
    ("group_first", 16),    # output group of the tile's first channel
    ("lane_skip", 8),       # (tile·C) mod S: lane of the tile's first channel
    ("n_groups", 8),        # output groups the tile touches
    ("c_valid", 16),        # columns holding real channels (C, less on the last tile)
)
PARAM_META_BITS = sum(bits for _, bits in PARAM_META_FIELDS)
#: Layers the layer table holds.
MAX_LAYERS = 32
#: Logits leave as int64, two 32-bit words (low first).
LOGIT_WORDS = 2


def pack_fields(fields: Sequence[tuple[str, int]], values: dict[str, int]) -> int:
    """Pack `values` into an integer, fields from bit 0 upwards; every field must fit."""
    word, offset = 0, 0
    for name, bits in fields:
        value = int(values.get(name, 0))
        if not 0 <= value < 1 << bits:
            raise UserError(f"layer field {name}={value} does not fit {bits} bits")
        word |= value << offset
        offset += bits
    return word


def unpack_fields(fields: Sequence[tuple[str, int]], word: int) -> dict[str, int]:
    out, offset = {}, 0
    for name, bits in fields:
        out[name] = (word >> offset) & ((1 << bits) - 1)
        offset += bits
    return out


def split_words(value: int, bits: int) -> list[int]:
    """A `bits`-wide unsigned integer as 32-bit words, low word first."""
    if not 0 <= value < 1 << bits:
        raise ValueError(f"value {value:#x} does not fit {bits} unsigned bits")
    return [(value >> (WORD_BITS * i)) & 0xFFFF_FFFF for i in range(-(-bits // WORD_BITS))]


def join_words(words: Sequence[int]) -> int:
    return sum(int(w) << (WORD_BITS * i) for i, w in enumerate(words))


# -- buffer geometry -----------------------------------------------------------------------------

def groups(channels: int, lanes: int) -> int:
    """G = ceil(channels / S)."""
    return -(-channels // lanes)


def bank_depth(cfg: AccelConfig) -> int:
    """Words of one bank in one activation-buffer half."""
    return cfg.act_half_words // cfg.rows


def param_words(cfg: AccelConfig) -> int:
    """Param-buffer words: one per output tile of every layer (budget: 8·max_channels channels)."""
    return -(-8 * max(cfg.max_channels, cfg.max_classes) // cfg.cols) + MAX_LAYERS


def param_word_bits(cfg: AccelConfig) -> int:
    return PARAM_META_BITS + cfg.cols * (PP_MULT_BITS + cfg.pp_bias_bits)


def weight_word_bits(cfg: AccelConfig) -> int:
    return cfg.cols * cfg.datapath


def chunks(bits: int) -> int:
    """32-bit stream words per `bits`-wide memory word."""
    return -(-bits // WORD_BITS)


@dataclasses.dataclass(frozen=True)
class MapLayout:
    """Where a feature map (channels, height, width) lives in one activation half."""

    channels: int
    height: int
    width: int
    rows: int
    lanes: int
    planes: int = 1  # P chunk planes (first layer), each `pass_groups` groups

    @property
    def pass_groups(self) -> int:
        return groups(self.channels, self.lanes)

    @property
    def groups(self) -> int:
        return self.planes * self.pass_groups

    @property
    def bank_cols(self) -> int:
        """ceil(W / R): columns of one bank."""
        return -(-self.width // self.rows)

    @property
    def row_stride(self) -> int:
        return self.bank_cols * self.groups

    @property
    def words_per_bank(self) -> int:
        return self.height * self.row_stride

    def locate(self, h: int, w: int, g: int) -> tuple[int, int]:
        """(bank, address) of pixel (h, w), group g."""
        return w % self.rows, (h * self.bank_cols + w // self.rows) * self.groups + g


def pack_lanes(values: Iterable[int], q: int) -> int:
    """Lane i of the word holds values[i] (two's complement in Q bits for negative values)."""
    mask = (1 << q) - 1
    return sum((int(v) & mask) << (i * q) for i, v in enumerate(values))


def unpack_lanes(word: int, q: int, lanes: int) -> list[int]:
    mask = (1 << q) - 1
    return [(int(word) >> (i * q)) & mask for i in range(lanes)]


def layout_codes(codes, cfg: AccelConfig) -> tuple[MapLayout, list[list[int]]]:
    """Codes (C, H, W) -> (layout, banks): banks[b][addr] is the D-bit word (unused lanes 0)."""
    codes = np.asarray(codes, dtype=np.int64)
    c, h, w = codes.shape
    layout = MapLayout(c, h, w, cfg.rows, cfg.lanes)
    return layout, _fill_banks(layout, [codes], cfg)


def layout_image(pixels, cfg: AccelConfig) -> tuple[MapLayout, list[list[int]]]:
    """8-bit pixels (C, H, W) -> the first layer's P chunk planes as extra channel groups."""
    pixels = np.asarray(pixels, dtype=np.int64)
    c, h, w = pixels.shape
    layout = MapLayout(c, h, w, cfg.rows, cfg.lanes, planes=cfg.first_layer_passes)
    mask = cfg.code_max
    planes = [(pixels >> (j * cfg.q)) & mask for j in range(layout.planes)]
    return layout, _fill_banks(layout, planes, cfg)


def _fill_banks(layout: MapLayout, planes: list[np.ndarray], cfg: AccelConfig) -> list[list[int]]:
    per_bank = layout.bank_cols * layout.height * layout.groups
    banks = [[0] * per_bank for _ in range(layout.rows)]
    s = layout.lanes
    for j, plane in enumerate(planes):
        padded = np.zeros((layout.pass_groups * s, layout.height, layout.width), dtype=np.int64)
        padded[:layout.channels] = plane
        for hh in range(layout.height):
            for ww in range(layout.width):
                for g in range(layout.pass_groups):
                    bank, addr = layout.locate(hh, ww, j * layout.pass_groups + g)
                    banks[bank][addr] = pack_lanes(padded[g * s:(g + 1) * s, hh, ww], cfg.q)
    return banks


def read_codes(layout: MapLayout, banks, cfg: AccelConfig) -> np.ndarray:
    """Inverse of `layout_codes`: banks[b][addr] words -> codes (C, H, W)."""
    out = np.zeros((layout.channels, layout.height, layout.width), dtype=np.int64)
    for hh in range(layout.height):
        for ww in range(layout.width):
            for g in range(layout.pass_groups):
                bank, addr = layout.locate(hh, ww, g)
                lanes = unpack_lanes(banks[bank][addr], cfg.q, cfg.lanes)
                for s, v in enumerate(lanes):
                    if g * cfg.lanes + s < layout.channels:
                        out[g * cfg.lanes + s, hh, ww] = v
    return out
