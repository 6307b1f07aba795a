"""qjoule.gateware — Amaranth 0.5 components of the intQ accelerator. Never imports torch."""

#: Attribute of a register that is one of several identical copies, each driving part of a wide
#: fan-out (the large-device setting, `memory_pipeline`): synthesis must keep every copy
#: (hw/synth.py), where it would otherwise merge them into one.
REPLICA = "qjoule_replica"
