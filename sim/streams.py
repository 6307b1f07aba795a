"""cocotb driver and monitor for amaranth.lib.stream ports in the emitted Verilog.

Amaranth flattens a stream member `i` into `i__valid`, `i__ready` and `i__payload`. The driver
offers words with random gaps (valid low) and the monitor applies random backpressure (ready low),
both from a seeded `random.Random`, so a failing run is reproduced by its seed. The monitor also
checks the valid/ready rules the streams promise: once valid is high, the payload holds and valid
stays high until the transfer.

Both sleep on the other side's valid/ready edge while nothing can transfer (the driver waiting for
ready, the monitor while valid is low) instead of waking every clock: a long computation then costs
no Python per cycle, which is what lets a fast simulator (Verilator) run at its own pace.
"""

from __future__ import annotations

import random

import cocotb.triggers

from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge, with_timeout


class StreamProtocolError(AssertionError):
    pass


def _stream_ports(dut, name: str):
    """The flattened `<name>__valid`, `<name>__ready`, `<name>__payload` handles of a stream."""
    return tuple(getattr(dut, f"{name}__{member}") for member in ("valid", "ready", "payload"))


class StreamDriver:
    """Drives `<name>__valid/__payload` and waits for `<name>__ready` (the DUT's input stream)."""

    def __init__(self, dut, name: str, clk, rng: random.Random, gap_probability: float = 0.0):
        self.valid, self.ready, self.payload = _stream_ports(dut, name)
        self.clk, self.rng, self.gap_probability = clk, rng, gap_probability
        self.sent = 0
        # An idle bus is driven low, not left floating: a Z payload would make the reset-less
        # registers it feeds X in Icarus, where Verilator starts them at 0 (their toggles differ).
        self.valid.value = 0
        self.payload.value = 0

    async def send(self, words) -> None:
        for word in words:
            while self.rng.random() < self.gap_probability:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = int(word)
            while True:
                await ReadOnly()
                # X/Z (e.g. straight out of reset) is not a ready.
                accepted = self.ready.value.is_resolvable and int(self.ready.value) == 1
                if accepted:
                    await RisingEdge(self.clk)
                    break
                await RisingEdge(self.ready)  # no transfer before ready rises: sleep till then
            self.sent += 1
        self.valid.value = 0


class StreamMonitor:
    """Collects `<name>__payload` words (the DUT's output stream) under random backpressure."""

    def __init__(self, dut, name: str, clk, rng: random.Random, stall_probability: float = 0.0):
        self.valid, self.ready, self.payload = _stream_ports(dut, name)
        self.clk, self.rng, self.stall_probability = clk, rng, stall_probability
        self.words: list[int] = []
        self.ready.value = 0
        self._received = Event()  # set on every word taken
        self._period: int | None = None  # clock period in simulator steps, measured on first wait

    async def run(self) -> None:
        """Run forever (start with cocotb.start_soon); checks the valid/ready rules each cycle."""
        pending: int | None = None  # payload seen with valid high and no transfer yet
        while True:
            ready = int(self.rng.random() >= self.stall_probability)
            self.ready.value = ready
            await ReadOnly()
            if not self.valid.value.is_resolvable:
                raise StreamProtocolError(f"valid is {self.valid.value} (not 0 or 1) out of reset")
            valid = int(self.valid.value) == 1
            if pending is not None and not valid:
                raise StreamProtocolError(f"valid dropped before the transfer of {pending:#x}")
            if valid:
                payload = int(self.payload.value)
                if pending is not None and payload != pending:
                    raise StreamProtocolError(f"payload changed from {pending:#x} to {payload:#x} while waiting for ready")
                if ready:
                    self.words.append(payload)
                    self._received.set()
                    pending = None
                else:
                    pending = payload
                await RisingEdge(self.clk)
            else:
                await RisingEdge(self.valid)  # nothing offered: sleep until valid rises

    async def wait_for(self, count: int, timeout_cycles: int) -> list[int]:
        if self._period is None:
            await RisingEdge(self.clk)
            start = get_sim_time()
            await RisingEdge(self.clk)
            self._period = get_sim_time() - start
        deadline = get_sim_time() + timeout_cycles * self._period
        while len(self.words) < count:
            left = deadline - get_sim_time()
            self._received.clear()
            try:
                if left <= 0:
                    raise TimeoutError
                await with_timeout(self._received.wait(), left, "step")
            except (TimeoutError, cocotb.triggers.SimTimeoutError):
                raise TimeoutError(f"got {len(self.words)} of {count} output words in {timeout_cycles} cycles") from None
        return self.words[:count]
