"""cocotb testbench: the board top (`HostTop`) driven over its UART pins by the real host driver.

A UART model in the testbench puts bytes on `rx` and reads characters off `tx` at the design's
baud divisor. The host side is `qjoule.sw.hostlink` itself (`HostLink`, `run_images`), running
in a cocotb bridge thread: its transport hands bytes to the UART model and waits for answers in
simulated time. One frame can be corrupted on its way to the board (a bit flipped) to check that
it is NAKed, has no effect, and that the retry goes through; one answer can be corrupted on its way
back, so the driver sends the frame again and the board must recognise the repeat.

The case comes from a JSON file named by $QJOULE_TB_CASE: config, model, images (.npy), divisor,
corrupt ({frame, byte}: a bit flipped in that byte of that write; {answer_byte}: in that byte
of all the bytes read; or null), timeout_cycles, result path, and optionally reset_mid_run (a
RESET while the first image goes in, then the whole run again). The testbench
writes the logits it read and the link's counters; the pytest side compares them with the golden
model. It also counts the words that entered the accelerator's input stream.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from qjoule.config import AccelConfig
from qjoule.program import encode
from qjoule.sw import intmodel
from qjoule.sw.hostlink import HostLink, run_images


class UartModel:
    """The host's end of the serial line: drives `rx`, decodes `tx` (checking each stop bit)."""

    def __init__(self, dut, divisor: int):
        self.dut, self.divisor = dut, divisor
        self.received = bytearray()
        self.last_byte_cycle = 0
        self.cycle = 0
        self.framing_errors = 0

    async def count_cycles(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def send(self, data: bytes):
        for byte in data:
            for level in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                self.dut.rx.value = level
                await ClockCycles(self.dut.clk, self.divisor)

    async def monitor(self):
        tx = self.dut.tx
        while True:
            await FallingEdge(tx)
            await ClockCycles(self.dut.clk, self.divisor // 2)   # the middle of the start bit
            if int(tx.value) != 0:
                continue  # a glitch
            byte = 0
            for i in range(8):
                await ClockCycles(self.dut.clk, self.divisor)
                byte |= int(tx.value) << i
            await ClockCycles(self.dut.clk, self.divisor)
            if int(tx.value) != 1:
                self.framing_errors += 1
                continue
            self.received.append(byte)
            self.last_byte_cycle = self.cycle


class SimTransport:
    """hostlink's Transport over the UART model. Called from the bridge thread; time is simulated:
    a read gives up after `timeout_cycles` without a new byte (the driver's seconds are ignored)."""

    def __init__(self, uart: UartModel, timeout_cycles: int):
        self.uart, self.timeout_cycles = uart, timeout_cycles
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._send(bytes(data))

    def read(self, size: int, timeout: float) -> bytes:
        return self._read(size)

    def flush_input(self) -> None:
        self.uart.received.clear()

    @resume
    async def _send(self, data: bytes) -> None:
        await self.uart.send(data)

    @resume
    async def _read(self, size: int) -> bytes:
        uart = self.uart
        last_seen, since = len(uart.received), 0
        step = 10 * uart.divisor  # one character time
        while len(uart.received) < size and since < self.timeout_cycles:
            await ClockCycles(uart.dut.clk, step)
            since = 0 if len(uart.received) != last_seen else since + step
            last_seen = len(uart.received)
        data = bytes(uart.received[:size])
        del uart.received[:size]
        return data


class CorruptingTransport:
    """Flips one bit of byte `byte_index` of the n-th frame written (counting from 0), and/or one
    bit of byte number `answer_byte` of everything read from the board, once each."""

    def __init__(self, inner, frame: int | None = None, byte_index: int = 0, answer_byte: int | None = None):
        self.inner, self.frame, self.byte_index, self.answer_byte = inner, frame, byte_index, answer_byte
        self.writes = 0
        self.read_count = 0
        self.corrupted: str | None = None
        self.corrupted_answer: str | None = None

    def write(self, data: bytes) -> None:
        if self.writes == self.frame:
            damaged = bytearray(data)
            damaged[self.byte_index] ^= 0x10
            self.corrupted = f"frame {self.writes} byte {self.byte_index}: {data[self.byte_index]:#04x} -> " \
                             f"{damaged[self.byte_index]:#04x}"
            data = bytes(damaged)
        self.writes += 1
        self.inner.write(data)

    def read(self, size: int, timeout: float) -> bytes:
        data = bytearray(self.inner.read(size, timeout))
        at = None if self.answer_byte is None else self.answer_byte - self.read_count
        if at is not None and 0 <= at < len(data):
            self.corrupted_answer = f"answer byte {self.answer_byte}: {data[at]:#04x} -> {data[at] ^ 0x10:#04x}"
            data[at] ^= 0x10
        self.read_count += len(data)
        return bytes(data)

    def flush_input(self) -> None:
        self.inner.flush_input()


async def count_words(dut, counter: dict):
    """Words that entered the accelerator's input stream (valid and ready on a rising edge)."""
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.words__valid.value) and int(dut.words__ready.value):
            counter["words"] += 1


@cocotb.test()
async def host_link_end_to_end(dut):
    case = json.loads(Path(os.environ["QJOULE_TB_CASE"]).read_text())
    cfg = AccelConfig.load(case["config"])
    model = intmodel.load(case["model"])
    images = np.load(case["images"])
    program = encode(model, cfg)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    uart = UartModel(dut, case["divisor"])
    cocotb.start_soon(uart.count_cycles())
    cocotb.start_soon(uart.monitor())
    counter = {"words": 0}
    cocotb.start_soon(count_words(dut, counter))
    transport = SimTransport(uart, case["timeout_cycles"])
    corrupt = case.get("corrupt") or {}
    if corrupt:
        transport = CorruptingTransport(transport, corrupt.get("frame"), corrupt.get("byte", 0), corrupt.get("answer_byte"))
    link = HostLink(transport, timeout=1.0, retries=3, name="HostTop")

    @resume
    async def taken_words() -> int:
        await ClockCycles(dut.clk, 8)   # the last frame's words drained from the link
        return counter["words"]

    def session():
        before = link.connect(cfg)
        if case.get("reset_mid_run"):
            # the program and half of the first image's words, then a RESET while the
            # accelerator takes them: the run below must start from a clean accelerator (else it
            # reads the program as the rest of the image) and an empty result buffer
            words = program.image_words(images[0])
            link.write_words(program.setup_words)
            link.write_words(words[:len(words) // 2])
            result["reset_after_words"] = {"sent": len(program.setup_words) + len(words) // 2,
                                           "taken": taken_words()}
            link.reset()
        # (a stuck accelerator fails in 300 empty READs, ~200k cycles, not the driver's 10000)
        logits = run_images(link, program, images, max_polls=300)
        return before, logits, link.status()

    result = {"error": None}
    try:
        before, logits, after = await bridge(session)()
        result.update({"status_before": before, "status_after": after, "logits": [v.tolist() for v in logits]})
    except Exception as e:
        result["error"] = f"{e.__class__.__name__}: {e}"
        raise
    finally:
        sent = len(program.setup_words) + sum(len(program.image_words(img)) for img in images)
        result.update({"frames": link.frames, "retried": link.retried, "naks": link.naks, "lost": link.lost,
                       "cycles": uart.cycle, "accel_words": counter["words"], "words_sent": sent,
                       "corrupted": getattr(transport, "corrupted", None),
                       "corrupted_answer": getattr(transport, "corrupted_answer", None),
                       "framing_errors": uart.framing_errors})
        Path(case["result"]).write_text(json.dumps(result, indent=2))
