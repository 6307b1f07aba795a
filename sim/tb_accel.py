"""cocotb testbench: whole inferences on the generated `qjoule_accel`, checked against the golden model.

Structure as in cocotb's examples: a driver (`StreamDriver` on `i`, random gaps), a monitor
(`StreamMonitor` on `o`, random backpressure, valid/ready rule checks), a model (the golden model,
`qjoule.sw.golden.run`) and a checker (`compare_image`). A probe reads the accelerator's
`layer`/`busy`/`mac_cycles` ports when the layer changes, for the per-layer cycle counts.

The case comes from a JSON file named by $QJOULE_TB_CASE (written by qjoule.sim.simulate): the
config, a list of jobs (model, images .npy, optional golden_model), seed, gap/stall
probabilities, debug (dump every layer), result path. Jobs run one after the other on the same
hardware, each programming it anew, so one build serves many models. The test fails if any
compared value differs; the result JSON says where.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, SimTimeoutError, ValueChange, with_timeout

from qjoule.config import AccelConfig
from qjoule.program import encode
from qjoule.sim.checker import compare_image
from qjoule.sim.streams import StreamDriver, StreamMonitor
from qjoule.sw import golden, intmodel


CLOCK_NS = 10


def cycle_now() -> int:
    """Rising clock edges so far (the clock starts high at time 0: edges at 0, 10, 20, ... ns)."""
    return int(get_sim_time("ns")) // CLOCK_NS


class LayerProbe:
    """Counts, per layer index, the cycles the accelerator was busy and the cycles the array ran.

    It wakes only when `busy` or `layer` changes, not every cycle, so the simulator, not Python,
    sets the pace (Verilator runs far ahead of a per-cycle coroutine). A state shown after edge t
    holds for the cycles t .. t'-1 before the next change at t': (t' - t) cycles, and the array
    counter's increase over those edges is the array cycles run while that layer was shown.
    """

    def __init__(self, dut):
        self.dut = dut
        self.cycles: dict[int, int] = {}
        self.mac_cycles: dict[int, int] = {}
        self._state: int | None = None  # layer shown while busy, None when idle
        self._since = 0
        self._mac_since = 0

    def _read(self) -> tuple[int | None, int]:
        state = int(self.dut.layer.value) if int(self.dut.busy.value) else None
        return state, int(self.dut.mac_cycles.value)

    def close(self) -> None:
        """Account the running state up to now (call in a ReadOnly phase)."""
        now = cycle_now()
        _, mac = self._read()
        if self._state is not None:
            layer = self._state
            self.cycles[layer] = self.cycles.get(layer, 0) + now - self._since
            self.mac_cycles[layer] = self.mac_cycles.get(layer, 0) + (mac - self._mac_since) % (1 << 32)
        self._since, self._mac_since = now, mac

    async def run(self):
        await ReadOnly()
        self._state, self._mac_since = self._read()
        self._since = cycle_now()
        while True:
            await First(ValueChange(self.dut.busy), ValueChange(self.dut.layer))
            await ReadOnly()  # settled values of this time step (comb outputs may glitch)
            state, _ = self._read()
            if state != self._state:
                self.close()
                self._state = state


@cocotb.test()
async def inference_matches_golden(dut):
    case = json.loads(Path(os.environ["QJOULE_TB_CASE"]).read_text())
    cfg = AccelConfig.load(case["config"])
    rng = random.Random(case["seed"])

    # The clock starts low: a first rising edge at time 0 (X -> 1) would clock the registers
    # before Icarus has evaluated the combinational logic feeding them (they would load X, where
    # Verilator loads the evaluated value, and the simulators' toggles would differ).
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=False))
    driver = StreamDriver(dut, "i", dut.clk, random.Random(rng.random()), case["gap_probability"])
    monitor = StreamMonitor(dut, "o", dut.clk, random.Random(rng.random()), case["stall_probability"])
    probe = LayerProbe(dut)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    cocotb.start_soon(monitor.run())
    cocotb.start_soon(probe.run())

    job_results, all_match, error = [], True, None
    started, first_cycle = time.monotonic(), cycle_now()
    try:
        for job in case["jobs"]:
            # Each job programs the accelerator anew: a different model on the same hardware.
            result = await _run_job(dut, job, cfg, case, driver, monitor, probe)
            job_results.append(result)
            all_match &= all(r["match"] for r in result["images"])
    except Exception as e:  # a hang or a protocol error: keep what was compared, say why it stopped
        error = f"{e.__class__.__name__}: {e}"
        raise
    finally:
        # Wall time and cycles of the jobs alone (simulator start-up and reset excluded): the speed.
        run = {"cycles": cycle_now() - first_cycle, "seconds": round(time.monotonic() - started, 3)}
        Path(case["result"]).write_text(json.dumps({"jobs": job_results, "error": error, "run": run}, indent=2))
    first = next((r for j in job_results for r in j["images"] if not r["match"]), None)
    assert all_match, f"RTL differs from the golden model: {first['first_mismatch']}"


async def _run_job(dut, job, cfg, case, driver, monitor, probe) -> dict:
    model = intmodel.load(job["model"])
    # A mutated golden model (tests of the checker itself) may stand in for the programmed one.
    reference = intmodel.load(job.get("golden_model") or job["model"])
    images = np.load(job["images"])
    program = encode(model, cfg, debug=case["debug"])
    expected = golden.run(reference, images)
    await _sent(driver, program.setup_words, case["max_cycles"])
    n_out = program.output_word_count()
    results = []
    for index in range(len(images)):
        start = cycle_now()
        before = dict(probe.cycles), dict(probe.mac_cycles)
        received = len(monitor.words)
        send = cocotb.start_soon(driver.send(program.image_words(images[index])))
        words = await monitor.wait_for(received + n_out, timeout_cycles=case["max_cycles"])
        await _sent(driver, send, case["max_cycles"])  # a broken design may never take the rest
        await RisingEdge(dut.clk)  # (the monitor hands the last word over in a ReadOnly phase)
        await ReadOnly()
        probe.close()  # the image's layer cycles, read settled
        cycles = cycle_now() - start
        await RisingEdge(dut.clk)  # out of ReadOnly before the next image drives the inputs
        logits, layers = program.decode(words[received:])
        report = compare_image(reference, expected, index, logits, layers)
        report["cycles"] = cycles
        report["per_layer"] = _layer_delta(program, probe, before, cfg)
        results.append(report)
        dut._log.info(f"{Path(job['model']).name} image {index}: "
                      f"{'match' if report['match'] else 'MISMATCH'} in {report['cycles']} cycles")
        if not report["match"] and case.get("stop_on_mismatch"):
            break  # (mutation runs: a wrong design's later images tell nothing more)
    return {"model": job["model"], "images": results,
            "external_words": {"setup_in": len(program.setup_words),
                               "per_image_in": len(program.image_words(images[0])), "per_image_out": n_out}}


async def _sent(driver, words_or_task, max_cycles: int) -> None:
    """Wait for the driver to send (a list of words, or a running send task), at most `max_cycles`."""
    task = words_or_task if isinstance(words_or_task, cocotb.task.Task) else cocotb.start_soon(driver.send(words_or_task))
    try:
        await with_timeout(task, max_cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        raise TimeoutError(f"the input stream took {driver.sent} words in all, then none for {max_cycles} cycles") from None


def _layer_delta(program, probe: LayerProbe, before, cfg: AccelConfig) -> list[dict]:
    cycles_before, mac_before = before
    rows = []
    for i, plan in enumerate(program.layers):
        cycles = probe.cycles.get(i, 0) - cycles_before.get(i, 0)
        mac = probe.mac_cycles.get(i, 0) - mac_before.get(i, 0)
        # (per-layer modes: the layer's own lanes, D / mode_q, set its parallelism)
        mode = plan.entry.get("mode_q") or cfg.q
        ideal = plan.macs / (cfg.rows * cfg.cols * (cfg.datapath // mode))
        rows.append({"layer": plan.name, "label": plan.label, "kind": plan.kind, "cycles": cycles, "mac_cycles": mac,
                     "macs": plan.macs, "ideal_cycles": ideal,
                     "utilization": ideal / cycles if cycles else None})
    return rows
