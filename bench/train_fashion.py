"""Fashion-MNIST target: blocks 2, width 64, Q = 4 within 1.5 points of float (same topology).

    .venv/bin/python bench/train_fashion.py [--out train_fashion.json] [--epochs 10] [--threads 2]
                                             [--train-subset N]

Needs the Debian package dataset-fashion-mnist. Trains Q = 4 and float with the same seed and
settings as `qjoule train`, evaluates the PyTorch model and (Q = 4) the golden integer model on
the full 10k test split, prints a table and writes JSON. Not in CI: about 8 minutes per epoch
per network on one core of the development machine (measured by bench/train_speed.py: ~0.5 s
per batch-64 step, 937 steps per epoch). `--train-subset` trains on the first N training images
(a stratified-enough prefix of the shuffled IDX files) for a quicker, smaller figure.
`--parallel` trains the networks in separate processes at once (one per core; each keeps
`--threads` threads, so the figures equal a sequential run's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from pathlib import Path

from qjoule.sw import data
from qjoule.sw.quant import parse_q
from qjoule.sw.train import TrainConfig, train

MAX_GAP = 0.015


def load_fashion(train_subset: int | None) -> data.Dataset:
    ds = data.load("fashion-mnist")
    if train_subset:
        ds.train_x, ds.train_y = ds.train_x[:train_subset], ds.train_y[:train_subset]
    return ds


def train_one(config: TrainConfig, train_subset: int | None, progress: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return train(config, Path(tmp), progress=progress, ds=load_fashion(train_subset))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="train_fashion.json")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--qs", default="4,float", help="networks to train (the gap needs both 4 and float)")
    parser.add_argument("--parallel", action="store_true", help="train the networks at once, one process each")
    args = parser.parse_args()
    ds = load_fashion(args.train_subset)
    configs = {text: TrainConfig(dataset="fashion-mnist", q=parse_q(text), blocks=2, width=64, epochs=args.epochs,
                                 seed=args.seed, batch_size=args.batch_size, lr=args.lr, threads=args.threads)
               for text in args.qs.split(",")}
    jobs = [(config, args.train_subset, True) for config in configs.values()]
    if args.parallel:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            results = pool.starmap(train_one, jobs)
    else:
        results = [train_one(*job) for job in jobs]
    rows = {("float" if config.q is None else str(config.q)): m for config, m in zip(configs.values(), results)}
    gap = rows["float"]["test_accuracy"] - rows["4"]["test_accuracy"] if {"float", "4"} <= set(rows) else None
    print(f"{'Q':>5} {'torch acc':>9} {'int acc':>8} {'train s':>8}")
    for name, m in rows.items():
        int_acc = "-" if m["int_test_accuracy"] is None else f"{m['int_test_accuracy']:.4f}"
        print(f"{name:>5} {m['test_accuracy']:>9.4f} {int_acc:>8} {m['train_seconds']:>8.0f}")
    if gap is not None:
        print(f"float - Q=4 = {gap * 100:.2f} points (target <= {MAX_GAP * 100:.1f}): {'ok' if gap <= MAX_GAP else 'MISSED'}")
    with open(args.out, "w") as f:
        json.dump({"bench": "train_fashion", "blocks": 2, "width": 64, "epochs": args.epochs,
                   "train_images": int(len(ds.train_y)), "test_images": int(len(ds.test_y)),
                   "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                   "gap_points": None if gap is None else gap * 100,
                   "meets_target": None if gap is None else gap <= MAX_GAP, "runs": rows}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
