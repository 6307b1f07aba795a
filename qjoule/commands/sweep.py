"""qjoule sweep: train every (blocks, width, Q) of a grid on Optuna; resumable, shareable."""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path

HELP = "train the topology x Q grid (Optuna; resumable; several workers or machines)"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _q_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="data set name (default: digits)")
    p.add_argument("--blocks", type=_int_list, default=(1, 2, 3), help="blocks per stage, e.g. 1,2,3")
    p.add_argument("--width", type=_int_list, default=(32, 64, 128), help="filters per block, e.g. 32,64,128")
    p.add_argument("--q", type=_q_list, default=("1", "2", "4", "8", "16", "float"), help="bit-widths, e.g. 1,2,4,float")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--storage", help="SQLAlchemy URL of a shared study (default: sqlite file in --out)")
    p.add_argument("--join", metavar="URL", help="add one worker to the sweep stored at URL (its grid is read from it)")
    p.add_argument("--out", required=True, type=Path, help="sweep folder: storage, runs/, results.json, results.csv")


def run(args: argparse.Namespace) -> int:
    from qjoule.errors import UserError
    from qjoule.io import write_json
    from qjoule.sweep import Grid, collect_results, default_storage, open_study, run_worker, write_results

    out: Path = args.out
    _check_out(out)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers!r}")
    if args.join:
        study, grid = open_study(args.join, None, create=False)
        url = args.join
    else:
        grid = Grid(args.dataset, args.blocks, args.width, args.q, args.epochs, args.seed)
        _check_dataset(grid.dataset)
        url = args.storage or default_storage(out)
        out.mkdir(parents=True, exist_ok=True)
        study, grid = open_study(url, grid, create=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"grid": grid.to_dict(), "storage": url, "points": len(grid.points())})
    print(f"[sweep] {len(grid.points())} points, storage {url}")
    if args.workers == 1:
        run_worker(study, grid, out)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(url, out), daemon=False) for _ in range(args.workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    records, failed = collect_results(study, grid)
    write_results(out, records)
    summary = {"points": len(grid.points()), "finished": len(records), "failed": failed,
               "results": str(out / "results.json")}
    write_json(out / "sweep-summary.json", summary)
    print(f"[sweep] {len(records)}/{len(grid.points())} points finished; results in {out / 'results.json'}")
    for f in failed:
        print(f"[sweep] {f['point']} failed {len(f['errors'])} times: {f['errors'][-1]}")
    return 0 if len(records) == len(grid.points()) else 1


def _worker_main(url: str, out: Path) -> None:
    import torch

    from qjoule.sweep import open_study, run_worker

    torch.set_num_threads(1)
    study, grid = open_study(url, None, create=False)
    run_worker(study, grid, out)


def _check_out(out: Path) -> None:
    from qjoule.errors import UserError

    if out.exists() and any(out.iterdir()) and not (out / "sweep.json").exists():
        raise UserError(f"--out {str(out)!r} is not empty and holds no qjoule sweep; choose a new or empty folder")


def _check_dataset(name: str) -> None:
    """Fail before the study is created when the data set cannot load."""
    from qjoule.sw import data

    data.load(name)
