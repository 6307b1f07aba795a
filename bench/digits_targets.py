"""Accuracy targets on digits: blocks 1, width 32, 10 epochs, seed 0, at Q = 1, 2, 4, 8 and float.

    .venv/bin/python bench/digits_targets.py [--out digits_targets.json] [--qs 1,2,4,8,float] [--seeds 0]

Runs the same `train` as `qjoule train` (into a temporary folder) and prints the PyTorch test
accuracy, the integer (golden) model's accuracy and their agreement. Targets (issue 2): >= 95% at
Q = 2, 4, 8 and float, >= 90% at Q = 1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from qjoule.sw import data
from qjoule.sw.quant import parse_q
from qjoule.sw.train import TrainConfig, train

TARGETS = {1: 0.90, 2: 0.95, 4: 0.95, 8: 0.95, None: 0.95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="digits_targets.json")
    parser.add_argument("--qs", default="1,2,4,8,float")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    ds = data.load("digits")
    rows = []
    print(f"{'Q':>5} {'seed':>4} {'torch acc':>9} {'int acc':>8} {'agree':>6} {'target':>6}  {'s':>5}")
    for text in args.qs.split(","):
        q = parse_q(text)
        for seed in (int(s) for s in args.seeds.split(",")):
            config = TrainConfig(dataset="digits", q=q, blocks=1, width=32, epochs=args.epochs, seed=seed)
            with tempfile.TemporaryDirectory() as tmp:
                m = train(config, Path(tmp), progress=False, ds=ds)
            target = TARGETS.get(q)
            ok = target is None or m["test_accuracy"] >= target
            rows.append({**m, "target": target, "meets_target": ok})
            int_acc = "-" if m["int_test_accuracy"] is None else f"{m['int_test_accuracy']:.4f}"
            agree = "-" if m["int_agreement"] is None else f"{m['int_agreement']:.4f}"
            print(f"{m['q']!s:>5} {seed:>4} {m['test_accuracy']:>9.4f} {int_acc:>8} {agree:>6} "
                  f"{'-' if target is None else f'{target:.2f}':>6}  {m['train_seconds']:>5.1f} {'ok' if ok else 'MISSED'}",
                  flush=True)
    with open(args.out, "w") as f:
        json.dump({"bench": "digits_targets", "blocks": 1, "width": 32, "epochs": args.epochs, "runs": rows}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
