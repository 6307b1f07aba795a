"""`qjoule train`: train a QNN of the topology family at any Q, export its integer model, evaluate both."""

from __future__ import annotations

import argparse

from qjoule.argtypes import integer
from qjoule.errors import UserError

HELP = "train a quantized network (Q = 1..16 or float) of the topology family; writes model.pt, model.qjm, metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", metavar="NAME",
                        help="digits (default), fashion-mnist, mnist5k, mnist:DIR, cifar10:DIR, svhn:DIR")
    parser.add_argument("--q", default="4", metavar="Q", help="bits of weights and activations, 1..16, or 'float' (default 4)")
    parser.add_argument("--blocks", default="1", metavar="N", help="conv layers per block A, B, C (default 1)")
    parser.add_argument("--width", default="32", metavar="F", help="filters of every block (default 32)")
    parser.add_argument("--widths", default=None, metavar="A,B,C", help="per-block filters, overrides --width")
    parser.add_argument("--epochs", default="10", metavar="E", help="training epochs (default 10)")
    parser.add_argument("--seed", default="0", metavar="S", help="random seed (default 0)")
    parser.add_argument("--batch-size", default="32", metavar="B", help="mini-batch size (default 32)")
    parser.add_argument("--lr", default="0.03", metavar="LR", help="peak Adam learning rate (default 0.03)")
    parser.add_argument("--threads", default="1", metavar="T", help="torch threads (default 1; results are reproducible for the same thread count)")
    parser.add_argument("--weights", default="uniform", choices=("uniform", "pot"),
                        help="weight quantizer: uniform Q-bit (default) or pot (power of two, sign + exponent, Q 2..6)")
    parser.add_argument("--prune", default="0", metavar="F",
                        help="log-domain pruning: final fraction of zero weights per layer, 0 <= F < 1 (default 0)")
    parser.add_argument("--q-per-layer", default=None, metavar="Q1,Q2,...",
                        help="one Q per conv/dense layer (weights and output activations), overrides --q")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def parse_config(args: argparse.Namespace):
    """Command-line text -> a validated TrainConfig (every check before anything is written)."""
    from qjoule.sw.quant import parse_q
    from qjoule.sw.train import TrainConfig

    widths = None
    if args.widths is not None:
        parts = args.widths.split(",")
        if len(parts) != 3:
            raise UserError(f"--widths must be three integers A,B,C, got {args.widths!r}")
        widths = tuple(integer(p, "--widths", 1) for p in parts)
    try:
        lr = float(args.lr)
    except ValueError:
        raise UserError(f"--lr must be a number, got {args.lr!r}") from None
    try:
        prune = float(args.prune)
    except ValueError:
        raise UserError(f"--prune must be a fraction 0 <= F < 1, got {args.prune!r}") from None
    if not 0.0 <= prune < 1.0:
        raise UserError(f"--prune must be a fraction 0 <= F < 1, got {args.prune!r}")
    q_per_layer = None
    if args.q_per_layer is not None:
        from qjoule.sw.mixed import parse_q_list
        q_per_layer = parse_q_list(args.q_per_layer)
    q = parse_q(args.q)
    if args.weights == "pot" and q_per_layer is None:
        from qjoule.sw.pot import check_pot_bits
        if q is None:
            raise UserError("--weights pot needs --q 2..6, not float")
        check_pot_bits(q)
    return TrainConfig(dataset=args.dataset, q=q, w_kind=args.weights, prune=prune, q_per_layer=q_per_layer, blocks=integer(args.blocks, "--blocks", 1),
                       width=integer(args.width, "--width", 1), widths=widths, epochs=integer(args.epochs, "--epochs", 1),
                       seed=integer(args.seed, "--seed", 0), batch_size=integer(args.batch_size, "--batch-size", 2),
                       lr=lr, threads=integer(args.threads, "--threads", 1))


def run(args: argparse.Namespace) -> int:
    config = parse_config(args)
    from qjoule.io import staged_output
    from qjoule.sw import data
    from qjoule.sw.netstats import describe_topology
    from qjoule.sw.train import train

    ds = data.load(config.dataset)
    layers = describe_topology(ds.input_shape, ds.classes, config.blocks, config.block_widths)  # fails early on a bad shape
    if config.q_per_layer is not None:
        from qjoule.sw.mixed import check_q_per_layer, weight_layer_names
        check_q_per_layer(config.q_per_layer, len(weight_layer_names(layers)), "--q-per-layer")
    with staged_output(args.out, "train", config.key()) as stage:
        metrics = train(config, stage, progress=True, ds=ds)
    q = metrics["q"] if config.q_per_layer is None else ",".join(map(str, config.q_per_layer))
    kind = " PoT" if config.w_kind == "pot" else ""
    line = f"{config.dataset}{kind} Q={q}: test accuracy {metrics['test_accuracy']:.4f}"
    if metrics["int_test_accuracy"] is not None:
        line += f", integer model {metrics['int_test_accuracy']:.4f} (agreement {metrics['int_agreement']:.4f})"
    print(f"{line}; {metrics['train_seconds']:.1f} s; wrote {args.out}")
    return 0
