"""The shift-and-accumulate lane: one power-of-two weight times one unsigned activation, no multiplier.

After Przewlocka-Rus & Kryjak (docs/contract.md "Power-of-two weights"). At bit-width Q = B a
weight lane holds the hardware code of `qjoule.sw.pot.pot_codes`:

    bit Q−1      sign (1 = negative)
    bits [0, Q−1) e: 0 = the zero weight, e = k + 1 for ±2^−k, k ∈ [0, K], K = 2^(Q−1) − 2

The integer weight is ±2^(K−k), so the product with an activation code `a` (or a first-layer
pixel chunk: also an unsigned Q-bit value) is ±(a << (K − k)). The shift amount needs no adder:
K − k = K + 1 − e = (2^(Q−1) − 1) − e = ~e, the exponent field inverted.

The negation needs no adder either: the lane emits `value` = a << ~e for a positive weight and
its one's complement ~(a << ~e) = −(a << ~e) − 1 for a negative one, plus a `carry` bit of 1; the
PE adds the carries of all lanes as one small popcount in its lane-sum tree, so value + carry is
the product (two's complement negation split in two).

Zero weights (e = 0) and masked lanes give 0. Two ways, chosen by `hold_zero`:
- False (default): the product register is reset to 0 through the flip-flops' synchronous reset
  (free on ECP5 and iCE40), so it is the lane's value with no logic after it; a zero weight
  following a zero weight (pruned runs) toggles nothing.
- True: clock gating proper: the register loads only when the lane takes part, so a zero weight
  leaves the product flops unchanged whatever came before, and a registered `part` bit masks the
  held value to 0. The mask costs one LUT per value bit after the register (bench/pot_area.py
  measures it), which is why it is not the default.

Latency 1: the code and activation applied before clock edge k show in `value`/`carry` after it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PotLane", "pot_lane_width", "pot_product"]


def _max_exponent(q: int) -> int:
    return (1 << (q - 1)) - 2


def pot_lane_width(q: int) -> int:
    """Signed width of a lane's value: |a << K| < 2^(Q+K), plus the sign."""
    return q + _max_exponent(q) + 1


def pot_product(act: int, code: int, q: int) -> int:
    """Python reference of one lane: the integer product of activation `act` and weight code `code`
    (sign at bit Q−1, exponent field e below), from the contract's definitions alone."""
    if not 2 <= q <= 6:
        raise ValueError(f"power-of-two lanes need q 2..6, not {q!r}")
    if not 0 <= act < 1 << q or not 0 <= code < 1 << q:
        raise ValueError(f"act {act!r} and code {code!r} must be unsigned {q}-bit values")
    sign, e = code >> (q - 1), code & ((1 << (q - 1)) - 1)
    if e == 0:
        return 0
    weight = 1 << (_max_exponent(q) - (e - 1))   # 2^(K−k), k = e − 1
    return -act * weight if sign else act * weight


class PotLane(wiring.Component):
    """One shift-and-accumulate lane (see the module docstring). `act` and `weight` are Q-bit
    lane fields; `valid` = 0 makes the lane contribute 0 (padding, channels past the end)."""

    latency = 1

    def __init__(self, q: int, *, hold_zero: bool = False):
        if isinstance(q, bool) or not isinstance(q, int) or not 2 <= q <= 6:
            raise ValueError(f"power-of-two lanes need q 2..6 (sign + exponent, weights up to 2^30), not {q!r}")
        self._q = q
        self._hold_zero = bool(hold_zero)
        super().__init__({
            "act": In(q),
            "weight": In(q),
            "valid": In(1),
            "value": Out(signed(pot_lane_width(q))),
            "carry": Out(1),
        })
        # The lane's state, outside the signature so tests and activity capture can watch the gating.
        self.held = Signal(signed(pot_lane_width(q)), name="held")   # the registered term
        self.held_negative = Signal(name="held_negative")
        self.part = Signal(name="part")                                # the held term counts (hold_zero)

    @property
    def q(self) -> int:
        return self._q

    def elaborate(self, platform):
        m = Module()
        q = self._q
        width = pot_lane_width(q)
        e = self.weight[:q - 1]
        sign = self.weight[q - 1]

        # a << ~e: the dynamic shift is Q + 2^(Q−1) − 1 bits wide; only e ≥ 1 (shift ≤ K) is ever
        # kept, so the top bit (shift K + 1, from e = 0) is dropped.
        magnitude = Signal(q + _max_exponent(q), name="magnitude")
        m.d.comb += magnitude.eq((self.act << ~e)[:len(magnitude)])
        positive = Signal(signed(width), name="positive")  # zero-extended: one bit above the magnitude
        m.d.comb += positive.eq(magnitude)
        term = Signal(signed(width), name="term")
        m.d.comb += term.eq(Mux(sign, ~positive, positive))

        takes_part = self.valid & e.any()
        if self._hold_zero:
            # Clock-enabled: a zero weight leaves the product flops as they are; `part` masks them.
            m.d.sync += self.part.eq(takes_part)
            with m.If(takes_part):
                m.d.sync += [self.held.eq(term), self.held_negative.eq(sign)]
            m.d.comb += [self.value.eq(Mux(self.part, self.held, 0)), self.carry.eq(self.part & self.held_negative)]
        else:
            # Reset to 0 (the flops' synchronous reset input, no extra logic): the register is the value.
            m.d.sync += [self.held.eq(Mux(takes_part, term, 0)), self.held_negative.eq(takes_part & sign)]
            m.d.comb += [self.value.eq(self.held), self.carry.eq(self.held_negative)]
        return m
