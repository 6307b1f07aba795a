"""Randomized campaign: many random layers and whole networks on the RTL against the golden model.

Configurations: every Q in 1..16, each on several array shapes (1x1, non-square, square; the
channel counts of the cases fill the lanes or leave them empty), `tiny` buffers. Layer cases
(`qjoule.sim.cases.case_for_config`: a random conv layer, optional max-pool and second conv, a
dense layer, weights at the range ends, saturated pixels) and whole topology-family networks
(`intmodel.random_model`) are dealt round-robin over the configurations; each configuration is
built once and runs all its cases as testbench jobs (one simulation, reprogrammed per case),
every layer dumped and compared with exact equality, random gaps and backpressure on both
streams. Everything is a pure function of --seed.

    nice .venv/bin/python bench/random_campaign.py [--layers 1000] [--networks 50] [--sim verilator]
        [--seed 0] [--shapes-per-q 1] [--workers 1] [--out bench/random_campaign.json] [--work DIR]

Exit code 0 only with zero mismatches. A mismatch is listed with its configuration, case seed
and the command that reruns that configuration alone (--only INDEX).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qjoule.config import AccelConfig, variant
from qjoule.errors import UserError
from qjoule.program import encode
from qjoule.sim.cases import case_for_config
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel

#: Array shapes (rows, cols); Q takes shapes q, q+1, ... (mod len) of this list, so one shape per
#: Q already covers 1x1, non-square both ways and square across the Q range.
SHAPES = ((1, 1), (2, 3), (3, 1), (2, 2), (1, 3), (3, 2), (1, 2), (3, 3), (2, 1))
QS = tuple(range(1, 17))


def configs(shapes_per_q: int = 1) -> list[AccelConfig]:
    out = []
    for q in QS:
        for k in range(shapes_per_q):
            rows, cols = SHAPES[(q + k) % len(SHAPES)]
            out.append(variant("tiny", q=q, rows=rows, cols=cols))
    return out


@dataclasses.dataclass
class Job:
    kind: str                 # "layer" or "network"
    seed: int
    model: intmodel.IntModel
    images: np.ndarray
    describe: str


def network_job(seed: int, cfg: AccelConfig) -> Job:
    """A whole topology-family network that fits `cfg`'s buffers (widths drawn, narrowed until it fits)."""
    rng = np.random.default_rng([seed, 0x6E])
    shape = [(1, 8, 8), (3, 8, 8), (2, 8, 16)][int(rng.integers(0, 3))]
    blocks, width, classes = int(rng.integers(1, 3)), int(rng.choice([3, 4, 6, 8, 12])), int(rng.integers(2, 11))
    # narrower (then one block) until it fits the configuration's buffers
    tries = [(b, w) for b in sorted({blocks, 1}, reverse=True) for w in (12, 8, 6, 4, 3, 2) if w <= width]
    for blocks, width in tries:
        model = intmodel.random_model(shape, classes, blocks, width, cfg.q, seed=seed)
        try:
            encode(model, cfg, debug=True)
            break
        except UserError:
            continue
    else:
        raise UserError(f"no network of seed {seed} fits {cfg}")
    images = np.random.default_rng(seed).integers(0, 256, size=(2, *shape), dtype=np.uint8)
    return Job("network", seed, model, images, f"network seed {seed}: {shape}, {blocks} block(s), width {width}")


def plan(layers: int, networks: int, seed: int, shapes_per_q: int = 1) -> list[tuple[AccelConfig, list[tuple[str, int]]]]:
    """(config, [(kind, case seed), ...]) per configuration."""
    cfgs = configs(shapes_per_q)
    work: list[list[tuple[str, int]]] = [[] for _ in cfgs]
    for j in range(layers):
        work[j % len(cfgs)].append(("layer", seed * 1_000_000 + j))
    for k in range(networks):
        # spread the networks over the Q values and shapes (stride coprime to the count)
        work[(k * 7) % len(cfgs)].append(("network", seed * 1_000_000 + 500_000 + k))  # 7: coprime to 16 and 48
    return list(zip(cfgs, work))


def make_job(kind: str, case_seed: int, cfg: AccelConfig) -> Job:
    if kind == "network":
        return network_job(case_seed, cfg)
    case = case_for_config(case_seed, cfg)
    return Job("layer", case_seed, case.model, case.images, case.describe())


def run_config(index: int, cfg: AccelConfig, cases: list[tuple[str, int]], work: Path, sim: str) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    jobs, specs = [], []
    for kind, case_seed in cases:
        job = make_job(kind, case_seed, cfg)
        path = work / f"{kind}-{case_seed}.qjm"
        intmodel.save(job.model, path)
        jobs.append({"model": path, "images": job.images})
        specs.append(job)
    started = time.monotonic()
    tb, outcome, _ = run_jobs(jobs, cfg, work, sim=sim, seed=index, waves=False)
    seconds = time.monotonic() - started
    results = (tb or {}).get("jobs", [])
    mismatches = []
    for spec, result in zip(specs, results):
        for image in result["images"]:
            if not image["match"]:
                mismatches.append({"case": spec.describe, "kind": spec.kind, "seed": spec.seed,
                                   "image": image["image"], "first_mismatch": image["first_mismatch"]})
    ran = len(results)
    error = (tb or {}).get("error") if tb else f"no testbench result ({outcome.build_dir / 'sim.log'})"
    if ran < len(specs) and not error:
        error = f"only {ran} of {len(specs)} jobs ran"
    return {"index": index, "q": cfg.q, "rows": cfg.rows, "cols": cfg.cols, "lanes": cfg.lanes,
            "layers": sum(s.kind == "layer" for s in specs[:ran]),
            "networks": sum(s.kind == "network" for s in specs[:ran]),
            "planned": len(specs), "images": sum(len(r["images"]) for r in results),
            "cycles": (tb or {}).get("run", {}).get("cycles"), "build_seconds": round(outcome.build_seconds, 1),
            "seconds": round(seconds, 1), "passed": outcome.passed and not mismatches and not error,
            "mismatches": mismatches, "error": error}


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes-per-q", type=int, default=1, help="array shapes each Q runs on (one build each)")
    parser.add_argument("--workers", type=int, default=1, help="configurations simulated at once")
    parser.add_argument("--only", type=int, action="append", help="run only this configuration index (repeatable)")
    parser.add_argument("--out", default="bench/random_campaign.json")
    parser.add_argument("--work", default=None, help="keep the simulation folders here (default: a temporary folder)")
    args = parser.parse_args(argv)

    planned = [(i, cfg, cases) for i, (cfg, cases) in
               enumerate(plan(args.layers, args.networks, args.seed, args.shapes_per_q))
               if cases and (not args.only or i in args.only)]
    started, rows = time.monotonic(), []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="qjoule-campaign-") as tmp, \
            concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        root = Path(args.work) if args.work else Path(tmp)
        futures = [pool.submit(run_config, i, cfg, cases, root / f"cfg-{i}", args.sim) for i, cfg, cases in planned]
        bar = tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="configurations", unit="cfg",
                   file=sys.stderr)
        for future in bar:
            rows.append(future.result())
            rows.sort(key=lambda r: r["index"])
            bar.set_postfix(layers=sum(r["layers"] for r in rows), networks=sum(r["networks"] for r in rows),
                            failed=sum(not r["passed"] for r in rows))
            _write(args, rows, started, load_before, final=False)
    summary = _write(args, rows, started, load_before, final=True)
    print(f"{'cfg':>4} {'Q':>3} {'RxC':>5} {'S':>3} {'layers':>6} {'nets':>5} {'cycles':>9} {'build s':>8} {'s':>7}  result")
    for r in rows:
        print(f"{r['index']:>4} {r['q']:>3} {r['rows']}x{r['cols']:<3} {r['lanes']:>3} {r['layers']:>6} {r['networks']:>5} "
              f"{r['cycles'] or 0:>9} {r['build_seconds']:>8} {r['seconds']:>7}  "
              f"{'ok' if r['passed'] else 'FAIL ' + str(r['error'] or r['mismatches'][0])}")
    print(f"{summary['layers']} layers + {summary['networks']} networks ({summary['images']} images) on {len(rows)} "
          f"configurations, Q {summary['q_values']}: {summary['mismatching_cases']} mismatching, "
          f"{summary['failed_configs']} failed configurations, {summary['seconds']:.0f} s on {args.sim}")
    for r in rows:
        if not r["passed"]:
            print(f"rerun: nice .venv/bin/python bench/random_campaign.py --layers {args.layers} --networks "
                  f"{args.networks} --seed {args.seed} --shapes-per-q {args.shapes_per_q} --sim {args.sim} "
                  f"--only {r['index']}", file=sys.stderr)
    return 0 if summary["failed_configs"] == 0 else 1


def _write(args, rows, started, load_before, final: bool) -> dict:
    summary = {"layers": sum(r["layers"] for r in rows), "networks": sum(r["networks"] for r in rows),
               "images": sum(r["images"] for r in rows), "cycles": sum(r["cycles"] or 0 for r in rows),
               "q_values": sorted({r["q"] for r in rows}),
               "shapes": sorted({f"{r['rows']}x{r['cols']}" for r in rows}),
               "mismatching_cases": sum(len(r["mismatches"]) for r in rows),
               "failed_configs": sum(not r["passed"] for r in rows), "seconds": round(time.monotonic() - started, 1),
               "complete": final}
    result = {"command": " ".join(["bench/random_campaign.py", *sys.argv[1:]]), "simulator": args.sim,
              "git": _git_state(),
              "seed": args.seed, "planned": {"layers": args.layers, "networks": args.networks},
              "summary": summary, "configs": rows, "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_now": [round(x, 2) for x in os.getloadavg()]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return summary


def _git_state() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.split()
    except OSError:
        return "unknown"
    return f"{head}{' (working tree modified)' if dirty else ''}"


if __name__ == "__main__":
    sys.exit(main())
