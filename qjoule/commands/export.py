"""`qjoule export`: fold a trained checkpoint into the integer model file (.qjm)."""

from __future__ import annotations

import argparse

HELP = "fold bias and batch norm of a trained checkpoint (model.pt) into the integer model model.qjm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="model.pt written by qjoule train")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (model.qjm, export.json)")


def run(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from qjoule.io import staged_output, write_json
    from qjoule.sw import intmodel
    from qjoule.sw.export import export
    from qjoule.sw.train import load_checkpoint

    qnn, train_key = load_checkpoint(args.checkpoint)
    model = export(qnn, source={"dataset": train_key.get("dataset"), "blocks": train_key.get("blocks"),
                                "widths": train_key.get("widths"), "seed": train_key.get("seed")})
    digest = hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest()
    with staged_output(args.out, "export", {"checkpoint_sha256": digest}) as stage:
        intmodel.save(model, stage / "model.qjm")
        write_json(stage / "export.json", {
            "checkpoint": str(args.checkpoint), "checkpoint_sha256": digest, "q": model.q,
            "model_sha256": hashlib.sha256((stage / "model.qjm").read_bytes()).hexdigest(),
            "layers": [{k: layer.get(k) for k in ("name", "kind", "in_shape", "out_shape", "q_in", "q_out", "act", "pp_shift")}
                       for layer in model.layers]})
    print(f"exported Q={model.q} model with {len(model.layers)} layers to {Path(args.out) / 'model.qjm'}")
    return 0
