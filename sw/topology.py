"""The topology family as a PyTorch model (docs/contract.md "The topology family").

The layer list comes from qjoule.sw.netstats.describe_topology, so the model, the statistics and
the exported .qjm header always agree: blocks A, B, C, each N × [conv3x3 → batch norm → quantized
activation] then a 2×2 max-pool, and a dense layer with batch norm giving the logits.
The input is pixels / 255 (the first layer's 8-bit integer semantics, exported with s_in = 1/255).

Each conv/dense layer has its own Q (`q_per_layer`, one entry per weight layer: the layer's
weights and its output activations; docs/contract.md "Per-layer mixed precision"); a uniform
network gives every layer the same `q`. `w_kind="pot"` makes every layer's weights powers of two.
"""

from __future__ import annotations

import torch

from .layers import QuantConv2d, QuantLinear, check_w_kind
from .mixed import check_q_per_layer
from .netstats import describe_topology
from .quant import ActQuant, check_q


class QNN(torch.nn.Module):
    """One member of the topology family at uniform Q (`q=None`: the float baseline), or with a
    Q per conv/dense layer (`q_per_layer`, then `q` is ignored and `self.q` is the common Q if
    all entries agree, else None)."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int, blocks: int,
                 widths: int | tuple[int, int, int], q: int | None, w_kind: str = "uniform",
                 q_per_layer: tuple[int, ...] | None = None):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.blocks = blocks
        self.widths = (widths,) * 3 if isinstance(widths, int) else tuple(widths)
        self.specs = describe_topology(self.input_shape, classes, blocks, widths)
        n_weight = sum(spec["kind"] != "maxpool2x2" for spec in self.specs)
        if q_per_layer is None:
            self.q = check_q(q)
            self.q_layers = [self.q] * n_weight
            self.q_per_layer = None
        else:
            self.q_layers = list(check_q_per_layer(q_per_layer, n_weight))
            self.q_per_layer = tuple(self.q_layers)
            self.q = self.q_layers[0] if len(set(self.q_layers)) == 1 else None
        self.w_kind = w_kind
        for q_layer in self.q_layers:
            check_w_kind(w_kind, q_layer)
        stages = []
        qs = iter(self.q_layers)
        for spec in self.specs:
            if spec["kind"] == "conv3x3":
                q_layer = next(qs)
                stages.append(torch.nn.ModuleDict({
                    "conv": QuantConv2d(spec["in_shape"][0], spec["out_shape"][0], q_layer, w_kind=w_kind),
                    "bn": torch.nn.BatchNorm2d(spec["out_shape"][0]),
                    "act": ActQuant(q_layer)}))
            elif spec["kind"] == "maxpool2x2":
                stages.append(torch.nn.ModuleDict({"pool": torch.nn.MaxPool2d(2)}))
            elif spec["kind"] == "dense":
                stages.append(torch.nn.ModuleDict({
                    "linear": QuantLinear(spec["in_shape"][0], spec["out_shape"][0], next(qs), w_kind=w_kind),
                    "bn": torch.nn.BatchNorm1d(spec["out_shape"][0])}))
            else:  # describe_topology only gives the three kinds
                raise ValueError(f"unknown layer kind {spec['kind']!r}")
        self.stages = torch.nn.ModuleList(stages)

    @property
    def is_float(self) -> bool:
        return all(q is None for q in self.q_layers)

    def config(self) -> dict:
        d = {"input_shape": list(self.input_shape), "classes": self.classes, "blocks": self.blocks,
             "widths": list(self.widths), "q": self.q}
        if self.w_kind != "uniform":
            d["w_kind"] = self.w_kind
        if self.q_per_layer is not None:
            d["q_per_layer"] = list(self.q_per_layer)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(x)[0]

    def forward_layers(self, x: torch.Tensor, record: bool = False):
        """Run the network; with `record`, also return {layer name: (pre-activation, output)}.

        The pre-activation is the batch-norm output (what the activation quantizes; the logits
        for the last layer); max-pool layers record (None, output).
        """
        trace = {}
        for spec, stage in zip(self.specs, self.stages):
            if spec["kind"] == "maxpool2x2":
                x = stage["pool"](x)
                pre = None
            elif spec["kind"] == "conv3x3":
                pre = stage["bn"](stage["conv"](x))
                x = stage["act"](pre)
            else:
                pre = stage["bn"](stage["linear"](torch.flatten(x, 1)))
                x = pre
            if record:
                trace[spec["name"]] = (pre, x)
        return x, trace

    def weight_layers(self):
        """The quantized conv/linear modules, for clipping latent weights after a step."""
        for stage in self.stages:
            for key in ("conv", "linear"):
                if key in stage:
                    yield stage[key]

    @torch.no_grad()
    def clip_weights_(self) -> None:
        for layer in self.weight_layers():
            layer.clip_weights_()


def pixels_to_input(images) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> the network's real input, pixels / 255 (float32)."""
    return torch.as_tensor(images).to(torch.float32) / 255.0
