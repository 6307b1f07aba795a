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
from qjoule.gateware.pe import tree_sum
from qjoule.gateware.postproc import PostAct, PostProcess, pp_input_layout

from .formal import Check

__all__ = ["PostProcHarness", "postproc_checks", "reference_postproc"]


def reference_postproc(m: Module, cfg: AccelConfig, payload, products) -> tuple[Signal, Signal]:
    """(code, t) of docs/contract.md for one input payload, as comb signals; `products` are
    (value, offset) pairs whose Σ value·2^offset is acc · m (see `partial_products`)."""
    bias, shift = payload.bias, payload.shift
    wide = cfg.pp_logit_bits + 4
    t = Signal(signed(wide))
    m.d.comb += t.eq((sum(value << offset for value, offset in products) + bias) >> shift)
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


def partial_products(acc, mult, dsp_width: int = 18) -> list[tuple]:
    """acc · m as (value, offset) pairs: acc_lo · m + acc_hi · m · 2^16 (acc_lo: low 16 bits,
    unsigned); for 16-bit DSPs m is split too, m = m_lo + m_hi · 2^16 (m_lo unsigned), and
    acc · m_hi is one more term."""
    if len(acc) <= 16:
        return [(acc * mult, 0)]
    acc_lo, acc_hi = acc[:16], acc[16:].as_signed()
    if dsp_width >= len(mult):
        return [(acc_lo * mult, 0), (acc_hi * mult, 16)]
    m_lo, m_hi = mult[:16], mult[16:]
    # acc · m_hi for a 2-bit signed m_hi, as its partial products (bit `top` weighs −2^top)
    top = len(m_hi) - 1
    high = tree_sum([Mux(m_hi[k], acc << k, 0) for k in range(top)] + [-Mux(m_hi[top], acc << top, 0)])
    return [(acc_lo * m_lo, 0), (acc_hi * m_lo, 16), (high, 16)]


class PostProcHarness(wiring.Component):
    """Free inputs into `PostProcess`, output always ready; asserts the formula `latency` later.

    `dut` replaces the unit under test (a weakened twin)."""

    def __init__(self, cfg: AccelConfig, *, dut: PostProcess | None = None, dsp_width: int = 18):
        self._cfg = cfg
        self._dut = dut
        self._dsp_width = dsp_width
        super().__init__({"valid": In(1), "payload": In(pp_input_layout(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.pp = pp = self._dut or PostProcess(cfg, dsp_width=self._dsp_width)
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
        terms = partial_products(fields["acc"], fields["mult"], self._dsp_width)
        products = [Signal(value.shape(), name=f"product{k}_d1") for k, (value, _) in enumerate(terms)]
        m.d.comb += [reg.eq(value) for reg, (value, _) in zip(products, terms)]
        offsets = [offset for _, offset in terms]
        for stage in range(1, PostProcess.latency_for(cfg)):   # (the real unit's, for mutants too)
            v = Signal(name=f"valid_d{stage + 1}")
            p = Signal.like(payload, name=f"payload_d{stage + 1}")
            ps = [Signal.like(x, name=f"product{k}_d{stage + 1}") for k, x in enumerate(products)]
            m.d.sync += [v.eq(valid), p.eq(payload), *[a.eq(b) for a, b in zip(ps, products)]]
            valid, payload, products = v, p, ps
        products = list(zip(products, offsets))
        code, t = reference_postproc(m, cfg, payload, products)
        m.d.comb += [
            Assert(pp.i.ready),                      # never stalls when the output is taken
            Assert(pp.o.valid == valid),
            Assert(~valid | (pp.o.payload.logit == t)),
            Assert(~valid | (pp.o.payload.code == code)),
        ]
        return m


def postproc_checks(cfg: AccelConfig, qs: list[int] | None = None) -> list[Check]:
    """The formula at cfg's Q (and at the Qs asked for, on cfg's bounds), with the product split for
    18-bit DSPs (ECP5; the default elaboration). The 16-bit split (iCE40, `PostProcHarness(cfg,
    dsp_width=16)`) did not finish within 400 s and is not in the list."""
    configs = [cfg] if qs is None else [cfg.replace(q=q, datapath=q) if q != cfg.q else cfg for q in qs]
    return [Check(f"postproc.formula.{c.name}.q{c.q}", "postproc", lambda c=c: PostProcHarness(c), "bmc",
                  PostProcess.latency_for(c) + 1, f"t = (acc*m + b) >> s and the activation, acc_bits={c.acc_bits}, "
                  "18-bit DSP split; bounded: one item through the 8 stages (k-induction at k=10 did not finish "
                  "in 400 s)")
            for c in configs]
