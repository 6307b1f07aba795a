"""The topology family as a PyTorch model (docs/contract.md "The topology family").

The layer list comes from qjoule.sw.netstats.describe_topology, so the model, the statistics and
the exported .qjm header always agree: blocks A, B, C, each N × [conv3x3 → batch norm → quantized
activation] then a 2×2 max-pool, and a dense layer with batch norm giving the logits.
The input is pixels / 255 (the first layer's 8-bit integer semantics, exported with s_in = 1/255).
"""

from __future__ import annotations

import torch

from .layers import QuantConv2d, QuantLinear
from .netstats import describe_topology
from .quant import ActQuant, check_q


class QNN(torch.nn.Module):
    """One member of the topology family at uniform Q (`q=None`: the float baseline)."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int, blocks: int,
                 widths: int | tuple[int, int, int], q: int | None):
        super().__init__()
        self.q = check_q(q)
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.blocks = blocks
        self.widths = (widths,) * 3 if isinstance(widths, int) else tuple(widths)
        self.specs = describe_topology(self.input_shape, classes, blocks, widths)
        stages = []
        for spec in self.specs:
            if spec["kind"] == "conv3x3":
                stages.append(torch.nn.ModuleDict({
                    "conv": QuantConv2d(spec["in_shape"][0], spec["out_shape"][0], self.q),
                    "bn": torch.nn.BatchNorm2d(spec["out_shape"][0]),
                    "act": ActQuant(self.q)}))
            elif spec["kind"] == "maxpool2x2":
                stages.append(torch.nn.ModuleDict({"pool": torch.nn.MaxPool2d(2)}))
            elif spec["kind"] == "dense":
                stages.append(torch.nn.ModuleDict({
                    "linear": QuantLinear(spec["in_shape"][0], spec["out_shape"][0], self.q),
                    "bn": torch.nn.BatchNorm1d(spec["out_shape"][0])}))
            else:  # describe_topology only gives the three kinds
                raise ValueError(f"unknown layer kind {spec['kind']!r}")
        self.stages = torch.nn.ModuleList(stages)

    def config(self) -> dict:
        return {"input_shape": list(self.input_shape), "classes": self.classes, "blocks": self.blocks,
                "widths": list(self.widths), "q": self.q}

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
