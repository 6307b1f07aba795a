"""Two lane products in one DSP multiply: the PEs of columns c and c + 1 share a row's activation.

PE (r, c) needs w_lo·a and PE (r, c + 1) needs w_hi·a for each lane, with the same activation
code a (a row's word is broadcast to its C PEs). One multiply forms both:

    P = (u + w_hi·2^2Q) · a = u·a + (w_hi·a)·2^2Q,   u = w_lo + 2^(Q−1).

u (the low weight with its sign bit flipped, 0..2^Q − 1) keeps the packed weight within 3Q bits
signed for every pair of weights (w_lo + w_hi·2^2Q would leave it at w_hi = −2^(Q−1), w_lo < 0),
and u·a < 2^2Q, so P's low 2Q bits are u·a exactly and P >> 2Q is w_hi·a exactly; the low PE
subtracts 2^(Q−1)·a (from the masked codes, `codes`) in its lane sum. One MULT18X18D (18 × 18
signed) takes the 3Q-bit packed weight up to Q = 6 (`DSP_PAIR_MAX_Q`), so at Q = 5 and 6 a pair
of PEs asks for one DSP per lane instead of two.

`LanePair` is stage 1 of both PEs (their lane products, registered and masked by `lane_valid`),
with the operand registers of stage 0 when `register_operands`; the PEs read its `packed` (and
`codes`) in their lane-sum stage (`ProcessingElement(pair_half="lo" | "hi")`), so the pair's
latency is the PE's.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig

from . import REPLICA
from .pe import tree_sum

__all__ = ["DSP_PAIR_MAX_Q", "DSP_PAIR_MIN_Q", "LanePair", "lane_sum", "pairs_lanes"]

#: The Q range of paired lane products: above the LUT products' (pe.LUT_PRODUCT_MAX_Q), and
#: while the packed weight (3Q bits signed) fits a DSP multiplier port (ECP5 MULT18X18D: 18).
DSP_PAIR_MIN_Q, DSP_PAIR_MAX_Q = 5, 6


def pairs_lanes(cfg: AccelConfig) -> bool:
    """Whether `cfg`'s lane products are formed two PEs at a time (`dsp_pairs`, uniform weights,
    a single Q in DSP_PAIR_MIN_Q..DSP_PAIR_MAX_Q, at least two columns, no `lut_lanes`). The caller
    adds the device condition: not on iCE40, whose lane products are LUTs."""
    return (cfg.dsp_pairs and cfg.weights == "uniform" and not cfg.mixed and not cfg.lut_lanes
            and DSP_PAIR_MIN_Q <= cfg.q <= DSP_PAIR_MAX_Q and cfg.cols >= 2)


def lane_sum(packed, codes, q: int, half: str):
    """The lane sum of one PE of a pair from the pair's lane words: Σ w_hi·a (half "hi": each
    packed word's top bits) or Σ w_lo·a = Σ u·a − 2^(Q−1)·Σ a (half "lo": the low 2Q bits, and
    the codes)."""
    if half == "hi":
        return tree_sum(p[2 * q:].as_signed() for p in packed)
    return tree_sum(p[:2 * q] for p in packed) - (tree_sum(codes) << (q - 1))


class LanePair(wiring.Component):
    """Stage 1 of PEs (r, c) and (r, c + 1): lane i's `packed` = (u_i + w_hi,i·2^2Q) · a_i and
    `codes` lane i = a_i, registered (0 where `lane_valid` is 0), one cycle after the operands (two
    with `register_operands`)."""

    def __init__(self, cfg: AccelConfig, *, register_operands: bool = False):
        if not DSP_PAIR_MIN_Q <= cfg.q <= DSP_PAIR_MAX_Q:
            raise ValueError(f"lane pairs need Q in {DSP_PAIR_MIN_Q}..{DSP_PAIR_MAX_Q}, not {cfg.q!r}")
        self._cfg = cfg
        self._register_operands = register_operands
        super().__init__({
            "act": In(cfg.datapath),
            "weight_lo": In(cfg.datapath),
            "weight_hi": In(cfg.datapath),
            "lane_valid": In(cfg.lanes),
            "packed": Out(data.ArrayLayout(signed(4 * cfg.q + 1), cfg.lanes)),
            "codes": Out(data.ArrayLayout(unsigned(cfg.q), cfg.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, q = self._cfg, self._cfg.q
        # As in the PE: data registers without reset on the large device (nothing reads them
        # before a tile's clear), and each pair's own operand copies there.
        no_reset = {"reset_less": True} if cfg.memory_pipeline else {}
        act = self.act
        if self._register_operands:
            act = Signal.like(self.act, name="act_r", attrs={REPLICA: 1}, **no_reset)
            m.d.sync += act.eq(self.act)
        sign = Const(1 << (q - 1), q)
        for i in range(cfg.lanes):
            lane = slice(i * q, (i + 1) * q)
            packed_weight = Cat(self.weight_lo[lane] ^ sign, Const(0, q), self.weight_hi[lane]).as_signed()
            if self._register_operands:
                # The packed weight is registered whole (not the two weights, packed after their
                # registers): with the latter, Yosys 0.70's ABC9 step failed an assertion on the
                # 8x8 ULX3S build at Q = 6 (`GetSize(conn.first) == GetSize(conn.second)`).
                weight_r = Signal(signed(3 * q), name=f"weight_r{i}", attrs={REPLICA: 1}, **no_reset)
                m.d.sync += weight_r.eq(packed_weight)
                packed_weight = weight_r
            product = Signal(signed(4 * q + 1), name=f"packed{i}", **no_reset)
            code = Signal(q, name=f"code{i}", **no_reset)
            m.d.sync += [product.eq(Mux(self.lane_valid[i], packed_weight * act[lane], 0)),
                         code.eq(Mux(self.lane_valid[i], act[lane], 0))]
            m.d.comb += [self.packed[i].eq(product), self.codes[i].eq(code)]
        return m
