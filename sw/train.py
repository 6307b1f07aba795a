"""Training a QNN of the topology family at any Q, then exporting and checking its integer model.

`train(config, out_dir, progress)` is deterministic given the seed and thread count: torch.manual_seed, seeded
shuffling, deterministic algorithms and one thread by default. Adam with a one-cycle schedule
(short linear warm-up, cosine decay to ~0), latent weights clipped to [−1, 1] after every step.
Writes model.pt (checkpoint), model.qjm (the integer model, not at float) and metrics.json.
Power-of-two weights (`w_kind="pot"`), log-domain pruning (`prune`, qjoule.sw.pot) and a Q per
conv/dense layer (`q_per_layer`, qjoule.sw.mixed) are options of the same loop.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..io import write_json
from . import data as datasets
from . import golden, intmodel
from .mixed import check_q_per_layer, export_model
from .netstats import network_stats
from .pot import prune_mask, prune_schedule
from .quant import check_q
from .topology import QNN, pixels_to_input

CHECKPOINT_FORMAT = "qjoule-checkpoint"
EVAL_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    dataset: str = "digits"
    q: int | None = 4                 # 1..16, None = float baseline
    blocks: int = 1
    width: int = 32
    widths: tuple[int, int, int] | None = None   # per-block widths; default (width,)*3
    epochs: int = 10
    seed: int = 0
    batch_size: int = 32
    lr: float = 0.03          # chosen on digits (bench/digits_targets.py): best Q=1/Q=2 accuracy
    threads: int = 1
    w_kind: str = "uniform"       # "pot": power-of-two weights (q 2..6)
    q_per_layer: tuple[int, ...] | None = None  # one Q per conv/dense layer; overrides q
    prune: float = 0.0            # log-domain pruning: final fraction of zero weights per layer

    def __post_init__(self):
        from .layers import check_w_kind
        check_q(self.q)
        if self.q_per_layer is not None:
            object.__setattr__(self, "q_per_layer", check_q_per_layer(self.q_per_layer))
        for q in (self.q_per_layer if self.q_per_layer is not None else (self.q,)):
            check_w_kind(self.w_kind, q)
        if isinstance(self.prune, bool) or not isinstance(self.prune, (int, float)) or not 0.0 <= self.prune < 1.0:
            raise UserError(f"prune must be a fraction in [0, 1), got {self.prune!r}")
        if self.prune > 0 and self.q is None and self.q_per_layer is None:
            raise UserError("prune needs a quantized network (q 1..16), not float")
        for field in ("blocks", "width", "epochs", "batch_size", "threads"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"{field} must be an integer >= 1, got {v!r}")
        if self.batch_size < 2:
            raise UserError(f"batch_size must be >= 2 (batch norm), got {self.batch_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.widths is not None and (len(self.widths) != 3 or any(not isinstance(w, int) or w < 1 for w in self.widths)):
            raise UserError(f"widths must be three integers >= 1, got {self.widths!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 10):
            raise UserError(f"lr must be a positive number below 10, got {self.lr!r}")

    @property
    def block_widths(self) -> tuple[int, int, int]:
        return tuple(self.widths) if self.widths is not None else (self.width,) * 3

    def key(self) -> dict[str, Any]:
        """What determines the results. Threads do: they change the order of float sums, and
        training amplifies that; with the same thread count the results are identical."""
        d = dataclasses.asdict(self)
        d["q"] = "float" if self.q is None else self.q
        d["widths"] = list(self.block_widths)
        # The options below are absent at their defaults, so a uniform run keeps its old key.
        for field, default in (("w_kind", "uniform"), ("q_per_layer", None), ("prune", 0.0)):
            if d[field] == default:
                del d[field]
        if self.q_per_layer is not None:
            d["q"] = "mixed"
            d["q_per_layer"] = list(self.q_per_layer)
        return d


def make_deterministic(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def predict(qnn: QNN, images: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """Fake-quantized PyTorch predictions (eval mode) for uint8 images."""
    qnn.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), EVAL_BATCH):
            x = pixels_to_input(images[i:i + EVAL_BATCH]).to(dtype)
            preds.append(qnn(x).argmax(dim=1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def golden_predict(model: intmodel.IntModel, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Golden-model predictions in batches (integers only)."""
    from tqdm import tqdm
    preds = []
    for i in tqdm(range(0, len(images), EVAL_BATCH), desc="golden", unit="batch", disable=not progress, leave=False):
        preds.append(golden.run(model, images[i:i + EVAL_BATCH]).predictions)
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def fit(config: TrainConfig, ds: datasets.Dataset, progress: bool = True) -> QNN:
    """Train a QNN on `ds`; returns it in eval mode."""
    from tqdm import tqdm
    make_deterministic(config.seed, config.threads)
    qnn = QNN(ds.input_shape, ds.classes, config.blocks, config.block_widths, config.q,
              w_kind=config.w_kind, q_per_layer=config.q_per_layer)
    x_all = pixels_to_input(ds.train_x)
    y_all = torch.as_tensor(ds.train_y)
    n = len(x_all)
    steps_per_epoch = max(1, n // config.batch_size)  # drop the last partial batch (batch norm)
    total = steps_per_epoch * config.epochs
    opt = torch.optim.Adam(qnn.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.1,
                                                anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0)
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        qnn.train()
        order = torch.randperm(n, generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not progress, leave=False)
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            loss = loss_fn(qnn(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if config.prune > 0:
                _update_prune_masks(qnn, epoch * steps_per_epoch + step + 1, total, config.prune)
            qnn.clip_weights_()
            running += loss.item()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{running / (step + 1):.3f}")
        bar.close()
    for layer in qnn.weight_layers():
        layer.prune_mask = None   # the pruned weights are 0 now; the mask only matters while training
    qnn.eval()
    return qnn


PRUNE_EVERY = 16  # steps between mask updates (and the last step of the ramp)


def _update_prune_masks(qnn: QNN, step: int, total: int, fraction: float) -> None:
    """Grow each layer's pruned set along the schedule (in the log domain, qjoule.sw.pot)."""
    target = prune_schedule(step, total, fraction)
    if step % PRUNE_EVERY and target < fraction:
        return
    for layer in qnn.weight_layers():
        previous = layer.prune_mask
        if previous is not None and previous.float().mean().item() >= target:
            continue
        mask = prune_mask(layer.weight, target)
        layer.prune_mask = mask if previous is None else (mask | previous)


def save_checkpoint(path: Path, qnn: QNN, config: TrainConfig) -> None:
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "train": config.key(), "model": qnn.config(),
                "state_dict": qnn.state_dict()}, path)


def load_checkpoint(path) -> tuple[QNN, dict[str, Any]]:
    """Rebuild the trained QNN from model.pt; a missing or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt file; all mean the same to the user
        raise UserError(f"checkpoint {str(path)!r} is truncated or corrupt ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{str(path)!r} is not a qjoule checkpoint")
    m = ckpt["model"]
    qnn = QNN(tuple(m["input_shape"]), m["classes"], m["blocks"], tuple(m["widths"]), m["q"],
              w_kind=m.get("w_kind", "uniform"), q_per_layer=m.get("q_per_layer"))
    try:
        qnn.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise UserError(f"checkpoint {str(path)!r} does not match its model description ({str(e).splitlines()[0]})") from None
    qnn.eval()
    return qnn, ckpt["train"]


def train(config: TrainConfig, out_dir: Path, progress: bool = True, ds: datasets.Dataset | None = None) -> dict[str, Any]:
    """Train, export, evaluate; write model.pt, model.qjm (Q ≥ 1) and metrics.json into `out_dir`."""
    out_dir = Path(out_dir)
    ds = ds if ds is not None else datasets.load(config.dataset)
    t0 = time.perf_counter()
    qnn = fit(config, ds, progress)
    train_seconds = time.perf_counter() - t0

    float_preds = predict(qnn, ds.test_x)
    accuracy = float(np.mean(float_preds == ds.test_y))
    stats = network_stats(qnn.specs, qnn.q_layers if qnn.q_per_layer is not None else config.q).total
    key = config.key()
    metrics: dict[str, Any] = {
        "dataset": config.dataset, "q": key["q"], "blocks": config.blocks, "width": config.width,
        "widths": key["widths"], "seed": config.seed, "epochs": config.epochs,
        "batch_size": config.batch_size, "lr": config.lr,
        "test_samples": int(len(ds.test_y)),
        "test_accuracy": accuracy, "test_error": 1.0 - accuracy,
        "macs": stats.macs, "weights": stats.weights, "weights_and_biases": stats.weights_and_biases,
        "activations": stats.activations, "max_feature_map_bits": stats.max_feature_map_bits,
        "model_bits": stats.model_bits, "train_seconds": round(train_seconds, 3),
        "int_test_accuracy": None, "int_test_error": None, "int_agreement": None,
    }
    if config.w_kind != "uniform":
        metrics["w_kind"] = config.w_kind
    if config.q_per_layer is not None:
        metrics["q_per_layer"] = list(config.q_per_layer)
    if config.prune > 0:
        metrics["prune"] = config.prune
    if config.prune > 0 or config.w_kind != "uniform":
        w = torch.cat([layer.integer_weight().flatten() for layer in qnn.weight_layers()])
        metrics["weight_sparsity"] = float((w == 0).double().mean())
    save_checkpoint(out_dir / "model.pt", qnn, config)
    if not qnn.is_float:
        model = export_model(qnn, source={"dataset": config.dataset, "blocks": config.blocks,
                                    "widths": key["widths"], "seed": config.seed})
        intmodel.save(model, out_dir / "model.qjm")
        int_preds = golden_predict(model, ds.test_x, progress)
        int_acc = float(np.mean(int_preds == ds.test_y))
        metrics.update(int_test_accuracy=int_acc, int_test_error=1.0 - int_acc,
                       int_agreement=float(np.mean(int_preds == float_preds)))
    write_json(out_dir / "metrics.json", metrics)
    return metrics
