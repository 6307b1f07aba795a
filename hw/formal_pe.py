"""Formal harnesses for the processing element: the accumulator is the exact lane-product sum.

Two properties per Q, both proven by k-induction (every number of accumulations):

- **datapath** (`PEHarness`): the PE is driven from free inputs (every port, every cycle) next to
  a reference written from docs/contract.md, not from pe.py: the inputs are delayed by the PE's
  pipeline depth, each lane's product is formed directly (XNOR at Q = 1, ±1 weight × pixel bit in
  pixel mode, signed weight × unsigned code at Q >= 2, shifted by j·Q in first-layer pass j,
  masked lanes 0) and accumulated with the same en/clear rule. `acc` equals the reference modulo
  2^acc_bits in every cycle.
- **width** (`AccRangeHarness`): no sum an admitted layer can produce leaves acc_bits. Each lane
  adds a free product within the contract's range for its pass (|w| <= 2^(Q−1), code <= 2^Q − 1,
  pixel chunk <= what is left of 8 bits); an auxiliary counter `units` adds each valid lane's
  largest activation (the code maximum, or the shifted chunk maximum, so a whole pixel counts
  255) and the harness assumes `units <= activation_bound(cfg)`, the largest such sum of any
  admitted layer. The invariant −w_neg·units <= sum <= w_pos·units is inductive, so the proof
  covers every accumulation count. Together: acc is the exact sum and never overflows.

Split in two because SAT cannot relate the multipliers to the magnitude bounds fast (one
harness with both did not finish in 4 minutes at Q = 8 for 6 cycles); the split needs only
linear reasoning in the width proof (the counters are kept pre-multiplied by the weight
extremes, so there is no multiplier in it) and structural equivalence in the datapath proof.

At Q <= 4 the PE builds products from LUTs (shift-and-add); the reference then writes the
product as its partial-product sum Σ_k a_k·w·2^k (the definition of binary multiplication), since
SAT took minutes to equate a `*` with a differently shaped adder tree once four lanes are summed.
At Q >= 5 both are `w * a`.

The one-bit-narrower check (`PEHarness(..., acc_bits=cfg.acc_bits - 1, exact=True)`) compares
`acc` with a reference that cannot wrap: bounded, on a config with small layer bounds so the
overflowing sum is reached in a few cycles, it fails with a counterexample trace.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.gateware.pe import LUT_PRODUCT_MAX_Q, ProcessingElement

from .formal import Check

__all__ = ["AccRangeHarness", "PEHarness", "activation_bound", "pe_checks", "required_acc_bits", "small_lane_config"]

#: k for the induction: the PE's 4-stage pipeline plus one.
PE_DEPTH = 5
#: k for the width proof: its invariant is 1-inductive.
RANGE_DEPTH = 2


def weight_magnitudes(cfg: AccelConfig) -> tuple[int, int]:
    """(largest |w| of a negative weight, largest positive w): ±1 at Q = 1, −2^(Q−1)..2^(Q−1)−1
    uniform, ±2^K power-of-two (K = 2^(Q−1) − 2, docs/contract.md)."""
    q = cfg.q
    if getattr(cfg, "weights", "uniform") == "pot":
        k_max = (1 << (q - 1)) - 2
        return 1 << k_max, 1 << k_max
    return (1, 1) if q == 1 else (1 << (q - 1), (1 << (q - 1)) - 1)


def activation_bound(cfg: AccelConfig) -> int:
    """Largest Σ|activation| over one dot product of an admitted layer (docs/contract.md)."""
    hidden_code = 1 if cfg.q == 1 else (1 << cfg.q) - 1
    hidden = max(9 * cfg.max_channels, cfg.max_dense_inputs) * hidden_code
    first = 9 * cfg.max_channels * 255
    return max(hidden, first)


def required_acc_bits(cfg: AccelConfig) -> int:
    """The narrowest signed width that holds every admitted sum, from the bounds alone."""
    w_neg, w_pos = weight_magnitudes(cfg)
    low, high = -w_neg * activation_bound(cfg), w_pos * activation_bound(cfg)
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def small_lane_config(base: AccelConfig, q: int, lanes: int = 4) -> AccelConfig:
    """`base` at Q = q with `lanes` lanes (D = lanes·Q, capped at 64 bits) and base's layer bounds."""
    datapath = min(lanes * q, 64 // q * q)
    # (the PE's bounds are what matter: buffers in block RAM, whatever Q an SPRAM mask would take)
    changes = {"weights": "uniform", "act_memory": "bram", "weight_memory": "bram"}
    return base.replace(q=q, datapath=datapath, name=f"{base.name}-q{q}-{datapath // q}lanes", **changes)


class PEHarness(wiring.Component):
    """Free PE inputs; asserts acc == the reference sum (mod 2^acc_bits, or `exact`).

    `acc_bits` narrows the PE under test. `exact` compares with a reference that cannot wrap
    (for bounded runs: with it, a too narrow accumulator fails); it assumes `units` stays within
    `activation_bound(cfg)` as the width proof does.
    """

    def __init__(self, cfg: AccelConfig, *, acc_bits: int | None = None, exact: bool = False):
        self._cfg = cfg
        self._acc_bits = cfg.acc_bits if acc_bits is None else acc_bits
        self._exact = exact
        super().__init__({
            "act": In(cfg.datapath), "weight": In(cfg.datapath), "lane_valid": In(cfg.lanes),
            "en": In(1), "clear": In(1), "shift": In(range(8)), "pixel_mode": In(1),
        })

    def build_pe(self):
        """The PE under test (subclasses: other options, weakened twins)."""
        return ProcessingElement(self._cfg, acc_bits=self._acc_bits)

    def pe_fragment(self, m: Module, pe, platform):
        """What the harness adds as the PE (subclasses elaborate it here to assert lemmas on its
        parts)."""
        return pe

    def lane_product(self, a, w, pixel_mode):
        """(product, |activation| counted for the width bound) of one lane, from docs/contract.md."""
        q = self._cfg.q
        if q == 1:
            w_pm1 = Mux(w, 1, -1)                       # bit 1 <-> +1, bit 0 <-> -1
            return Mux(pixel_mode, Mux(a, w_pm1, 0), Mux(a, 1, -1) * w_pm1), Mux(pixel_mode, a, 1)
        if q <= LUT_PRODUCT_MAX_Q:
            return sum(Mux(a[k], w.as_signed() << k, 0) for k in range(q)), a
        return w.as_signed() * a, a

    def reference_step(self, d: dict):
        """(what one enabled cycle adds to the reference sum, the activations it counts) from the
        inputs `d` as the accumulator stage sees them: the masked lane products, each shifted for
        its first-layer pass."""
        q, passes = self._cfg.q, self._cfg.first_layer_passes
        products, magnitudes = [], []
        for i in range(self._cfg.lanes):
            a = d["act"][i * q:(i + 1) * q]
            w = d["weight"][i * q:(i + 1) * q]
            product, magnitude = self.lane_product(a, w, d["pixel_mode"])
            products.append(Mux(d["lane_valid"][i], _pass_shifted(product, d["shift"], q, passes), 0))
            magnitudes.append(Mux(d["lane_valid"][i], _pass_shifted(magnitude, d["shift"], q, passes), 0))
        return sum(products), sum(magnitudes)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        q, lanes = cfg.q, cfg.lanes
        pe = self.build_pe()
        m.submodules.pe = self.pe_fragment(m, pe, platform)
        inputs = ("act", "weight", "lane_valid", "en", "clear", "shift", "pixel_mode")
        for name in inputs:
            m.d.comb += getattr(pe, name).eq(getattr(self, name))
        m.d.comb += Assume(~ResetSignal())

        # The inputs as the accumulator stage sees them: ProcessingElement.latency − 1 registers.
        d = {name: getattr(self, name) for name in inputs}
        for stage in range(ProcessingElement.latency - 1):
            regs = {name: Signal.like(value, name=f"{name}_d{stage + 1}") for name, value in d.items()}
            m.d.sync += [regs[name].eq(value) for name, value in d.items()]
            d = regs

        step, step_units = self.reference_step(d)
        if not self._exact:
            ref = Signal(signed(self._acc_bits))     # wraps like the accumulator
            with m.If(d["en"]):
                m.d.sync += ref.eq(Mux(d["clear"], 0, ref) + step)
            m.d.comb += Assert(pe.acc == ref)
            return m

        bound = activation_bound(cfg)
        units = Signal(range(bound + lanes * (1 << (8 + q)) + 1))
        ref = Signal(signed(cfg.acc_bits + 8))       # wider than any admitted sum: cannot wrap
        with m.If(d["en"]):
            m.d.sync += [ref.eq(Mux(d["clear"], 0, ref) + step),
                         units.eq(Mux(d["clear"], 0, units) + step_units)]
        m.d.comb += [Assume(units <= bound), Assert(pe.acc == ref)]
        return m


class AccRangeHarness(wiring.Component):
    """Free lane products within the contract's ranges, accumulated with the PE's en/clear rule;
    asserts the exact sum fits `acc_bits` while the activation count stays admitted."""

    def __init__(self, cfg: AccelConfig, *, acc_bits: int | None = None):
        self._cfg = cfg
        self._acc_bits = cfg.acc_bits if acc_bits is None else acc_bits
        q = cfg.q
        w_neg, _ = weight_magnitudes(cfg)
        self._product_bits = (w_neg * 255 << 8).bit_length() + q + 2
        super().__init__({
            "product": In(data.ArrayLayout(signed(self._product_bits), cfg.lanes)),
            "lane_valid": In(cfg.lanes), "en": In(1), "clear": In(1), "shift": In(range(8)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        q, lanes, passes = cfg.q, cfg.lanes, cfg.first_layer_passes
        w_neg, w_pos = weight_magnitudes(cfg)
        m.d.comb += Assume(~ResetSignal())
        bound = activation_bound(cfg)

        # The largest activation a lane can carry in each pass: a code (or ±1) in pass 0, in
        # pass j >= 1 the pixel chunk j, at most what is left of 8 bits, shifted by j·Q. Counted
        # pre-multiplied by the weight extremes (no multiplier for the solver to reason about).
        code_max = 1 if q == 1 else (1 << q) - 1
        act_max = [code_max] + [min(code_max, 255 >> (j * q)) << (j * q) for j in range(1, passes)]
        lane_neg = Signal(range(w_neg * max(act_max) + 1))
        lane_pos = Signal(range(w_pos * max(act_max) + 1))
        m.d.comb += [lane_neg.eq(w_neg * act_max[0]), lane_pos.eq(w_pos * act_max[0])]
        for j in range(1, passes):
            with m.If(self.shift == j):
                m.d.comb += [lane_neg.eq(w_neg * act_max[j]), lane_pos.eq(w_pos * act_max[j])]

        step, step_neg, step_pos = [], [], []
        for i in range(lanes):
            p, valid = self.product[i], self.lane_valid[i]
            m.d.comb += Assume(~valid | ((p >= -lane_neg) & (p <= lane_pos)))
            step.append(Mux(valid, p, 0))
            step_neg.append(Mux(valid, lane_neg, 0))
            step_pos.append(Mux(valid, lane_pos, 0))

        # neg = w_neg·units, pos = w_pos·units, units = Σ of the lanes' largest activations since
        # the clear; admitted layers keep units <= activation_bound(cfg).
        limit = w_neg * bound
        neg = Signal(range(limit + lanes * w_neg * max(act_max) + 1))
        pos = Signal.like(neg)
        total = Signal(signed(self._acc_bits + limit.bit_length() + 4))   # cannot wrap
        with m.If(self.en):
            m.d.sync += [total.eq(Mux(self.clear, 0, total) + sum(step)),
                         neg.eq(Mux(self.clear, 0, neg) + sum(step_neg)),
                         pos.eq(Mux(self.clear, 0, pos) + sum(step_pos))]
        top = 1 << (self._acc_bits - 1)
        m.d.comb += [
            Assume((neg <= limit) & (pos <= w_pos * bound)),
            Assert((total >= -top) & (total < top)),
            # inductive invariant: the sum is bounded by the counted activations
            Assert((total >= -neg) & (total <= pos)),
        ]
        return m


def _pass_shifted(value, shift, q: int, passes: int):
    """value << j·Q in first-layer pass j = shift < passes; unshifted otherwise (constant shifts
    keep the widths small)."""
    result = value
    for j in range(1, passes):
        result = Mux(shift == j, value << (j * q), result)
    return result


def pe_checks(cfg: AccelConfig, qs: list[int] | None = None) -> list[Check]:
    """Datapath and width proofs at each Q with 4 lanes (cfg's layer bounds, uniform weights), and at
    cfg itself when its weights are uniform."""
    configs = [small_lane_config(cfg, q) for q in (range(1, 17) if qs is None else qs)]
    # (a config with power-of-two weight lanes, cfg.weights == "pot": hw/formal_pot.py)
    if (qs is None or cfg.q in qs) and getattr(cfg, "weights", "uniform") == "uniform":
        configs.append(cfg)
    found = []
    for c in configs:
        tag = f"{cfg.name}.q{c.q}.lanes{c.lanes}" if c is cfg else f"q{c.q}.lanes{c.lanes}"
        found.append(Check(f"pe.datapath.{tag}", "pe", lambda c=c: PEHarness(c), "prove", PE_DEPTH,
                           f"acc == reference sum mod 2^{c.acc_bits}"))
        found.append(Check(f"pe.width.{tag}", "pe", lambda c=c: AccRangeHarness(c), "prove", RANGE_DEPTH,
                           f"every admitted sum (activations <= {activation_bound(c)}) fits acc_bits={c.acc_bits}"))
    return found
