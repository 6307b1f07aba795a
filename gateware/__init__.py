"""qjoule.gateware — Amaranth 0.5 components of the intQ accelerator. Never imports torch."""
