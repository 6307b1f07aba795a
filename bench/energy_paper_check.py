"""Does the paper's conclusion hold on our measured accuracies? A real sweep, then the energy study.

    .venv/bin/python bench/energy_paper_check.py --work DIR [--train 12000 --test 2000]
        [--widths 4,8,16,32] [--qs 1,2,4,8,float] [--epochs 5] [--memory 0.01,0.05,0.5,2]

1. writes a Fashion-MNIST subset (the first --train / --test images of the Debian package
   dataset-fashion-mnist, IDX format) into DIR/fm (the full set takes ~1 min per epoch per network
   on one core, too long for a session);
2. runs `qjoule sweep --dataset fashion-mnist:DIR/fm` over blocks 1 x widths x Q (resumable);
3. runs `qjoule energy` with the moons2017 and horowitz45 profiles;
4. prints, per profile and memory size, the winning Q per error target, the spread across Q
   (worst / best per-Q minimum energy) and int8 / int4, and writes DIR/paper_check.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
STEMS = {"train-images-idx3-ubyte": "train", "train-labels-idx1-ubyte": "train",
         "t10k-images-idx3-ubyte": "test", "t10k-labels-idx1-ubyte": "test"}


def write_subset(out: Path, n_train: int, n_test: int) -> None:
    from qjoule.sw.data import read_idx

    out.mkdir(parents=True, exist_ok=True)
    for stem, split in STEMS.items():
        data = np.ascontiguousarray(read_idx(FASHION / f"{stem}.gz")[: n_train if split == "train" else n_test])
        header = bytes([0, 0, 8, data.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
        (out / stem).write_bytes(header + data.tobytes())


def qjoule(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "qjoule", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--train", type=int, default=12000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--widths", default="4,8,16,32")
    parser.add_argument("--qs", default="1,2,4,8,float")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--memory", default="0.01,0.05,0.5,2")
    parser.add_argument("--targets", default=None, help="error targets (default: the best error of each Q)")
    args = parser.parse_args()

    data = args.work / "fm"
    if not (data / "t10k-labels-idx1-ubyte").exists():
        write_subset(data, args.train, args.test)
    sweep = args.work / "sweep"
    qjoule("sweep", "--dataset", f"fashion-mnist:{data}", "--blocks", "1", "--width", args.widths,
           "--q", args.qs, "--epochs", str(args.epochs), "--seed", "0", "--out", str(sweep))
    summary = {}
    for profile in ("moons2017", "horowitz45"):
        out = args.work / f"energy-{profile}"
        extra = ["--target-error", args.targets] if args.targets else []
        qjoule("energy", "--results", str(sweep / "results.json"), "--profile", profile,
               "--memory", args.memory, *extra, "--out", str(out))
        summary[profile] = json.loads((out / "energy.json").read_text())["summary"]

    print(f"\n{'profile':>11} {'memory':>7} {'max spread':>11} {'int8/int4':>14}  winning Q per target error")
    for profile, per_memory in summary.items():
        for memory, s in per_memory.items():
            ratio = s["int8_over_int4"]
            ratio = f"{ratio['min']:.2f}..{ratio['max']:.2f}" if ratio else "-"
            spread = f"{s['max_spread']:.3g}" if s["max_spread"] else "-"
            winners = " ".join(f"{t}:{q}" for t, q in s["winner_q"].items())
            print(f"{profile:>11} {memory:>7} {spread:>11} {ratio:>14}  {winners}")
    (args.work / "paper_check.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                            "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
