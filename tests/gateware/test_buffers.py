"""Activation and wide buffers in the Amaranth simulator: lane writes, halves, bank mapping."""

import numpy as np
from amaranth.sim import Simulator

from qjoule.config import AccelConfig
from qjoule.gateware.buffers import ActivationBuffer, WideBuffer
from qjoule.program import layout_codes


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_lane_writes_and_halves():
    cfg = AccelConfig(q=4, datapath=16, rows=2, cols=1, act_buffer_bits=2 * 2 * 8 * 16)
    dut = ActivationBuffer(cfg)
    assert dut.bank_depth == 8
    seen = {}

    async def bench(ctx):
        # bank 0 half 0 addr 3: whole word; bank 1 half 1 addr 3: lanes 1 and 3 only.
        ctx.set(dut.wr_half, 0)
        ctx.set(dut.wr_addr[0], 3)
        ctx.set(dut.wr_data[0], 0x1234)
        ctx.set(dut.wr_en[0], 0b1111)
        await ctx.tick()
        ctx.set(dut.wr_en[0], 0)
        ctx.set(dut.wr_half, 1)
        ctx.set(dut.wr_addr[1], 3)
        ctx.set(dut.wr_data[1], 0xABCD)
        ctx.set(dut.wr_en[1], 0b1010)
        await ctx.tick()
        ctx.set(dut.wr_data[1], 0x5555)
        ctx.set(dut.wr_en[1], 0b0001)
        await ctx.tick()
        ctx.set(dut.wr_en[1], 0)
        for half in (0, 1):
            ctx.set(dut.rd_half, half)
            ctx.set(dut.rd_addr[0], 3)
            ctx.set(dut.rd_addr[1], 3)
            await ctx.tick()
            seen[half] = (ctx.get(dut.rd_data[0]), ctx.get(dut.rd_data[1]))

    _run(dut, bench)
    assert seen[0] == (0x1234, 0)
    assert seen[1] == (0, 0xA0C5)


def test_preloaded_map_reads_by_layout():
    cfg = AccelConfig(q=2, datapath=8, rows=3, cols=1, act_buffer_bits=2 * 3 * 64 * 8)
    codes = np.random.default_rng(0).integers(0, 4, size=(6, 2, 7))
    layout, banks = layout_codes(codes, cfg)
    dut = ActivationBuffer(cfg, init=banks)
    got = {}

    async def bench(ctx):
        ctx.set(dut.rd_half, 0)
        for h in range(2):
            for w0 in range(0, 7 - 2):  # three consecutive columns -> three banks, one cycle
                for g in range(layout.groups):
                    for r in range(3):
                        bank, addr = layout.locate(h, w0 + r, g)
                        ctx.set(dut.rd_addr[bank], addr)
                    await ctx.tick()
                    for r in range(3):
                        bank, _ = layout.locate(h, w0 + r, g)
                        got[h, w0 + r, g] = ctx.get(dut.rd_data[bank])

    _run(dut, bench)
    for (h, w, g), word in got.items():
        for s in range(4):
            assert (word >> (2 * s)) & 3 == (codes[g * 4 + s, h, w] if g * 4 + s < 6 else 0)


def test_wide_buffer():
    dut = WideBuffer(40, 5, init=[1, 2, 3])
    got = []

    async def bench(ctx):
        ctx.set(dut.wr_addr, 4)
        ctx.set(dut.wr_data, (1 << 39) | 7)
        ctx.set(dut.wr_en, 1)
        await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for a in (2, 4):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            got.append(ctx.get(dut.rd_data))

    _run(dut, bench)
    assert got == [3, (1 << 39) | 7]
