"""On-chip SRAM buffers: the banked activation buffer, the weight buffer, the param buffer.

By default all are `amaranth.lib.memory.Memory` with one synchronous read port (data one cycle after the
address) and one write port, so one engine can read this layer's inputs while another writes its
outputs in the same cycle. The activation, weight and param buffers can add register stages to a read
(config `memory_pipeline`, `PipelinedMemory`): on a large device their block RAMs are spread over
the die, and a block RAM's unregistered output (DP16KD: ~6 ns clock-to-out) plus the route to the
array would bound Fmax.

- `ActivationBuffer`: R banks of D-bit words, each bank holding both halves (half h at addresses
  h·bank_depth ...). Writes have Q-bit granularity (one enable per lane; with per-layer modes
  the gcd of the modes, `cfg.write_granularity`, so every mode's lanes are whole enables), so a tile of output
  channels that fills only part of a word leaves the other lanes alone. The layout of a feature
  map over the banks is `qjoule.program.MapLayout`.
- `WideBuffer`: one memory of wide words (weight buffer: C·D bits, one D-bit word per column;
  param buffer: per-tile metadata + C × (mult, bias); the layer table).

Either can sit in the iCE40 UP5K's SPRAM instead of block RAM (config `act_memory`,
`weight_memory` = "spram"): `SPRAM` is one SB_SPRAM256KA (16k × 16 bits, a single port, a
4-bit nibble write mask), instantiated on an iCE40 platform and replaced by `SPRAMModel`, the
same ports in Amaranth, everywhere else (the Amaranth simulator, the Verilog for Icarus). Its one
port serves both sides: a write takes the port (the read data of that cycle is undefined in the
hardware; the model returns all ones), otherwise the port reads. The activation buffer gives
every bank half its own SPRAM, so this layer's reads (input half) and writes (output half) never
meet; the weight buffer is written only while the sequencer waits for weights. Lanes narrower
than a nibble cannot be written alone: the config refuses act_memory "spram" unless Q is a
multiple of 4.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from qjoule.config import MEMORY_KINDS, SPRAM_BITS, SPRAM_WORDS, AccelConfig
from qjoule.program import bank_depth

from . import REPLICA
from .pe import is_ice40

__all__ = ["ActivationBuffer", "PipelinedMemory", "SPRAM", "SPRAMModel", "WideBuffer", "activation_buffer_signature",
           "bram_piece_depth", "spram_count", "wide_buffer_signature"]

#: SB_SPRAM256KA address bits (16k words).
SPRAM_ADDR_BITS = 14
#: The widest data port of an ECP5 block RAM (DP16KD): PipelinedMemory selects a word's pieces
#: per slice of this many bits.
BRAM_SLICE_BITS = 36
#: What `SPRAMModel` reads out in a write cycle (the hardware's DATAOUT is undefined then).
SPRAM_WRITE_CYCLE_DATA = (1 << SPRAM_BITS) - 1


def spram_signature() -> wiring.Signature:
    """SB_SPRAM256KA's ports, seen from the memory."""
    return wiring.Signature({"addr": In(SPRAM_ADDR_BITS), "data_in": In(SPRAM_BITS), "mask": In(4), "wren": In(1),
                             "data_out": Out(SPRAM_BITS)})


def spram_count(width: int, depth: int) -> int:
    """SB_SPRAM256KA blocks for a `width` × `depth` memory (at most 16k words deep)."""
    if depth > SPRAM_WORDS:
        raise ValueError(f"an SPRAM memory holds at most {SPRAM_WORDS} words, not {depth!r}")
    return -(-width // SPRAM_BITS)


class SPRAM(wiring.Component):
    """One SB_SPRAM256KA: 16k × 16 bits, one port, registered read data (one cycle).

    `wren` high writes `data_in` at `addr` under `mask` (one bit per 4-bit nibble); `wren` low
    reads `addr` into `data_out` at the next edge. Always selected and awake.
    """

    def __init__(self, *, init=()):
        """`init`: initial words, for simulation only (the hardware's SPRAM powers up undefined)."""
        super().__init__(spram_signature())
        self._init = [int(w) for w in init]

    def elaborate(self, platform):
        m = Module()
        if is_ice40(platform):
            if self._init:
                raise ValueError("an SB_SPRAM256KA cannot be initialized; init is for simulation only")
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=self.addr, i_DATAIN=self.data_in, i_MASKWREN=self.mask, i_WREN=self.wren,
                i_CHIPSELECT=Const(1), i_CLOCK=ClockSignal(), i_STANDBY=Const(0), i_SLEEP=Const(0),
                i_POWEROFF=Const(1), o_DATAOUT=self.data_out)
        else:
            m.submodules.model = model = SPRAMModel(init=self._init)
            wiring.connect(m, wiring.flipped(self), model)
        return m


class SPRAMModel(wiring.Component):
    """SB_SPRAM256KA's behaviour (yosys' ice40 cells_sim.v) for simulation: a read updates
    `data_out` one cycle later; in a write cycle it becomes SPRAM_WRITE_CYCLE_DATA (undefined in
    the hardware), so a design that reads during its own writes fails in simulation too."""

    def __init__(self, *, init=()):
        super().__init__(spram_signature())
        self.memory = Memory(shape=unsigned(SPRAM_BITS), depth=SPRAM_WORDS, init=list(init))

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = self.memory
        rd = mem.read_port(transparent_for=())
        wr = mem.write_port(granularity=4)
        written = Signal()
        m.d.comb += [rd.addr.eq(self.addr), rd.en.eq(~self.wren),
                     wr.addr.eq(self.addr), wr.data.eq(self.data_in), wr.en.eq(Mux(self.wren, self.mask, 0))]
        m.d.sync += written.eq(self.wren)
        m.d.comb += self.data_out.eq(Mux(written, SPRAM_WRITE_CYCLE_DATA, rd.data))
        return m


def bram_piece_depth(granularity: int) -> int:
    """Words of one ECP5 block RAM (DP16KD: 16k×1, 8k×2, 4k×4, 2k×9, 1k×18) when a memory's write
    enables cover `granularity` bits each: Yosys gives every enable its own columns, so that is
    the depth one block holds."""
    for bits, depth in ((1, 16384), (2, 8192), (4, 4096), (9, 2048)):
        if granularity <= bits:
            return depth
    return 1024


class PipelinedMemory(wiring.Component):
    """A memory with one read and one write port whose read data comes `1 + pipeline` cycles
    after the address (pipeline 0, 1 or 2).

    pipeline 2 splits the memory into block-RAM-deep pieces (`bram_piece_depth`): each piece's
    read data is registered by itself (a flop the placer can put next to its block RAM), then the
    piece the address chose is registered; the write port is registered per piece too (a write
    lands one cycle later, which no reader can observe: reads of written data are layers apart).
    Ports: rd_addr, rd_data, wr_addr, wr_data, wr_en (one enable per `granularity` bits).
    """

    def __init__(self, shape, depth: int, *, granularity: int | None = None, pipeline: int = 0, init=()):
        width = Shape.cast(shape).width
        self.granularity = width if granularity is None else granularity
        if pipeline not in (0, 1, 2):
            raise ValueError(f"pipeline must be 0, 1 or 2, not {pipeline!r}")
        self.depth, self.pipeline = depth, pipeline
        self.addr_bits = max(1, ceil_log2(depth))
        super().__init__({"rd_addr": In(self.addr_bits), "rd_data": Out(shape), "wr_addr": In(self.addr_bits),
                          "wr_data": In(shape), "wr_en": In(width // self.granularity)})
        init = [int(w) for w in init]
        if pipeline < 2:
            self.piece_depth = depth
        else:
            self.piece_depth = min(bram_piece_depth(self.granularity), 1 << self.addr_bits)
        self.pieces = [Memory(shape=shape, depth=min(self.piece_depth, depth - k),
                              init=init[k:k + self.piece_depth])
                       for k in range(0, depth, self.piece_depth)]

    def elaborate(self, platform):
        m = Module()
        lo = ceil_log2(self.piece_depth)
        data_q = []
        sel_1 = Signal(range(len(self.pieces)))
        if len(self.pieces) > 1:
            m.d.sync += sel_1.eq(self.rd_addr[lo:])
        for k, mem in enumerate(self.pieces):
            m.submodules[f"piece{k}"] = mem
            rd = mem.read_port()
            wr = mem.write_port(granularity=self.granularity)
            m.d.comb += rd.addr.eq(self.rd_addr[:lo] if len(self.pieces) > 1 else self.rd_addr)
            if self.pipeline < 2:
                m.d.comb += [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data), wr.en.eq(self.wr_en)]
                data_q.append(rd.data)
                continue
            mine = self.wr_addr[lo:] == k if len(self.pieces) > 1 else 1
            m.d.sync += [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data), wr.en.eq(Mux(mine, self.wr_en, 0))]
            piece_q = Signal.like(rd.data, name=f"piece{k}_q")
            m.d.sync += piece_q.eq(rd.data)
            data_q.append(piece_q)
        if self.pipeline == 0:
            m.d.comb += self.rd_data.eq(data_q[0])
        elif len(data_q) == 1:  # pipeline 1, or 2 with a single piece
            m.d.sync += self.rd_data.eq(data_q[0])
        else:
            # The piece select is registered once per block-RAM-wide slice of the word (kept
            # apart in synthesis, `REPLICA`): one select for a wide word (the tile parameters)
            # fanned out to every bit's multiplexer across the die (2x2 ULX3S critical path).
            rd_data, width = Value.cast(self.rd_data), Shape.cast(self.rd_data.shape()).width
            for lo_bit in range(0, width, BRAM_SLICE_BITS):
                hi_bit = min(width, lo_bit + BRAM_SLICE_BITS)
                sel = Signal.like(sel_1, name=f"sel_2_{lo_bit}", attrs={REPLICA: 1})
                m.d.sync += [sel.eq(sel_1),
                             rd_data[lo_bit:hi_bit].eq(Array(Value.cast(q)[lo_bit:hi_bit] for q in data_q)[sel])]
        return m


def activation_buffer_signature(cfg: AccelConfig, addr_bits: int) -> wiring.Signature:
    """The activation buffer's ports, seen from the buffer (addresses in, read data out)."""
    r, d, s = cfg.rows, cfg.datapath, cfg.write_lanes  # S enables, finer with per-layer modes
    return wiring.Signature({
        "rd_half": In(1),
        "rd_addr": In(data.ArrayLayout(unsigned(addr_bits), r)),
        "rd_data": Out(data.ArrayLayout(unsigned(d), r)),
        "wr_half": In(1),
        "wr_addr": In(data.ArrayLayout(unsigned(addr_bits), r)),
        "wr_data": In(data.ArrayLayout(unsigned(d), r)),
        "wr_en": In(data.ArrayLayout(unsigned(s), r)),
    })


def wide_buffer_signature(shape, depth: int) -> wiring.Signature:
    addr_bits = max(1, ceil_log2(depth))
    return wiring.Signature({
        "rd_addr": In(addr_bits),
        "rd_data": Out(shape),
        "wr_addr": In(addr_bits),
        "wr_data": In(shape),
        "wr_en": In(1),
    })


class ActivationBuffer(wiring.Component):
    """R banks × 2 halves of D-bit words with per-lane write enables.

    `init`, if given, is a list of R lists: the initial words of each bank (half 0 first, half 1
    at offset `bank_depth`); tests use it to preload a feature map.
    """

    def __init__(self, cfg: AccelConfig, *, init=None):
        self._cfg = cfg
        self.bank_depth = bank_depth(cfg)
        if self.bank_depth < 1:
            raise ValueError(f"act_buffer_bits={cfg.act_buffer_bits} gives less than one word per bank for rows={cfg.rows}")
        if init is not None and len(init) != cfg.rows:
            raise ValueError(f"init must have one list per bank ({cfg.rows}), got {len(init)}")
        self._init = init
        self.addr_bits = max(1, ceil_log2(self.bank_depth))
        r, d = cfg.rows, cfg.datapath
        super().__init__(activation_buffer_signature(cfg, self.addr_bits))
        if cfg.act_memory == "spram":
            depth = self.bank_depth
            self.banks = [[SPRAM(init=(init[b][h * depth:(h + 1) * depth] if init else [])) for h in range(2)]
                          for b in range(r)]
        elif cfg.memory_pipeline:
            self.banks = [PipelinedMemory(unsigned(d), 2 * self.bank_depth, granularity=cfg.write_granularity,
                                          pipeline=cfg.memory_pipeline, init=(init[b] if init else []))
                          for b in range(r)]
        else:
            self.banks = [Memory(shape=unsigned(d), depth=2 * self.bank_depth, init=(init[b] if init else []))
                          for b in range(r)]

    def elaborate(self, platform):
        if self._cfg.act_memory == "spram":
            return self._elaborate_spram()
        m = Module()
        cfg = self._cfg
        # A power-of-two bank depth puts the half in the top address bit (wiring, not an adder
        # in front of the block RAM's address pins).
        pow2 = self.bank_depth == 1 << self.addr_bits

        def address(addr, half):
            return Cat(addr, half) if pow2 else addr + half * self.bank_depth

        for b, mem in enumerate(self.banks):
            m.submodules[f"bank{b}"] = mem
            if cfg.memory_pipeline:
                m.d.comb += [
                    mem.rd_addr.eq(address(self.rd_addr[b], self.rd_half)),
                    self.rd_data[b].eq(mem.rd_data),
                    mem.wr_addr.eq(address(self.wr_addr[b], self.wr_half)),
                    mem.wr_data.eq(self.wr_data[b]),
                    mem.wr_en.eq(self.wr_en[b]),
                ]
                continue
            rd = mem.read_port()
            wr = mem.write_port(granularity=cfg.write_granularity)
            m.d.comb += [
                rd.addr.eq(address(self.rd_addr[b], self.rd_half)),
                self.rd_data[b].eq(rd.data),
                wr.addr.eq(address(self.wr_addr[b], self.wr_half)),
                wr.data.eq(self.wr_data[b]),
                wr.en.eq(self.wr_en[b]),
            ]
        return m

    def _elaborate_spram(self):
        """One SPRAM per bank half: a write to a half takes its port, the other half reads. The
        half read is registered with the address, so the data comes from the half asked for."""
        m = Module()
        cfg = self._cfg
        q, d = cfg.write_granularity, cfg.datapath  # bits per write enable (Q when uniform)
        # Nibble n of a word belongs to enable 4n div q (q is a multiple of 4); nibbles above D none.
        lane_of = [4 * n // q if 4 * n < d else None for n in range(SPRAM_BITS // 4)]
        rd_half_q = Signal()
        m.d.sync += rd_half_q.eq(self.rd_half)
        for b, halves in enumerate(self.banks):
            outs = []
            for h, spram in enumerate(halves):
                m.submodules[f"bank{b}_half{h}"] = spram
                write = Signal(name=f"write{b}_{h}")
                m.d.comb += [
                    write.eq((self.wr_half == h) & self.wr_en[b].any()),
                    spram.wren.eq(write),
                    spram.addr.eq(Mux(write, self.wr_addr[b], self.rd_addr[b])),
                    spram.data_in.eq(self.wr_data[b]),
                    spram.mask.eq(Cat(*[self.wr_en[b][lane] if lane is not None else Const(0) for lane in lane_of])),
                ]
                outs.append(spram.data_out[:d])
            m.d.comb += self.rd_data[b].eq(Mux(rd_half_q, outs[1], outs[0]))
        return m


class WideBuffer(wiring.Component):
    """One memory of `shape`-wide words: a synchronous read port and a whole-word write port.

    `memory="spram"`: ceil(width/16) SPRAMs side by side (at most 16k words) whose one port
    writes when `wr_en` is high and reads otherwise, so the owner must not read while writing."""

    def __init__(self, shape, depth: int, *, init=(), memory: str = "bram", pipeline: int = 0):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        if memory not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORY_KINDS))}, not {memory!r}")
        self.depth = depth
        self.addr_bits = max(1, ceil_log2(depth))
        self.kind = memory
        super().__init__(wide_buffer_signature(shape, depth))
        if memory == "spram":
            width = Shape.cast(shape).width
            words = [int(w) for w in init]
            self.memory = [SPRAM(init=[w >> (16 * k) & 0xFFFF for w in words]) for k in range(spram_count(width, depth))]
        elif pipeline:
            self.memory = PipelinedMemory(shape, depth, pipeline=pipeline, init=init)
        else:
            self.memory = Memory(shape=shape, depth=depth, init=list(init))
        if pipeline and memory != "bram":
            raise ValueError(f"a pipelined read needs memory 'bram', not {memory!r}")

    def elaborate(self, platform):
        m = Module()
        if self.kind == "spram":
            outs = []
            for k, spram in enumerate(self.memory):
                m.submodules[f"spram{k}"] = spram
                m.d.comb += [spram.wren.eq(self.wr_en), spram.mask.eq(0b1111),
                             spram.addr.eq(Mux(self.wr_en, self.wr_addr, self.rd_addr)),
                             spram.data_in.eq(Value.cast(self.wr_data)[SPRAM_BITS * k:SPRAM_BITS * (k + 1)])]
                outs.append(spram.data_out)
            m.d.comb += self.rd_data.eq(Cat(*outs))
            return m
        m.submodules.memory = mem = self.memory
        if isinstance(mem, PipelinedMemory):
            wiring.connect(m, wiring.flipped(self), mem)
            return m
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.addr.eq(self.rd_addr),
            self.rd_data.eq(rd.data),
            wr.addr.eq(self.wr_addr),
            wr.data.eq(self.wr_data),
            wr.en.eq(self.wr_en),
        ]
        return m
