"""Driving `QjouleAccel`'s 32-bit streams in the Amaranth simulator.

`simulate` sends a list of input words through `i` and collects `n_out` words from `o`, honouring
valid/ready on both sides; `gap_seed` inserts random idle cycles on the input (valid low) and
random backpressure on the output (ready low), so the handshake rules are exercised. It also
records, per layer, the cycles the sequencer spent and the cycles the array was enabled, which
is what bench/utilization.py reports.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

from amaranth.sim import Simulator


__all__ = ["SimResult", "simulate"]


@dataclasses.dataclass
class SimResult:
    outputs: list[int]
    cycles: int
    #: per layer index: (cycles from its first to its last busy cycle, cycles with the array enabled)
    layer_cycles: dict[int, list[int]]
    #: cycle at which input word `mark` was accepted, and the first cycle with `busy` high
    mark_cycle: int | None = None
    first_busy_cycle: int | None = None


def simulate(dut, words: Sequence[int], n_out: int, *, gap_seed: int | None = None, runs: int = 1,
             max_cycles: int = 2_000_000, vcd: str | None = None, mark: int | None = None,
             monitors: Sequence = (), out_stall: float = 0.3) -> SimResult:
    """Run `dut` (a QjouleAccel) until `runs` runs have ended and `n_out` output words arrived.
    With `gap_seed`, the input has random gaps and the output is not ready in a random
    `out_stall` share of the cycles. `monitors`: async functions of the simulator context run
    alongside (background processes that watch internal signals)."""
    rng = random.Random(gap_seed)
    outputs: list[int] = []
    stats: dict[int, list[int]] = {}
    state = {"cycles": 0, "mark": None, "busy": None, "now": 0}

    async def source(ctx):
        for index, w in enumerate(words):
            if gap_seed is not None:
                while rng.random() < 0.3:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, w)
            await ctx.tick().until(dut.i.ready)
            if index == mark:
                state["mark"] = state["now"]
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cycles, last_mac = 0, 0
        ended, was_busy = 0, False
        while cycles < max_cycles:
            ready = 1 if gap_seed is None else int(rng.random() >= out_stall)
            ctx.set(dut.o.ready, ready)
            valid, payload, busy, layer, mac = (ctx.get(dut.o.valid), ctx.get(dut.o.payload), ctx.get(dut.busy),
                                                ctx.get(dut.layer), ctx.get(dut.mac_cycles))
            await ctx.tick()
            cycles += 1
            state["now"] = cycles
            if busy and state["busy"] is None:
                state["busy"] = cycles - 1
            if was_busy and not busy:
                ended += 1
            was_busy = busy
            if busy:
                entry = stats.setdefault(layer, [0, 0])
                entry[0] += 1
                entry[1] += max(0, mac - last_mac)
            last_mac = mac
            if valid and ready:
                outputs.append(payload)
            if ended >= runs and len(outputs) >= n_out:
                break
        else:
            raise TimeoutError(f"no end of run after {max_cycles} cycles ({len(outputs)}/{n_out} words out)")
        state["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    for monitor in monitors:
        sim.add_process(monitor)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return SimResult(outputs[:], state["cycles"], stats, state["mark"], state["busy"])
