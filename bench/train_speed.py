"""Training step cost of the Q = 4 network vs the float network, and golden-model throughput.

    .venv/bin/python bench/train_speed.py [--out train_speed.json] [--steps 30] [--threads 1]

For two topology-family networks (digits 8x8 blocks 1 width 32, batch 32; a 28x28 blocks 2
width 64 network, batch 64), times forward + backward + Adam step + weight clipping on random
pixels as the median of `--steps` steps after warm-up, at Q = 4 and at float (interleaved step by
step, so load from other processes hits both alike).
Target (issue 2): the Q = 4 step costs at most 1.5x the float step.
Then the golden model's images/s on the digits test split (a trained-shape random Q = 4 model).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from qjoule.sw import data, golden, intmodel
from qjoule.sw.topology import QNN, pixels_to_input

TARGET_RATIO = 1.5
CASES = [("digits 8x8 b1 w32", (1, 8, 8), 1, 32, 32), ("28x28 b2 w64", (1, 28, 28), 2, 64, 64)]


def step_times(input_shape, blocks, width, batch, steps) -> tuple[float, float]:
    """Median step time of the float and the Q = 4 network, steps interleaved so that load
    changes on a shared machine hit both alike."""
    torch.manual_seed(0)
    x = pixels_to_input(torch.randint(0, 256, (batch, *input_shape), dtype=torch.uint8))
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    nets = {q: QNN(input_shape, 10, blocks, width, q) for q in (None, 4)}
    opts = {q: torch.optim.Adam(net.parameters(), lr=1e-3) for q, net in nets.items()}
    times = {q: [] for q in nets}
    for i in range(steps + 3):
        for q, net in nets.items():
            t0 = time.perf_counter()
            loss = loss_fn(net(x), y)
            opts[q].zero_grad(set_to_none=True)
            loss.backward()
            opts[q].step()
            net.clip_weights_()
            if i >= 3:  # warm-up
                times[q].append(time.perf_counter() - t0)
    return statistics.median(times[None]), statistics.median(times[4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="train_speed.json")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    print(f"{'network':<20} {'batch':>5} {'float ms':>9} {'Q=4 ms':>8} {'ratio':>6}  target <= {TARGET_RATIO}")
    for name, shape, blocks, width, batch in CASES:
        t_float, t_q4 = step_times(shape, blocks, width, batch, args.steps)
        ratio = t_q4 / t_float
        rows.append({"network": name, "batch": batch, "float_step_s": t_float, "q4_step_s": t_q4, "ratio": ratio,
                     "meets_target": ratio <= TARGET_RATIO})
        print(f"{name:<20} {batch:>5} {t_float * 1e3:>9.2f} {t_q4 * 1e3:>8.2f} {ratio:>6.2f}  {'ok' if ratio <= TARGET_RATIO else 'MISSED'}")

    ds = data.load("digits")
    model = intmodel.random_model(ds.input_shape, ds.classes, 1, 32, 4, seed=0)
    golden.run(model, ds.test_x[:8])
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        golden.run(model, ds.test_x)
        best = min(best, time.perf_counter() - t0)
    golden_ips = len(ds.test_x) / best
    print(f"golden model, digits b1 w32 Q=4: {golden_ips:,.0f} images/s ({len(ds.test_x)} images, best of 3)")

    result = {"bench": "train_speed", "target_ratio": TARGET_RATIO, "threads": args.threads,
              "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
              "steps": rows, "golden_images_per_s": golden_ips}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
