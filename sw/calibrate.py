"""Calibration: fit the energy model to simulated activity (docs/activity.md) and validate it honestly.

Measurement. Each component's bit toggles times the base profile's energy per bit of that
component's 16-bit event (E_X(16)/16) is the measured energy of that component in that layer.

Fit. Components group into the model's events: `mac` (Q-bit lane MACs), `post` (values through
bias/BN/activation), `local` (Q-bit values read/written in the local register files), `main`
(main buffers), `dram` (values through the external interface). Per Q and group, least squares
through the origin gives the energy per event, e = Σxy / Σx², each layer's residual relative to
its measured energy. Across Q, the profile laws are fitted
in log-log: E_MAC(Q) = e_mac16 (Q/16)^alpha, and E_L, E_M, E_D with one shared mem_alpha and their
own 16-bit values. The measured reuse (MACs per local weight/activation read) replaces sqrt(p);
a synthesis report gives the area per lane and so the area-equal parallelism p(Q).

Validation. (1) Leave one Q out: fit the laws on the other Qs, predict every layer of the held-out
Q. (2) Held-out layers: fit per-Q energies on alternate layers of each kind, predict the others. (3) The paper's
model with the calibrated profile against the measurement, per layer and per Q.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qjoule.errors import UserError
from qjoule.io import read_json

from .energy_profiles import Profile
from .netstats import network_stats

ACTIVITY_FORMAT = "qjoule-activity"
ACTIVITY_VERSION = 1
GROUPS = ("mac", "post", "local", "main", "dram")
#: Modelled components -> the event group they are charged to.
COMPONENT_GROUP = {"mac": "mac", "postproc": "post", "act_local": "local", "weight_local": "local",
                   "act_main": "main", "weight_main": "main", "external": "dram"}
BUFFERS = ("act_main", "weight_main", "act_local", "weight_local")
MEMORY_GROUPS = {"local": "local_rel", "main": "main_rel", "dram": "dram_rel"}
#: Area of one DSP block in LUT equivalents when a synthesis report's area is summed (assumption).
DEFAULT_DSP_LUTS = 100.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One layer of one run, per image: event counts x and measured energies y per group."""

    run: str
    q: int
    index: int
    name: str
    p: int                       # parallel lanes of the simulated configuration
    events: dict[str, float]     # group -> events per image
    energy: dict[str, float]     # group -> measured energy per image (base profile unit)
    unmodelled: float            # energy of toggles in components the model has no event for
    mac_lane_ops: float
    local_reads: dict[str, float]  # "weight"/"act" -> Q-bit values read from the local files
    cycles: float
    idle_lane_cycles: float
    layer: dict[str, Any]        # the network's layer dict

    @property
    def measured(self) -> float:
        return sum(self.energy.values())


# -- reading activity ---------------------------------------------------------------------------

def find_activity_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("activity.json"))
            if not found:
                raise UserError(f"activity folder {str(p)!r} holds no activity.json")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"activity path {str(p)!r} does not exist")
    return files


def per_bit_energies(base: Profile) -> dict[str, float]:
    """Energy of one toggle per component: the base profile's 16-bit event energy over 16 bits."""
    mac = float(base.e_mac(16))
    group = {"mac": mac, "post": mac, "local": float(base.e_local(16)), "main": float(base.e_main(16)),
             "dram": float(base.e_dram(16))}
    out = {c: group[g] / 16.0 for c, g in COMPONENT_GROUP.items()}
    out["*"] = mac / 16.0  # unmodelled logic (control, pooling, ...) is charged like datapath logic
    return out


def read_activity(path: Path, base: Profile) -> list[Sample]:
    data = read_json(path, "activity file")
    where = f"activity file {str(path)!r}"
    if not isinstance(data, dict) or data.get("format") != ACTIVITY_FORMAT:
        raise UserError(f"{where} is not activity (expected format {ACTIVITY_FORMAT!r})")
    if data.get("version") != ACTIVITY_VERSION:
        raise UserError(f"{where} has version {data.get('version')!r}, expected {ACTIVITY_VERSION}")
    run = _get(data, "run", dict, where)
    # Runs are told apart by their folder too: `qjoule simulate` names every run after the model file.
    name = str(run.get("name") or path.parent.name)
    if name != path.parent.name:
        name = f"{path.parent.name}/{name}"
    images = _get(run, "images", int, f"{where} run")
    if images < 1:
        raise UserError(f"{where} run.images must be >= 1, got {images!r}")
    q = _get(data, "q", int, where)
    if not 1 <= q <= 16:
        raise UserError(f"{where} has q={q!r}, expected 1..16")
    config = _get(data, "config", dict, where)
    p = _get(config, "rows", int, f"{where} config") * _get(config, "cols", int, f"{where} config") * \
        (_get(config, "datapath", int, f"{where} config") // q)
    if p < 1:
        raise UserError(f"{where} config gives no lanes at q={q} (rows x cols x datapath/q = {p})")
    network = _get(data, "network", dict, where)
    net_layers = _get(network, "layers", list, f"{where} network")
    layers = _get(data, "layers", list, where)
    if [l.get("name") for l in layers if isinstance(l, dict)] != [l.get("name") for l in net_layers if isinstance(l, dict)]:
        raise UserError(f"{where}: 'layers' must name the network's layers in order")
    network_stats(net_layers, q)  # validates the layer list in one line
    e_bit = per_bit_energies(base)
    samples = []
    for index, (layer, net_layer) in enumerate(zip(layers, net_layers)):
        lw = f"{where} layer {layer['name']!r}"
        buffers = _get(layer, "buffers", dict, lw)
        values = {}
        for b in BUFFERS:
            entry = _get(buffers, b, dict, f"{lw} buffers")
            values[b] = {rw: _count(_get(entry, rw, dict, f"{lw} buffers.{b}"), "bits", f"{lw} buffers.{b}.{rw}") / q
                         for rw in ("reads", "writes")}
        external = _get(layer, "external", dict, lw)
        ext_values = (_count(external, "bits_in", f"{lw} external") + _count(external, "bits_out", f"{lw} external")) / q
        toggles = _get(layer, "toggles", dict, lw)
        for c in COMPONENT_GROUP:
            _count(toggles, c, f"{lw} toggles")
        events = {
            "mac": _count(layer, "mac_lane_ops", lw), "post": _count(layer, "postproc_ops", lw),
            "local": sum(sum(values[b].values()) for b in ("act_local", "weight_local")),
            "main": sum(sum(values[b].values()) for b in ("act_main", "weight_main")),
            "dram": ext_values,
        }
        energy = {g: 0.0 for g in GROUPS}
        unmodelled = 0.0
        for component, count in toggles.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise UserError(f"{lw} toggles.{component} must be a non-negative integer, got {count!r}")
            if component in COMPONENT_GROUP:
                energy[COMPONENT_GROUP[component]] += count * e_bit[component]
            else:
                unmodelled += count * e_bit["*"]
        samples.append(Sample(
            run=name, q=q, index=index, name=str(layer["name"]), p=p,
            events={g: v / images for g, v in events.items()}, energy={g: v / images for g, v in energy.items()},
            unmodelled=unmodelled / images, mac_lane_ops=events["mac"] / images,
            local_reads={"weight": values["weight_local"]["reads"] / images, "act": values["act_local"]["reads"] / images},
            cycles=_count(layer, "cycles", lw) / images, idle_lane_cycles=_count(layer, "idle_lane_cycles", lw) / images,
            layer=net_layer))
    return samples


def _get(d: dict, key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise UserError(f"{where} has no {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{where} {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _count(d: dict, key: str, where: str) -> int:
    value = _get(d, key, int, where)
    if value < 0:
        raise UserError(f"{where} {key!r} must be >= 0, got {value!r}")
    return value


# -- fitting ------------------------------------------------------------------------------------

def fit_per_q(samples: Sequence[Sample]) -> dict[int, dict[str, float]]:
    """{Q: {group: energy per event}} by relative least squares through the origin; groups without events are left out.

    The MAC component is fitted on two events, working lane MACs and idle lane-cycles, when the
    idle counts are not (nearly) proportional to the MACs; `idle` is then the energy of an idle
    lane-cycle (0 for perfectly gated lanes), the price of a utilization below 1.
    """
    out: dict[int, dict[str, float]] = {}
    for q in sorted({s.q for s in samples}):
        # Each layer's residual is taken relative to its measured energy, so a max-pool layer
        # weighs as much as the first conv (the validation reports relative errors per layer).
        rows = [s for s in samples if s.q == q and s.measured > 0]
        scale = np.array([1.0 / s.measured for s in rows])
        out[q] = {}
        for g in GROUPS:
            x = np.array([s.events[g] for s in rows]) * scale
            y = np.array([s.energy[g] for s in rows]) * scale
            if float(x @ x) > 0:
                out[q][g] = float(x @ y / (x @ x))
        ops = np.array([s.events["mac"] for s in rows]) * scale
        idle = np.array([s.idle_lane_cycles for s in rows]) * scale
        design = np.column_stack([ops, idle])
        if float(ops @ ops) > 0 and float(idle @ idle) > 0 and np.linalg.cond(design) < 1e6:
            (e_ops, e_idle), *_ = np.linalg.lstsq(design, np.array([s.energy["mac"] for s in rows]) * scale, rcond=None)
            if e_ops > 0 and e_idle >= 0:
                out[q]["mac"], out[q]["idle"] = float(e_ops), float(e_idle)
    return out


@dataclasses.dataclass(frozen=True)
class Laws:
    e_mac16: float
    alpha: float
    word16: dict[str, float]      # local/main/dram energy of one 16-bit word
    mem_alpha: float
    post_ratio: float             # energy of one post-processed value / E_MAC(Q) (the paper: 3)
    idle_ratio: float             # energy of one idle lane-cycle / E_MAC(Q) (0: not measured or gated)

    def energy(self, group: str, q: float) -> float:
        mac = self.e_mac16 * (q / 16.0) ** self.alpha
        if group == "mac":
            return mac
        if group == "post":
            return self.post_ratio * mac
        if group == "idle":
            return self.idle_ratio * mac
        return self.word16[group] * (q / 16.0) ** self.mem_alpha


def fit_laws(per_q: dict[int, dict[str, float]], base: Profile) -> Laws:
    """The profile laws through the per-Q energies (log-log least squares); base values where data lack."""
    mac = {q: v["mac"] for q, v in per_q.items() if v.get("mac", 0) > 0}
    if not mac:
        raise UserError("activity has no MAC events: nothing to calibrate E_MAC against")
    if len(mac) >= 2:
        lx = np.log(np.array(list(mac)) / 16.0)
        alpha, intercept = np.polyfit(lx, np.log(list(mac.values())), 1)
    else:
        alpha = base["alpha"]
        (q, e), = mac.items()
        intercept = math.log(e) - alpha * math.log(q / 16.0)
    e_mac16 = math.exp(intercept)

    # The external interface's toggles price the chip's side of a transfer, not the DRAM device:
    # they get their own 16-bit value but do not pull the on-chip memories' slope.
    rows = [(g, q, v[g]) for q, v in per_q.items() for g in ("local", "main") if v.get(g, 0) > 0]
    groups = sorted({g for g, _, _ in rows})
    if len({q for _, q, _ in rows}) >= 2:
        design = np.array([[1.0 if g == h else 0.0 for h in groups] + [math.log(q / 16.0)] for g, q, _ in rows])
        solution, *_ = np.linalg.lstsq(design, np.log([e for _, _, e in rows]), rcond=None)
        mem_alpha = float(solution[-1])
        word16 = {g: math.exp(solution[i]) for i, g in enumerate(groups)}
    else:
        mem_alpha = base["mem_alpha"]
        word16 = {g: math.exp(np.mean([math.log(e) - mem_alpha * math.log(q / 16.0) for h, q, e in rows if h == g]))
                  for g in groups}
    dram = [(q, v["dram"]) for q, v in per_q.items() if v.get("dram", 0) > 0]
    if dram:
        word16["dram"] = math.exp(np.mean([math.log(e) - mem_alpha * math.log(q / 16.0) for q, e in dram]))
    for g, rel in MEMORY_GROUPS.items():
        word16.setdefault(g, float(base.e_local(16) if g == "local" else base.e_main(16) if g == "main" else base.e_dram(16)))
    post = [v["post"] / mac[q] for q, v in per_q.items() if v.get("post", 0) > 0 and q in mac]
    post_ratio = float(np.exp(np.mean(np.log(post)))) if post else 3.0
    idle = [v["idle"] / mac[q] for q, v in per_q.items() if "idle" in v and q in mac]
    return Laws(e_mac16=e_mac16, alpha=float(alpha), word16=word16, mem_alpha=mem_alpha, post_ratio=post_ratio,
                idle_ratio=float(np.mean(idle)) if idle else 0.0)


def predict(sample: Sample, per_q: dict[int, dict[str, float]] | None, laws: Laws) -> float:
    """Modelled energy of a sample: per-Q fitted energies where known, else the laws."""
    known = (per_q or {}).get(sample.q, {})
    # Idle lane-cycles are priced only where they were fitted (per Q, or through the law's ratio).
    e_idle = known["idle"] if "idle" in known else (0.0 if known else laws.energy("idle", sample.q))
    return sum(sample.events[g] * known.get(g, laws.energy(g, sample.q)) for g in GROUPS) \
        + sample.idle_lane_cycles * e_idle


def fit_synthesis(reports: Sequence[dict], base: Profile, dsp_luts: float = DEFAULT_DSP_LUTS) -> dict[str, Any]:
    """Area per lane a(Q) from synthesis reports -> p(Q) = p16 · a(16)/a(Q) and p_exponent."""
    area = {}
    for i, r in enumerate(reports):
        where = f"synthesis report {r.get('_path', i)!r}"
        q, p = _get(r, "q", int, where), _get(r, "p", int, where)
        luts = _get(r, "luts", int, where)
        dsps = r.get("dsps", 0) or 0
        if p < 1 or luts < 0:
            raise UserError(f"{where} has p={p!r}, luts={luts!r}: expected p >= 1, luts >= 0")
        area.setdefault(q, []).append((luts + dsp_luts * dsps) / p)
    per_lane = {q: float(np.mean(v)) for q, v in sorted(area.items())}
    if len(per_lane) >= 2:
        k, intercept = np.polyfit(np.log(np.array(list(per_lane)) / 16.0), np.log(list(per_lane.values())), 1)
    else:
        k = base["p_exponent"]
        (q, a), = per_lane.items()
        intercept = math.log(a) - k * math.log(q / 16.0)
    a16 = math.exp(intercept)
    return {"area_per_lane": per_lane, "area16": a16, "p_exponent": float(k),
            "p_table": {str(q): base["p16"] * a16 / a for q, a in per_lane.items()}, "dsp_luts": dsp_luts}


# -- validation ---------------------------------------------------------------------------------

def _errors(samples: Sequence[Sample], predictions: Sequence[float]) -> dict[str, Any]:
    rows = [{"run": s.run, "q": s.q, "layer": s.name, "measured": s.measured, "predicted": float(p),
             "rel_error": (float(p) - s.measured) / s.measured if s.measured else None}
            for s, p in zip(samples, predictions)]
    rel = [abs(r["rel_error"]) for r in rows if r["rel_error"] is not None]
    measured, predicted = sum(s.measured for s in samples), float(sum(predictions))
    return {"layers": rows, "mean_abs_rel_error": float(np.mean(rel)) if rel else None,
            "max_abs_rel_error": float(np.max(rel)) if rel else None,
            "total_rel_error": (predicted - measured) / measured if measured else None}


def leave_one_q_out(samples: Sequence[Sample], base: Profile) -> list[dict[str, Any]]:
    qs = sorted({s.q for s in samples})
    out = []
    for q in qs if len(qs) >= 2 else []:
        fit = [s for s in samples if s.q != q]
        held = [s for s in samples if s.q == q]
        laws = fit_laws(fit_per_q(fit), base)
        out.append({"q": q, "fit_qs": [x for x in qs if x != q],
                    **_errors(held, [predict(s, None, laws) for s in held])})
    return out


def held_out_layers(samples: Sequence[Sample], base: Profile) -> dict[str, Any]:
    """Fit per-Q energies on every other layer of each kind in each run, predict the others."""
    fit, held = [], []
    for run in sorted({s.run for s in samples}):
        for kind in sorted({str(s.layer.get("kind")) for s in samples if s.run == run}):
            # Alternate within a kind: plain alternation would fit on convs and test on pools.
            rows = [s for s in samples if s.run == run and str(s.layer.get("kind")) == kind and s.measured > 0]
            fit.extend(rows[0::2])
            held.extend(rows[1::2])
    if not held:
        return {"layers": [], "mean_abs_rel_error": None, "max_abs_rel_error": None, "total_rel_error": None}
    per_q = fit_per_q(fit)
    laws = fit_laws(per_q, base)
    return _errors(held, [predict(s, per_q, laws) for s in held])


def paper_model_rows(samples: Sequence[Sample], profile: Profile) -> list[dict[str, Any]]:
    """The paper's per-layer counts and on-chip energy (sqrt(p) of the simulated p) vs the measurement."""
    rows = []
    for s in samples:
        stats = network_stats([s.layer], s.q).layers[0]
        passes = max(1, -(-8 // s.q)) if s.index == 0 else 1
        macs = stats.macs * passes
        local = 2.0 * macs / math.sqrt(s.p)
        main = stats.weights_and_biases + 2.0 * stats.activations
        e = float(profile.e_mac(s.q)) * (macs + profile.post_ops * stats.activations) + float(profile.e_local(s.q)) * local \
            + float(profile.e_main(s.q)) * main
        on_chip = s.measured - s.energy["dram"]
        rows.append({"run": s.run, "q": s.q, "layer": s.name,
                     "macs": {"paper": macs, "valid": stats.valid_macs * passes, "measured": s.mac_lane_ops},
                     "local_values": {"paper": local, "measured": s.events["local"]},
                     "main_values": {"paper": main, "measured": s.events["main"]},
                     "postproc": {"paper": stats.activations, "measured": s.events["post"]},
                     "utilization": s.mac_lane_ops / (s.cycles * s.p) if s.cycles else None,
                     "on_chip_energy": {"paper": e, "measured": on_chip,
                                        "rel_error": (e - on_chip) / on_chip if on_chip else None}})
    return rows


# -- the calibrated profile ---------------------------------------------------------------------

def calibrate(samples: Sequence[Sample], base: Profile, synth: dict[str, Any] | None = None,
              sources: Sequence[str] = ()) -> tuple[Profile, dict[str, Any]]:
    """The calibrated profile and the validation report."""
    if not samples:
        raise UserError("no activity samples to calibrate from")
    per_q = fit_per_q(samples)
    laws = fit_laws(per_q, base)
    qs = sorted(per_q)
    what = f"calibrated from {len({s.run for s in samples})} run(s) at Q={','.join(map(str, qs))}"
    params = {k: dict(v) for k, v in base.parameters.items()}
    set_ = lambda name, value, how: params.__setitem__(name, {"value": value, "source": f"{what}: {how}"})  # noqa: E731
    set_("e_mac16", laws.e_mac16, "log-log least squares of the per-Q MAC energies, E_MAC(16)")
    set_("alpha", laws.alpha, "log-log slope of the per-Q MAC energies" if len(qs) >= 2 else "base value (one Q only)")
    set_("mem_alpha", laws.mem_alpha, "shared log-log slope of the local and main word energies")
    for g in ("local", "main"):
        set_(MEMORY_GROUPS[g], laws.word16[g] / laws.e_mac16, f"fitted 16-bit {g} word energy / fitted e_mac16")
    # DRAM is off chip: the RTL shows its traffic, not its energy. Keep the base profile's
    # absolute E_D(16) (re-expressed against the fitted e_mac16).
    params["dram_rel"] = {"value": float(base.e_dram(16)) / laws.e_mac16,
                          "source": f"base profile {base.name}'s E_D(16) = {float(base.e_dram(16)):g} {base.unit} kept "
                                    f"(off-chip energy is not in the RTL), divided by the fitted e_mac16"}
    set_("post_ops", laws.post_ratio, "least-squares post-processing energy per output value / E_MAC(Q)")
    tables = {"e_mac_table": "mac", "local_table": "local", "main_table": "main"}
    for table, g in tables.items():
        values = {str(q): v[g] for q, v in per_q.items() if v.get(g, 0) > 0}
        if values:
            set_(table, values, f"least-squares {g} energy per Q-bit event at each measured Q")
    for table, key in (("reuse_w_table", "weight"), ("reuse_a_table", "act")):
        values = {}
        for q in qs:
            reads = sum(s.local_reads[key] for s in samples if s.q == q)
            if reads > 0:
                values[str(q)] = sum(s.mac_lane_ops for s in samples if s.q == q) / reads
        if values:
            set_(table, values, f"measured MACs per local {key} read (replaces sqrt(p))")
    utilization = {}
    for q in qs:
        ops = sum(s.mac_lane_ops for s in samples if s.q == q)
        idle = sum(s.idle_lane_cycles for s in samples if s.q == q)
        if ops > 0:
            utilization[str(q)] = ops / (ops + idle)
    idle_energy = {str(q): v["idle"] for q, v in per_q.items() if "idle" in v}
    if idle_energy:
        set_("idle_table", idle_energy, "least-squares energy of an idle lane-cycle (MAC toggles on ops and idle cycles)")
        set_("utilization_table", {q: utilization[q] for q in idle_energy},
             "measured lane utilization mac_lane_ops / (mac_lane_ops + idle_lane_cycles)")
    if synth:
        set_("p_exponent", synth["p_exponent"], "log-log slope of synthesized area per lane vs Q")
        set_("p_table", synth["p_table"], "area-equal parallelism p16 * a(16)/a(Q) from synthesis")
    profile = Profile(name=f"calibrated-{base.name}", unit=base.unit, parameters=params,
                      description=f"{base.name} {what}; see the calibration report")
    profile.validate()

    full = _errors(samples, [predict(s, per_q, laws) for s in samples])
    law_only = _errors(samples, [predict(s, None, laws) for s in samples])
    loqo = leave_one_q_out(samples, base)
    report = {
        "format": "qjoule-calibration", "version": 1, "base": base.name, "unit": base.unit,
        "activity": list(sources), "qs": qs,
        "per_bit_energy": per_bit_energies(base),
        "per_q": {str(q): v for q, v in per_q.items()},
        "laws": dataclasses.asdict(laws),
        "unmodelled_fraction": sum(s.unmodelled for s in samples) / max(1e-300, sum(s.measured + s.unmodelled for s in samples)),
        "in_sample": {"per_q_tables": full, "laws_only": law_only},
        "held_out_q": loqo,
        "held_out_q_mean_abs_rel_error": float(np.mean([r["mean_abs_rel_error"] for r in loqo])) if loqo else None,
        "held_out_layers": held_out_layers(samples, base),
        "paper_model": paper_model_rows(samples, profile),
        "synthesis": synth,
    }
    return profile, report
