"""The processing element: an S-lane dot product of two D-bit words, accumulated.

One PE is one cell of the R×C output-stationary array. Each operand word holds S = D/Q lanes,
lane i = bits [i·Q, (i+1)·Q). Per lane (docs/contract.md):

- Q ≥ 2: signed Q-bit weight × unsigned Q-bit activation code (first-layer pixel chunks are
  unsigned Q-bit values too, so `pixel_mode` changes nothing at Q ≥ 2);
- Q = 1: bit 1 ↔ +1, bit 0 ↔ −1 for both operands, product = xnor ? +1 : −1; in `pixel_mode`
  the activation bit is a pixel bit {0, 1} and the product is bit ? w : 0.
- `cfg.weights == "pot"` (Q 2..6): the weight lane is a power-of-two code (sign, exponent) and the
  product is ±(a << shift), formed by a shift-and-accumulate lane (gateware/pot_lane.py) with no
  multiplier; a zero weight resets the lane's product flops to 0 (or holds them: `pot_hold_zero`).

Per-layer mixed precision (`cfg.q_modes`, docs/interface.md): the PE has one lane set per mode
(container width Q_c, S_c = D/Q_c lanes, the same Q-bit rules with Q = Q_c), all reading the same
operand words, and the run-time `mode` (an index into `cfg.modes`) picks the one that counts: the
others see `lane_valid` = 0, so their product flops stay 0. One accumulator serves every mode
(`cfg.acc_bits` is the widest mode's); `lane_valid` has the narrowest mode's S_c bits (a wider mode
uses the low ones). First-layer shifts are by `shift`·`cfg.q`: the first layer runs at mode `q`.

A lane whose `lane_valid` bit is 0 contributes 0 (channels past the layer's end, padding). The lane
sum is shifted left by `shift`·Q (first-layer pass j of ceil(8/Q); values of `shift` at or above
`cfg.first_layer_passes` are not shifted) and added to the accumulator when `en` is high; `clear`
together with `en` starts a new sum from this cycle's lane sum (`clear` without `en` does nothing).

Pipeline (for Fmax): inputs → [lane products] → [lane sum] → [shifted] → [accumulator], so
`latency` = 4: inputs held before clock edge k are reflected in `acc` after edge k + 3, i.e. a
testbench that sets the inputs and then awaits `latency` ticks reads the updated `acc`. With
`register_operands` the operand words are registered first (a stage 0), so they must come a cycle
ahead of the controls (MacArray with memory_pipeline gives the controls a second register).
"""

from __future__ import annotations

from amaranth.hdl import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import AccelConfig

from . import REPLICA
from .pot_lane import PotLane

__all__ = ["ICE40_DSPS", "LUT_PRODUCT_MAX_Q", "ProcessingElement", "ice40_dsp_products", "is_ice40", "tree_sum"]

#: Up to this Q the lane products are built from LUTs (shift-and-add); above it they are written as
#: multiplies, which synthesis maps to DSP blocks (ECP5 MULT18X18D). On iCE40 they are LUTs unless
#: they fit the device's DSPs next to the post-processing's (`ice40_dsp_products`).
LUT_PRODUCT_MAX_Q = 4
#: LUT products are built in groups of this many activation bits (one pipeline stage each).
LUT_GROUP_BITS = 4


#: DSP blocks (SB_MAC16, 16×16) of the iCE40 UP5K, the iCE40 with DSPs.
ICE40_DSPS = 8


def ice40_dsp_products(cfg: AccelConfig) -> bool:
    """Whether an iCE40 build takes the lane products of `cfg` (above LUT_PRODUCT_MAX_Q) in DSP
    blocks, one SB_MAC16 each: when they fit next to the post-processing's (the icebreaker's one
    PE at Q = 8 and 16: 2 + 3 and 1 + 4 of the 8). Else they are LUTs."""
    from .postproc import dsp_blocks

    return (cfg.weights == "uniform" and not cfg.mixed and cfg.q > LUT_PRODUCT_MAX_Q
            and cfg.rows * cfg.cols * (cfg.lanes - cfg.lut_lanes) + cfg.cols * dsp_blocks(cfg, 16) <= ICE40_DSPS)


def is_ice40(platform) -> bool:
    """An iCE40 target: the UP5K has only eight 16×16 DSPs, kept for post-processing."""
    return str(getattr(platform, "device", "")).startswith("iCE40")


def tree_sum(values):
    """Balanced adder tree (log2 depth instead of the linear chain `sum()` would build)."""
    values = list(values)
    if not values:
        return C(0, 1)
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


class ProcessingElement(wiring.Component):
    """One R×C cell. `acc_bits` overrides `cfg.acc_bits` (tests use it to show one bit fewer
    overflows); leave it unset in real designs."""

    latency = 4

    def __init__(self, cfg: AccelConfig, *, acc_bits: int | None = None, lut_products: bool | None = None,
                 pot_hold_zero: bool = False, register_operands: bool = False, pair_half: str | None = None):
        """`lut_products`: build Q >= 2 lane products from LUTs (True) or as multiplies for DSPs
        (False); None decides at elaboration (LUTs up to LUT_PRODUCT_MAX_Q and on iCE40).
        `pot_hold_zero`: power-of-two lanes hold their product flops on a zero weight instead of
        resetting them (PotLane's `hold_zero`; costs a mask, measured by bench/pot_area.py).
        `pair_half` ("lo" or "hi"): the lane products come from a `LanePair` shared with the
        next (lo) or previous (hi) column's PE, on the `packed` (and, lo, `codes`) ports; the
        operand ports are then unused."""
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if pair_half not in (None, "lo", "hi"):
            raise ValueError(f"pair_half must be None, 'lo' or 'hi', not {pair_half!r}")
        acc_bits = cfg.acc_bits if acc_bits is None else acc_bits
        if not isinstance(acc_bits, int) or acc_bits < 2:
            raise ValueError(f"acc_bits must be an integer >= 2, not {acc_bits!r}")
        self._cfg = cfg
        self._acc_bits = acc_bits
        self._lut_products = lut_products
        self._pot_hold_zero = pot_hold_zero
        self._register_operands = register_operands
        self._pair_half = pair_half
        pair = {}
        if pair_half is not None:
            pair["packed"] = In(data.ArrayLayout(signed(4 * cfg.q + 1), cfg.lanes))
            if pair_half == "lo":
                pair["codes"] = In(data.ArrayLayout(unsigned(cfg.q), cfg.lanes))
        super().__init__({
            "act": In(cfg.datapath),
            "weight": In(cfg.datapath),
            "lane_valid": In(cfg.max_lanes),
            "en": In(1),
            "clear": In(1),
            "shift": In(range(8)),
            "pixel_mode": In(1),
            # per-layer mixed precision only: index into cfg.modes of the lane set to run
            **({"mode": In(range(len(cfg.modes)))} if cfg.mixed else {}),
            **pair,
            "acc": Out(signed(acc_bits)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    def elaborate(self, platform):
        m = Module()
        q, lanes = self._cfg.q, self._cfg.lanes
        passes = self._cfg.first_layer_passes

        # Stage 1: lane products (masked) and the controls that travel with them. With
        # memory_pipeline (the large device) every PE keeps its own control registers: merged
        # across the array, one `en3` would enable all R·C accumulators.
        attrs = {REPLICA: 1} if self._cfg.memory_pipeline else {}
        # With memory_pipeline the data registers have no reset (`no_reset`): the accelerator's
        # reset reached every one of them across the die, through a LUT, and was the 8x8 ULX3S
        # build's critical path. Nothing reads them before a tile's `clear` (the held reset
        # flushes the en/clear pipeline, which keeps its reset).
        no_reset = {"reset_less": True} if self._cfg.memory_pipeline else {}
        en1, clear1, shift1 = Signal(attrs=attrs), Signal(attrs=attrs), Signal(range(8), attrs=attrs, **no_reset)
        m.d.sync += [en1.eq(self.en), clear1.eq(self.en & self.clear), shift1.eq(self.shift)]

        # Stage 0 (`register_operands`): on the 8x8 ULX3S array a shared operand register's bit
        # fed ~40 product LUTs spread over 8 PEs, the critical path; each PE's own copy keeps them
        # local. The copies stay apart in synthesis (`REPLICA`). (Per-PE copies made in MacArray
        # instead made Yosys 0.70's ABC9 step fail an assertion.)
        act, weight = self.act, self.weight
        if self._register_operands and self._pair_half is None:
            act = Signal.like(self.act, name="act_r", attrs={REPLICA: 1}, **no_reset)
            weight = Signal.like(self.weight, name="weight_r", attrs={REPLICA: 1}, **no_reset)
            m.d.sync += [act.eq(self.act), weight.eq(self.weight)]

        lut_products = self._lut_products
        if lut_products is None:
            lut_products = q <= LUT_PRODUCT_MAX_Q or (is_ice40(platform) and not ice40_dsp_products(self._cfg))

        if self._pair_half is not None:
            # Stage 1 is the LanePair's: its registered packed products, split here.
            from .lane_pair import lane_sum as pair_lane_sum

            codes = [self.codes[i] for i in range(lanes)] if self._pair_half == "lo" else []
            lane_sum = pair_lane_sum([self.packed[i] for i in range(lanes)], codes, q, self._pair_half)
        elif not self._cfg.mixed:
            lane_sum = self._lane_sum(m, q, act, weight, self.lane_valid, lut_products, "", no_reset,
                                      lut_lanes=self._cfg.lut_lanes)
        else:
            # Per-layer modes: one lane set per mode, all reading the same operand bits. The mode
            # that is not selected sees lane_valid = 0, so its product flops hold 0 (they do not
            # toggle), and the lane sum adds every mode's tree: only the selected one is non-zero.
            sums = []
            selected = Signal(len(self._cfg.modes))  # one-hot of `mode`
            with m.Switch(self.mode):
                for k in range(len(self._cfg.modes)):
                    with m.Case(k):
                        m.d.comb += selected[k].eq(1)
            for k, mq in enumerate(self._cfg.modes):
                valid = Signal(self._cfg.datapath // mq, name=f"m{mq}_lane_valid")
                m.d.comb += valid.eq(Mux(selected[k], self.lane_valid[:len(valid)], 0))
                mode_luts = self._lut_products
                if mode_luts is None:
                    mode_luts = mq <= LUT_PRODUCT_MAX_Q or is_ice40(platform)
                sums.append(self._lane_sum(m, mq, act, weight, valid, mode_luts, f"m{mq}_", no_reset))
            lane_sum = tree_sum(sums)

        # Stage 2: the lane sum (a balanced adder tree).
        en2, clear2, shift2 = Signal(attrs=attrs), Signal(attrs=attrs), Signal(range(8), attrs=attrs, **no_reset)
        m.d.sync += [en2.eq(en1), clear2.eq(clear1), shift2.eq(shift1)]
        lane_total = Signal(signed(len(lane_sum)), **no_reset)
        m.d.sync += lane_total.eq(lane_sum)

        # Stage 3: shifted for first-layer pass j by j·Q (a plain register at Q >= 8: one pass).
        en3, clear3 = Signal(attrs=attrs), Signal(attrs=attrs)
        m.d.sync += [en3.eq(en2), clear3.eq(clear2)]
        shifted = Signal(signed(len(lane_total) + (passes - 1) * q), **no_reset)
        with m.Switch(shift2):
            for j in range(1, passes):
                with m.Case(j):
                    m.d.sync += shifted.eq(lane_total << (j * q))
            with m.Default():
                m.d.sync += shifted.eq(lane_total)

        # Stage 4: accumulate (wrap-around arithmetic: the width is derived so no admitted layer
        # reaches it).
        acc = self.acc
        if no_reset:
            acc = Signal.like(self.acc, name="acc_r", **no_reset)
            m.d.comb += self.acc.eq(acc)
        with m.If(en3):
            m.d.sync += acc.eq(Mux(clear3, 0, acc) + shifted)

        return m

    def _lane_sum(self, m, q: int, act, weight, lane_valid, lut_products: bool, prefix: str, no_reset: dict,
                  lut_lanes: int = 0):
        """Stage 1 of one mode: the Q-bit lane products of act and weight (registered, masked by
        `lane_valid`); returns the expression of their sum, for stage 2. Lanes below `lut_lanes`
        build their products from LUTs whatever `lut_products` says."""
        lanes = self._cfg.datapath // q
        act_lanes = [act[i * q:(i + 1) * q] for i in range(lanes)]
        weight_lanes = [weight[i * q:(i + 1) * q] for i in range(lanes)]

        if self._cfg.weights == "pot":
            # Shift-and-accumulate lanes: each gives value + carry = ±(a << shift) (registered,
            # stage 1); the carries (the +1 of each negation) join the lane tree as one popcount.
            values, carries = [], []
            for i, (a, w) in enumerate(zip(act_lanes, weight_lanes)):
                lane = PotLane(q, hold_zero=self._pot_hold_zero)
                m.submodules[f"{prefix}pot_lane{i}"] = lane
                m.d.comb += [lane.act.eq(a), lane.weight.eq(w), lane.valid.eq(lane_valid[i])]
                values.append(lane.value)
                carries.append(lane.carry)
            lane_sum = tree_sum(values + [tree_sum(carries)])
        elif q == 1:
            # Each lane is −1, 0 or +1: keep two bits per lane, `counts` (the lane takes part)
            # and `plus` (it is +1), so the lane sum is 2·popcount(plus) − popcount(counts), the
            # paper's 2·popcount(xnor) − K with the padding lanes left out.
            counts = Signal(lanes, name=f"{prefix}counts", **no_reset)
            plus = Signal(lanes, name=f"{prefix}plus", **no_reset)
            for i, (a, w) in enumerate(zip(act_lanes, weight_lanes)):
                takes_part = lane_valid[i] & (~self.pixel_mode | a)
                is_plus = Mux(self.pixel_mode, w, ~(a ^ w))
                m.d.sync += [counts[i].eq(takes_part), plus[i].eq(takes_part & is_plus)]
            # (Amaranth 0.5 makes the difference of two unsigned values signed.)
            lane_sum = (tree_sum(list(plus)) << 1) - tree_sum(list(counts))
        else:
            # With LUT products, each lane's product is split by groups of LUT_GROUP_BITS
            # activation bits: w·a = Σ_g (w·a[g]) << g, each group a shift-and-add of at most 4
            # terms (Yosys sees adds, not a `$mul`, so no DSP is taken), registered here and
            # summed in the lane tree of stage 2, so no stage holds a whole wide multiply.
            products = []
            for i, (a, w) in enumerate(zip(act_lanes, weight_lanes)):
                lane_luts = lut_products or i < lut_lanes
                step = LUT_GROUP_BITS if lane_luts else q
                for lo in range(0, q, step):
                    hi = min(lo + step, q)
                    product = Signal(signed(q + (hi - lo) + 1), name=f"{prefix}product{i}_{lo}", **no_reset)
                    if lane_luts:
                        value = tree_sum(Mux(a[k], w.as_signed(), 0) << (k - lo) for k in range(lo, hi))
                    else:
                        value = w.as_signed() * a
                    m.d.sync += product.eq(Mux(lane_valid[i], value, 0))
                    products.append(product << lo)
            lane_sum = tree_sum(products)

        return lane_sum
