"""cocotb testbench: whole inferences on the generated `qjoule_accel`, checked against the golden model.

Structure as in cocotb's examples: a driver (`StreamDriver` on `i`, random gaps), a monitor
(`StreamMonitor` on `o`, random backpressure, valid/ready rule checks), a model (the golden model,
`qjoule.sw.golden.run`) and a checker (`compare_image`). A probe samples the accelerator's
`layer`/`busy`/`mac_cycles` ports every cycle for the per-layer activity.

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
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from qjoule.config import AccelConfig
from qjoule.program import encode
from qjoule.sim.checker import compare_image
from qjoule.sim.streams import StreamDriver, StreamMonitor
from qjoule.sw import golden, intmodel


class LayerProbe:
    """Counts, per layer index, the cycles the accelerator was busy and the cycles the array ran."""

    def __init__(self, dut):
        self.dut = dut
        self.cycles: dict[int, int] = {}
        self.mac_cycles: dict[int, int] = {}
        self.total = 0

    async def run(self):
        last_mac = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            self.total += 1
            mac = int(self.dut.mac_cycles.value)
            if int(self.dut.busy.value):
                layer = int(self.dut.layer.value)
                self.cycles[layer] = self.cycles.get(layer, 0) + 1
                self.mac_cycles[layer] = self.mac_cycles.get(layer, 0) + (mac - last_mac) % (1 << 32)
            last_mac = mac


@cocotb.test()
async def inference_matches_golden(dut):
    case = json.loads(Path(os.environ["QJOULE_TB_CASE"]).read_text())
    cfg = AccelConfig.load(case["config"])
    rng = random.Random(case["seed"])

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    driver = StreamDriver(dut, "i", dut.clk, random.Random(rng.random()), case["gap_probability"])
    monitor = StreamMonitor(dut, "o", dut.clk, random.Random(rng.random()), case["stall_probability"])
    probe = LayerProbe(dut)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    cocotb.start_soon(monitor.run())
    cocotb.start_soon(probe.run())

    job_results, all_match, error = [], True, None
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
        Path(case["result"]).write_text(json.dumps({"jobs": job_results, "error": error}, indent=2))
    first = next((r for j in job_results for r in j["images"] if not r["match"]), None)
    assert all_match, f"RTL differs from the golden model: {first['first_mismatch']}"


async def _run_job(dut, job, cfg, case, driver, monitor, probe) -> dict:
    model = intmodel.load(job["model"])
    # A mutated golden model (tests of the checker itself) may stand in for the programmed one.
    reference = intmodel.load(job.get("golden_model") or job["model"])
    images = np.load(job["images"])
    program = encode(model, cfg, debug=case["debug"])
    expected = golden.run(reference, images)
    await driver.send(program.setup_words)
    n_out = program.output_word_count()
    results = []
    for index in range(len(images)):
        start = probe.total
        before = dict(probe.cycles), dict(probe.mac_cycles)
        received = len(monitor.words)
        send = cocotb.start_soon(driver.send(program.image_words(images[index])))
        words = await monitor.wait_for(received + n_out, timeout_cycles=case["max_cycles"])
        await send
        logits, layers = program.decode(words[received:])
        report = compare_image(reference, expected, index, logits, layers)
        report["cycles"] = probe.total - start
        report["per_layer"] = _layer_delta(program, probe, before, cfg)
        results.append(report)
        dut._log.info(f"{Path(job['model']).name} image {index}: "
                      f"{'match' if report['match'] else 'MISMATCH'} in {report['cycles']} cycles")
    return {"model": job["model"], "images": results,
            "external_words": {"setup_in": len(program.setup_words),
                               "per_image_in": len(program.image_words(images[0])), "per_image_out": n_out}}


def _layer_delta(program, probe: LayerProbe, before, cfg: AccelConfig) -> list[dict]:
    cycles_before, mac_before = before
    rows = []
    for i, plan in enumerate(program.layers):
        cycles = probe.cycles.get(i, 0) - cycles_before.get(i, 0)
        mac = probe.mac_cycles.get(i, 0) - mac_before.get(i, 0)
        ideal = plan.macs / cfg.parallelism
        rows.append({"layer": plan.name, "kind": plan.kind, "cycles": cycles, "mac_cycles": mac,
                     "macs": plan.macs, "ideal_cycles": ideal,
                     "utilization": ideal / cycles if cycles else None})
    return rows
