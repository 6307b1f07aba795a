"""Per-channel post-processing: t = (acc · m + b) >> s, then the activation (docs/contract.md).

One `PostProcess` per array column. The input stream carries one accumulator with its channel's
parameters (`mult` signed 18-bit, `bias` signed `cfg.pp_bias_bits` = 64, `shift` 0..63, `act`);
the output stream carries

- `code`: relu → clip(t, 0, 2^Q − 1) (with per-layer modes, `cfg.q_modes`: Q is the item's
  run-time `q_out`, and `code` has the widest mode's bits); sign → 1 if t ≥ 0 else 0; none → 0;
- `logit`: t itself, exact (signed `cfg.pp_logit_bits`, wide enough that nothing wraps; the
  golden model's int64 logits are a subset).

The arithmetic is exact for every input (the sum is one bit wider than its widest term, the shift
is arithmetic, i.e. floor division by 2^s, as in the contract).

Pipeline (`latency` = 4 stages, one item per cycle): input register → partial products, each
sized for one DSP block (18×18 on ECP5; 16×16 on iCE40, chosen from the platform) → their sum
with the bias (an adder tree) → the shift by s and the activation, into the output register
(with `memory_pipeline`, or `compact_control` with t at most 48 bits, the shift and the
activation are two stages: `latency` 5). The data registers have no reset (only the valid bits
do), so Yosys can take the input and product registers into the DSP blocks. Backpressure stalls the whole pipeline:
`i.ready = ~o.valid | o.ready`; `o.valid` and `o.payload` are registers and hold while stalled.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from qjoule.config import PP_MULT_BITS, AccelConfig

from .pe import is_ice40, tree_sum

__all__ = ["PostAct", "PostProcess", "pp_input_layout", "pp_output_layout"]

SHIFT_BITS = 6


def dsp_blocks(cfg: AccelConfig, block_bits: int) -> int:
    """DSP blocks one post-processing unit takes (an estimate of Yosys' mapping of the partial
    products below): acc_lo × m, and acc_hi × m with acc_hi split into block-wide pieces
    (`block_bits`: 18 on ECP5, 16 on iCE40, where m's top 2 bits go to LUTs)."""
    return 1 + -(-max(cfg.acc_bits - 16, 1) // block_bits)


class PostAct(enum.Enum, shape=2):
    """The layer's activation, as the program encodes it."""
    RELU = 0
    SIGN = 1
    NONE = 2


#: Bits of the run-time clamp width `q_out` (per-layer mixed precision: 1..16).
Q_OUT_BITS = 5


def pp_input_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({
        "acc": signed(cfg.acc_bits),
        "mult": signed(PP_MULT_BITS),
        "bias": signed(cfg.pp_bias_bits),
        "shift": unsigned(SHIFT_BITS),
        "act": PostAct,
        # per-layer mixed precision only: relu clamps to 2^q_out − 1 (2 <= q_out <= cfg.code_bits)
        **({"q_out": unsigned(Q_OUT_BITS)} if cfg.mixed else {}),
    })


def pp_output_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({
        "code": unsigned(cfg.code_bits),
        "logit": signed(cfg.pp_logit_bits),
    })


class PostProcess(wiring.Component):
    #: Stages of the sum of the partial products and the bias.
    ADD_STAGES = 1
    #: Cycles from an accepted input to its output becoming valid, when never stalled, with the
    #: shift and the clamp in one stage (an instance's `latency` counts its own stages).
    latency = 3 + ADD_STAGES

    @staticmethod
    def splits_clamp(cfg: AccelConfig) -> bool:
        """Whether `cfg`'s unit registers t between the shift and the clamp: with memory_pipeline,
        and with compact_control while t is at most 48 bits (the UP5K at Q = 16, a 64-bit t, has
        no room for the copy)."""
        return bool(cfg.memory_pipeline or (cfg.compact_control and cfg.pp_logit_bits <= 48))

    @staticmethod
    def latency_for(cfg: AccelConfig) -> int:
        """The `latency` of `cfg`'s unit (without building one)."""
        return PostProcess.latency + PostProcess.splits_clamp(cfg)

    def __init__(self, cfg: AccelConfig, *, dsp_width: int | None = None):
        """`dsp_width`: the DSP multiplier width to split the product for (16 or 18); None picks
        it from the platform at elaboration (16 on iCE40, 18 elsewhere)."""
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if dsp_width not in (None, 16, 18):
            raise ValueError(f"dsp_width must be 16, 18 or None, not {dsp_width!r}")
        self._cfg = cfg
        self._dsp_width = dsp_width
        #: the shift and the clamp in two stages (see elaborate, stage 4)
        self.split_clamp = PostProcess.splits_clamp(cfg)
        #: cycles from an accepted input to its output becoming valid, when never stalled
        self.latency = PostProcess.latency_for(cfg)
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
        width = cfg.pp_logit_bits  # every intermediate sum fits: the result is exact

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # A stage loads when the pipeline advances and the stage before it holds an item; data
        # registers otherwise keep their value (fewer toggles in the activity counts).
        valid = self.i.valid

        def stage(name, **values):
            nonlocal valid
            stage_valid = Signal(name=f"{name}_valid")
            load = Signal(name=f"{name}_load")
            m.d.comb += load.eq(advance & valid)
            with m.If(advance):
                m.d.sync += stage_valid.eq(valid)
            regs = {}
            for key, value in values.items():
                reg = Signal.like(value, name=f"{name}_{key}", reset_less=True) if isinstance(value, Signal) \
                    else Signal(Value.cast(value).shape(), name=f"{name}_{key}", reset_less=True)
                with m.If(load):
                    m.d.sync += reg.eq(value)
                regs[key] = reg
            valid = stage_valid
            return regs

        # 1: input register.
        p = self.i.payload
        # (per-layer modes: the clamp width travels with the item like `act`)
        qo = {"qo": p.q_out} if cfg.mixed else {}
        s1 = stage("s1", acc=p.acc, mult=p.mult, bias=p.bias, shift=p.shift, act=p.act, **qo)
        act = Signal(PostAct)
        m.d.comb += act.eq(s1["act"])

        # 2: the product as partial products that each fit one DSP block, summed below:
        # acc = acc_lo (16 bits, unsigned) + acc_hi·2^16 (signed). With 18×18 blocks (ECP5) the
        # 18-bit multiplier is taken whole; with 16×16 blocks (iCE40 SB_MAC16) it is split too,
        # mult = m_lo (16 bits, unsigned) + m_hi·2^16 (2 bits, signed), and acc·m_hi is a
        # shift-and-add in LUTs (a DSP for a 2-bit operand would waste one of the UP5K's eight).
        dsp_width = self._dsp_width or (16 if is_ice40(platform) else 18)
        acc, mult = s1["acc"], s1["mult"]
        if len(acc) <= 16:  # a narrow accumulator still splits at bit 16: sign-extend it past it
            wide = Signal(signed(17), name="acc_wide")
            m.d.comb += wide.eq(acc)
            acc = wide
        acc_lo, acc_hi = acc[:16], acc[16:].as_signed()
        if dsp_width >= PP_MULT_BITS:
            partials = {"p_lo": (acc_lo * mult, 0), "p_hi": (acc_hi * mult, 16)}
        else:
            m_lo, m_hi = mult[:16], mult[16:]
            top = len(m_hi) - 1  # the sign bit of m_hi weighs −2^top
            small = tree_sum([Mux(m_hi[k], acc << k, 0) for k in range(top)] + [-Mux(m_hi[top], acc << top, 0)])
            partials = {"p_lo": (acc_lo * m_lo, 0), "p_hi": (acc_hi * m_lo, 16), "p_m": (small, 16)}
        qo = {"qo": s1["qo"]} if cfg.mixed else {}
        s2 = stage("s2", bias=s1["bias"], shift=s1["shift"], act=act, **qo,
                   **{name: value for name, (value, _) in partials.items()})

        # 3: Σ partial·2^offset + bias, exact in `width` bits (every sum is taken modulo 2^width,
        # which holds the exact result), as a balanced tree of plain adds on carry chains: an add
        # costs one logic cell per bit on both families (a 3:2 carry-save step costs two), and
        # the second level's carries ripple just behind the first's.
        terms = []
        for name, (_, offset) in [*partials.items(), ("bias", (None, 0))]:
            term = Signal(width, name=f"term_{name}")
            m.d.comb += term.eq(s2[name] << offset)
            terms.append(term)
        # (kept: Yosys would otherwise merge the adds into one multi-operand sum, which it maps
        # to carry-save logic, one more cell per bit and term)
        while len(terms) > 1:
            pairs = []
            for k in range(0, len(terms) - 1, 2):
                pair = Signal(width, name=f"sum{len(terms)}_{k // 2}", attrs={"keep": 1})
                m.d.comb += pair.eq(terms[k] + terms[k + 1])
                pairs.append(pair)
            terms = pairs + terms[len(pairs) * 2:]
        total_sum = terms[0]
        qo = {"qo": s2["qo"]} if cfg.mixed else {}
        if cfg.compact_control:
            # (the UP5K's Fmax) the shift's multiples of 8 right behind the sum, its low 3 bits in
            # the output stage: (t >> 8a) >> b = t >> (8a + b) for the arithmetic shift
            coarse = Signal(width, name="coarse")
            m.d.comb += coarse.eq(total_sum.as_signed() >> Cat(Const(0, 3), s2["shift"][3:]))
            s3 = stage("s3", total=coarse, shift=s2["shift"][:3], act=s2["act"], **qo)
        else:
            s3 = stage("s3", total=total_sum, shift=s2["shift"], act=s2["act"], **qo)
        total, shift, act = s3["total"].as_signed(), s3["shift"], s3["act"]
        qo = {"qo": s3["qo"]} if cfg.mixed else {}

        # 4: arithmetic shift right (floor division by 2^s) and the activation, into the output
        # register. Where `splits_clamp` (both boards' Fmax) t is registered between them: the
        # 65-bit shifter and the clamp's OR over t's high bits were 11-14 logic levels in one
        # cycle on the ULX3S, the UP5K's shift (its low 3 bits, the coarse part sits behind the
        # sum) and clamp 9. Other configs keep one stage.
        t = Signal(width)
        m.d.comb += t.eq(total >> shift)
        s4 = {"act": act, **({"qo": qo["qo"]} if cfg.mixed else {})}
        if self.split_clamp:
            s4 = stage("s4", t=t, **s4)
            t = s4["t"]
        code = Signal(cfg.code_bits)
        negative = t[-1]
        above_max = t[q:].any()  # for t >= 0: t > 2^Q - 1
        with m.Switch(s4["act"]):
            with m.Case(PostAct.RELU):
                if not cfg.mixed:
                    m.d.comb += code.eq(Mux(negative, 0, Mux(above_max, (1 << q) - 1, t[:q])))
                else:
                    # the layer's own q_out (any width up to the widest mode: a clamp width need
                    # not be a container width, e.g. 2-bit codes in 4-bit containers)
                    with m.Switch(s4["qo"]):
                        for k in range(2, cfg.code_bits + 1):
                            with m.Case(k):
                                m.d.comb += code.eq(Mux(negative, 0, Mux(t[k:].any(), (1 << k) - 1, t[:k])))
                        with m.Default():  # (relu never has q_out < 2)
                            m.d.comb += code.eq(0)
            with m.Case(PostAct.SIGN):
                m.d.comb += code.eq(~negative)
            with m.Default():
                m.d.comb += code.eq(0)
        load = Signal()
        m.d.comb += load.eq(advance & valid)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(valid)
        with m.If(load):
            m.d.sync += [self.o.payload.code.eq(code), self.o.payload.logit.eq(t)]

        return m
