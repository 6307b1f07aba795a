"""Multi-objective search over per-layer Q (Optuna NSGA-II), resumable like the sweep.

Each trial picks one Q per conv/dense layer from `choices`, trains that mixed network (short
training: `epochs`), exports it and evaluates the objectives:

- error: the integer model's test error (the golden model, i.e. what the hardware computes);
- energy: E_inf of the Moons et al. model with every layer priced at its own Q
  (qjoule.sw.energy_model.mixed_network_energy), at `memory_mb` with the chosen profile;
- memory: model_bits, the weights and biases at their layers' Qs.

The study lives in Optuna storage (SQLite in the output folder by default, or any SQLAlchemy URL)
and remembers its spec: rerunning the same command continues until `trials` trials are finished,
a different spec is refused. An assignment already finished in the study is not trained again:
its trial copies the earlier result (training is deterministic). The Pareto front is recomputed
from all finished trials (`nondominated`), not taken from the sampler.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError
from .storage import connect_storage

STUDY_NAME = "qjoule-search"
OBJECTIVES = ("error", "energy", "memory")


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    dataset: str = "digits"
    objectives: tuple[str, ...] = ("error", "energy")
    choices: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    blocks: int = 1
    width: int = 16
    epochs: int = 3
    seed: int = 0
    profile: str = "moons2017"
    memory_mb: float = 2.0
    population: int = 10
    w_kind: str = "uniform"      # "pot": power-of-two weights at every layer (choices 2..6)

    def __post_init__(self):
        if not self.objectives or len(set(self.objectives)) != len(self.objectives) or \
                any(o not in OBJECTIVES for o in self.objectives) or "error" not in self.objectives or len(self.objectives) < 2:
            raise UserError(f"--objectives must be error plus one or both of energy, memory (comma-separated, "
                            f"no repeats), got {','.join(self.objectives)!r}")
        if not self.choices or any(isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 16 for q in self.choices) \
                or len(set(self.choices)) != len(self.choices):
            raise UserError(f"--choices must be distinct integers 1..16, got {','.join(map(str, self.choices))!r}")
        for name in ("blocks", "width", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"--{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.memory_mb, (int, float)) and self.memory_mb > 0):
            raise UserError(f"--memory must be a size in Mb > 0, got {self.memory_mb!r}")
        if self.w_kind not in ("uniform", "pot"):
            raise UserError(f"--weights must be uniform or pot, got {self.w_kind!r}")
        if self.w_kind == "pot" and any(not 2 <= q <= 6 for q in self.choices):
            raise UserError(f"--weights pot needs --choices in 2..6 (Q=1 has no PoT code space), got {','.join(map(str, self.choices))!r}")
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 2:
            raise UserError(f"--population must be an integer >= 2, got {self.population!r}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def default_storage(out: Path) -> str:
    return f"sqlite:///{(Path(out) / 'search.db').resolve()}"


def open_study(storage_url: str, spec: SearchSpec):
    """Open or create the search study in `storage_url`; a study made by another spec is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=spec.population, seed=spec.seed)
    storage = connect_storage(storage_url, "search")
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if STUDY_NAME not in names:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                                    directions=["minimize"] * len(spec.objectives))
        study.set_user_attr("spec", spec.to_dict())
        return study
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)
    stored = study.user_attrs.get("spec")
    if stored != spec.to_dict():
        stored = stored or {}
        diff = next((k for k, v in spec.to_dict().items() if stored.get(k) != v), "spec")
        raise UserError(f"the search in {storage_url!r} was made with {diff}={stored.get(diff)!r}, not "
                        f"{spec.to_dict().get(diff)!r}; it is left untouched")
    return study


# -- one trial ---------------------------------------------------------------------------------------

def evaluate_assignment(spec: SearchSpec, q_per_layer: Sequence[int], ds, profile) -> dict[str, Any]:
    """Train, export and evaluate one per-layer assignment; all three objectives and the metrics."""
    import numpy as np

    from .sw.energy_model import mixed_network_energy
    from .sw.mixed import export_model
    from .sw.netstats import network_stats
    from .sw.train import TrainConfig, fit, golden_predict, predict

    config = TrainConfig(dataset=spec.dataset, q_per_layer=tuple(q_per_layer), w_kind=spec.w_kind, blocks=spec.blocks,
                         width=spec.width, epochs=spec.epochs, seed=spec.seed)
    qnn = fit(config, ds, progress=False)
    model = export_model(qnn)
    int_preds = golden_predict(model, ds.test_x)
    float_acc = float(np.mean(predict(qnn, ds.test_x) == ds.test_y))
    int_acc = float(np.mean(int_preds == ds.test_y))
    energy = mixed_network_energy(model.layers, spec.memory_mb, profile)
    stats = network_stats(model.layers, list(q_per_layer)).total
    return {"q_per_layer": list(q_per_layer), "error": 1.0 - int_acc, "energy": energy["E_inf"],
            "memory": stats.model_bits, "test_accuracy": float_acc, "int_test_accuracy": int_acc,
            "energy_unit": energy["unit"], "energy_breakdown": {k: energy[k] for k in ("compute", "local", "main", "dram")},
            "macs": stats.macs,
            "w_kinds": sorted({layer.get("w_kind", "uniform") for layer in model.layers if "weight" in layer})}


def run_search(study, spec: SearchSpec, trials: int, ds, profile, n_layers: int,
               progress: bool = True) -> int:
    """Run trials until `trials` are finished in the study; returns how many ran here."""
    from optuna.trial import TrialState
    from tqdm import tqdm

    def objective(trial):
        qs = [trial.suggest_categorical(f"q{i}", list(spec.choices)) for i in range(n_layers)]
        earlier = _finished_with(study, qs, trial.number)
        if earlier is not None:
            record = dict(earlier.user_attrs["record"])
            trial.set_user_attr("duplicate_of", earlier.number)
        else:
            try:
                record = evaluate_assignment(spec, qs, ds, profile)
            except Exception as e:
                trial.set_user_attr("error", f"{e.__class__.__name__}: {e}".splitlines()[0])
                raise
        trial.set_user_attr("record", record)
        tqdm.write(f"[search] trial {trial.number}: Q {','.join(map(str, qs))} error {record['error']:.4f} "
            f"energy {record['energy']:.1f} memory {record['memory']}" + (" (repeat)" if earlier is not None else ""))
        return tuple(float(record[o]) for o in spec.objectives)

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    done = finished()
    ran = 0
    bar = tqdm(total=trials, initial=min(done, trials), desc="search", unit="trial", disable=not progress, leave=False)
    while done < trials:
        study.optimize(objective, n_trials=1, catch=(Exception,))
        ran += 1
        last = study.get_trials(deepcopy=False)[-1]
        if last.state == TrialState.FAIL:
            raise UserError(f"search trial {last.number} failed: {last.user_attrs.get('error', 'see the log above')}")
        now = finished()
        bar.update(now - done)
        done = now
    bar.close()
    return ran


def _finished_with(study, qs: list[int], number: int):
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number < number and "record" in t.user_attrs and t.user_attrs["record"]["q_per_layer"] == qs:
            return t
    return None


# -- results -----------------------------------------------------------------------------------------

def nondominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (all <=, one <); of equal points the first stays."""
    front = []
    for i, p in enumerate(points):
        dominated = False
        for j, r in enumerate(points):
            if j == i:
                continue
            if all(a <= b for a, b in zip(r, p)) and (any(a < b for a, b in zip(r, p)) or j < i):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def collect(study, spec: SearchSpec) -> dict[str, Any]:
    """Every finished trial and the Pareto front (sorted by the objectives)."""
    from optuna.trial import TrialState

    trials = [{"trial": t.number, **t.user_attrs["record"]}
              for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "record" in t.user_attrs]
    trials.sort(key=lambda r: r["trial"])
    points = [[r[o] for o in spec.objectives] for r in trials]
    front = [trials[i] for i in nondominated(points)]
    front.sort(key=lambda r: tuple(r[o] for o in spec.objectives))
    return {"spec": spec.to_dict(), "objectives": list(spec.objectives), "finished": len(trials),
            "pareto": front, "trials": trials}


CSV_FIELDS = ("trial", "q_per_layer", "error", "energy", "memory", "test_accuracy", "int_test_accuracy", "macs", "pareto")


def write_results(out: Path, results: dict[str, Any]) -> None:
    from .io import write_json

    write_json(out / "pareto.json", results)
    on_front = {r["trial"] for r in results["pareto"]}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in results["trials"]:
        writer.writerow({**r, "q_per_layer": ",".join(map(str, r["q_per_layer"])), "pareto": r["trial"] in on_front})
    tmp = out / ".pareto.csv.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out / "pareto.csv")
