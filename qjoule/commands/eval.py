"""`qjoule eval`: the golden (integer) model's accuracy on a data set."""

from __future__ import annotations

import argparse

HELP = "accuracy of an integer model (.qjm) on a data set's test split, computed by the bit-exact golden model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="FILE", help="integer model file (.qjm)")
    parser.add_argument("--dataset", default="digits", metavar="NAME", help="data set (default digits)")
    parser.add_argument("--split", default="test", choices=("test", "train"), help="split to evaluate (default test)")
    parser.add_argument("--out", default=None, metavar="DIR", help="also write eval.json into this folder")


def run(args: argparse.Namespace) -> int:
    import hashlib
    import time
    from pathlib import Path

    import numpy as np

    from qjoule.io import staged_output, write_json
    from qjoule.sw import data, intmodel
    from qjoule.sw.train import golden_predict

    model = intmodel.load(args.model)
    ds = data.load(args.dataset)
    if ds.input_shape != model.input_shape or ds.classes > model.classes:
        from qjoule.errors import UserError
        raise UserError(f"model {args.model!r} takes {model.input_shape} images with {model.classes} classes; "
                        f"data set {args.dataset!r} has {ds.input_shape} images with {ds.classes} classes")
    x, y = (ds.test_x, ds.test_y) if args.split == "test" else (ds.train_x, ds.train_y)
    t0 = time.perf_counter()
    preds = golden_predict(model, x, progress=True)
    seconds = time.perf_counter() - t0
    correct = int(np.sum(preds == y))
    confusion = np.zeros((model.classes, model.classes), dtype=np.int64)
    np.add.at(confusion, (y, preds), 1)
    result = {"model": str(args.model), "model_sha256": hashlib.sha256(Path(args.model).read_bytes()).hexdigest(),
              "q": model.q, "dataset": args.dataset, "split": args.split, "samples": int(len(y)), "correct": correct,
              "accuracy": correct / len(y), "error": 1 - correct / len(y), "confusion": confusion.tolist()}
    if args.out is not None:
        with staged_output(args.out, "eval", {"model_sha256": result["model_sha256"], "dataset": args.dataset,
                                              "split": args.split}) as stage:
            write_json(stage / "eval.json", result)
    print(f"golden model accuracy on {args.dataset} {args.split}: {result['accuracy']:.4f} "
          f"({correct}/{len(y)}, {len(y) / max(seconds, 1e-9):.0f} images/s)")
    return 0
