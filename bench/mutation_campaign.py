"""Mutation campaign: does the cocotb whole-network check catch deliberate faults?

The check: a random topology-family network (1x8x8 input, width 8, Q = 4, seed 7) and two images
on the `tiny` accelerator, every layer dumped and compared with the golden model of the original
model, random gaps and backpressure on both streams (as tests/sim/test_accel_rtl.py runs it).
First the unmutated design must pass; then each mutant runs once:

- design mutants (qjoule.sim.mutate): a named catalogue (a PE accumulator mux, the post-processing
  shift and clamp, carry terms of its adders, sequencer address counters) plus `--per-operator`
  sites of each operator drawn with --seed from the sequencer, the PEs and post-processing;
- model-file mutants: --weight-bits single weight-bit flips (drawn with --seed) and the dropped
  round-half-up term of each layer's bias. They are batched: one simulation, one job each.

A mutant is caught when any compared value differs, or the run hangs (no output within
--max-cycles per image) or breaks the stream protocol. Survivors of the model mutants are
checked against the golden model itself: if the mutant model gives the same outputs as the
original on these images, no simulation could tell them apart (listed as `equivalent on the
test images`).

    nice .venv/bin/python bench/mutation_campaign.py [--per-operator 3] [--weight-bits 8] [--seed 0]
        [--sim icarus] [--only NAME ...] [--out bench/mutation_campaign.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qjoule.config import variant
from qjoule.errors import UserError
from qjoule.sim import mutate
from qjoule.sim.simulate import TOPLEVEL, run_jobs
from qjoule.sw import golden, intmodel

#: Hand-picked design mutants: (operator, module, right-hand side, occurrence).
CATALOGUE = (
    ("mux-swap", "\\qjoule_accel.seq.array.pe_0_0", "clear3 ? 22'h000000 : acc", 0),        # accumulator clear
    ("mux-swap", "\\qjoule_accel.seq.array.pe_1_1", "act[1] ? weight[3:0] : 4'h0", 0),       # a partial product
    ("operand-swap", "\\qjoule_accel.seq.pp0", "$signed(s3_total) >>> s3_shift", 0),     # post-processing shift
    ("mux-swap", "\\qjoule_accel.seq.pp1", "t[64] ? 4'h0 : \\$7", 0),                      # clamp at 0
    ("drop-term", "\\qjoule_accel.seq.pp0", "\\$4 [64:0] + term_bias", 0),                # bias add
    ("drop-term", "\\qjoule_accel.seq.pp1", "\\$4 [64:0] + term_bias", 0),
    ("off-by-one", "\\qjoule_accel.seq", "kw + 1'h1", 0),                                 # kernel column
    ("off-by-one", "\\qjoule_accel.seq", "kh + 1'h1", 0),                                 # kernel row
    ("off-by-one", "\\qjoule_accel.seq", "w0 + 1'h1", 0),
    ("off-by-one", "\\qjoule_accel.seq", "wk + 1'h1", 0),                                 # writer group step
    ("off-by-one", "\\qjoule_accel.seq", "dump_addr + 1'h1", 0),                          # debug dump address
)
#: Modules the sampled design mutants come from (prefixes after the leading backslash).
SAMPLED_MODULES = ("qjoule_accel.seq.array.pe_", "qjoule_accel.seq.pp", "qjoule_accel.seq")


def base_case(work: Path):
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=7)
    path = work / "model.qjm"
    intmodel.save(model, path)
    images = np.random.default_rng(7).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    return model, path, images


def design_mutants(text: str, per_operator: int, seed: int) -> list[mutate.Mutant]:
    out = [mutate.Mutant(op, module=module, rhs=rhs, occurrence=k) for op, module, rhs, k in CATALOGUE]
    rng = np.random.default_rng(seed)
    for operator in mutate.VERILOG_OPERATORS:
        # every PE, both post-processing pipelines, and the sequencer module itself (not its
        # other submodules: the array wrapper and the metadata FIFO)
        sites = [s for prefix in SAMPLED_MODULES for s in mutate.verilog_sites(text, operator, prefix)
                 if s.module.lstrip("\\") == prefix or prefix.endswith(("pe_", "pp"))]
        sites = sorted({s.name: s for s in sites}.values(), key=lambda s: s.name)
        sites = [s for s in sites if s not in out]
        if sites:
            picks = rng.choice(len(sites), size=min(per_operator, len(sites)), replace=False)
            out += [sites[int(i)] for i in sorted(picks)]
    return out


def outcome_of(tb, outcome, job_index: int = 0) -> tuple[str, str]:
    """('caught' | 'survived', how) for one job of a run."""
    jobs = (tb or {}).get("jobs", [])
    if job_index < len(jobs):
        bad = [r for r in jobs[job_index]["images"] if not r["match"]]
        if bad:
            m = bad[0]["first_mismatch"]
            return "caught", f"image {bad[0]['image']} layer {m['layer']} index {m['index']}: expected {m['expected']}, got {m['got']}"
        if len(jobs[job_index]["images"]) == 2:
            return "survived", "every compared value equal"
    error = (tb or {}).get("error") or "the simulation ended without a result"
    return "caught", f"run stopped: {error}"


def main(argv=None) -> int:
    from tqdm import tqdm

    from qjoule.gateware.top import QjouleAccel
    from qjoule.hw.verilog import emit_verilog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-operator", type=int, default=3, help="sampled design mutants per operator")
    parser.add_argument("--weight-bits", type=int, default=8, help="weight-bit mutants of the model file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    parser.add_argument("--max-cycles", type=int, default=20_000, help="cycles per image before a run counts as hung")
    parser.add_argument("--only", action="append", help="run only the mutant of this name (repeatable)")
    parser.add_argument("--out", default="bench/mutation_campaign.json")
    args = parser.parse_args(argv)

    cfg = variant("tiny", q=4)
    started, load_before = time.monotonic(), os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qjoule-mutants-") as tmp:
        work = Path(tmp)
        model, model_path, images = base_case(work)
        text = emit_verilog(QjouleAccel(cfg), TOPLEVEL)
        run = dict(sim=args.sim, seed=args.seed, waves=False, max_cycles=args.max_cycles, stop_on_mismatch=True)
        tb, outcome, _ = run_jobs([{"model": model_path, "images": images}], cfg, work / "reference",
                                  verilog_text=text, **run)
        status, how = outcome_of(tb, outcome)
        if status != "survived" or not outcome.passed:
            print(f"the unmutated design does not pass: {how}", file=sys.stderr)
            return 2

        model_mutants = (mutate.weight_bit_mutants(model, args.weight_bits, args.seed)
                         + mutate.drop_rounding_mutants(model))
        design = design_mutants(text, args.per_operator, args.seed)
        if args.only:
            model_mutants = [m for m in model_mutants if m.name in args.only]
            design = [m for m in design if m.name in args.only]
            design += [mutate.parse(n) for n in args.only
                       if mutate.parse(n).target == "verilog" and mutate.parse(n) not in design]
        # model-file mutants: one simulation, the accelerator programmed with each mutant in turn
        if model_mutants:
            jobs = []
            for i, m in enumerate(model_mutants):
                path = work / f"mutant-{i}.qjm"
                intmodel.save(m.apply_model(model), path)
                jobs.append({"model": path, "images": images, "golden_model": model_path})
            t0 = time.monotonic()
            tb, outcome, _ = run_jobs(jobs, cfg, work / "model-mutants", verilog_text=text, **run)
            seconds = (time.monotonic() - t0) / len(jobs)
            for i, m in enumerate(model_mutants):
                status, how = outcome_of(tb, outcome, i)
                if status == "survived":
                    same = _same_golden(model, m.apply_model(model), images)
                    how = "equivalent on the test images (the golden model of the mutant gives the same outputs)" \
                        if same else "NOT equivalent: the check missed a real difference"
                rows.append(_row(m, status, how, seconds))
        for m in tqdm(design, desc="design mutants", unit="mutant", file=sys.stderr):
            try:
                mutant_text = m.apply_verilog(text)
            except UserError as e:
                rows.append(_row(m, "not applicable", str(e), 0.0))
                continue
            t0 = time.monotonic()
            try:
                tb, outcome, _ = run_jobs([{"model": model_path, "images": images}], cfg,
                                          work / f"design-{len(rows)}", verilog_text=mutant_text, **run)
                status, how = outcome_of(tb, outcome)
            except UserError as e:  # the mutant does not compile: not a valid mutant
                status, how = "invalid", str(e)
            rows.append(_row(m, status, how, time.monotonic() - t0))

    valid = [r for r in rows if r["status"] in ("caught", "survived")]
    caught = sum(r["status"] == "caught" for r in valid)
    print(f"{'status':<15} {'kind':<13} mutant / how")
    for r in rows:
        print(f"{r['status']:<15} {r['kind']:<13} {r['name']}\n{'':<29}{r['how'][:150]}")
    by_kind = {}
    for r in valid:
        k = by_kind.setdefault(r["kind"], [0, 0])
        k[0] += r["status"] == "caught"
        k[1] += 1
    print(f"score: {caught}/{len(valid)} mutants caught "
          + ", ".join(f"{kind} {c}/{n}" for kind, (c, n) in sorted(by_kind.items()))
          + f"; {time.monotonic() - started:.0f} s on {args.sim}")
    result = {"check": "random_model((1,8,8), 10, 1 block, width 8, Q=4, seed 7), 2 images, tiny q=4, per-layer dump",
              "simulator": args.sim, "seed": args.seed, "per_operator": args.per_operator,
              "weight_bits": args.weight_bits, "max_cycles": args.max_cycles,
              "score": {"caught": caught, "valid": len(valid),
                        "by_kind": {k: {"caught": c, "of": n} for k, (c, n) in sorted(by_kind.items())}},
              "mutants": rows, "seconds": round(time.monotonic() - started, 1), "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if caught == len(valid) else 1


def _row(m: mutate.Mutant, status: str, how: str, seconds: float) -> dict:
    return {"name": m.name, "kind": m.kind, "operator": m.operator, "target": m.target, "status": status,
            "how": how, "seconds": round(seconds, 1)}


def _same_golden(model, mutant, images) -> bool:
    a, b = golden.run(model, images), golden.run(mutant, images)
    return bool(np.array_equal(a.logits, b.logits)
                and all(np.array_equal(a.outputs[k], b.outputs[k]) for k in a.outputs))


if __name__ == "__main__":
    sys.exit(main())
