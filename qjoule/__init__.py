"""qjoule: minimum-energy quantized neural networks, from training to a bitstream."""

__version__ = "0.1.0"
