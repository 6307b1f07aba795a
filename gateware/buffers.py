"""On-chip SRAM buffers: the banked activation buffer, the weight buffer, the param buffer.

All are `amaranth.lib.memory.Memory` with one synchronous read port (data one cycle after the
address) and one write port, so one engine can read this layer's inputs while another writes its
outputs in the same cycle.

- `ActivationBuffer`: R banks of D-bit words, each bank holding both halves (half h at addresses
  h·bank_depth ...). Writes have Q-bit granularity (one enable per lane; with per-layer modes
  the gcd of the modes, `cfg.write_granularity`, so every mode's lanes are whole enables), so a tile of output
  channels that fills only part of a word leaves the other lanes alone. The layout of a feature
  map over the banks is `qjoule.program.MapLayout`.
- `WideBuffer`: one memory of wide words (weight buffer: C·D bits, one D-bit word per column;
  param buffer: per-tile metadata + C × (mult, bias)).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from qjoule.config import AccelConfig
from qjoule.program import bank_depth

__all__ = ["ActivationBuffer", "WideBuffer", "activation_buffer_signature", "wide_buffer_signature"]


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
        self.banks = [Memory(shape=unsigned(d), depth=2 * self.bank_depth, init=(init[b] if init else []))
                      for b in range(r)]

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        # A power-of-two bank depth puts the half in the top address bit (wiring, not an adder
        # in front of the block RAM's address pins).
        pow2 = self.bank_depth == 1 << self.addr_bits

        def address(addr, half):
            return Cat(addr, half) if pow2 else addr + half * self.bank_depth

        for b, mem in enumerate(self.banks):
            m.submodules[f"bank{b}"] = mem
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


class WideBuffer(wiring.Component):
    """One memory of `shape`-wide words: a synchronous read port and a whole-word write port."""

    def __init__(self, shape, depth: int, *, init=()):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.depth = depth
        self.addr_bits = max(1, ceil_log2(depth))
        super().__init__(wide_buffer_signature(shape, depth))
        self.memory = Memory(shape=shape, depth=depth, init=list(init))

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = self.memory
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
