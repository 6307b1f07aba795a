"""Host side of the accelerator: memory layouts, the layer program and the stream encoder.

Plain Python (no Amaranth, no torch): the gateware imports the field tables defined here, so the
host encoder and the hardware decode the same bits from one definition. docs/interface.md is the
prose form of this module.

Activation layout (one buffer half, R banks of D-bit words, S = D/Q lanes of Q bits): a feature
map (C, H, W) has G = ceil(C/S) channel groups; pixel (h, w) has the raster index i = h·W + w, and
its group g lives in bank i mod R at address (i div R)·G + g, channel g·S + s in lane s (bits
[s·Q, (s+1)·Q)). Any R consecutive raster positions hit R distinct banks, even across a row end,
which is what lets the sequencer feed R output pixels per cycle with no idle rows at row ends. The first layer's 8-bit pixels are stored as P = ceil(8/Q) chunk planes, plane j being
G_c = ceil(C/S) extra groups at group index j·G_c + g.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import numpy as np

from .config import PP_MULT_BITS, AccelConfig
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
ACT_RELU, ACT_SIGN, ACT_NONE = 0, 1, 2  # = gateware.postproc.PostAct
ACT_CODES = {"none": ACT_NONE, "relu": ACT_RELU, "sign": ACT_SIGN}

#: Layer-table entry, packed from bit 0 upwards in this order (the gateware builds its
#: StructLayout from the same list).
LAYER_FIELDS: tuple[tuple[str, int], ...] = (
    ("kind", 2),            # KIND_*
    ("act", 2),             # ACT_*
    ("last", 1),            # emit logits (dense only) instead of writing codes
    ("external", 1),        # this layer's WEIGHTS section follows in the input stream
    ("first", 1),           # input is 8-bit pixel planes (pixel_mode at Q = 1, pass shifts)
    ("fold_w", 1),          # first layer: the kw taps live in lanes (issue kw = 1 only)
    ("fold_h", 1),          # first layer: the kh taps live in lanes too (issue kh = 1 only)
    ("dump", 1),            # debug: copy the output map to the output stream
    ("in_half", 1),         # the activation half holding the input map
    ("shift", 6),           # post-processing shift s
    ("passes", 4),          # P (1 unless first)
    ("lanes_last", 8),      # valid lanes of the last group of each pass (1..S)
    ("height", 16),         # input H
    ("width", 16),          # input W
    ("groups", 16),         # input groups G (P·G_c for the first layer)
    ("pass_groups", 16),    # G_c
    ("wdiv_g", 24),         # (W div R)·G: the address part of a step of one input row (W raster positions)
    ("wmod", 16),           # W mod R: the bank part of that step
    ("tiles", 24),          # conv: ceil(H·W/R) pixel tiles (R consecutive raster positions each)
    ("tile_dh", 16),        # conv: R div W, the rows a pixel tile advances ...
    ("tile_dw", 16),        # ... and R mod W, the columns (per-row position counters, no divider)
    ("out_height", 16),
    ("out_width", 16),
    ("out_groups", 16),
    ("out_wdiv_g", 24),     # (W_out div R)·G_out
    ("out_wmod", 16),       # W_out mod R
    ("out_words", 24),      # words per bank of the output map (ceil(H_out·W_out/R)·G_out)
    ("out_tiles", 16),      # T = ceil(C_out/C) (conv, dense)
    ("weight_base", 24),    # weight-buffer address of tile 0
    ("weight_words", 24),   # weight-buffer words of the layer
    ("param_base", 16),     # param-buffer address of tile 0
    # A config with pool fusion (`AccelConfig.pool_fusion`; absent otherwise, see layer_fields):
    ("fused_pool", 1),      # conv: the writer stores the 2×2 max-pooled map (out_* describe it)
    # Per-layer mixed precision (a config with q_modes; 0 on a single-Q config, whose layer
    # table does not hold them: see layer_fields):
    ("mode_q", 5),          # container width Q_c the layer's inputs are packed at and it runs in
    ("out_q", 5),           # container width of its output map (the next layer's mode_q)
    ("clamp_q", 5),         # relu clamp: the layer's q_out (codes 0 .. 2^q_out − 1)
)
#: The fields only a per-layer-mode config's layer table holds (the last ones of LAYER_FIELDS).
MIXED_LAYER_FIELDS = ("mode_q", "out_q", "clamp_q")
#: The fields only a config with pool fusion holds.
FUSE_LAYER_FIELDS = ("fused_pool",)
#: Bits and stream words of a single-Q entry without pool fusion (else: `layer_words(cfg)`).
LAYER_BITS = sum(bits for name, bits in LAYER_FIELDS if name not in MIXED_LAYER_FIELDS + FUSE_LAYER_FIELDS)
LAYER_WORDS = -(-LAYER_BITS // WORD_BITS)


def layer_fields(cfg: AccelConfig) -> tuple[tuple[str, int], ...]:
    """The entry fields `cfg`'s layer table holds: MIXED_LAYER_FIELDS only with per-layer modes,
    FUSE_LAYER_FIELDS only with pool fusion (so a design without either, and its program, are the
    ones they were before those existed)."""
    drop = (() if cfg.mixed else MIXED_LAYER_FIELDS) + (() if cfg.pool_fusion else FUSE_LAYER_FIELDS)
    return tuple(f for f in LAYER_FIELDS if f[0] not in drop)


_SINGLE_Q = AccelConfig(fuse_pool=False)


def line_buffer_shape(cfg: AccelConfig) -> tuple[int, int, int]:
    """The fused pool's line buffer on `cfg` (docs/interface.md "Fused max-pool"): (banks R/2,
    group bits, slot bits). A word holds one horizontal pair's maxima of one output group; bank k,
    address slot·2^group_bits + g holds pair k of a pixel tile whose index is slot mod 2^slot_bits.
    The vertical partner of a pair is W/2 pairs back, at most (max_width/2) div (R/2) + 1 tiles, so
    that many slots plus the one being written never alias."""
    half = cfg.rows // 2
    max_groups = groups(cfg.max_channels, cfg.datapath // max(cfg.modes))
    slots = (cfg.max_width // 2) // half + 2
    return half, max(1, math.ceil(math.log2(max_groups))), max(1, math.ceil(math.log2(slots)))


def layer_words(cfg: AccelConfig) -> int:
    """Stream words of one layer entry on `cfg` (LAYER_WORDS, one more with per-layer modes)."""
    return -(-sum(bits for _, bits in layer_fields(cfg)) // WORD_BITS)

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
    """Param-buffer words: one per output tile of every layer, `pp_channels` channels in all."""
    return -(-cfg.pp_channels // cfg.cols) + MAX_LAYERS


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
    def tiles(self) -> int:
        """ceil(H·W / R): pixel tiles of R consecutive raster positions (= words per bank per group)."""
        return -(-self.height * self.width // self.rows)

    @property
    def wdiv_g(self) -> int:
        """(W div R)·G: how far one image row (W raster positions) moves an address, less a wrap."""
        return self.width // self.rows * self.groups

    @property
    def wmod(self) -> int:
        """W mod R: how far one image row moves the bank (a wrap past bank R − 1 adds G to the address)."""
        return self.width % self.rows

    @property
    def words_per_bank(self) -> int:
        return self.tiles * self.groups

    def locate(self, h: int, w: int, g: int) -> tuple[int, int]:
        """(bank, address) of pixel (h, w), group g: raster index i = h·W + w in bank i mod R."""
        i = h * self.width + w
        return i % self.rows, i // self.rows * self.groups + g


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


FOLDS = (1, 3, 9)


def fold_taps(fold: int) -> list[tuple[int, int]]:
    """The taps (kh, kw) whose inputs the input unit stores as extra channels, in copy order."""
    return {1: [(1, 1)], 3: [(1, 0), (1, 1), (1, 2)], 9: [(kh, kw) for kh in range(3) for kw in range(3)]}[fold]


def choose_fold(channels: int, lanes: int, rows: int = 1, passes: int = 1) -> int:
    """The first-layer fold with the fewest array cycles per tile (ties: the smaller fold, fewer
    input writes). A tile takes ceil(fold·C/S) groups × 9/fold taps × P passes, but at least
    R cycles (the drain post-processes one of the R rows per cycle). A layer with few channels
    (a grey or RGB image) otherwise leaves most lanes idle for 9 taps."""
    def cycles(f: int) -> int:
        return max(groups(f * channels, lanes) * 9 // f * passes, rows)
    return min(FOLDS, key=lambda f: (cycles(f), f))


def fold_image(pixels, fold: int) -> np.ndarray:
    """(C, H, W) -> (fold·C, H, W): virtual channel copy·C + c at (h, w) holds the input of tap
    (kh, kw) = fold_taps(fold)[copy] of output pixel (h, w), i.e. pixel (h + kh − 1, w + kw − 1),
    or 0 outside the image (the zero padding)."""
    x = np.asarray(pixels, dtype=np.int64)
    c, h, w = x.shape
    padded = np.zeros((c, h + 2, w + 2), dtype=np.int64)
    padded[:, 1:h + 1, 1:w + 1] = x
    return np.concatenate([padded[:, kh:kh + h, kw:kw + w] for kh, kw in fold_taps(fold)], axis=0)


def fold_weight(weight, fold: int) -> np.ndarray:
    """(O, C, 3, 3) -> (O, fold·C, th, tw) matching `fold_image`: the folded taps become channels."""
    w = np.asarray(weight, dtype=np.int64)
    if fold == 1:
        return w
    o, c = w.shape[:2]
    if fold == 3:  # kw folded: (O, kw·C + c, kh, 1)
        return w.transpose(0, 3, 1, 2).reshape(o, 3 * c, 3, 1)
    return w.transpose(0, 2, 3, 1).reshape(o, 9 * c, 1, 1)  # (kh·3 + kw)·C + c


def layout_image(pixels, cfg: AccelConfig, fold: int = 1) -> tuple[MapLayout, list[list[int]]]:
    """8-bit pixels (C, H, W) -> the first layer's input: folded to fold·C virtual channels, as
    P chunk planes that are extra channel groups."""
    pixels = fold_image(pixels, fold)
    c, h, w = pixels.shape
    layout = MapLayout(c, h, w, cfg.rows, cfg.lanes, planes=cfg.first_layer_passes)
    mask = cfg.code_max
    planes = [(pixels >> (j * cfg.q)) & mask for j in range(layout.planes)]
    return layout, _fill_banks(layout, planes, cfg)


def _fill_banks(layout: MapLayout, planes: list[np.ndarray], cfg: AccelConfig) -> list[list[int]]:
    per_bank = layout.words_per_bank
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


def read_codes(layout: MapLayout, banks, cfg: AccelConfig, q: int | None = None) -> np.ndarray:
    """Inverse of `layout_codes`: banks[b][addr] words -> codes (C, H, W). `q`: the map's lane
    width (its container, per-layer modes; default cfg.q), `layout.lanes` lanes of it per word."""
    q = cfg.q if q is None else q
    n = layout.lanes
    out = np.zeros((layout.channels, layout.height, layout.width), dtype=np.int64)
    for hh in range(layout.height):
        for ww in range(layout.width):
            for g in range(layout.pass_groups):
                bank, addr = layout.locate(hh, ww, g)
                lanes = unpack_lanes(banks[bank][addr], q, n)
                for s, v in enumerate(lanes):
                    if g * n + s < layout.channels:
                        out[g * n + s, hh, ww] = v
    return out


# -- the layer program ---------------------------------------------------------------------------

#: The image descriptor that follows the layer count in the PROGRAM section.
IMAGE_FIELDS: tuple[tuple[str, int], ...] = (
    ("height", 16), ("width", 16), ("channels", 16),   # the real image (C, H, W)
    ("pass_groups", 16), ("groups", 16), ("wdiv_g", 24), ("wmod", 16), ("words", 24),  # its layout (virtual channels)
    ("fold_w", 1), ("fold_h", 1),
    # divmod(k·C, S) for copy k = 0..8: where copy k's virtual channels k·C + c start
    *((f"copy{k}_{part}", bits) for k in range(9) for part, bits in (("groups", 16), ("lanes", 8))),
    # H·W·C, the pixels the IMAGE section carries (precomputed: no multiplier in the input unit)
    ("pixels", 32),
)
IMAGE_WORDS = -(-sum(bits for _, bits in IMAGE_FIELDS) // WORD_BITS)


def weight_lane(w: int, q: int, weights: str = "uniform") -> int:
    """A weight as its Q-bit lane code: two's complement, or at Q = 1 bit 1 ↔ +1, 0 ↔ −1; for
    power-of-two weights (`weights="pot"`) the sign at bit Q−1 and the exponent field
    e = K − log2|w| + 1 below it (e = 0: the zero weight), as qjoule.sw.pot.pot_codes."""
    if weights == "pot":
        w = int(w)
        k_max = (1 << (q - 1)) - 2
        if w == 0:
            return 0
        shift = abs(w).bit_length() - 1
        if abs(w) != 1 << shift or shift > k_max:
            raise UserError(f"weight {w} is not a {q}-bit power-of-two weight (0 or ±2^j, j <= {k_max})")
        return int(w < 0) << (q - 1) | (k_max - shift + 1)
    if q == 1:
        return 1 if w > 0 else 0
    return int(w) & ((1 << q) - 1)


def _lane_codes(w: np.ndarray, cfg: AccelConfig, q: int) -> np.ndarray:
    """Weight integers -> lane codes of `cfg`'s weight kind at lane width q (same shape). A
    narrower weight in a wider container (per-layer modes) is sign-extended: two's complement."""
    if not w.size:
        return w
    return np.vectorize(lambda v: weight_lane(v, q, cfg.weights), otypes=[np.int64])(w)


def _words_from_lanes(lanes: np.ndarray, cfg: AccelConfig, q: int) -> list[int]:
    """lanes (N, C, S) weight lane codes -> N weight-buffer words (column c at bits c·D)."""
    d = cfg.datapath
    shifts_s = np.arange(lanes.shape[2], dtype=object) * q
    out = []
    for word in lanes.astype(object):
        value = 0
        for c, col in enumerate(word):
            value |= int(sum(int(v) << int(sh) for v, sh in zip(col, shifts_s))) << (c * d)
        out.append(value)
    return out


def conv_weight_words(weight, cfg: AccelConfig, q: int | None = None) -> list[int]:
    """Conv weights (O, I, th, tw) -> words in (tile, group, kh, kw) order, columns = output
    channels (th = tw = 3, or fewer taps for a folded first layer). `q`: the layer's mode (lane
    width, per-layer modes; default cfg.q)."""
    q = cfg.q if q is None else q
    w = np.asarray(weight, dtype=np.int64)
    o, i, th, tw = w.shape
    s, c = cfg.datapath // q, cfg.cols
    tiles, g = groups(o, c), groups(i, s)
    codes = _lane_codes(w, cfg, q)
    full = np.zeros((tiles * c, g * s, th, tw), dtype=np.int64)
    full[:o, :i] = codes
    # (tile, col, group, lane, kh, kw) -> (tile, group, kh, kw, col, lane)
    arr = full.reshape(tiles, c, g, s, th, tw).transpose(0, 2, 4, 5, 1, 3).reshape(-1, c, s)
    return _words_from_lanes(arr, cfg, q)


def dense_weight_words(weight, in_map: tuple[int, int, int], cfg: AccelConfig, q: int | None = None) -> list[int]:
    """Dense weights (O, C·H·W) in the contract's (c, h, w) flatten order -> words in (tile, h, w,
    group) order, the order the sequencer walks the input map (the host permutes the weights; the
    activations are never rearranged)."""
    q = cfg.q if q is None else q
    w = np.asarray(weight, dtype=np.int64)
    ch, hh, ww = in_map
    o = w.shape[0]
    s, c = cfg.datapath // q, cfg.cols
    tiles, g = groups(o, c), groups(ch, s)
    codes = _lane_codes(w, cfg, q)
    full = np.zeros((tiles * c, g * s, hh, ww), dtype=np.int64)
    full[:o, :ch] = codes.reshape(o, ch, hh, ww)
    # (tile, col, group, lane, h, w) -> (tile, h, w, group, col, lane)
    arr = full.reshape(tiles, c, g, s, hh, ww).transpose(0, 4, 5, 2, 1, 3).reshape(-1, c, s)
    return _words_from_lanes(arr, cfg, q)


def param_words_for(mult, bias, cfg: AccelConfig, out_lanes: int | None = None) -> list[int]:
    """One param word per output tile: metadata, then C × (mult, bias) in two's complement.
    `out_lanes`: lanes of the output map's words (its container's, per-layer modes; default S)."""
    mult, bias = [int(v) for v in mult], [int(v) for v in bias]
    o, c, s = len(mult), cfg.cols, cfg.lanes if out_lanes is None else out_lanes
    bias_bits = cfg.pp_bias_bits
    words = []
    for t in range(groups(o, c)):
        first, c_valid = t * c, min(c, o - t * c)
        meta = pack_fields(PARAM_META_FIELDS, {
            "group_first": first // s, "lane_skip": first % s,
            "n_groups": (first + c_valid - 1) // s - first // s + 1, "c_valid": c_valid})
        value, offset = meta, PARAM_META_BITS
        for k in range(c):
            m_, b_ = (mult[first + k], bias[first + k]) if k < c_valid else (0, 0)
            value |= (m_ & ((1 << PP_MULT_BITS) - 1)) << offset
            value |= (b_ & ((1 << bias_bits) - 1)) << (offset + PP_MULT_BITS)
            offset += PP_MULT_BITS + bias_bits
        words.append(value)
    return words


@dataclasses.dataclass
class LayerPlan:
    name: str
    kind: str
    entry: dict[str, int]
    in_layout: MapLayout
    out_layout: MapLayout | None   # None for the logits layer
    weights: list[int]
    params: list[int]
    macs: int                      # multiply-accumulates of the layer (padding counted)
    out_q: int = 0                 # lane width of the output map (0: cfg.q; per-layer modes)
    pool: str = ""                 # the max-pool fused into this conv (its writer stores the pooled map)

    @property
    def output_name(self) -> str:
        """The model layer whose output map this layer writes (the golden model's reference for
        its debug dump): the fused pool's, else its own."""
        return self.pool or self.name

    @property
    def label(self) -> str:
        """For tables: the conv and its fused pool ("A1+A.pool")."""
        return f"{self.name}+{self.pool}" if self.pool else self.name


@dataclasses.dataclass
class Program:
    """A model encoded for one accelerator: what to send, and how to read what comes back."""

    cfg: AccelConfig
    layers: list[LayerPlan]
    image: MapLayout               # the first layer's input layout (fold·C virtual channels)
    fold: int
    classes: int
    debug: bool
    setup_words: list[int]          # PROGRAM, PARAMS and the resident WEIGHTS: sent once
    external: list[int]             # indices of layers whose weights stream in per image
    weight_words_used: int

    def image_words(self, pixels) -> list[int]:
        """IMAGE section and the external WEIGHTS sections for one image (C, H, W) of uint8."""
        p = np.asarray(pixels)
        shape = (self.image.channels // self.fold, self.image.height, self.image.width)
        if p.shape != shape:
            raise UserError(f"image shape {p.shape} does not match the program's input {shape}")
        flat = [int(v) for v in p.transpose(1, 2, 0).reshape(-1)]  # (h, w, c) order
        flat += [0] * (-len(flat) % 4)
        payload = [flat[i] | flat[i + 1] << 8 | flat[i + 2] << 16 | flat[i + 3] << 24 for i in range(0, len(flat), 4)]
        words = section(SECTION_IMAGE, payload)
        for i in self.external:
            words += weights_section(self.layers[i].entry["weight_base"], self.layers[i].weights, self.cfg)
        return words

    def output_word_count(self) -> int:
        count = self.classes * LOGIT_WORDS
        for plan in self.layers:
            if plan.entry["dump"]:
                count += plan.entry["out_words"] * self.cfg.rows * chunks(self.cfg.datapath)
        return count

    def external_words_per_image(self) -> int:
        return sum(len(self.layers[i].weights) for i in self.external)

    def decode(self, words: Sequence[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Output words of one image -> (logits (classes,), {layer name: codes (C, H, W)} in debug mode),
        keyed by `LayerPlan.output_name`: a conv with a fused pool gives the pool's output."""
        words = [int(w) for w in words]
        if len(words) != self.output_word_count():
            raise UserError(f"expected {self.output_word_count()} output words, got {len(words)}")
        cfg, pos, layers = self.cfg, 0, {}
        n = chunks(cfg.datapath)
        for plan in self.layers:
            if plan.entry["dump"]:
                banks = [[0] * plan.entry["out_words"] for _ in range(cfg.rows)]
                for a in range(plan.entry["out_words"]):
                    for b in range(cfg.rows):
                        banks[b][a] = join_words(words[pos:pos + n])
                        pos += n
                layers[plan.output_name] = read_codes(plan.out_layout, banks, cfg, plan.out_q or None)
        logits = []
        for _ in range(self.classes):
            v = join_words(words[pos:pos + LOGIT_WORDS])
            logits.append(v - (1 << 64) if v >> 63 else v)
            pos += LOGIT_WORDS
        return np.array(logits, dtype=np.int64), layers


def section(kind: int, payload: Sequence[int]) -> list[int]:
    if len(payload) > MAX_SECTION_WORDS:
        raise UserError(f"{SECTION_NAMES[kind]} section of {len(payload)} words exceeds {MAX_SECTION_WORDS}")
    return [kind << 24 | len(payload), *payload]


def weights_section(base: int, words: Sequence[int], cfg: AccelConfig) -> list[int]:
    bits = weight_word_bits(cfg)
    return section(SECTION_WEIGHTS, [base] + [c for w in words for c in split_words(w, bits)])


def params_section(words: Sequence[int], cfg: AccelConfig) -> list[int]:
    bits = param_word_bits(cfg)
    return section(SECTION_PARAMS, [0] + [c for w in words for c in split_words(w, bits)])


def program_section(entries: Sequence[dict[str, int]], image: MapLayout, fold: int,
                    cfg: AccelConfig | None = None) -> list[int]:
    channels = image.channels // fold
    desc = pack_fields(IMAGE_FIELDS, {"height": image.height, "width": image.width, "channels": channels,
                                      "pass_groups": image.pass_groups, "groups": image.groups,
                                      "wdiv_g": image.wdiv_g, "wmod": image.wmod, "words": image.words_per_bank,
                                      "fold_w": int(fold >= 3), "fold_h": int(fold == 9),
                                      "pixels": image.height * image.width * channels,
                                      **{f"copy{k}_groups": k * channels // image.lanes for k in range(9)},
                                      **{f"copy{k}_lanes": k * channels % image.lanes for k in range(9)}})
    payload = [len(entries)] + split_words(desc, IMAGE_WORDS * WORD_BITS)
    for e in entries:
        # (cfg None or single-Q: the single-Q entry, LAYER_WORDS words)
        fields = layer_fields(cfg or _SINGLE_Q)
        payload += split_words(pack_fields(fields, e), -(-sum(bits for _, bits in fields) // WORD_BITS) * WORD_BITS)
    return section(SECTION_PROGRAM, payload)


def _fits(what: str, value: int, limit: int, name: str) -> None:
    if value > limit:
        raise UserError(f"model does not fit: {what} {value} > {name} {limit} (by {value - limit})")


_KIND_NAMES = {"uniform": "uniform", "pot": "power-of-two (PoT)"}


def model_weights(model) -> str:
    """The config `weights` a model needs: "pot" when every conv/dense layer has power-of-two
    weights, else "uniform" (a model mixing kinds is then refused by `encode`, naming a layer)."""
    kinds = {layer.get("w_kind", "uniform") for layer in model.layers if layer["kind"] != "maxpool2x2"}
    return "pot" if kinds == {"pot"} else "uniform"


def variant_for_model(name: str, model) -> AccelConfig:
    """The named variant at the model's Q and weight kind (not yet sized: see size_for_model). A
    per-layer-Q model gets the modes its layers run at (`layer_modes`): q = the first layer's,
    q_modes = all of them, the datapath a multiple of each."""
    from .config import variant

    if model.q is None:
        modes = layer_modes(model)
        return variant(name, q=modes[0], q_modes=tuple(sorted(set(modes))), weights=model_weights(model))
    return variant(name, q=model.q, weights=model_weights(model))


def layer_modes(model, first_q: int | None = None) -> list[int]:
    """The mode (container width Q_c) each layer runs at on per-layer-mode hardware
    (docs/interface.md "Per-layer mixed precision"):

    - the first layer: `first_q` (the config's q: the pixel chunk width, ceil(8/q) passes), by
      default its own q_w; its q_w may be narrower (the weights are sign-extended);
    - any other conv/dense layer: max(q_in, q_w), its codes zero-extended and its weights
      sign-extended into Q_c-bit lanes. Q_c = 1 (XNOR, ±1 values) only where q_in = q_w = 1; ±1
      inputs (q_in = 1) with wider weights are refused (a ±1 value is no unsigned code);
    - a max-pool: the mode of the layer after it (it pools the codes already packed for that
      layer, lane-wise, and writes them back in the same container).
    """
    layers = list(model.layers)
    modes = [0] * len(layers)
    for i, layer in enumerate(layers):
        if layer["kind"] == "maxpool2x2":
            continue
        q_in, q_w = layer["q_in"], layer.get("q_w")
        if i == 0:
            q = q_w if first_q is None else first_q
            if q_w > q or (q == 1 and q_w != 1):
                raise UserError(f"layer {layer['name']!r} has q_w={q_w} weights, wider than the first layer's mode "
                                f"q={q} (the config's q)")
        elif q_in == 1 and q_w != 1:
            raise UserError(f"layer {layer['name']!r} takes ±1 inputs (q_in=1) with q_w={q_w} weights; the hardware "
                            f"runs ±1 inputs only with 1-bit weights (XNOR)")
        else:
            q = max(q_in, q_w)
        modes[i] = q
    for i in reversed(range(len(layers))):
        if layers[i]["kind"] == "maxpool2x2":
            modes[i] = modes[i + 1] if i + 1 < len(layers) else layers[i]["q_in"]
    return modes


def board_config_for_model(board: str, model, **changes: Any) -> AccelConfig:
    """The config a board runs `model` on: the board's config at the model's Q and weight kind
    (per-Q sizes that fit the device), with `changes` (e.g. rows, cols), sized to the model.
    `qjoule synth --model`, the flow's generate step and `qjoule run --board` all build this one."""
    from .config import board_config

    if model.q is None:  # per-layer Qs: the modes its layers run at (layer_modes), first layer's as q
        modes = layer_modes(model)
        changes = {"q_modes": tuple(sorted(set(modes))), **changes}
        return size_for_model(model, board_config(board, modes[0], weights=model_weights(model), **changes))
    return size_for_model(model, board_config(board, model.q, weights=model_weights(model), **changes))


def check_weight_kind(model, cfg: AccelConfig) -> None:
    """Every conv/dense layer's weights must be the kind the config's lanes take (`cfg.weights`)
    at the config's Q; else a one-line UserError naming the layer, its kind and bits, and the config."""
    for layer in model.layers:
        if layer["kind"] == "maxpool2x2":
            continue
        kind = layer.get("w_kind", "uniform")
        if kind not in _KIND_NAMES:
            raise UserError(f"layer {layer['name']!r} has unknown w_kind {kind!r}; known: {', '.join(_KIND_NAMES)}")
        if kind != cfg.weights:
            raise UserError(f"model has {_KIND_NAMES[kind]} weights at {layer.get('q_w')} bits (layer {layer['name']!r}), "
                            f"the config is {_KIND_NAMES[cfg.weights]} Q={cfg.q} (config field weights={cfg.weights!r})")


def encode(model, cfg: AccelConfig, *, debug: bool = False) -> Program:
    """An IntModel -> the Program for `cfg`, or a one-line UserError saying what does not fit."""
    if debug and not cfg.debug_dump:
        raise UserError(f"config {cfg.name!r} has no debug-dump engine (debug_dump false): run without per-layer "
                        f"dumps (qjoule simulate --no-dump), or use a config with debug_dump true")
    layers = list(model.layers)
    if not cfg.mixed:
        if model.q is None:
            qs = [layer["q_w"] for layer in layers if layer["kind"] != "maxpool2x2"]
            raise UserError(f"model has per-layer Qs {qs} (mixed precision); the config runs one uniform q={cfg.q}: "
                            f"give it q_modes (qjoule generate --model picks them)")
        check_weight_kind(model, cfg)
        if model.q != cfg.q:
            raise UserError(f"model Q={model.q!r} does not match the accelerator's q={cfg.q}")
        modes = [cfg.q] * len(layers)
    else:
        check_weight_kind(model, cfg)
        modes = layer_modes(model, cfg.q)
        for layer, q in zip(layers, modes):
            if q not in cfg.modes and layer["kind"] != "maxpool2x2":  # (a pool runs at the next layer's mode)
                raise UserError(f"layer {layer['name']!r} runs at Q={q} (q_in={layer['q_in']}, q_w={layer.get('q_w')}), "
                                f"which is not one of the config's q_modes {list(cfg.modes)}")
    fused = fused_pools(model, cfg)
    if len(layers) - len(fused) > MAX_LAYERS:   # (a fused pool runs in its conv's layer)
        raise UserError(f"model does not fit: {len(layers) - len(fused)} layers > {MAX_LAYERS}")
    if not layers or layers[0]["kind"] != "conv3x3":
        raise UserError("model does not fit: the first layer must be conv3x3 (the pixel passes run on conv)")
    if layers[-1]["kind"] != "dense" or layers[-1]["act"] != "none":
        raise UserError("model does not fit: the last layer must be dense with act 'none' (the logits)")
    c0, h0, w0 = model.input_shape
    _fits("input height", h0, cfg.max_height, "max_height")
    _fits("input width", w0, cfg.max_width, "max_width")
    _fits("classes", model.classes, cfg.max_classes, "max_classes")
    depth = bank_depth(cfg)
    # the fastest fold whose (fold times larger) image fits a buffer half; else the plain image
    fold = choose_fold(c0, cfg.lanes, cfg.rows, cfg.first_layer_passes)
    for f in (fold, 3, 1):
        image = MapLayout(f * c0, h0, w0, cfg.rows, cfg.lanes, planes=cfg.first_layer_passes)
        if f <= fold and image.words_per_bank <= depth:
            fold = f
            break
    _fits("input image words per bank", image.words_per_bank, depth, "act_half_words/rows")
    plans: list[LayerPlan] = []
    in_layout = image
    shape = (c0, h0, w0)
    param_base = 0
    for i, layer in enumerate(layers):
        kind, name = layer["kind"], layer["name"]
        last = i == len(layers) - 1
        if i - 1 in fused:
            continue  # (the pool runs in the conv before it)
        if not cfg.mixed:
            q_expect = 8 if i == 0 else cfg.q
            if layer["q_in"] != q_expect:
                raise UserError(f"layer {name!r} has q_in={layer['q_in']}, expected {q_expect} at q={cfg.q}")
            if kind != "maxpool2x2" and layer.get("q_w") != cfg.q:
                raise UserError(f"layer {name!r} has q_w={layer.get('q_w')!r}, expected {cfg.q}")
            if not last and layer.get("q_out") != cfg.q:
                raise UserError(f"layer {name!r} has q_out={layer.get('q_out')!r}, expected {cfg.q}")
        mode, out_q = modes[i], (modes[i] if last else modes[i + 1])  # (a fused pool's mode is the next layer's)
        ch, hh, ww = shape
        entry = {"kind": KIND_CODES[kind], "in_half": len(plans) % 2, "first": int(i == 0), "last": int(last),
                 "dump": int(debug and not last), "height": hh, "width": ww, "groups": in_layout.groups,
                 "pass_groups": in_layout.pass_groups, "passes": in_layout.planes,
                 "lanes_last": in_layout.channels - (in_layout.pass_groups - 1) * in_layout.lanes,
                 "wdiv_g": in_layout.wdiv_g, "wmod": in_layout.wmod,
                 "fold_w": int(i == 0 and fold >= 3), "fold_h": int(i == 0 and fold == 9)}
        weights: list[int] = []
        params: list[int] = []
        if kind == "conv3x3":
            out_ch = layer["out_shape"][0]
            _fits(f"layer {name!r} input channels", ch, cfg.max_channels, "max_channels")
            _fits(f"layer {name!r} output channels", out_ch, cfg.max_channels, "max_channels")
            out_shape = (out_ch, hh, ww)
            weight = model.arrays[layer["weight"]]
            weights = conv_weight_words(fold_weight(weight, fold) if i == 0 else weight, cfg, mode)
            macs = out_ch * hh * ww * 9 * ch
            entry.update({"tiles": in_layout.tiles, "tile_dh": cfg.rows // ww, "tile_dw": cfg.rows % ww})
            if i in fused:
                out_shape = (out_ch, hh // 2, ww // 2)
                entry["fused_pool"] = 1
        elif kind == "maxpool2x2":
            out_shape = (ch, hh // 2, ww // 2)
            if out_shape[1] < 1 or out_shape[2] < 1:
                raise UserError(f"layer {name!r}: max-pool of a {hh}x{ww} map leaves nothing")
            macs = 0
        elif kind == "dense":
            out_ch = layer["out_shape"][0]
            _fits(f"layer {name!r} dense inputs", ch * hh * ww, cfg.max_dense_inputs, "max_dense_inputs")
            _fits(f"layer {name!r} input channels", ch, cfg.max_channels, "max_channels")
            if not last:
                _fits(f"layer {name!r} output channels", out_ch, cfg.max_channels, "max_channels")
            out_shape = (out_ch, 1, 1)
            weights = dense_weight_words(model.arrays[layer["weight"]], shape, cfg, mode)
            macs = out_ch * ch * hh * ww
        else:
            raise UserError(f"layer {name!r} has unknown kind {kind!r}")
        if kind != "maxpool2x2":
            mult, bias = model.arrays[layer["pp_mult"]], model.arrays[layer["pp_bias"]]
            lim = 1 << (PP_MULT_BITS - 1)
            if len(mult) and (int(np.max(mult)) >= lim or int(np.min(mult)) < -lim):
                raise UserError(f"layer {name!r}: pp_mult outside the {PP_MULT_BITS}-bit range")
            blim = 1 << (cfg.pp_bias_bits - 1)
            if len(bias) and (int(max(bias)) >= blim or int(min(bias)) < -blim):
                raise UserError(f"layer {name!r}: pp_bias too wide for pp_bias_bits={cfg.pp_bias_bits}")
            params = param_words_for(mult, bias, cfg, cfg.datapath // out_q)
            entry.update({"act": ACT_CODES[layer["act"]], "shift": int(layer["pp_shift"]),
                          "out_tiles": groups(out_shape[0], cfg.cols), "param_base": param_base,
                          "weight_words": len(weights)})
            param_base += len(params)
        else:
            entry.update({"act": ACT_NONE})
        if cfg.mixed:
            entry.update({"mode_q": mode, "out_q": out_q,
                          "clamp_q": layer["q_out"] if layer.get("act") == "relu" else 0})
        out_layout = None if last else MapLayout(out_shape[0], out_shape[1], out_shape[2], cfg.rows,
                                                 cfg.datapath // out_q)
        if out_layout is not None:
            _fits(f"layer {name!r} output map words per bank", out_layout.words_per_bank, depth, "act_half_words/rows")
            entry.update({"out_height": out_layout.height, "out_width": out_layout.width,
                          "out_groups": out_layout.groups, "out_wdiv_g": out_layout.wdiv_g,
                          "out_wmod": out_layout.wmod,
                          "out_words": out_layout.words_per_bank})
        else:
            entry.update({"out_height": 1, "out_width": 1, "out_groups": groups(out_shape[0], cfg.lanes),
                          "out_words": 0})
        plans.append(LayerPlan(name, kind, entry, in_layout, out_layout, weights, params, macs,
                               out_q if cfg.mixed else 0, layers[i + 1]["name"] if i in fused else ""))
        if out_layout is not None:
            in_layout = out_layout
        shape = out_shape
    _fits("param words (output tiles)", param_base, param_words(cfg), "param_words (pp_channels/cols + 32)")
    external = _place_weights(plans, cfg)
    setup = program_section([p.entry for p in plans], image, fold, cfg)
    setup += params_section([w for p in plans for w in p.params], cfg)
    for i, plan in enumerate(plans):
        if plan.weights and i not in external:
            setup += weights_section(plan.entry["weight_base"], plan.weights, cfg)
    for plan in plans:  # every field must fit its bits
        pack_fields(LAYER_FIELDS, plan.entry)
    used = max((p.entry.get("weight_base", 0) + len(p.weights) for p in plans), default=0)
    return Program(cfg, plans, image, fold, model.classes, debug, setup, external, used)


def fused_pools(model, cfg: AccelConfig) -> set[int]:
    """Indices of the conv layers whose following 2×2 max-pool `cfg` runs in the conv's writer: with
    `cfg.pool_fusion`, a conv3x3 followed by a maxpool2x2 on a map of even width (a pixel tile's R
    rows are then R/2 horizontal pairs) and height >= 2. Any other pool runs as its own layer."""
    if not cfg.pool_fusion:
        return set()
    layers = list(model.layers)
    return {i for i, (layer, nxt) in enumerate(zip(layers, layers[1:]))
            if layer["kind"] == "conv3x3" and nxt["kind"] == "maxpool2x2"
            and layer["out_shape"][2] % 2 == 0 and layer["out_shape"][1] >= 2}


def _place_weights(plans: list[LayerPlan], cfg: AccelConfig) -> list[int]:
    """Resident layers from address 0 in layer order; the rest share a scratch region at the end
    that is reloaded from the input stream when they run. Returns the external layer indices."""
    sizes = [len(p.weights) for p in plans]
    capacity = cfg.weight_words
    largest = max(sizes)
    _fits("largest layer's weight words", largest, capacity, "weight_words")
    if sum(sizes) <= capacity:
        base = 0
        for p, n in zip(plans, sizes):
            p.entry["weight_base"] = base
            base += n
        return []
    scratch = largest
    base, external = 0, []
    for i, (p, n) in enumerate(zip(plans, sizes)):
        if n == 0:
            continue
        if base + n <= capacity - scratch:
            p.entry["weight_base"] = base
            base += n
        else:
            p.entry["weight_base"] = capacity - scratch
            p.entry["external"] = 1
            external.append(i)
    return external


def size_for_model(model, cfg: AccelConfig, keep: Iterable[str] = ()) -> AccelConfig:
    """`cfg` with its layer limits and buffers sized to fit `model` (powers of two words), except
    the fields named in `keep` (set by the user), which are checked instead. UserError if the model
    does not fit."""
    keep = set(keep)
    if not cfg.mixed and model.q is not None and model.q != cfg.q:
        raise UserError(f"model Q={model.q!r} does not match the accelerator's q={cfg.q}")
    c0, h0, w0 = model.input_shape
    channels = [c0] + [layer["out_shape"][0] for layer in model.layers if layer["kind"] == "conv3x3"]
    dense_in = [int(np.prod(layer["in_shape"])) for layer in model.layers if layer["kind"] == "dense"]
    pp = sum(layer["out_shape"][0] for layer in model.layers if layer["kind"] != "maxpool2x2")
    limits = {"max_channels": max(channels), "max_height": h0, "max_width": w0,
              "max_dense_inputs": max(dense_in, default=1), "max_classes": model.classes, "pp_channels": pp}
    changes = {k: v for k, v in limits.items() if k not in keep}
    # A provisional config with room for anything tells what the model needs (in block RAM: an
    # SPRAM buffer refuses more than 16k words; the sized config below is checked again).
    roomy = cfg.replace(**changes, act_buffer_bits=1 << 40, weight_buffer_bits=1 << 40, act_memory="bram",
                        weight_memory="bram")
    prog = encode(model, roomy)
    maps = [prog.image] + [p.out_layout for p in prog.layers if p.out_layout is not None]
    need_bank = max(m.words_per_bank for m in maps)
    need_weights = sum(len(p.weights) for p in prog.layers)
    if "act_buffer_bits" not in keep:
        changes["act_buffer_bits"] = 2 * cfg.rows * _pow2(need_bank) * cfg.datapath
    if "weight_buffer_bits" not in keep:
        changes["weight_buffer_bits"] = _pow2(need_weights) * cfg.cols * cfg.datapath
    sized = cfg.replace(**changes)
    encode(model, sized)  # raises, naming what does not fit, if a kept field is too small
    return sized


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))
