"""qjoule.sw — the PyTorch QNN, the integer contract and the energy model.

Never imports qjoule.gateware, qjoule.hw or qjoule.sim.
"""
