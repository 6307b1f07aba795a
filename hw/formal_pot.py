"""Formal harnesses for the power-of-two-weight PE (`weights="pot"`, gateware/pot_lane.py).

The contract (docs/contract.md "Power-of-two weights"): a weight lane is a sign bit (Q−1) and an
exponent field e below it; e = 0 is the zero weight (product 0); e = k + 1 is w_int = ±2^(K−k),
K = 2^(Q−1) − 2, so the product with an unsigned activation a is ±(a << (K + 1 − e)).
`pot_reference_magnitude` writes a << (K + 1 − e) as one constant shift per value of e (the lane
shifts by the inverted field ~e instead).

Three properties per Q, all proven (for every trace length):

- **lane identity** (`PotLaneIdentity`, combinational): for every a and code, the one's-complement
  form of the reference product, n = (negative ? ~m : m) plus the carry c = negative (and e != 0),
  is the product: n + c == ±m. (The lane emits n and c; the PE adds the carries as a popcount.)
- **datapath** (`PotPEHarness`, k-induction): from free inputs on every port in every cycle, `acc`
  equals a reference accumulated from the contract with the PE's en/clear rule, masked lanes 0
  and first-layer pass j shifted by j·Q, modulo 2^acc_bits. The reference adds, per cycle, the
  lanes' n_i and then their carries c_i (n, c from the reference magnitude, not from the lane's
  ~e shift). With the lane identity and the commutativity of addition, that is Σ_i ±(a_i <<
  (K + 1 − e_i)). Why not Σ ±m directly: SAT must then re-prove −m = ~m + 1 across a sum of four
  lanes, which took 15 s at 5 bits and 127 s at 10 bits for the sum alone (Q = 4: 10-bit
  magnitudes, Q = 6: 36 bits); per lane it takes a second. A lemma per lane (the lane's value and
  carry are n_i and c_i one cycle after the inputs) lets the solver go stage by stage.
  `hold_zero` checks the clock-gated lane variant (`pot_hold_zero=True`) too.
- **width** (`AccRangeHarness` of hw/formal_pe.py at a pot config): every admitted sum fits
  acc_bits, with the weight extremes ±2^K (`weight_magnitudes`). Free lane products in
  [−2^K·a, 2^K·a] over-approximate the power-of-two products, so the proof covers them.

Weakened twins (tests/hw/test_formal_pot.py): the PE one accumulator bit narrower against a
reference that cannot wrap (bounded), and `WrongShiftPE`: the PE fed exponent e − 1 for e >= 2,
i.e. a shift one place too far (the lane's `~e` off by one).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import POT_Q, AccelConfig
from qjoule.gateware.pe import ProcessingElement, tree_sum

from .formal import Check
from .formal_pe import PE_DEPTH, RANGE_DEPTH, AccRangeHarness, PEHarness, _pass_shifted, activation_bound

__all__ = ["PotLaneIdentity", "PotPEHarness", "WrongShiftPE", "pot_checks", "pot_lane_config",
           "pot_reference_magnitude", "pot_reference_product"]


def pot_lane_config(base: AccelConfig, q: int, lanes: int = 4) -> AccelConfig:
    """`base` at Q = q with `lanes` power-of-two weight lanes and base's layer bounds."""
    return base.replace(q=q, datapath=lanes * q, weights="pot", act_memory="bram", weight_memory="bram",
                        name=f"{base.name}-pot-q{q}-{lanes}lanes")


def pot_reference_magnitude(a, code, q: int):
    """|product| of an unsigned activation `a` and a weight code: 0 for e = 0, else
    a << (K + 1 − e), one constant shift per exponent value."""
    k_max = (1 << (q - 1)) - 2
    e = code[:q - 1]
    magnitude = 0
    for value in range(1, k_max + 2):          # e = k + 1, k = 0..K: weight 2^(K − k)
        magnitude = Mux(e == value, a << (k_max + 1 - value), magnitude)
    return magnitude


def pot_reference_product(a, code, q: int):
    """The contract's product: the magnitude, negated for sign bit 1."""
    magnitude = pot_reference_magnitude(a, code, q)
    return Mux(code[q - 1], -magnitude, magnitude)


def ones_complement_form(a, code, q: int):
    """(n, c) with n + c == the reference product: n = m or ~m (as a signed value one bit wider
    than m), c = 1 for a negative nonzero weight."""
    magnitude = pot_reference_magnitude(a, code, q)
    positive = Cat(magnitude, 0).as_signed()
    negative = code[q - 1] & code[:q - 1].any()
    return Mux(negative, ~positive, positive), negative


class PotLaneIdentity(wiring.Component):
    """Combinational: n + c == the reference product for every activation and weight code."""

    def __init__(self, q: int):
        self._q = q
        super().__init__({"act": In(q), "weight": In(q)})

    def elaborate(self, platform):
        m = Module()
        n, c = ones_complement_form(self.act, self.weight, self._q)
        m.d.comb += Assert(n + c == pot_reference_product(self.act, self.weight, self._q))
        return m


class PotPEHarness(PEHarness):
    """`PEHarness` at a power-of-two config (see the module docstring).

    `hold_zero` builds the PE with the clock-gated lanes; `pe` replaces the PE (a weakened twin)."""

    def __init__(self, cfg: AccelConfig, *, acc_bits: int | None = None, exact: bool = False,
                 hold_zero: bool = False, pe=None):
        if cfg.weights != "pot":
            raise ValueError(f"PotPEHarness needs a config with weights='pot', not {cfg.weights!r}")
        self._hold_zero = hold_zero
        self._pe = pe
        super().__init__(cfg, acc_bits=acc_bits, exact=exact)

    def build_pe(self):
        if self._pe is not None:
            return self._pe
        return ProcessingElement(self._cfg, acc_bits=self._acc_bits, pot_hold_zero=self._hold_zero)

    def pe_fragment(self, m: Module, pe, platform):
        """The PE elaborated here, with the lemma per lane: one cycle after the inputs, the lane's
        value and carry are the reference's n_i and c_i (masked)."""
        if not isinstance(pe, ProcessingElement):
            return pe          # a weakened twin: only the accumulator property
        fragment = pe.elaborate(platform)
        pe._MustUse__silence = True   # the component object itself is not added
        q = self._cfg.q
        for i in range(self._cfg.lanes):
            lane = fragment.submodules[f"pot_lane{i}"]
            valid = self.lane_valid[i]
            n, c = ones_complement_form(self.act[i * q:(i + 1) * q], self.weight[i * q:(i + 1) * q], q)
            n_reg, c_reg = Signal.like(lane.value, name=f"ref_ones{i}"), Signal(name=f"ref_carry{i}")
            m.d.sync += [n_reg.eq(Mux(valid, n, 0)), c_reg.eq(valid & c)]
            m.d.comb += Assert((lane.value == n_reg) & (lane.carry == c_reg))
        return fragment

    def reference_step(self, d: dict):
        """Σ_i n_i + Σ_i c_i of the masked lanes (= Σ_i ±(a_i << (K + 1 − e_i)) by the lane
        identity), shifted for the first-layer pass; pixel chunks are unsigned Q-bit values like
        codes, so pixel_mode changes nothing at Q >= 2."""
        q, passes = self._cfg.q, self._cfg.first_layer_passes
        ones, carries, activations = [], [], []
        for i in range(self._cfg.lanes):
            a, w, valid = d["act"][i * q:(i + 1) * q], d["weight"][i * q:(i + 1) * q], d["lane_valid"][i]
            n, c = ones_complement_form(a, w, q)
            ones.append(Mux(valid, n, 0))
            carries.append(valid & c)
            activations.append(Mux(valid, _pass_shifted(a, d["shift"], q, passes), 0))
        step = _pass_shifted(tree_sum(ones + [tree_sum(carries)]), d["shift"], q, passes)
        return step, sum(activations)


class WrongShiftPE(wiring.Component):
    """Weakened twin: the PE with every exponent field e >= 2 fed as e − 1, so the lane shifts one
    place too far (a << (K + 2 − e)); e = 0 and e = 1 pass unchanged."""

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        self._inner = ProcessingElement(cfg)
        super().__init__(self._inner.signature)

    def elaborate(self, platform):
        m = Module()
        q, lanes = self._cfg.q, self._cfg.lanes
        m.submodules.inner = inner = self._inner
        for name in ("act", "lane_valid", "en", "clear", "shift", "pixel_mode"):
            m.d.comb += getattr(inner, name).eq(getattr(self, name))
        for i in range(lanes):
            code = self.weight[i * q:(i + 1) * q]
            e = code[:q - 1]
            m.d.comb += [inner.weight[i * q + q - 1].eq(code[q - 1]),
                         inner.weight[i * q:i * q + q - 1].eq(Mux(e >= 2, e - 1, e))]
        m.d.comb += self.acc.eq(inner.acc)
        return m


def pot_checks(cfg: AccelConfig, qs: list[int] | None = None) -> list[Check]:
    """At each admitted Q (2..6) with 4 lanes and cfg's layer bounds: the lane identity, the
    datapath (both lane variants) and the width proof; and cfg's own PE at pot weights (its Q and
    lane count; a board variant with --variant) when its Q admits them."""
    admitted = range(POT_Q[0], POT_Q[1] + 1)
    wanted = [q for q in admitted if qs is None or q in qs]
    found = [Check(f"pe.pot.lane_identity.q{q}", "pe", lambda q=q: PotLaneIdentity(q), "prove", 1,
                   "n + c == ±(a << (K+1-e)) for every activation and weight code") for q in wanted]
    configs = [(f"q{q}.lanes4", pot_lane_config(cfg, q)) for q in wanted]
    if cfg.q in wanted:
        own = cfg if cfg.weights == "pot" else cfg.replace(weights="pot", name=f"{cfg.name}-pot")
        configs.append((f"{cfg.name}.q{cfg.q}.lanes{cfg.lanes}", own))
    for tag, c in configs:
        found.append(Check(f"pe.pot.datapath.{tag}", "pe", lambda c=c: PotPEHarness(c), "prove", PE_DEPTH,
                           f"power-of-two PE: acc == reference sum mod 2^{c.acc_bits}"))
        found.append(Check(f"pe.pot.hold_zero.{tag}", "pe", lambda c=c: PotPEHarness(c, hold_zero=True), "prove",
                           PE_DEPTH, "the same with clock-gated lanes (pot_hold_zero)"))
        found.append(Check(f"pe.pot.width.{tag}", "pe", lambda c=c: AccRangeHarness(c), "prove", RANGE_DEPTH,
                           f"every admitted sum (activations <= {activation_bound(c)}, |w| <= 2^{c.pot_max_exponent}) "
                           f"fits acc_bits={c.acc_bits}"))
    return found
