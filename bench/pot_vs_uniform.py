"""Accuracy of power-of-two vs uniform weights at 3 and 4 bits (digits; fashion-mnist optional).

    .venv/bin/python bench/pot_vs_uniform.py [--out pot_vs_uniform.json] [--dataset digits] [--qs 3,4]
                                             [--seeds 0,1,2] [--epochs 10] [--width 32] [--prune 0.5]
                                             [--train-subset N] [--lr LR] [--batch-size B]

Trains each (Q, weights) with the same `train` as `qjoule train` (activations are uniform Q-bit
codes in both), evaluates the PyTorch model and the golden integer model on the whole test split,
and prints one row per run plus the mean over seeds. `--prune F` adds PoT runs with log-domain
pruning to F zero weights per layer. Writes the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from qjoule.sw import data
from qjoule.sw.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="pot_vs_uniform.json")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--qs", default="3,4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--prune", type=float, default=0.5, help="PoT pruning fraction for the extra runs (0: none)")
    parser.add_argument("--train-subset", type=int, default=None, help="train on the first N training images")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    ds = data.load(args.dataset)
    if args.train_subset:
        ds.train_x, ds.train_y = ds.train_x[:args.train_subset], ds.train_y[:args.train_subset]
    variants = [("uniform", 0.0), ("pot", 0.0)] + ([("pot", args.prune)] if args.prune > 0 else [])
    rows = []
    print(f"{'Q':>2} {'weights':>8} {'prune':>5} {'seed':>4} {'torch acc':>9} {'int acc':>8} {'agree':>6} {'zeros':>6} {'s':>5}")
    for q in (int(v) for v in args.qs.split(",")):
        for w_kind, prune in variants:
            for seed in (int(s) for s in args.seeds.split(",")):
                config = TrainConfig(dataset=args.dataset, q=q, w_kind=w_kind, prune=prune, blocks=args.blocks,
                                     width=args.width, epochs=args.epochs, seed=seed, lr=args.lr,
                                     batch_size=args.batch_size)
                with tempfile.TemporaryDirectory() as tmp:
                    m = train(config, Path(tmp), progress=False, ds=ds)
                rows.append({**m, "w_kind": w_kind, "prune": prune})
                print(f"{q:>2} {w_kind:>8} {prune:>5.2f} {seed:>4} {m['test_accuracy']:>9.4f} {m['int_test_accuracy']:>8.4f} "
                      f"{m['int_agreement']:>6.4f} {m.get('weight_sparsity', float('nan')):>6.3f} {m['train_seconds']:>5.1f}",
                      flush=True)
    summary = []
    print(f"\n{'Q':>2} {'weights':>8} {'prune':>5}  mean int acc (min..max over seeds)")
    for q in (int(v) for v in args.qs.split(",")):
        for w_kind, prune in variants:
            accs = [r["int_test_accuracy"] for r in rows if r["q"] == q and r["w_kind"] == w_kind and r["prune"] == prune]
            summary.append({"q": q, "w_kind": w_kind, "prune": prune, "mean_int_accuracy": statistics.mean(accs),
                            "min": min(accs), "max": max(accs), "seeds": len(accs)})
            print(f"{q:>2} {w_kind:>8} {prune:>5.2f}  {statistics.mean(accs):.4f} ({min(accs):.4f}..{max(accs):.4f})")
    with open(args.out, "w") as f:
        json.dump({"bench": "pot_vs_uniform", "dataset": args.dataset, "blocks": args.blocks, "width": args.width,
                   "epochs": args.epochs, "train_images": int(len(ds.train_y)), "lr": args.lr,
                   "batch_size": args.batch_size, "summary": summary, "runs": rows}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
