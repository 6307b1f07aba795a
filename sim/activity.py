"""Activity of one RTL run, per layer, from its waveform: `activity.json` (docs/activity.md).

Everything is read from the waveform the simulator wrote (Icarus: FST, Verilator: VCD; pywellen
reads both), so the counts are what the generated hardware did, not what a model predicts:

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
import re
from pathlib import Path
from typing import Any

import numpy as np

from qjoule.config import AccelConfig

TOP = "qjoule_accel"

#: Scope prefix (after the top) -> component; first match wins, the rest is `control`.
COMPONENTS = (
    (re.compile(r"seq\.array\..+"), "mac"),        # inside the PEs
    (re.compile(r"seq\.pp\d+(\..+)?"), "postproc"),
    (re.compile(r"act(\..+)?"), "act_main"),
    (re.compile(r"weights(\..+)?"), "weight_main"),
    (re.compile(r"params(\..+)?"), "param_main"),
)
#: The sequencer's activation read source while it dumps a layer (gateware/sequencer.py `rd_sel`).
RD_SEL_DUMP = 3
#: Components docs/activity.md requires in every layer's toggles (0 when nothing toggled).
MODELLED = ("mac", "postproc", "act_local", "weight_local", "act_main", "weight_main", "external")


class Waves:
    """Change lists of the design's signals in one FST or VCD, by full name.

    Every change is read in one pass over the file: pywellen's `stream_changes` scans the whole
    file per call, which over a VCD costs ~0.1 s per call, minutes for one call per net.
    """

    def __init__(self, path: Path):
        import pywellen

        self.wave = pywellen.Waveform(str(path))
        # Only the design's own scope: Verilator's VCD repeats the top-level ports under `$rootio`
        # (and older versions put the design under `TOP`).
        names = {v.full_name.removeprefix("TOP."): v for v in self.wave.all_vars()}
        self.vars = {name: var for name, var in names.items() if name.startswith(f"{TOP}.")}
        self._changes: dict[str, tuple[list, list]] | None = None

    def has(self, name: str) -> bool:
        return f"{TOP}.{name}" in self.vars

    def _all_changes(self) -> dict[str, tuple[list, list]]:
        if self._changes is None:
            one_var_per_signal = {str(v.signal_id): v for v in self.vars.values()}
            changes: dict[str, tuple[list, list]] = {key: ([], []) for key in one_var_per_signal}

            def collect(time, signal, value):
                times, values = changes[str(signal)]
                times.append(time)
                values.append(value)

            self.wave.stream_changes(collect, list(one_var_per_signal.values()))
            self._changes = changes
        return self._changes

    def var_changes(self, var) -> tuple[np.ndarray, list]:
        times, values = self._all_changes()[str(var.signal_id)]
        return np.asarray(times, dtype=np.int64), values

    def changes(self, name: str) -> tuple[np.ndarray, list]:
        return self.var_changes(self.vars[f"{TOP}.{name}"])

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


def capture(waves_path: Path, verilog: str, cfg: AccelConfig, layers: list[dict], images: int, run: dict[str, Any],
            network: dict[str, Any], hardware_layers: list[str] | None = None) -> dict[str, Any]:
    """`verilog`: the simulated design's text; `layers`: the model's; `hardware_layers`: the name
    of the model layer each layer of the program runs as (`Program.layers`' names; default one per model layer). A max-pool fused into
    the conv before it (`LayerPlan.pool`) has no layer of its own: its counts are in the conv's,
    and its entry is all zeros."""
    waves = Waves(waves_path)
    clk_times, clk_values = waves.changes("clk")
    edges = np.array([t for t, v in zip(clk_times, clk_values) if v == 1], dtype=np.int64)
    busy = waves.sample("busy", edges).astype(bool)
    layer_index = np.where(busy, waves.sample("layer", edges).astype(np.int64), -1)
    hardware = [layer["name"] for layer in layers] if hardware_layers is None else list(hardware_layers)
    n_layers = len(hardware)

    def per_layer(per_cycle: np.ndarray) -> np.ndarray:
        keep = layer_index >= 0
        return np.bincount(layer_index[keep], weights=per_cycle[keep].astype(np.float64),
                           minlength=n_layers)[:n_layers].round().astype(np.int64)

    R, C, S, Q, D = cfg.rows, cfg.cols, cfg.lanes, cfg.q, cfg.datapath
    en = waves.sample("seq.array.en", edges).astype(np.int64)
    rows = _popcount(waves.sample("seq.array.row_valid", edges))
    lanes = _popcount(waves.sample("seq.array.lane_valid", edges))
    # (write enables: one per lane, or per write_granularity bits with per-layer modes)
    act_wr = _field_popcounts(waves.sample("act.wr_en", edges), R, cfg.write_lanes).sum(axis=1)
    act_addr = waves.sample("act.rd_addr", edges)
    bank_bits = waves.vars[f"{TOP}.act.rd_addr"].bitwidth // R
    act_rd = sum(_address_changes(np.array([(int(a) >> (b * bank_bits)) & ((1 << bank_bits) - 1) for a in act_addr]), busy)
                 for b in range(R))
    w_rd = _address_changes(waves.sample("weights.rd_addr", edges), busy)
    w_wr = waves.sample("weights.wr_en", edges).astype(np.int64)
    ext_in = (waves.sample("i__valid", edges) & waves.sample("i__ready", edges)).astype(np.int64)
    ext_out = (waves.sample("o__valid", edges) & waves.sample("o__ready", edges)).astype(np.int64)
    ones = np.ones(len(edges), dtype=np.int64)
    # The per-layer debug dump (qjoule simulate's default) sends every layer's output map out of
    # the chip after the layer: words a deployed accelerator never sends. The dump phase (the
    # sequencer's activation read source `rd_sel` is the dump) is counted apart in `debug_dump`:
    # its cycles, output words, activation reads and toggles; the layer's counts exclude it.
    dump_phase = (waves.sample("seq.rd_sel", edges) == RD_SEL_DUMP) & busy
    dump_out = ext_out * dump_phase
    # A read address register is loaded at the edge after the cycle that chose it.
    dump_rd = act_rd * np.concatenate([[False], dump_phase[:-1]])
    in_layer = ~dump_phase
    counts = {
        "cycles": per_layer(in_layer),
        "mac_lane_ops": per_layer(en * rows * lanes * C),
        "act_rd": per_layer(act_rd - dump_rd), "act_wr": per_layer(act_wr),
        "w_rd": per_layer(w_rd), "w_wr": per_layer(w_wr),
        "en": per_layer(en),
        "ext_in": per_layer(ext_in), "ext_out": per_layer(ext_out - dump_out),
        "dump_out": per_layer(dump_out), "dump_rd": per_layer(dump_rd), "dump_cycles": per_layer(dump_phase),
    }
    toggles, dump_toggles, outside = _toggles(waves, edges, layer_index, n_layers, dump_phase,
                                              next_state_temporaries(verilog))
    weight_word_bits = C * D
    out_layers = []
    zero = n_layers   # (index of an all-zero column: a fused pool's)
    counts = {k: np.append(v, 0) for k, v in counts.items()}
    toggles, dump_toggles = toggles + [{}], dump_toggles + [{}]
    for layer in layers:
        i = hardware.index(layer["name"]) if layer["name"] in hardware else zero
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
            "debug_dump": {"words_out": int(counts["dump_out"][i]), "bits_out": 32 * int(counts["dump_out"][i]),
                           "cycles": int(counts["dump_cycles"][i]),
                           "act_main_reads": {"words": int(counts["dump_rd"][i]), "bits": int(counts["dump_rd"][i]) * D},
                           "toggles": {k: int(v) for k, v in sorted(dump_toggles[i].items())}},
        })
    outside_cycles = int((layer_index < 0).sum())
    return {
        "format": "qjoule-activity", "version": 1, "run": {**run, "images": images},
        "q": cfg.q, "config": cfg.to_dict(), "network": network, "layers": out_layers,
        "outside_layers": {"cycles": outside_cycles,
                           "external": {"words_in": int((ext_in * (layer_index < 0)).sum()),
                                        "words_out": int(((ext_out - dump_out) * (layer_index < 0)).sum())},
                           "toggles": {k: int(v) for k, v in outside.items()}},
        "method": "sampled at rising clock edges and counted from value changes in the simulator's waveform (FST or VCD) "
                  "(see qjoule.sim.activity)",
    }


def _rw(reads: int, writes: int, bits: int) -> dict[str, dict[str, int]]:
    return {"reads": {"words": reads, "bits": reads * bits}, "writes": {"words": writes, "bits": writes * bits}}


def split_name(full_name: str) -> tuple[str, str]:
    """(scope below the top, leaf) of a net's full name, the simulators' spellings made equal:
    no escape backslashes (Icarus keeps them), and an element `x.[1]` of a vector net `x` is a
    leaf `x.[1]`, not a net `[1]` in a scope `x`."""
    path = full_name.replace("\\", "")
    path = path[len(TOP) + 1:] if path.startswith(TOP + ".") else path
    parts = re.split(r"\.(?!\[)", path)
    return ".".join(parts[:-1]), parts[-1]


def component_of(full_name: str) -> str:
    scope, leaf = split_name(full_name)
    if scope == "" and leaf.split("__")[0] in ("i", "o"):
        return "external"
    if scope == "seq.array":
        # The array's operand registers, shared by the PEs of a row or a column: the local files.
        if "weight" in leaf:
            return "weight_local"
        if "act" in leaf:
            return "act_local"
        return "mac"
    for pattern, component in COMPONENTS:
        if pattern.fullmatch(scope):
            return component
    return "control"


def _settled(times: np.ndarray, values: list) -> tuple[np.ndarray, list]:
    """One value per time step, the last: Icarus records zero-time glitches (several changes at
    one time), Verilator's trace one value per step; toggles count settled changes in both."""
    if len(times) < 2:
        return times, values
    last = np.ones(len(times), dtype=bool)
    last[:-1] = times[1:] != times[:-1]
    if last.all():
        return times, values
    keep = np.flatnonzero(last)
    return times[keep], [values[i] for i in keep]


_MODULE = re.compile(r"^module (\\?\S+)\s*\(", re.M)
_NEXT_STATE = re.compile(r"^\s+\S+ <= \\(\$\d+) ;$", re.M)


def next_state_temporaries(verilog: str) -> set[tuple[str, str]]:
    """(scope below the top, leaf) of each Yosys temporary that is only a register's next state:
    `$N` in `r <= $N;`, the multiplexer of the register's enable or reset, which a CE/reset
    flip-flop absorbs. Its changes are the register's, one step early; Icarus traces it as a net
    of its own and Verilator (for reset-less registers) as the register itself, so the activity
    counts the register alone, on either simulator. (Modules are named by their instance path.)"""
    out: set[tuple[str, str]] = set()
    starts = list(_MODULE.finditer(verilog)) + [None]
    for head, nxt in zip(starts, starts[1:]):
        scope, _ = split_name(head.group(1) + ".x")
        scope = "" if head.group(1) == TOP else scope
        body = verilog[head.end():nxt.start() if nxt else len(verilog)]
        out |= {(scope, m.group(1)) for m in _NEXT_STATE.finditer(body)}
    return out


def _known_bits(value: int | str) -> int:
    """A traced value with its X and Z bits as 0: Icarus starts a register without reset at X,
    Verilator at 0, so its first load counts the same toggles on both."""
    return value if isinstance(value, int) else int(value.translate(_UNKNOWN_AS_ZERO) or "0", 2)


_UNKNOWN_AS_ZERO = str.maketrans("xzXZ", "0000")


def _rank(name: str) -> tuple:
    """Which name of one net counts it: a top-level stream port (the chip's interface), else the
    deepest scope, then a named signal before a Yosys temporary (`$12`), then the first name in
    order. The choice must not depend on the order a simulator lists its variables in."""
    scope, leaf = split_name(name)
    depth = scope.count(".") + 1 if scope else 0
    return (component_of(name) != "external", -depth, leaf.startswith("$"), scope, leaf)


def _same_net(a: str, b: str) -> bool:
    """Two names with identical changes are one net when one scope holds the other (a port and
    the wire it connects to, or two names in one module); equal twins in sibling instances (the
    two post-processing pipelines, say) are separate hardware and both count, unless a wire of
    their common parent joins them (see `_toggles`)."""
    sa, sb = split_name(a)[0], split_name(b)[0]
    return sa == sb or sa.startswith(sb + ".") or sb.startswith(sa + ".") or sa == "" or sb == ""


def _toggles(waves: Waves, edges: np.ndarray, layer_index: np.ndarray, n_layers: int, dump_phase: np.ndarray,
             skip: set[tuple[str, str]]):
    """Toggles per layer and component, each net counted once (see `_same_net`, `_rank`), none of
    `skip` ((scope, leaf) names: `next_state_temporaries`): (the layers' own, those of their
    debug-dump phases, those outside any layer)."""
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for name, var in waves.vars.items():
        if name.endswith(".clk") or name == f"{TOP}.clk" or split_name(name) in skip:
            continue
        times, values = _settled(*waves.var_changes(var))
        if len(times) < 2:
            continue
        t = times[1:]
        ints = [_known_bits(v) for v in values]
        flips = np.array([bin(a ^ b).count("1") for a, b in zip(ints[:-1], ints[1:])], dtype=np.int64)
        changed = flips > 0  # a simulator may list a change to the same value (X -> 0 at time 0)
        if not changed.any():
            continue
        t, flips = t[changed], flips[changed]
        fingerprint = hashlib.sha1(np.concatenate([t, flips]).tobytes()).hexdigest()
        groups.setdefault(fingerprint, []).append((name, t, flips))
    nets = []
    for group in groups.values():
        # connected names are one net (two sibling ports joined through their parent's wire, too);
        # each net counts once, under its best-ranked name
        group.sort(key=lambda n: _rank(n[0]))
        parent = list(range(len(group)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in range(len(group)):
            for j in range(i):
                if _same_net(group[i][0], group[j][0]):
                    parent[max(root(i), root(j))] = min(root(i), root(j))
        nets += [net for i, net in enumerate(group) if root(i) == i]  # roots are the best-ranked
    layers = [dict() for _ in range(n_layers)]
    dumps = [dict() for _ in range(n_layers)]
    outside: dict[str, int] = {}
    for name, t, flips in sorted(nets, key=lambda net: net[0]):
        cycle = np.searchsorted(edges, t, side="right") - 1
        valid = (cycle >= 0) & (cycle < len(layer_index))
        clipped = np.clip(cycle, 0, len(layer_index) - 1)
        idx = np.where(valid, layer_index[clipped], -1)
        in_dump = valid & dump_phase[clipped]
        component = component_of(name)
        for target, where in ((layers, ~in_dump), (dumps, in_dump)):
            sums = np.bincount(idx[where] + 1, weights=flips[where], minlength=n_layers + 1)
            if target is layers:
                outside[component] = outside.get(component, 0) + int(sums[0])
            for i in range(n_layers):
                if sums[i + 1]:
                    target[i][component] = target[i].get(component, 0) + int(sums[i + 1])
    return layers, dumps, outside
