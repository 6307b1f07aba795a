"""`qjoule run`: test images through the accelerator on a board (HostTop) over its UART."""

from __future__ import annotations

import argparse
import sys

HELP = "run test images on a board over its serial port and check the logits against the golden model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial port of the board (e.g. /dev/ttyUSB0)")
    p.add_argument("--model", required=True, metavar="FILE", help="integer model (.qjm)")
    p.add_argument("--images", default="10", metavar="N", help="number of test images (default 10)")
    p.add_argument("--first-image", default="0", metavar="I", help="index of the first test image (default 0)")
    p.add_argument("--dataset", default=None, help="data set of the test images (default: the model's)")
    built = p.add_mutually_exclusive_group(required=True)
    built.add_argument("--board", default=None, metavar="BOARD",
                       help="the board the bitstream was built for by `qjoule synth --board BOARD --model` "
                            "(or the flow): its config at the model's Q, sized to the model")
    built.add_argument("--config", default=None, metavar="FILE",
                       help="accelerator config the bitstream was built from (the accel.json `qjoule synth` writes)")
    p.add_argument("--baud", default="115200", metavar="B", help="baud rate (default 115200)")
    p.add_argument("--timeout", default="1.0", metavar="S", help="seconds of silence before a frame is sent again (default 1)")
    p.add_argument("--retries", default="8", metavar="N", help="times a frame is sent again before giving up (default 8)")
    p.add_argument("--out", required=True, metavar="DIR")


def _positive_float(text: str, flag: str) -> float:
    from qjoule.errors import UserError
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise UserError(f"{flag} must be a number > 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    import hashlib
    import time
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from qjoule.argtypes import integer
    from qjoule.config import AccelConfig, check_board
    from qjoule.errors import UserError
    from qjoule.io import staged_output, write_json
    from qjoule.program import board_config_for_model, encode
    from qjoule.sw import data, golden, hostlink, intmodel

    count = integer(args.images, "--images", 1)
    first = integer(args.first_image, "--first-image", 0)
    baud = integer(args.baud, "--baud", 1)
    retries = integer(args.retries, "--retries", 0)
    timeout = _positive_float(args.timeout, "--timeout")
    model = intmodel.load(args.model)
    cfg = AccelConfig.load(args.config) if args.config else board_config_for_model(check_board(args.board), model)
    program = encode(model, cfg)  # one line if the model does not fit the config
    dataset = args.dataset or (model.header.get("source") or {}).get("dataset")
    if not dataset:
        raise UserError(f"model {args.model!r} names no data set; pass --dataset")
    ds = data.load(dataset)
    if tuple(ds.input_shape) != tuple(model.input_shape):
        raise UserError(f"data set {dataset!r} has images {tuple(ds.input_shape)}, the model takes {tuple(model.input_shape)}")
    n = len(ds.test_x)
    if first + count > n:
        raise UserError(f"images {first}..{first + count - 1} are out of range: the {dataset!r} test split has {n}")
    images = np.ascontiguousarray(ds.test_x[first:first + count])
    labels = ds.test_y[first:first + count]
    expected = golden.run(model, images).logits

    model_sha = hashlib.sha256(Path(args.model).read_bytes()).hexdigest()
    key = {"model_sha256": model_sha, "config": cfg.to_dict(), "dataset": dataset, "images": count,
           "first_image": first, "port": args.port, "baud": baud}
    transport = hostlink.open_serial(args.port, baud)  # a missing port fails here, before --out is touched
    link = hostlink.HostLink(transport, timeout=timeout, retries=retries, name=f"board on {args.port}")
    started = time.monotonic()
    try:
        with staged_output(args.out, "run", key) as stage:
            status = link.connect(cfg)
            with tqdm(total=len(program.setup_words) + count * len(program.image_words(images[0])), unit="word",
                      desc="words", file=sys.stderr, leave=False) as words_bar, \
                 tqdm(total=count, unit="image", desc="images", file=sys.stderr) as images_bar:
                logits = hostlink.run_images(link, program, images, on_words=words_bar.update,
                                             on_image=lambda _: images_bar.update())
            seconds = time.monotonic() - started
            per_image = []
            for i, (got, want) in enumerate(zip(logits, expected)):
                per_image.append({"image": first + i, "label": int(labels[i]), "prediction": int(np.argmax(got)),
                                  "golden_prediction": int(np.argmax(want)), "match": bool(np.array_equal(got, want)),
                                  "logits": [int(v) for v in got], "golden_logits": [int(v) for v in want]})
            match = all(row["match"] for row in per_image)
            result = {"match": match, "images": count, "first_image": first, "dataset": dataset,
                      "model": str(args.model), "model_sha256": model_sha, "port": args.port, "baud": baud,
                      "predictions": [row["prediction"] for row in per_image],
                      "accuracy": sum(row["prediction"] == row["label"] for row in per_image) / count,
                      "retries": link.retried, "naks": link.naks, "lost_answers": link.lost, "frames": link.frames,
                      "seconds": round(seconds, 3), "images_per_second": round(count / seconds, 3) if seconds else None,
                      "board_status": status, "config": cfg.to_dict(), "per_image": per_image}
            write_json(stage / "run.json", result)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    print(f"{'MATCH' if match else 'MISMATCH'}: {count} images on {args.port}, accuracy {result['accuracy']:.3f}, "
          f"{link.retried} retries, {seconds:.1f} s; {args.out}/run.json")
    if not match:
        bad = next(row for row in per_image if not row["match"])
        print(f"first mismatch: image {bad['image']}: board {bad['logits']}, golden {bad['golden_logits']}",
              file=sys.stderr)
        return 1
    return 0
