"""`AccelConfig`: the one description of an accelerator, read by the gateware, the testbenches
and the energy model alike.

Plain Python (no Amaranth, no torch), so the energy model can read the file the hardware was
built from without loading the HDL. Frozen: a variant is made by copying with `replace()`, and
`validate()` runs on every construction, so an `AccelConfig` that exists is one the gateware can
build.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from .errors import UserError

CONFIG_FORMAT = "qjoule-accel-config"
CONFIG_VERSION = 1

#: Post-processing multiplier width, fixed by the integer contract (docs/contract.md).
PP_MULT_BITS = 18
#: Pixels of the first layer are 8-bit unsigned.
PIXEL_BITS = 8
#: Weight kinds a config may select (docs/contract.md "Weights", "Power-of-two weights").
WEIGHT_KINDS = ("uniform", "pot")
#: Bit-widths power-of-two weights support (= qjoule.sw.pot.POT_BITS; config stays free of sw imports).
POT_Q = (2, 6)
#: Where a buffer lives: "bram" (amaranth.lib.memory, inferred block RAM) or "spram" (the iCE40
#: UP5K's SB_SPRAM256KA: 16k x 16 bits, single port, 4-bit nibble write mask).
MEMORY_KINDS = ("bram", "spram")
#: Words of one SB_SPRAM256KA (16 bits each).
SPRAM_WORDS = 16384
SPRAM_BITS = 16
#: How the layer table stores an entry: "wide" (one LAYER_BITS word per layer), "words" (the
#: 32-bit words of the PROGRAM section; the sequencer assembles an entry over a few cycles).
TABLE_KINDS = ("wide", "words")
#: Fields added after version 1 that appear in the JSON (and so in config_id) only when they are
#: not at their default: every config written before them keeps its JSON and its Verilog.
_OPTIONAL_FIELDS = {"act_memory": "bram", "weight_memory": "bram", "layer_table": "wide", "memory_pipeline": 0,
                    "fuse_pool": True, "debug_dump": True, "compact_control": False, "dsp_pairs": True, "lut_lanes": 0}
#: Tile-metadata FIFO entries of a compact_control config at R = 1 (AccelConfig.tile_meta_depth).
TILE_META_DEPTH_R1 = 2
#: Register stages the activation, weight and param buffers may add to a read (`memory_pipeline`).
MEMORY_PIPELINES = (0, 1, 2)


def default_datapath(q: int, modes: tuple[int, ...] = ()) -> int:
    """The default operand word width D for a given Q: the largest multiple of Q not above 16.
    With run-time `modes` (per-layer mixed precision), the largest multiple of all of them not
    above 16, or their least common multiple when that is above 16."""
    lcm = math.lcm(q, *modes)
    return max(lcm, 16 // lcm * lcm)


@dataclasses.dataclass(frozen=True)
class AccelConfig:
    """Parameters of one generated accelerator.

    `q` is the bit-width of weights and activations, `datapath` (D) the bits of one operand word,
    split into `lanes` = D/Q subwords. The array has `rows` (R, one output pixel each) by `cols`
    (C, one output channel each) processing elements. Buffers are given in bits; the activation
    buffer is split in two halves that swap roles (this layer's inputs / outputs) every layer.
    `max_channels`, `max_height`, `max_width` and `max_dense_inputs` bound the layers the
    sequencer accepts; they set the address widths and the accumulator width.
    """

    q: int = 4
    datapath: int = 16
    rows: int = 4
    cols: int = 4
    act_buffer_bits: int = 256 * 1024
    weight_buffer_bits: int = 512 * 1024
    max_channels: int = 512
    max_height: int = 64
    max_width: int = 64
    max_dense_inputs: int = 8192
    max_classes: int = 1024
    #: Post-processing entries (mult, bias) the param buffer holds: the output channels of all
    #: conv and dense layers of a network together (one param word per C of them, plus one per
    #: layer for partial tiles; see qjoule.program.param_words).
    pp_channels: int = 4096
    #: Post-processing bias width in the hardware. 64 holds every bias export can produce (the
    #: .qjm stores int64: b_c = rnd(B_c·2^s) + 2^(s−1) with s up to 62); a narrower width saves
    #: a board's logic (the bias path is the widest part of post-processing), and program.encode
    #: then refuses, in one line, a model whose biases do not fit it.
    pp_bias_bits: int = 64
    #: Weight lanes: "uniform" (Q-bit two's complement, multiply) or "pot" (power-of-two weights,
    #: a sign bit and a (Q−1)-bit exponent per lane, shift-and-accumulate; Q 2..6, docs/contract.md).
    weights: str = "uniform"
    #: Where the activation buffer lives (MEMORY_KINDS). "spram": one SB_SPRAM256KA per bank and
    #: half (each half is only read or only written during a layer, so one port suffices); its
    #: 4-bit write mask needs Q a multiple of 4, D <= 16 and a bank half of at most 16k words.
    act_memory: str = "bram"
    #: Where the weight buffer lives (MEMORY_KINDS). "spram": ceil(C·D/16) SB_SPRAM256KA side by
    #: side, at most 16k words deep (written only while the sequencer does not read it).
    weight_memory: str = "bram"
    #: How the layer table stores its entries (TABLE_KINDS).
    layer_table: str = "wide"
    #: Register stages after the activation, weight and param buffers' block RAMs, for Fmax on a large
    #: device (MEMORY_PIPELINES; gateware/buffers.py): 0 = read data straight from the memory, one
    #: cycle after the address; 1 = one register after it; 2 = the memory split into block-RAM-deep
    #: pieces, each piece's output registered next to it, then the piece mux registered (and each
    #: piece's write port registered). A read then takes 1 + memory_pipeline cycles; the sequencer
    #: delays its controls to match, and adds a one-row skid register in front of each
    #: post-processing unit (the large-device setting).
    memory_pipeline: int = 0
    #: Per-layer mixed precision: the container widths the hardware runs at (docs/contract.md
    #: "Per-layer mixed precision", docs/interface.md). Empty = one uniform Q (`q`), the design and
    #: its Verilog exactly the single-Q ones. Otherwise every mode divides `datapath` and `q` is one
    #: of them: the first layer's mode, the width the input unit chunks the pixels at.
    q_modes: tuple[int, ...] = ()
    #: Fuse a 2×2 max-pool into the conv before it: the conv's writer stores the pooled map (a
    #: small line buffer holds the even conv rows' pair maxima), so the pool costs no cycles of its
    #: own. Takes effect where `pool_fusion` holds (rows a power of two >= 2; the encoder fuses
    #: conv+pool pairs on maps of even width); off: every pool runs as its own layer, the design
    #: and its program exactly as before the field existed.
    fuse_pool: bool = True
    #: Build the debug-dump engine (a layer entry's `dump` flag copies its output map to the output
    #: stream: `qjoule simulate`'s per-layer check). Off, the hardware has no dump path and
    #: program.encode refuses a debug program for the config in one line; a board run never dumps.
    debug_dump: bool = True
    #: Size the sequencer's control for a small device (the iCE40 UP5K, where every logic cell
    #: counts), at a cost of a few cycles per image at most: the layer register and the tile metadata
    #: hold their fields at the widths the config's bounds need (not the stream format's), the
    #: tile-metadata FIFO has `tile_meta_depth` entries, and the logits have one register (the
    #: collector waits while the writer emits them). Off: the design as before the field existed.
    compact_control: bool = False
    #: At Q = 5 and 6 (uniform weights), form the lane products of two neighbouring columns' PEs
    #: in one multiply (they share the row's activation; gateware/lane_pair.py), so a DSP block
    #: serves two lanes. Off: one multiply per lane. (iCE40 builds make these products in LUTs.)
    dsp_pairs: bool = True
    #: Lanes per PE (the first ones) whose products are built from LUTs even above Q = 4, where the
    #: rest take DSP blocks (uniform weights, one Q; such lanes are not paired). 0: every lane
    #: product above Q = 4 is a multiply for a DSP. The ULX3S board config at Q >= 7 puts every
    #: lane in LUTs: with its lane multiplies in the DSP rows no 8x8 build routed (BOARD_Q_CHANGES).
    lut_lanes: int = 0
    name: str = "default"

    def __post_init__(self):
        # JSON gives a list; a listing of only `q` is the uniform config itself (one spelling each).
        modes = self.q_modes
        if isinstance(modes, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in modes):
            modes = tuple(sorted(set(modes)))
            object.__setattr__(self, "q_modes", () if modes == (self.q,) else modes)
        self.validate()

    # -- validation ---------------------------------------------------------------------------

    def validate(self) -> None:
        for field in ("q", "datapath", "rows", "cols", "act_buffer_bits", "weight_buffer_bits",
                      "max_channels", "max_height", "max_width", "max_dense_inputs", "max_classes", "pp_channels",
                      "pp_bias_bits", "memory_pipeline", "lut_lanes"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UserError(f"{field} must be an integer, got {value!r}")
        if not 1 <= self.q <= 16:
            raise UserError(f"q must be 1..16, got {self.q!r}")
        if self.datapath < self.q or self.datapath % self.q:
            raise UserError(f"datapath must be a positive multiple of q={self.q}, got {self.datapath!r}")
        if self.datapath > 64:
            raise UserError(f"datapath must be at most 64 bits, got {self.datapath!r}")
        for field in ("fuse_pool", "debug_dump", "compact_control", "dsp_pairs"):
            if not isinstance(getattr(self, field), bool):
                raise UserError(f"{field} must be true or false, got {getattr(self, field)!r}")
        if self.weights not in WEIGHT_KINDS:
            raise UserError(f"weights must be one of {', '.join(map(repr, WEIGHT_KINDS))}, got {self.weights!r}")
        self._validate_modes()
        if self.weights == "pot" and not POT_Q[0] <= self.q <= POT_Q[1]:
            raise UserError(f"power-of-two weights need q {POT_Q[0]}..{POT_Q[1]} (a sign bit and an exponent field, "
                            f"weights up to 2^30), got q={self.q}")
        for field in ("rows", "cols", "max_channels", "max_height", "max_width", "max_dense_inputs", "max_classes",
                      "pp_channels"):
            if getattr(self, field) < 1:
                raise UserError(f"{field} must be >= 1, got {getattr(self, field)!r}")
        if not 2 <= self.pp_bias_bits <= 64:
            raise UserError(f"pp_bias_bits must be 2..64 (the model file stores int64 biases), got {self.pp_bias_bits!r}")
        for field, kinds in (("act_memory", MEMORY_KINDS), ("weight_memory", MEMORY_KINDS), ("layer_table", TABLE_KINDS)):
            if getattr(self, field) not in kinds:
                raise UserError(f"{field} must be one of {', '.join(map(repr, kinds))}, got {getattr(self, field)!r}")
        if not 0 <= self.lut_lanes <= self.datapath // self.q:
            raise UserError(f"lut_lanes must be 0..{self.datapath // self.q} (the lanes of a PE), got {self.lut_lanes!r}")
        if self.lut_lanes and (self.weights != "uniform" or self.mixed):
            raise UserError(f"lut_lanes applies to uniform weights at one Q; got lut_lanes={self.lut_lanes} with "
                            f"weights {self.weights!r}" + (f" and q_modes {list(self.q_modes)}" if self.mixed else ""))
        if self.memory_pipeline not in MEMORY_PIPELINES:
            raise UserError(f"memory_pipeline must be one of {', '.join(map(str, MEMORY_PIPELINES))} (register stages "
                            f"after a buffer read), got {self.memory_pipeline!r}")
        if self.memory_pipeline and "spram" in (self.act_memory, self.weight_memory):
            raise UserError(f"memory_pipeline={self.memory_pipeline} registers block-RAM reads; it needs act_memory and "
                            f"weight_memory 'bram', got {self.act_memory!r} and {self.weight_memory!r}")
        if self.act_buffer_bits < 2 * self.datapath:
            raise UserError(f"act_buffer_bits must hold at least two {self.datapath}-bit words, got {self.act_buffer_bits!r}")
        if self.weight_buffer_bits < self.datapath * self.cols:
            raise UserError(f"weight_buffer_bits must hold at least one {self.cols}x{self.datapath}-bit word, "
                            f"got {self.weight_buffer_bits!r}")
        if self.act_memory == "spram":
            bank_words = self.act_half_words // self.rows
            # (write_granularity: q, or the gcd of the per-layer modes; the mask covers 4-bit nibbles)
            if self.write_granularity % 4 or self.datapath > SPRAM_BITS or not 1 <= bank_words <= SPRAM_WORDS:
                raise UserError(f"act_memory 'spram' needs q a multiple of 4, every q_modes entry too (its write mask covers 4-bit nibbles), "
                                f"datapath <= {SPRAM_BITS} and 1..{SPRAM_WORDS} words per bank half; got q={self.q}, "
                                f"datapath={self.datapath}, {bank_words} words")
        if self.weight_memory == "spram" and self.weight_words > SPRAM_WORDS:
            raise UserError(f"weight_memory 'spram' holds at most {SPRAM_WORDS} words, got weight_buffer_bits="
                            f"{self.weight_buffer_bits} ({self.weight_words} words of {self.cols * self.datapath} bits)")

    def _validate_modes(self) -> None:
        modes = self.q_modes
        if not isinstance(modes, tuple) or any(isinstance(v, bool) or not isinstance(v, int) for v in modes):
            raise UserError(f"q_modes must be a list of integers 1..16, got {modes!r}")
        if not modes:
            return
        bad = [v for v in modes if not 1 <= v <= 16]
        if bad:
            raise UserError(f"q_modes entries must be 1..16, got {bad[0]!r}")
        if self.q not in modes:
            raise UserError(f"q_modes {list(modes)} must include q={self.q} (the first layer's mode)")
        odd = [v for v in modes if self.datapath % v]
        if odd:
            raise UserError(f"datapath must be a multiple of every q_modes entry, got datapath={self.datapath} "
                            f"and mode {odd[0]} (try datapath={default_datapath(self.q, modes)})")
        if self.weights != "uniform":
            raise UserError(f"q_modes {list(modes)}: per-layer modes run uniform weights only, got weights={self.weights!r}")

    # -- derived values -----------------------------------------------------------------------

    @property
    def modes(self) -> tuple[int, ...]:
        """The container widths the hardware runs at, ascending: `q_modes`, or (q,) when uniform."""
        return self.q_modes or (self.q,)

    @property
    def mixed(self) -> bool:
        """True when the hardware switches between several modes at run time."""
        return len(self.modes) > 1

    def lanes_at(self, q: int) -> int:
        """Lanes D/Q of one mode."""
        if q not in self.modes:
            raise UserError(f"Q={q} is not one of the config's modes {list(self.modes)}")
        return self.datapath // q

    @property
    def max_lanes(self) -> int:
        """Lanes of the narrowest mode (the lane_valid width)."""
        return self.datapath // self.modes[0]

    @property
    def code_bits(self) -> int:
        """Bits of a post-processed code: the widest mode."""
        return self.modes[-1]

    @property
    def write_granularity(self) -> int:
        """Bits per activation-buffer write enable: the gcd of the modes (Q when uniform), so every
        mode's lanes are whole enables."""
        return math.gcd(*self.modes)

    @property
    def write_lanes(self) -> int:
        """Write enables per activation word: D / write_granularity (S when uniform)."""
        return self.datapath // self.write_granularity

    @property
    def pool_fusion(self) -> bool:
        """Whether the hardware fuses max-pools into convs (`fuse_pool` on and R a power of two
        >= 2: a tile's R/2 horizontal pixel pairs, and the line-buffer position of a pair a
        shift and a mask of the map width, no divider)."""
        return self.fuse_pool and self.rows >= 2 and self.rows & (self.rows - 1) == 0

    @property
    def at_last_flags(self) -> bool:
        """The sequencer's and the input unit's counters keep "at its last value" as flip-flops
        written with the counter, instead of compares in front of their enables: the Fmax
        settings of both boards (compact_control, the UP5K; memory_pipeline, the ULX3S)."""
        return self.compact_control or self.memory_pipeline > 0

    @property
    def tile_meta_depth(self) -> int:
        """Entries of the sequencer's tile-metadata FIFO (the finished tiles between the feeder's
        take and the writer's): 4, or with `compact_control` at R = 1 (a tile drains as one row)
        TILE_META_DEPTH_R1, in flip-flops on the iCE40, which has no LUT RAM."""
        return TILE_META_DEPTH_R1 if self.compact_control and self.rows == 1 else 4

    @property
    def read_latency(self) -> int:
        """Cycles from a registered address at the activation or weight buffer to its read data."""
        return 1 + self.memory_pipeline

    @property
    def param_read_latency(self) -> int:
        """The same at the param buffer: with memory_pipeline 2 one more (a copy of the address
        registered per 32-bit chunk, gateware.top.ChunkedBuffer)."""
        return self.read_latency + (self.memory_pipeline == 2)

    @property
    def lanes(self) -> int:
        """S = D / Q subwords per operand word."""
        return self.datapath // self.q

    @property
    def parallelism(self) -> int:
        """p = R · C · S lane MACs per cycle."""
        return self.rows * self.cols * self.lanes

    @property
    def code_max(self) -> int:
        """The largest unsigned activation code, L(Q) = 2^Q − 1 (1 at Q = 1: a bit)."""
        return (1 << self.q) - 1

    @property
    def pot_max_exponent(self) -> int:
        """K = 2^(Q−1) − 2 of power-of-two weights: the largest weight integer is 2^K (0 when uniform)."""
        return (1 << (self.q - 1)) - 2 if self.weights == "pot" else 0

    @property
    def weight_max(self) -> int:
        """The largest |w_int| a weight lane holds: 2^(Q−1) uniform (1 at Q = 1), 2^K power-of-two."""
        if self.weights == "pot":
            return 1 << self.pot_max_exponent
        return 1 if self.q == 1 else 1 << (self.q - 1)

    @property
    def max_reduction(self) -> int:
        """The longest dot product any admitted layer has: a 3×3 conv over max_channels, or a dense layer."""
        return max(9 * self.max_channels, self.max_dense_inputs)

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width such that no admitted layer can overflow.

        The largest product magnitude is |w| · a with |w| ≤ `weight_max` (2^(Q−1) uniform, 2^K
        power-of-two) and a ≤ 2^Q − 1 (hidden layers) or a ≤ 255 (first-layer pixels); at Q = 1 it
        is 1 or 255. Over N terms the sum lies in [−N · w_max · a_max, N · w_pos · a_max], w_pos the
        largest positive weight: 2^(Q−1) − 1 uniform, but 1 at Q = 1 and 2^K power-of-two, where
        the positive end is as far out as the negative one and needs its own bit when it is a
        power of two (proven by `qjoule prove`: 4,096 products of +1 need 14 bits, not 13).
        With run-time modes (`q_modes`) the width is the largest of the modes' (a mode's
        operands are at most its container's: weights of q_w <= Q_c bits, codes below 2^Q_c).
        """
        if self.mixed:
            return max(self.replace(q=q, q_modes=()).acc_bits for q in self.modes)
        w_pos = self.weight_max if self.q == 1 or self.weights == "pot" else self.weight_max - 1
        a_hidden = 1 if self.q == 1 else self.code_max
        terms = ((self.max_reduction, a_hidden), (9 * self.max_channels, (1 << PIXEL_BITS) - 1))
        most_negative = max(n * self.weight_max * a for n, a in terms)
        most_positive = max(n * w_pos * a for n, a in terms)
        # 2^(bits-1) >= most_negative and 2^(bits-1) - 1 >= most_positive
        return max(2, (max(most_negative, most_positive + 1) - 1).bit_length() + 1)

    @property
    def pp_logit_bits(self) -> int:
        """Width of t = (acc · m + b) >> s, exact for every shift 0..63 (no wrap-around)."""
        return max(self.acc_bits + PP_MULT_BITS, self.pp_bias_bits) + 1

    @property
    def first_layer_passes(self) -> int:
        """ceil(8/Q) shifted-and-added passes for the 8-bit first layer (paper §III)."""
        return -(-PIXEL_BITS // self.q)

    @property
    def act_half_words(self) -> int:
        """Words of one activation-buffer half."""
        return self.act_buffer_bits // 2 // self.datapath

    @property
    def weight_words(self) -> int:
        """Words of the weight buffer; one word holds C operand words (one per column)."""
        return self.weight_buffer_bits // (self.datapath * self.cols)

    def derived(self) -> dict[str, int]:
        return {
            "lanes": self.lanes,
            "p": self.parallelism,
            "weight_max": self.weight_max,
            "acc_bits": self.acc_bits,
            "max_reduction": self.max_reduction,
            "first_layer_passes": self.first_layer_passes,
            "act_half_words": self.act_half_words,
            "weight_words": self.weight_words,
            "pp_mult_bits": PP_MULT_BITS,
            "pp_bias_bits": self.pp_bias_bits,
            "pp_logit_bits": self.pp_logit_bits,
            # (only when fused: the hardware and its layer entry differ, so the config_id must too;
            # a board built before pool fusion reports another id and the host refuses it)
            **({"pool_fusion": True} if self.pool_fusion else {}),
            # (only when mixed: a uniform config's JSON, and so its config_id, stay as they were)
            **({"lanes_per_mode": {str(q): self.datapath // q for q in self.modes},
                "write_granularity": self.write_granularity} if self.mixed else {}),
        }

    # -- copies and JSON ----------------------------------------------------------------------

    def replace(self, **changes: Any) -> "AccelConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UserError(f"unknown config field {sorted(unknown)[0]!r}; known: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in _OPTIONAL_FIELDS or v != _OPTIONAL_FIELDS[k]}
        if not self.q_modes:
            del fields["q_modes"]  # a uniform config's JSON (and config_id) as before the field existed
        else:
            fields["q_modes"] = list(self.q_modes)
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **fields, "derived": self.derived()}

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "AccelConfig":
        if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
            raise UserError(f"{source} is not a qjoule accelerator config (expected format {CONFIG_FORMAT!r})")
        if data.get("version") != CONFIG_VERSION:
            raise UserError(f"{source} has config version {data.get('version')!r}, expected {CONFIG_VERSION}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields - {"format", "version", "derived"}
        if unknown:
            raise UserError(f"{source} has unknown field {sorted(unknown)[0]!r}")
        return cls(**{k: v for k, v in data.items() if k in fields})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "AccelConfig":
        from .io import read_json
        return cls.from_dict(read_json(path, "config file"), source=f"config file {str(path)!r}")


#: Named variants, each a copy of the default with its own sizes.
_DEFAULT = AccelConfig()
VARIANTS: dict[str, AccelConfig] = {
    "default": _DEFAULT,
    # Small enough to simulate fast: digits-sized networks (8×8 inputs, ≤ 64 channels).
    "tiny": _DEFAULT.replace(name="tiny", rows=2, cols=2, act_buffer_bits=64 * 1024, weight_buffer_bits=64 * 1024,
                             max_channels=64, max_height=32, max_width=32, max_dense_inputs=1024, max_classes=16,
                             pp_channels=512),
    # ECP5-85F: ~3.7 Mb of block RAM; the paper's typical case M = 2 Mb (1 Mb each way).
    # The buffers fill most of the device's 208 block RAMs, spread over the die: their reads are
    # registered twice (next to each block RAM, then after the piece mux) so they do not bound Fmax.
    "ulx3s": _DEFAULT.replace(name="ulx3s", rows=8, cols=8, act_buffer_bits=1024 * 1024,
                              weight_buffer_bits=1024 * 1024, memory_pipeline=2),
    # iCE40 UP5K: 1 Mb SPRAM + 120 kb BRAM, the small-memory case where DRAM traffic decides. The
    # whole accelerator has to fit 5,280 logic cells: one PE (its sequencer, input unit and host
    # link are most of the logic), the activation buffer in two SPRAMs (one per half: 16k × 16
    # each), the weights in a third, the layer table as 32-bit words (4 EBRs instead of 24), a
    # 32-bit bias and 224 post-processing channels (256 param words of 98 bits: 7 EBRs); no
    # debug-dump engine and the compact sequencer control (a board run never dumps).
    "icebreaker": _DEFAULT.replace(name="icebreaker", rows=1, cols=1, act_buffer_bits=512 * 1024,
                                   weight_buffer_bits=256 * 1024, max_channels=256, max_height=32, max_width=32,
                                   pp_channels=224, pp_bias_bits=32, act_memory="spram", weight_memory="spram",
                                   layer_table="words", debug_dump=False, compact_control=True),
}


def variant(name: str, q: int | None = None, **changes: Any) -> AccelConfig:
    """A named variant, optionally at another Q (the datapath follows: see `default_datapath`)."""
    if name not in VARIANTS:
        raise UserError(f"unknown config variant {name!r}; known: {', '.join(VARIANTS)}")
    base = VARIANTS[name]
    if q is not None:
        if not isinstance(q, int) or not 1 <= q <= 16:
            raise UserError(f"q must be 1..16, got {q!r}")
        modes = changes.get("q_modes", ())
        if not isinstance(modes, (list, tuple)) or not all(isinstance(v, int) and 1 <= v <= 16 for v in modes):
            raise UserError(f"q_modes must be a list of integers 1..16, got {modes!r}")
        changes = {"q": q, "datapath": default_datapath(q, tuple(modes)), **changes}
    return base.replace(**changes)


#: FPGA board -> the variant sized for it (hw/boards.py has the boards themselves).
BOARD_VARIANTS = {"ulx3s-85f": "ulx3s", "icebreaker": "icebreaker"}


def check_board(name: str) -> str:
    """`name` if it is a known board, else a one-line UserError listing the known ones."""
    if name not in BOARD_VARIANTS:
        raise UserError(f"unknown board {name!r}; known: {', '.join(BOARD_VARIANTS)}")
    return name


#: Per-Q changes to a board's variant so that every Q fits the device. ulx3s-85f, Q = 1: the
#: activation buffer's 1-bit lane write enables put every bit lane of a bank in its own 16k×1
#: block RAM (DP16KD), 128 blocks for the 8 banks whatever their depth (248 of the 208 blocks in
#: all), so the weight buffer is halved to 512 kb (32 blocks instead of 64) and the param buffer
#: holds 3,840 channels (512 words: 20 blocks of 512×36 instead of 40), 189 blocks in all.
#: icebreaker, Q = 1 and 2: the SPRAM's 4-bit write mask cannot write 1- or 2-bit lanes alone, so
#: the activation buffer goes to block RAM (per-bit write mask), 32 kb in 8 EBRs. Q = 8, 16: the
#: trained digits models' biases need up to 35 bits at Q = 8 (<= 28 at Q <= 4), so the bias is
#: 40 bits at Q = 8 and 48 at Q = 16 (param words of 106 and 114 bits: 7 and 8 EBRs). Q = 16:
#: a dense layer reduces at most 2,304 inputs, as a 3x3 conv over the 256 channels does (the
#: accumulator 44 bits, not 45: the Fmax registers of session 10 took the last logic cells).
#: ulx3s-85f, Q with a datapath below 16 bits (3, 5, 6, 7, 9..15): the activation buffer holds
#: 4096 words per bank half, as at D = 16, i.e. 2·R·4096·D bits (1 Mb would make each bank a
#: little over 8k words deep, which takes twice the block RAMs: 245 placed at Q = 5, 216 at Q =
#: 6). At Q = 3 and 5 a lane (3, 5 bits) takes a 4k×4 or 2k×9 block of its own, so the weight
#: buffer is halved too (Q = 5: 229 placed with the full one).
_ULX3S_NARROW_D = {q: {"act_buffer_bits": 2 * VARIANTS["ulx3s"].rows * 4096 * default_datapath(q),
                        **({"weight_buffer_bits": 512 * 1024} if q in (3, 5) else {})}
                    for q in range(1, 17) if default_datapath(q) != 16}
#: ulx3s-85f, Q >= 7: every lane product in LUTs (`lut_lanes`), the DSP blocks for the
#: post-processing only. With the lane products in DSPs no full-size build routed: nextpnr's
#: router2 diverged around the DSP rows at Q = 8 with 144 blocks, with 80 (half the lanes in
#: LUTs) and at Q = 16 with 88; with LUT products Q = 8 routed in 44 iterations (docs/results.md,
#: session 10; Q = 16 in LUTs, ~85 % of the LUTs, is not routed yet). Q = 5, 6 (paired, 112 and
#: 80 blocks) are not measured at full size.
_ULX3S_LUT_LANES = {q: {"lut_lanes": default_datapath(q) // q} for q in range(7, 17)}
BOARD_Q_CHANGES: dict[str, dict[int, dict[str, Any]]] = {
    "ulx3s-85f": {**{q: {**_ULX3S_NARROW_D.get(q, {}), **_ULX3S_LUT_LANES.get(q, {})}
                     for q in sorted(set(_ULX3S_NARROW_D) | set(_ULX3S_LUT_LANES))},
                  1: {"weight_buffer_bits": 512 * 1024, "pp_channels": 3840}},
    "icebreaker": {**{q: {"act_memory": "bram", "act_buffer_bits": 32 * 1024} for q in (1, 2)},
                   8: {"pp_bias_bits": 40}, 16: {"pp_bias_bits": 48, "max_dense_inputs": 2304}},
}


def board_config(board: str, q: int | None = None, **changes: Any) -> AccelConfig:
    """The config `qjoule synth` builds for `board` at `q`: the board's variant with its per-Q
    changes (`BOARD_Q_CHANGES`), then `changes`."""
    check_board(board)
    name = BOARD_VARIANTS[board]
    per_q = BOARD_Q_CHANGES.get(board, {}).get(VARIANTS[name].q if q is None else q, {})
    return variant(name, q, **{**per_q, **changes})
