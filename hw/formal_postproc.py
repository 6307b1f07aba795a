"""Formal harness for post-processing: every output is the contract's integer formula of its input.

docs/contract.md "Post-processing": t = (acc · m + b) >> s (arithmetic shift, floor division by
2^s), then code = clip(t, 0, 2^Q − 1) (relu), 1 if t >= 0 else 0 (sign), 0 (none, logits); the
logit is t itself. The harness feeds `PostProcess` free inputs (acc, m, b, s, act: every value
the ports admit) with the output always ready, keeps each input for `PostProcess.latency` cycles
and asserts that the output register holds the formula of the input accepted that many cycles
before (and is valid exactly then). Bounded, depth latency + 1 = 9: the first input's output
is compared for every input value. With the output always ready the unit is a feed-forward
pipeline whose output depends only on the input `latency` cycles before, so that one output
stands for all; k-induction (k = 10) did not finish within 400 s on this machine.

The reference writes acc · m as acc_lo · m + acc_hi · m · 2^16 (acc_lo the low 16 bits, unsigned;
acc_hi the rest, signed): an identity of integers (acc = acc_lo + acc_hi · 2^16), used because SAT
solvers cannot equate a 25×18 multiplier with its split into DSP-sized partial products; the
split's sum (carry-save, chunked carry-propagate add), the two-step shift and the clamp are what
the proof compares against the plain formula. Backpressure (o.ready low) is covered by the
stream checks (hw/formal_streams.py): payload held, nothing lost or duplicated.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from qjoule.config import AccelConfig
from qjoule.gateware.postproc import PostAct, PostProcess, pp_input_layout

from .formal import Check

__all__ = ["PostProcHarness", "postproc_checks", "reference_postproc"]


def reference_postproc(m: Module, cfg: AccelConfig, payload, products) -> tuple[Signal, Signal]:
    """(code, t) of docs/contract.md for one input payload, as comb signals; `products` are
    (acc_lo · m, acc_hi · m) of that payload (see `partial_products`)."""
    bias, shift = payload.bias, payload.shift
    wide = cfg.pp_logit_bits + 2
    p_low, p_high = products
    t = Signal(signed(wide))
    m.d.comb += t.eq((p_low + (p_high << 16) + bias) >> shift)
    q_max = (1 << cfg.q) - 1
    code = Signal(cfg.q)
    with m.Switch(payload.act):
        with m.Case(PostAct.RELU):
            m.d.comb += code.eq(Mux(t < 0, 0, Mux(t > q_max, q_max, t)))
        with m.Case(PostAct.SIGN):
            m.d.comb += code.eq(t >= 0)
        with m.Default():
            m.d.comb += code.eq(0)
    return code, t


def partial_products(acc, mult):
    """acc · m = acc_lo · m + acc_hi · m · 2^16 (acc_lo: low 16 bits, unsigned)."""
    if len(acc) > 16:
        return acc[:16] * mult, acc[16:].as_signed() * mult
    return acc * mult, 0


class PostProcHarness(wiring.Component):
    """Free inputs into `PostProcess`, output always ready; asserts the formula `latency` later.

    `dut` replaces the unit under test (a weakened twin)."""

    def __init__(self, cfg: AccelConfig, *, dut: PostProcess | None = None):
        self._cfg = cfg
        self._dut = dut
        super().__init__({"valid": In(1), "payload": In(pp_input_layout(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.pp = pp = self._dut or PostProcess(cfg)
        m.d.comb += [Assume(~ResetSignal()), pp.i.valid.eq(self.valid), pp.i.payload.eq(self.payload),
                     pp.o.ready.eq(1)]

        # The input registered as the unit's first stage does (load on valid), so synthesis merges
        # the two copies and the partial products on them: the solver then compares the sums,
        # shifts and clamps, not two multipliers.
        # (one register per field, as the unit has)
        valid, payload = Signal(name="valid_d1"), Signal.like(self.payload, name="payload_d1")
        m.d.sync += valid.eq(self.valid)
        fields = {name: Signal.like(self.payload[name], name=f"{name}_d1") for name in ("acc", "mult", "bias", "shift", "act")}
        with m.If(self.valid):
            m.d.sync += [reg.eq(self.payload[name]) for name, reg in fields.items()]
        m.d.comb += [payload[name].eq(reg) for name, reg in fields.items()]
        low, high = partial_products(fields["acc"], fields["mult"])
        products = [Signal(signed(len(low)), name="p_low_d1"), Signal(signed(max(1, len(high))), name="p_high_d1")]
        m.d.comb += [products[0].eq(low), products[1].eq(high)]
        for stage in range(1, PostProcess.latency):
            v = Signal(name=f"valid_d{stage + 1}")
            p = Signal.like(payload, name=f"payload_d{stage + 1}")
            ps = [Signal.like(x, name=f"{x.name[:-3]}_d{stage + 1}") for x in products]
            m.d.sync += [v.eq(valid), p.eq(payload), *[a.eq(b) for a, b in zip(ps, products)]]
            valid, payload, products = v, p, ps
        code, t = reference_postproc(m, cfg, payload, products)
        m.d.comb += [
            Assert(pp.i.ready),                      # never stalls when the output is taken
            Assert(pp.o.valid == valid),
            Assert(~valid | (pp.o.payload.logit == t)),
            Assert(~valid | (pp.o.payload.code == code)),
        ]
        return m


def postproc_checks(cfg: AccelConfig, qs: list[int] | None = None) -> list[Check]:
    """The formula at cfg's Q (and at the Qs asked for, on cfg's bounds)."""
    configs = [cfg] if qs is None else [cfg.replace(q=q, datapath=q) if q != cfg.q else cfg for q in qs]
    return [Check(f"postproc.formula.{c.name}.q{c.q}", "postproc", lambda c=c: PostProcHarness(c), "bmc",
                  PostProcess.latency + 1, f"t = (acc*m + b) >> s and the activation, acc_bits={c.acc_bits}; "
                  "bounded: one item through the 8 stages (k-induction at k=10 did not finish in 400 s)")
            for c in configs]
