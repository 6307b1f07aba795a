"""Per-channel post-processing: t = (acc · m + b) >> s, then the activation (docs/contract.md).

One `PostProcess` per array column. The input stream carries one accumulator with its channel's
parameters (`mult` signed 18-bit, `bias` signed `cfg.pp_bias_bits` = 64, `shift` 0..63, `act`);
the output stream carries

- `code`: relu → clip(t, 0, 2^Q − 1); sign → 1 if t ≥ 0 else 0; none → 0;
- `logit`: t itself, exact (signed `cfg.pp_logit_bits`, wide enough that nothing wraps; the
  golden model's int64 logits are a subset).

The arithmetic is exact for every input (the sum is one bit wider than its widest term, the shift
is arithmetic, i.e. floor division by 2^s, as in the contract).

Pipeline: input register → product → sum → shift by s mod 8 → shift by 8·(s div 8) → output
register (6 stages, one item per cycle). Backpressure stalls the whole pipeline:
`i.ready = ~o.valid | o.ready`; `o.valid` and `o.payload` are registers and hold while stalled.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import PP_MULT_BITS, AccelConfig

__all__ = ["PostAct", "PostProcess", "pp_input_layout", "pp_output_layout"]

SHIFT_BITS = 6


class PostAct(enum.Enum, shape=2):
    """The layer's activation, as the program encodes it."""
    RELU = 0
    SIGN = 1
    NONE = 2


def pp_input_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({
        "acc": signed(cfg.acc_bits),
        "mult": signed(PP_MULT_BITS),
        "bias": signed(cfg.pp_bias_bits),
        "shift": unsigned(SHIFT_BITS),
        "act": PostAct,
    })


def pp_output_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({
        "code": unsigned(cfg.q),
        "logit": signed(cfg.pp_logit_bits),
    })


class PostProcess(wiring.Component):
    #: Cycles from an accepted input to its output becoming valid, when never stalled.
    latency = 6

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(pp_input_layout(cfg))),
            "o": Out(stream.Signature(pp_output_layout(cfg))),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        q = cfg.q

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # A stage loads when the pipeline advances and the stage before it holds an item; data
        # registers otherwise keep their value (fewer toggles in the activity counts).
        def stage(valid_in, name):
            valid = Signal(name=f"{name}_valid")
            with m.If(advance):
                m.d.sync += valid.eq(valid_in)
            load = Signal(name=f"{name}_load")
            m.d.comb += load.eq(advance & valid_in)
            return valid, load

        # 1: input register.
        v1, load1 = stage(self.i.valid, "s1")
        p1 = Signal(pp_input_layout(cfg))
        with m.If(load1):
            m.d.sync += p1.eq(self.i.payload)

        # 2: product.
        v2, load2 = stage(v1, "s2")
        prod = Signal(signed(cfg.acc_bits + PP_MULT_BITS))
        bias2, shift2, act2 = Signal.like(p1.bias), Signal.like(p1.shift), Signal.like(p1.act)
        with m.If(load2):
            m.d.sync += [prod.eq(p1.acc * p1.mult), bias2.eq(p1.bias),
                         shift2.eq(p1.shift), act2.eq(p1.act)]

        # 3: sum, one bit wider than its widest term: exact.
        v3, load3 = stage(v2, "s3")
        total = Signal(signed(cfg.pp_logit_bits))
        shift3, act3 = Signal.like(shift2), Signal.like(act2)
        with m.If(load3):
            m.d.sync += [total.eq(prod + bias2), shift3.eq(shift2), act3.eq(act2)]

        # 4, 5: arithmetic shift right, split in two 3-bit steps for timing.
        v4, load4 = stage(v3, "s4")
        partial = Signal.like(total)
        shift4, act4 = Signal(3), Signal.like(act3)
        with m.If(load4):
            m.d.sync += [partial.eq(total >> shift3[:3]), shift4.eq(shift3[3:]), act4.eq(act3)]

        v5, load5 = stage(v4, "s5")
        t = Signal.like(total)
        act5 = Signal.like(act4)
        with m.If(load5):
            m.d.sync += [t.eq(partial >> Cat(0, 0, 0, shift4)), act5.eq(act4)]

        # 6: activation into the output register.
        v6, load6 = stage(v5, "s6")
        m.d.comb += self.o.valid.eq(v6)
        code = Signal(q)
        negative = t[-1]
        above_max = t[q:].any()  # for t >= 0: t > 2^Q - 1
        with m.Switch(act5):
            with m.Case(PostAct.RELU):
                m.d.comb += code.eq(Mux(negative, 0, Mux(above_max, (1 << q) - 1, t[:q])))
            with m.Case(PostAct.SIGN):
                m.d.comb += code.eq(~negative)
            with m.Default():
                m.d.comb += code.eq(0)
        with m.If(load6):
            m.d.sync += [self.o.payload.code.eq(code), self.o.payload.logit.eq(t)]

        return m
