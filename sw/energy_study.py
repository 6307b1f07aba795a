"""Minimum energy at iso-accuracy: training results in, energies, Pareto fronts and choices out.

`load_results` reads the records `qjoule train` writes (metrics.json: dataset, q, blocks, width,
test_error, ...), as one JSON list, one record, or a folder searched for metrics.json files.
`study` evaluates every network at every memory size with one vectorized call and picks, per
memory size and error target, the minimum-energy network overall and per Q. The result is the
`energy.json` document described in docs/energy.md.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qjoule.errors import UserError
from qjoule.io import read_json

from .energy_model import MB_BITS, TERMS, bits_of, check_memory, evaluate, net_arrays
from .energy_profiles import Profile
from .netstats import describe_topology, network_stats
from .pareto import ERROR_TOLERANCE, min_energy_at, pareto_front

ENERGY_FORMAT = "qjoule-energy"
ENERGY_VERSION = 1

#: Input shape (C, H, W) and classes of the data sets `qjoule train` knows (sw/data.py); a record
#: may instead carry "input_shape" and "classes", or its "layers".
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "mnist5k": ((1, 28, 28), 10),
    "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "svhn": ((3, 32, 32), 10),
}
#: Fields of a result record copied into energy.json when present.
KEPT_FIELDS = ("dataset", "blocks", "seed", "epochs", "test_accuracy")
#: Terms written per network and memory size.
ENERGY_KEYS = ("E_inf", "E_HW", "E_C", "E_W", "E_A", "E_DRAM") + TERMS + ("dram_image", "dram_fmap", "dram_weights", "f_s", "w_s")


def q_label(q: int | None) -> str:
    return "float" if q is None else str(q)


def memory_label(memory_mb: float) -> str:
    return f"{memory_mb:g}"


@dataclasses.dataclass(frozen=True)
class Memory:
    """One on-chip memory scenario: the paper's M (weights_mb = activations_mb) or an accelerator's buffers."""

    label: str
    weights_mb: float
    activations_mb: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def memory_scenarios(memory_mb: Sequence[float], config: Any = None) -> list[Memory]:
    """The paper's M per size, plus the weight and activation buffers of an AccelConfig."""
    sizes = [float(m) for m in check_memory(np.asarray(memory_mb, dtype=float)).ravel()]
    scenarios = [Memory(memory_label(m), m, m) for m in sizes]
    if config is not None:
        scenarios.append(Memory(f"config-{config.name}", config.weight_buffer_bits / MB_BITS,
                                config.act_buffer_bits / MB_BITS))
    if not scenarios:
        raise UserError("no memory sizes given")
    if len({m.label for m in scenarios}) != len(scenarios):
        raise UserError(f"memory sizes repeat: {', '.join(m.label for m in scenarios)}")
    return scenarios


# -- reading results ------------------------------------------------------------------------------

def load_results(path: str | Path) -> list[dict]:
    """Records from a results JSON (a list, or one record) or from every metrics.json under a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("metrics.json"))
        if not files:
            raise UserError(f"results folder {str(path)!r} holds no metrics.json")
        records = []
        for f in files:
            data = read_json(f, "results file")
            records.extend(data if isinstance(data, list) else [data])
    else:
        data = read_json(path, "results file")
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        records = data if isinstance(data, list) else [data]
    if not records:
        raise UserError(f"results {str(path)!r} hold no records")
    return records


ERROR_FIELDS = ("test_error", "int_test_error")


def parse_record(record: Any, index: int, error_field: str = "test_error") -> dict[str, Any]:
    """One result record -> {"name", "q", "layers", "test_error", ...}; one-line errors name the field.

    `error_field` "int_test_error" takes the exported integer model's error (what the hardware
    runs); float records have none and keep their test_error.
    """
    if not isinstance(record, dict):
        raise UserError(f"results record {index} must be an object, got {type(record).__name__}")
    where = f"results record {index}" + (f" ({record['name']!r})" if isinstance(record.get("name"), str) else "")
    if "q" not in record:
        raise UserError(f"{where} has no 'q' (1..16 or \"float\")")
    q = record["q"]
    if q == "mixed" or record.get("q_per_layer") is not None:
        raise UserError(f"{where} is a mixed-precision network (q_per_layer {record.get('q_per_layer')!r}); "
                        "qjoule energy prices uniform-Q networks only (per-layer Q assignments are priced by qjoule search)")
    if record.get("w_kind", "uniform") != "uniform":
        raise UserError(f"{where} has w_kind={record['w_kind']!r}; qjoule energy compares uniform-weight networks "
                        "per Q (power-of-two networks are priced, with the profile's pot_mac_rel, by qjoule search "
                        "--weights pot)")
    if q in (None, "float"):
        q = None
    elif isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16:
        raise UserError(f"{where} has q={q!r}, expected 1..16 or \"float\"")
    if error_field not in ERROR_FIELDS:
        raise UserError(f"error field must be one of {', '.join(ERROR_FIELDS)}, got {error_field!r}")
    if error_field != "test_error" and q is not None:
        if record.get(error_field) is None:
            raise UserError(f"{where} has no {error_field!r}")
        error = record[error_field]
    elif "test_error" in record:
        error = record["test_error"]
    elif "test_accuracy" in record:
        error = 1.0 - record["test_accuracy"] if _is_number(record["test_accuracy"]) else record["test_accuracy"]
    else:
        raise UserError(f"{where} has no 'test_error' (or 'test_accuracy')")
    if not _is_number(error) or not 0.0 <= error <= 1.0:
        raise UserError(f"{where} has {error_field}={error!r}, expected a fraction in [0, 1]")
    layers, widths = _record_layers(record, where)
    stats = network_stats(layers, q).total
    if "macs" in record and record["macs"] != stats.macs:
        raise UserError(f"{where} says macs={record['macs']!r} but its topology has {stats.macs} MACs; "
                        f"give its 'layers' or 'input_shape'/'classes'")
    name = record.get("name") or _default_name(record, q, widths)
    kept = {k: record[k] for k in KEPT_FIELDS if k in record}
    return {"name": str(name), "q": q, "bits": bits_of(q), "widths": widths, "test_error": float(error),
            **kept, "layers": layers, "stats": {
                "macs": stats.macs, "macs_hw": stats.macs_hw, "weights_and_biases": stats.weights_and_biases,
                "activations": stats.activations, "max_feature_map_bits": stats.max_feature_map_bits,
                "model_bits": stats.model_bits, "input_values": stats.input_values}}


def _record_layers(record: dict, where: str) -> tuple[list[dict], list[int] | None]:
    if isinstance(record.get("layers"), list):
        return record["layers"], record.get("widths")
    for key in ("blocks",):
        if key not in record:
            raise UserError(f"{where} has no {key!r} (or a 'layers' list)")
    widths = record.get("widths", record.get("width"))
    if widths is None:
        raise UserError(f"{where} has no 'width' (or 'widths', or a 'layers' list)")
    if "input_shape" in record and "classes" in record:
        shape, classes = tuple(record["input_shape"]), record["classes"]
    elif "dataset" in record:
        dataset = str(record["dataset"]).split(":", 1)[0]
        if dataset not in DATASET_SHAPES:
            raise UserError(f"{where} has dataset {record['dataset']!r} of unknown shape; known: "
                            f"{', '.join(DATASET_SHAPES)} (or give 'input_shape' and 'classes')")
        shape, classes = DATASET_SHAPES[dataset]
    else:
        raise UserError(f"{where} has no 'dataset' (or 'input_shape' and 'classes', or a 'layers' list)")
    layers = describe_topology(shape, classes, record["blocks"], tuple(widths) if isinstance(widths, list) else widths)
    widths = [layers[i]["out_shape"][0] for i in range(len(layers)) if layers[i]["kind"] == "maxpool2x2"]
    return layers, widths


def _default_name(record: dict, q: int | None, widths: list[int] | None) -> str:
    parts = [str(record.get("dataset", "net")), f"q{q_label(q)}"]
    if "blocks" in record:
        parts.append(f"b{record['blocks']}")
    if widths:
        parts.append("w" + ("-".join(map(str, widths)) if len(set(widths)) > 1 else str(widths[0])))
    if "seed" in record:
        parts.append(f"s{record['seed']}")
    return "-".join(parts)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- the study ----------------------------------------------------------------------------------

def default_targets(networks: Sequence[dict]) -> list[float]:
    """The best error each Q reaches: at these, every Q's best network is just in the race."""
    best: dict[str, float] = {}
    for n in networks:
        key = q_label(n["q"])
        best[key] = min(best.get(key, 1.0), n["test_error"])
    return sorted(set(best.values()))


def study(records: Sequence[Any], profile: Profile, memory: Sequence[Memory],
          targets: Sequence[float] | None = None, error_field: str = "test_error") -> dict[str, Any]:
    """energy.json as a dict: per network energies at each memory scenario, fronts and selections."""
    networks = [parse_record(r, i, error_field) for i, r in enumerate(records)]
    if not memory:
        raise UserError("no memory sizes given")
    for t in targets or []:
        if not _is_number(t) or not 0.0 <= t <= 1.0:
            raise UserError(f"target error must be a fraction in [0, 1], got {t!r}")
    targets = sorted(set(float(t) for t in targets)) if targets else default_targets(networks)

    nets = net_arrays([n["layers"] for n in networks])
    bits = np.array([n["bits"] for n in networks], dtype=float)
    grid = evaluate(nets, bits[:, None], np.array([m.weights_mb for m in memory])[None, :], profile,
                    act_memory_mb=np.array([m.activations_mb for m in memory])[None, :])   # (N, M)
    errors = np.array([n["test_error"] for n in networks])
    qs = sorted({n["q"] for n in networks}, key=lambda q: 99 if q is None else q)

    out_networks = []
    for i, n in enumerate(networks):
        entry = {k: v for k, v in n.items() if k != "layers"}
        entry["index"] = i
        entry["energy"] = {m.label: {k: float(grid[k][i, j]) for k in ENERGY_KEYS}
                           for j, m in enumerate(memory)}
        out_networks.append(entry)

    fronts, selections = {}, []
    for j, m in enumerate(memory):
        energy = grid["E_inf"][:, j]
        per_q = {}
        for q in qs:
            members = [i for i, n in enumerate(networks) if n["q"] == q]
            per_q[q_label(q)] = [members[k] for k in pareto_front(errors[members], energy[members])]
        fronts[m.label] = {"all": pareto_front(errors, energy), "per_q": per_q}
        for t in targets:
            selections.append(_select(networks, errors, energy, qs, m.label, t))
    return {
        "format": ENERGY_FORMAT, "version": ENERGY_VERSION,
        "profile": {"name": profile.name, "unit": profile.unit, "parameters": profile.values()},
        "unit": profile.unit, "error_field": error_field,
        "memory": [m.to_dict() for m in memory], "targets": targets,
        "qs": [q_label(q) for q in qs], "networks": out_networks, "pareto": fronts, "selections": selections,
        "summary": summarize(selections, memory),
        "memory_sweep": memory_sweep(nets, bits, errors, [n["q"] for n in networks], qs, profile),
    }


#: Memory sizes of the sweep (Mb): 10 per decade from 1 kb-ish to 100 Mb.
SWEEP_MB = np.logspace(-3, 2, 51)


def memory_sweep(nets, bits: np.ndarray, errors: np.ndarray, net_qs: list, qs: list, profile: Profile) -> dict[str, Any]:
    """Each Q's minimum energy vs the paper's M at the tightest error every Q reaches (Fig. 6)."""
    target = max(float(errors[[i for i, q in enumerate(net_qs) if q == x]].min()) for x in qs)
    energy = evaluate(nets, bits[:, None], SWEEP_MB[None, :], profile)["E_inf"]    # (N, M)
    per_q = {}
    for x in qs:
        ok = [i for i, q in enumerate(net_qs) if q == x and errors[i] <= target + ERROR_TOLERANCE]
        per_q[q_label(x)] = [float(v) for v in energy[ok].min(axis=0)]
    best = [min(per_q, key=lambda k: per_q[k][j]) for j in range(len(SWEEP_MB))]
    return {"target_error": target, "memory_mb": [float(m) for m in SWEEP_MB], "per_q": per_q, "best_q": best}


def summarize(selections: Sequence[dict], memory: Sequence[Memory]) -> dict[str, Any]:
    """Per memory size, the paper's questions: which Q wins at each target, how much Q matters."""
    out = {}
    for m in memory:
        rows = [s for s in selections if s["memory"] == m.label and s["reachable"]]
        spreads = [s["spread"] for s in rows if s["spread"] is not None]
        ratios = [s["int8_over_int4"] for s in rows if s["int8_over_int4"] is not None]
        out[m.label] = {
            "winner_q": {f"{s['target_error']:g}": s["best"]["q"] for s in rows},
            "max_spread": max(spreads) if spreads else None,
            "int8_over_int4": {"min": min(ratios), "max": max(ratios)} if ratios else None,
        }
    return out


def _select(networks, errors, energy, qs, memory: str, target: float) -> dict[str, Any]:
    def pick(members: list[int]) -> dict[str, Any] | None:
        k = min_energy_at(errors[members], energy[members], target)
        if k is None:
            return None
        i = members[k]
        return {"index": i, "name": networks[i]["name"], "q": q_label(networks[i]["q"]),
                "test_error": float(errors[i]), "E_inf": float(energy[i])}

    best = pick(list(range(len(networks))))
    per_q = {q_label(q): pick([i for i, n in enumerate(networks) if n["q"] == q]) for q in qs}
    reached = [v["E_inf"] for v in per_q.values() if v]
    int4, int8 = per_q.get("4"), per_q.get("8")
    return {
        "memory": memory, "target_error": target, "reachable": best is not None, "best": best,
        "per_q": per_q,
        # How much the choice of Q matters at this accuracy: worst over best per-Q minimum.
        "spread": max(reached) / min(reached) if len(reached) > 1 else None,
        "int8_over_int4": int8["E_inf"] / int4["E_inf"] if int4 and int8 else None,
    }


def unreachable_targets(result: dict[str, Any]) -> list[float]:
    """Targets no network reaches (at any memory size: reachability does not depend on memory)."""
    return sorted({s["target_error"] for s in result["selections"] if not s["reachable"]})
