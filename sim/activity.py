"""Activity of one RTL run, per layer, from its waveform: `activity.json` (docs/activity.md).

Everything is read from the FST the simulator wrote (pywellen), so the counts are what the
generated hardware did, not what a model predicts:

- signals sampled at every rising clock edge (the value a flip-flop sees) give the event counts:
  the layer running (`busy`, `layer`), array cycles and working lanes (`en`, `row_valid`,
  `lane_valid`), activation-buffer writes per bank (`wr_en` lane enables), reads of every buffer
  (a new address on a bank's read port fetches a word), and stream transfers (valid & ready);
- every value change of every net gives the toggles (popcount of old XOR new), attributed to a
  component by the net's scope. A net visible in several scopes (a port and its connection) is
  counted once, in the deepest scope.

The local register files are the array's operand registers: each enabled cycle loads one
activation word per row and one weight word per column (writes) and every PE reads one of each
(reads); those counts follow from the sampled `en`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from qjoule.config import AccelConfig

TOP = "qjoule_accel"

#: Scope prefix (after the top) -> component; first match wins, the rest is `control`.
COMPONENTS = (
    ("seq.array.", "mac"),       # inside the PEs
    ("seq.pp", "postproc"),
    ("act", "act_main"),
    ("weights", "weight_main"),
    ("params", "param_main"),
)
#: Components docs/activity.md requires in every layer's toggles (0 when nothing toggled).
MODELLED = ("mac", "postproc", "act_local", "weight_local", "act_main", "weight_main", "external")


class Waves:
    """Change lists of the signals of one FST, by full name."""

    def __init__(self, path: Path):
        import pywellen

        self.wave = pywellen.Waveform(str(path))
        # Verilator's VCD puts the design under a `TOP` scope; Icarus's FST does not.
        self.vars = {v.full_name.removeprefix("TOP."): v for v in self.wave.all_vars()}

    def has(self, name: str) -> bool:
        return f"{TOP}.{name}" in self.vars

    def changes(self, name: str) -> tuple[np.ndarray, list]:
        times, values = [], []
        self.wave.stream_changes(lambda t, _s, v: (times.append(t), values.append(v)), [self.vars[f"{TOP}.{name}"]])
        return np.asarray(times, dtype=np.int64), values

    def sample(self, name: str, edges: np.ndarray) -> np.ndarray:
        """Integer value of `name` just before each edge (X/Z as 0)."""
        times, values = self.changes(name)
        ints = np.array([v if isinstance(v, int) else 0 for v in values] or [0], dtype=object)
        index = np.searchsorted(times, edges, side="left") - 1
        out = np.where(index >= 0, ints[np.clip(index, 0, None)], 0)
        return out


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.array([bin(int(v)).count("1") for v in values], dtype=np.int64)


def _field_popcounts(values: np.ndarray, fields: int, width: int) -> np.ndarray:
    """(cycles, fields): whether each `width`-bit field of the value has any bit set."""
    mask = (1 << width) - 1
    return np.array([[(int(v) >> (f * width)) & mask != 0 for f in range(fields)] for v in values], dtype=np.int64)


def _address_changes(addr: np.ndarray, active: np.ndarray) -> np.ndarray:
    """1 where a read port's address differs from the previous cycle's (a new word fetched)."""
    changed = np.ones(len(addr), dtype=bool)
    changed[1:] = addr[1:] != addr[:-1]
    return (changed & active).astype(np.int64)


def capture(fst: Path, cfg: AccelConfig, layers: list[dict], images: int, run: dict[str, Any],
            network: dict[str, Any]) -> dict[str, Any]:
    waves = Waves(fst)
    clk_times, clk_values = waves.changes("clk")
    edges = np.array([t for t, v in zip(clk_times, clk_values) if v == 1], dtype=np.int64)
    busy = waves.sample("busy", edges).astype(bool)
    layer_index = np.where(busy, waves.sample("layer", edges).astype(np.int64), -1)
    n_layers = len(layers)

    def per_layer(per_cycle: np.ndarray) -> np.ndarray:
        keep = layer_index >= 0
        return np.bincount(layer_index[keep], weights=per_cycle[keep].astype(np.float64),
                           minlength=n_layers)[:n_layers].round().astype(np.int64)

    R, C, S, Q, D = cfg.rows, cfg.cols, cfg.lanes, cfg.q, cfg.datapath
    en = waves.sample("seq.array.en", edges).astype(np.int64)
    rows = _popcount(waves.sample("seq.array.row_valid", edges))
    lanes = _popcount(waves.sample("seq.array.lane_valid", edges))
    act_wr = _field_popcounts(waves.sample("act.wr_en", edges), R, S).sum(axis=1)
    act_addr = waves.sample("act.rd_addr", edges)
    bank_bits = waves.vars[f"{TOP}.act.rd_addr"].bitwidth // R
    act_rd = sum(_address_changes(np.array([(int(a) >> (b * bank_bits)) & ((1 << bank_bits) - 1) for a in act_addr]), busy)
                 for b in range(R))
    w_rd = _address_changes(waves.sample("weights.rd_addr", edges), busy)
    w_wr = waves.sample("weights.wr_en", edges).astype(np.int64)
    ext_in = (waves.sample("i__valid", edges) & waves.sample("i__ready", edges)).astype(np.int64)
    ext_out = (waves.sample("o__valid", edges) & waves.sample("o__ready", edges)).astype(np.int64)
    ones = np.ones(len(edges), dtype=np.int64)

    counts = {
        "cycles": per_layer(ones),
        "mac_lane_ops": per_layer(en * rows * lanes * C),
        "act_rd": per_layer(act_rd), "act_wr": per_layer(act_wr),
        "w_rd": per_layer(w_rd), "w_wr": per_layer(w_wr),
        "en": per_layer(en),
        "ext_in": per_layer(ext_in), "ext_out": per_layer(ext_out),
    }
    toggles, outside = _toggles(waves, edges, layer_index, n_layers)
    weight_word_bits = C * D
    out_layers = []
    for i, layer in enumerate(layers):
        cycles = int(counts["cycles"][i])
        ops = int(counts["mac_lane_ops"][i])
        en_i = int(counts["en"][i])
        values = int(np.prod(layer["out_shape"])) * images if layer["kind"] != "maxpool2x2" else 0
        out_layers.append({
            "name": layer["name"], "cycles": cycles, "mac_lane_ops": ops,
            "idle_lane_cycles": max(0, cycles * cfg.parallelism - ops),
            "postproc_ops": values,
            "buffers": {
                "act_main": _rw(int(counts["act_rd"][i]), int(counts["act_wr"][i]), D),
                "weight_main": _rw(int(counts["w_rd"][i]), int(counts["w_wr"][i]), weight_word_bits),
                "act_local": _rw(en_i * R * C, en_i * R, D),
                "weight_local": _rw(en_i * R * C, en_i * C, D),
            },
            "external": {"words_in": int(counts["ext_in"][i]), "words_out": int(counts["ext_out"][i]),
                         "bits_in": 32 * int(counts["ext_in"][i]), "bits_out": 32 * int(counts["ext_out"][i])},
            "toggles": {**{k: 0 for k in MODELLED}, **{k: int(v) for k, v in toggles[i].items()}},
        })
    outside_cycles = int((layer_index < 0).sum())
    return {
        "format": "qjoule-activity", "version": 1, "run": {**run, "images": images},
        "q": cfg.q, "config": cfg.to_dict(), "network": network, "layers": out_layers,
        "outside_layers": {"cycles": outside_cycles,
                           "external": {"words_in": int((ext_in * (layer_index < 0)).sum()),
                                        "words_out": int((ext_out * (layer_index < 0)).sum())},
                           "toggles": {k: int(v) for k, v in outside.items()}},
        "method": "sampled at rising clock edges and counted from value changes in the simulator's FST "
                  "(see qjoule.sim.activity)",
    }


def _rw(reads: int, writes: int, bits: int) -> dict[str, dict[str, int]]:
    return {"reads": {"words": reads, "bits": reads * bits}, "writes": {"words": writes, "bits": writes * bits}}


def component_of(full_name: str) -> str:
    path = full_name[len(TOP) + 1:] if full_name.startswith(TOP + ".") else full_name
    scope, _, leaf = path.rpartition(".")
    if scope == "" and leaf.split("__")[0] in ("i", "o"):
        return "external"
    if scope == "seq.array":
        # The array's operand registers, shared by the PEs of a row or a column: the local files.
        if "weight" in leaf:
            return "weight_local"
        if "act" in leaf:
            return "act_local"
        return "mac"
    for prefix, component in COMPONENTS:
        if scope.startswith(prefix) or scope == prefix.rstrip("."):
            return component
    return "control"


def _toggles(waves: Waves, edges: np.ndarray, layer_index: np.ndarray, n_layers: int):
    """Toggles per layer and component, nets shared between scopes counted once (deepest scope)."""
    seen: dict[str, tuple[int, str]] = {}
    per_net = []
    for name, var in waves.vars.items():
        if name.endswith(".clk") or name == f"{TOP}.clk":
            continue
        times, values = [], []
        waves.wave.stream_changes(lambda t, _s, v: (times.append(t), values.append(v)), [var])
        if len(times) < 2:
            continue
        t = np.asarray(times[1:], dtype=np.int64)
        flips = np.array([bin(a ^ b).count("1") if isinstance(a, int) and isinstance(b, int) else 0
                          for a, b in zip(values[:-1], values[1:])], dtype=np.int64)
        if not flips.any():
            continue
        fingerprint = hashlib.sha1(np.concatenate([t, flips]).tobytes()).hexdigest()
        depth = name.count(".")
        if fingerprint in seen and seen[fingerprint][0] >= depth:
            continue
        if fingerprint in seen:
            per_net = [p for p in per_net if p[0] != fingerprint]
        seen[fingerprint] = (depth, name)
        cycle = np.searchsorted(edges, t, side="right") - 1
        per_net.append((fingerprint, component_of(name), cycle, flips))
    layers = [dict() for _ in range(n_layers)]
    outside: dict[str, int] = {}
    for _, component, cycle, flips in per_net:
        valid = (cycle >= 0) & (cycle < len(layer_index))
        idx = np.where(valid, layer_index[np.clip(cycle, 0, len(layer_index) - 1)], -1)
        sums = np.bincount(idx + 1, weights=flips, minlength=n_layers + 1)
        outside[component] = outside.get(component, 0) + int(sums[0])
        for i in range(n_layers):
            if sums[i + 1]:
                layers[i][component] = layers[i].get(component, 0) + int(sums[i + 1])
    return layers, outside
