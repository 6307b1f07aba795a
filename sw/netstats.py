"""Network statistics: the paper's topology family and the counts the energy model needs.

`describe_topology` writes out one member of the topology family (docs/contract.md, "The
topology family") as a list of layer dicts in the same form as the `.qjm` header's layers, and
`network_stats` counts, per layer and in total, what Moons et al. (2017) feed their energy model:

- `macs` N_c: multiply-accumulates, conv `H·W·C_out·9·C_in` (padding counted, as the paper
  does), dense `in·out`, max-pool 0; `valid_macs` leaves out the taps that fall on the zero
  padding (the hardware masks those lanes): `C_out·C_in·v(H)·v(W)` with `v(n) = 3n − 2`
  (`v(1) = 1`);
- `weights_and_biases` N_s: weights plus one bias per output channel (conv and dense);
- `activations` A_s: the output values of every conv and dense layer, i.e. the values that get
  bias, batch norm and the activation (the paper's `3·A_s` term) and are written to and read from
  the main buffer. Max-pool outputs are not counted again: pooling acts on the stored codes of the
  layer before it. The input image is NOT an activation: the paper charges it to DRAM as
  `s_x²·c·f` words;
- the largest feature map: the most values any layer reads or writes on chip (in or out), the
  input image excluded (it streams from DRAM), in values and in bits at Q;
- `model_bits`: weights at Q bits plus biases at `bias_bits` (default Q, the paper's `N_s·Q`;
  the hardware's folded post-processing parameters are wider and can be counted by passing
  `bias_bits`);
- the first-layer factor f = 8/Q of the paper (8-bit pixels through a Q-bit datapath; used for
  the DRAM words of the image) and the hardware's `ceil(8/Q)` passes (at least 1; used for the
  first layer's MAC count in `macs_hw`).

`q=None` is the float baseline, counted at 32 bits. `q` may also be a list with one Q per
conv/dense layer (per-layer mixed precision, qjoule.sw.mixed): each layer is then counted at its
own Q (a max-pool at the Q of the codes it pools, a layer's input at the previous layer's Q), and
the totals' `q` is that list, `bits` the widest Q. Layer dicts from an `IntModel` header work as
they are (extra keys are ignored), so an exported model and a described one are counted by the
same code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

from qjoule.errors import UserError

#: Bits per value of the unquantized (float) baseline.
FLOAT_BITS = 32
#: Pixels of the first layer are 8-bit unsigned (docs/contract.md, "First layer").
PIXEL_BITS = 8
BLOCK_NAMES = ("A", "B", "C")
KINDS = ("conv3x3", "maxpool2x2", "dense")


# -- the topology family -----------------------------------------------------------------------

def describe_topology(input_shape: tuple[int, int, int], classes: int, blocks: int,
                      widths: int | tuple[int, int, int]) -> list[dict]:
    """The layers of the network with `blocks` conv3x3 per block A, B, C and block `widths`.

    Each block is `blocks` × conv3x3 (padding 1, same H and W) and a 2×2 max-pool (floor); a dense
    layer gives `classes` logits. Returns dicts {"name", "kind", "in_shape", "out_shape"} named and
    shaped as in the `.qjm` header (dense `in_shape` is the flattened `[C·H·W]`).
    """
    shape = _check_input_shape(input_shape)
    if not _is_int(classes) or classes < 2:
        raise UserError(f"classes must be an integer >= 2, got {classes!r}")
    if not _is_int(blocks) or blocks < 1:
        raise UserError(f"blocks must be an integer >= 1, got {blocks!r}")
    widths = _check_widths(widths)
    c, h, w = shape
    if h >> len(BLOCK_NAMES) < 1 or w >> len(BLOCK_NAMES) < 1:
        raise UserError(f"input shape {tuple(shape)!r} is too small for {len(BLOCK_NAMES)} 2x2 max-pools: "
                        f"height and width must be at least {1 << len(BLOCK_NAMES)}")
    layers: list[dict] = []
    for block, width in zip(BLOCK_NAMES, widths):
        for i in range(1, blocks + 1):
            layers.append({"name": f"{block}{i}", "kind": "conv3x3",
                           "in_shape": [c, h, w], "out_shape": [width, h, w]})
            c = width
        layers.append({"name": f"{block}.pool", "kind": "maxpool2x2",
                       "in_shape": [c, h, w], "out_shape": [c, h // 2, w // 2]})
        h, w = h // 2, w // 2
    layers.append({"name": "fc", "kind": "dense", "in_shape": [c * h * w], "out_shape": [classes]})
    return layers


# -- statistics ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerStats:
    """Counts for one layer. Bits are at the network's Q (8 for the first layer's input)."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int                # N_c of this layer
    valid_macs: int          # MACs whose input is not zero padding
    weights: int
    biases: int
    weights_and_biases: int  # N_s of this layer
    activations: int         # A_s of this layer (conv/dense outputs; 0 for max-pool)
    in_values: int
    out_values: int
    in_bits: int             # in_values at the input's width (8 for the first layer)
    out_bits: int
    model_bits: int          # weights·Q + biases·bias_bits

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["in_shape"], d["out_shape"] = list(self.in_shape), list(self.out_shape)
        return d


@dataclasses.dataclass(frozen=True)
class TotalStats:
    """Whole-network counts, the inputs of the energy model."""

    q: int | None | tuple        # None: float baseline; a tuple: one Q per conv/dense layer
    bits: int                    # bits per weight/activation (32 for float)
    bias_bits: int
    input_shape: tuple[int, ...]  # (c, s_x, s_x') of the image
    input_values: int            # c·s_x² pixels
    macs: int                    # N_c
    valid_macs: int              # N_c without the taps on zero padding
    first_layer_macs: int
    first_layer_factor: float    # f = 8/Q (paper)
    first_layer_passes: int      # ceil(8/Q), at least 1 (hardware)
    macs_hw: int                 # N_c with the first layer run ceil(8/Q) times
    weights: int
    biases: int
    weights_and_biases: int      # N_s
    activations: int             # A_s
    max_feature_map: int         # values of the largest on-chip feature map (in or out of a layer)
    max_feature_map_bits: int
    model_bits: int

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


@dataclasses.dataclass(frozen=True)
class NetStats:
    layers: list[LayerStats]
    total: TotalStats

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers], "total": self.total.to_dict()}


def value_bits(q: int | None) -> int:
    """Bits per weight or activation at Q (`None` is the float baseline)."""
    if q is None:
        return FLOAT_BITS
    if not _is_int(q) or not 1 <= q <= FLOAT_BITS:
        raise UserError(f"q must be an integer 1..{FLOAT_BITS} or None (float), got {q!r}")
    return q


def first_layer_factor(q: int | None) -> float:
    """The paper's f = 8/Q: Q-bit words per 8-bit pixel."""
    return PIXEL_BITS / value_bits(q)


def first_layer_passes(q: int | None) -> int:
    """Passes of the hardware's Q-bit datapath over 8-bit pixels: ceil(8/Q), at least 1."""
    return max(1, -(-PIXEL_BITS // value_bits(q)))


def network_stats(layers: Iterable[dict], q: int | None | Sequence[int], bias_bits: int | None = None) -> NetStats:
    """Per-layer and total counts of a network given as layer dicts (described or from a header)."""
    layers = list(layers)
    if not layers:
        raise UserError("network has no layers")
    if isinstance(q, (list, tuple)):
        from .mixed import check_q_per_layer
        qs = check_q_per_layer(q, sum(layer.get("kind") != "maxpool2x2" for layer in layers if isinstance(layer, dict)))
        layer_bits, it, current = [], iter(qs), qs[0]
        for layer in layers:
            if layer.get("kind") != "maxpool2x2":
                current = next(it)
            layer_bits.append(value_bits(current))
        q = tuple(qs)
        bits = max(layer_bits)
    else:
        bits = value_bits(q)
        layer_bits = [bits] * len(layers)
    if bias_bits is not None and (not _is_int(bias_bits) or bias_bits < 1):
        raise UserError(f"bias_bits must be a positive integer, got {bias_bits!r}")
    out: list[LayerStats] = []
    previous_out: tuple[int, ...] | None = None
    for index, layer in enumerate(layers):
        name, kind, in_shape, out_shape = _check_layer(layer, index)
        if previous_out is not None and math.prod(in_shape) != math.prod(previous_out):
            raise UserError(f"layer {name!r} in_shape {list(in_shape)!r} does not chain with the previous "
                            f"layer's out_shape {list(previous_out)!r}")
        previous_out = out_shape
        if kind == "conv3x3":
            c_in, h, w = in_shape
            c_out = out_shape[0]
            macs, weights, biases = h * w * c_out * 9 * c_in, c_out * c_in * 9, c_out
            valid = c_out * c_in * _valid_taps(h) * _valid_taps(w)
        elif kind == "dense":
            macs, weights, biases = in_shape[0] * out_shape[0], in_shape[0] * out_shape[0], out_shape[0]
            valid = macs
        else:
            macs = weights = biases = valid = 0
        in_values, out_values = math.prod(in_shape), math.prod(out_shape)
        lbits = layer_bits[index]
        in_width = PIXEL_BITS if index == 0 else layer_bits[index - 1]
        out.append(LayerStats(
            name=name, kind=kind, in_shape=in_shape, out_shape=out_shape, macs=macs, valid_macs=valid,
            weights=weights, biases=biases, weights_and_biases=weights + biases,
            activations=0 if kind == "maxpool2x2" else out_values,
            in_values=in_values, out_values=out_values,
            in_bits=in_values * in_width, out_bits=out_values * lbits,
            model_bits=weights * lbits + biases * (lbits if bias_bits is None else bias_bits)))
    first = out[0]
    first_q = None if q is None else layer_bits[0]
    passes = first_layer_passes(first_q)
    # The image is not an on-chip feature map (it streams from DRAM): the first layer counts
    # only its output.
    fmap = max(max(s.out_values for s in out), max((s.in_values for s in out[1:]), default=0))
    fmap_bits = max(max(s.out_bits for s in out), max((s.in_bits for s in out[1:]), default=0))
    macs = sum(s.macs for s in out)
    total = TotalStats(
        q=q, bits=bits, bias_bits=bits if bias_bits is None else bias_bits, input_shape=first.in_shape,
        input_values=first.in_values, macs=macs, valid_macs=sum(s.valid_macs for s in out),
        first_layer_macs=first.macs,
        first_layer_factor=first_layer_factor(first_q), first_layer_passes=passes,
        macs_hw=macs + (passes - 1) * first.macs,
        weights=sum(s.weights for s in out), biases=sum(s.biases for s in out),
        weights_and_biases=sum(s.weights_and_biases for s in out),
        activations=sum(s.activations for s in out),
        max_feature_map=fmap, max_feature_map_bits=fmap_bits,
        model_bits=sum(s.model_bits for s in out))
    return NetStats(layers=out, total=total)


def topology_stats(input_shape: tuple[int, int, int], classes: int, blocks: int,
                   widths: int | tuple[int, int, int], q: int | None) -> NetStats:
    """`network_stats(describe_topology(...), q)` in one call."""
    return network_stats(describe_topology(input_shape, classes, blocks, widths), q)


def _valid_taps(n: int) -> int:
    """Σ over the n output positions of one axis of the 3 kernel taps inside [0, n): 3n − 2."""
    return 3 * n - 2 if n >= 2 else 1


# -- checks -------------------------------------------------------------------------------------

def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(_is_int(v) and v >= 1 for v in shape):
        raise UserError(f"input shape must be three positive integers (channels, height, width), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def _check_widths(widths: Any) -> tuple[int, int, int]:
    if _is_int(widths):
        widths = (widths,) * len(BLOCK_NAMES)
    try:
        widths = tuple(widths)
    except TypeError:
        widths = ()
    if len(widths) != len(BLOCK_NAMES) or not all(_is_int(v) and v >= 1 for v in widths):
        raise UserError(f"widths must be a positive integer or three positive integers (A, B, C), got {widths!r}")
    return widths  # type: ignore[return-value]


def _check_layer(layer: Any, index: int) -> tuple[str, str, tuple[int, ...], tuple[int, ...]]:
    if not isinstance(layer, dict):
        raise UserError(f"layer {index} must be a dict, got {type(layer).__name__}")
    for key in ("name", "kind", "in_shape", "out_shape"):
        if key not in layer:
            raise UserError(f"layer {index} ({layer.get('name', '?')!r}) has no {key!r}")
    name, kind = layer["name"], layer["kind"]
    if kind not in KINDS:
        raise UserError(f"layer {name!r} has kind {kind!r}, expected one of {', '.join(KINDS)}")
    shapes = []
    for key in ("in_shape", "out_shape"):
        value = layer[key]
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= 1 for v in value):
            raise UserError(f"layer {name!r} {key} must be a list of positive integers, got {value!r}")
        shapes.append(tuple(value))
    in_shape, out_shape = shapes
    if kind == "conv3x3":
        if len(in_shape) != 3 or len(out_shape) != 3 or in_shape[1:] != out_shape[1:]:
            raise UserError(f"conv3x3 layer {name!r} needs [C, H, W] shapes with equal H, W, "
                            f"got {list(in_shape)!r} -> {list(out_shape)!r}")
    elif kind == "maxpool2x2":
        expected = (in_shape[0], in_shape[1] // 2, in_shape[2] // 2) if len(in_shape) == 3 else None
        if out_shape != expected:
            raise UserError(f"maxpool2x2 layer {name!r} maps {list(in_shape)!r} to {list(out_shape)!r}, "
                            f"expected {list(expected) if expected else '[C, H//2, W//2]'}")
    elif len(in_shape) != 1 or len(out_shape) != 1:
        raise UserError(f"dense layer {name!r} needs 1-D shapes, got {list(in_shape)!r} -> {list(out_shape)!r}")
    return name, kind, in_shape, out_shape
