"""cocotb test: words through a FIFO with random gaps and backpressure arrive intact, in order."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from qjoule.sim.streams import StreamDriver, StreamMonitor


@cocotb.test()
async def words_survive_gaps_and_backpressure(dut):
    seed = int(os.environ["TB_SEED"])
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    driver = StreamDriver(dut, "w", dut.clk, random.Random(rng.random()), gap_probability=0.4)
    monitor = StreamMonitor(dut, "r", dut.clk, random.Random(rng.random()), stall_probability=0.5)
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    cocotb.start_soon(monitor.run())
    words = [rng.getrandbits(16) for _ in range(300)]
    await driver.send(words)
    got = await monitor.wait_for(len(words), timeout_cycles=5000)
    assert got == words
