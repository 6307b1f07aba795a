"""The brute-force topology × Q sweep on Optuna (the paper's grid, resumable and shareable).

Optuna is the engine: the study lives in its storage (a SQLite file in the sweep folder by
default, or any SQLAlchemy URL such as PostgreSQL so workers on several machines share it), its
`GridSampler` hands out grid points, and its heartbeat marks the trials of a killed worker as
failed so they are retried. On top of that this module guarantees what a sweep user relies on:

- one finished record per grid point: a worker never starts a point that is finished or running
  elsewhere, and a trial that finds its point taken by a lower-numbered trial stops as a duplicate;
- resumable: rerunning the same command finishes the grid without redoing finished points;
  an interrupted run (Ctrl-C) is retried without counting as a failure;
- a run that fails is recorded with its error and retried once;
- the study remembers its grid, so a folder or URL made by a different grid is refused untouched.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .storage import connect_storage

STUDY_NAME = "qjoule-sweep"
MAX_ATTEMPTS = 2  # a failed run is retried once
HEARTBEAT_SECONDS = int(os.environ.get("QJOULE_SWEEP_HEARTBEAT", "10"))


@dataclasses.dataclass(frozen=True)
class Grid:
    dataset: str
    blocks: tuple[int, ...]
    widths: tuple[int, ...]
    qs: tuple[str, ...]  # "1".."16" or "float"
    epochs: int
    seed: int = 0

    def __post_init__(self):
        for name, values in (("blocks", self.blocks), ("width", self.widths), ("q", self.qs)):
            if not values:
                raise UserError(f"--{name} is empty; the grid needs at least one value")
        for b in self.blocks:
            if b < 1:
                raise UserError(f"--blocks value {b!r} must be >= 1")
        for w in self.widths:
            if w < 1:
                raise UserError(f"--width value {w!r} must be >= 1")
        for q in self.qs:
            if q != "float" and not (q.isdigit() and 1 <= int(q) <= 16):
                raise UserError(f"--q value {q!r} must be 1..16 or 'float'")
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {self.epochs!r}")

    def points(self) -> list[dict[str, Any]]:
        return [{"blocks": b, "width": w, "q": q}
                for b, w, q in itertools.product(self.blocks, self.widths, self.qs)]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Grid":
        return cls(d["dataset"], tuple(d["blocks"]), tuple(d["widths"]), tuple(d["qs"]), d["epochs"], d["seed"])


def point_key(params: dict[str, Any]) -> str | None:
    """"q4-b1-w32"; None for a trial stopped before it had suggested all three parameters
    (a worker killed between suggestions): such a trial never trained anything."""
    if not all(name in params for name in ("q", "blocks", "width")):
        return None
    return f"q{params['q']}-b{params['blocks']}-w{params['width']}"


# -- storage ----------------------------------------------------------------------------------

def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'sweep.db').resolve()}"


def open_study(storage_url: str, grid: Grid | None, create: bool):
    """Open (or create) the study; refuse a study made by a different grid.

    Workers started at the same moment on an empty database race to create the tables and the
    study: the loser of either race joins what the winner made.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    storage = _connect(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if STUDY_NAME not in names:
        if not create:
            raise UserError(f"storage {storage_url!r} holds no qjoule sweep to join")
        if grid is None:
            raise UserError("a new sweep needs its grid")
        try:
            study = optuna.create_study(study_name=STUDY_NAME, storage=storage,
                                        sampler=optuna.samplers.GridSampler(_search_space(grid), seed=grid.seed))
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago: join it below, if its grid is ours
        else:
            study.set_user_attr("grid", grid.to_dict())
            return study, grid
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    stored = Grid.from_dict(_stored_grid(study, storage_url))
    if grid is not None and stored != grid:
        diff = next(k for k, v in grid.to_dict().items() if stored.to_dict()[k] != v)
        raise UserError(f"the sweep in {storage_url!r} was made by a different grid "
                        f"({diff}={stored.to_dict()[diff]!r}, not {grid.to_dict()[diff]!r}); it is left untouched")
    study.sampler = optuna.samplers.GridSampler(_search_space(stored), seed=stored.seed)
    return study, stored


def _connect(storage_url: str):
    """RDBStorage with heartbeats (a killed worker's run is retried); errors are UserErrors."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return connect_storage(storage_url, "sweep", heartbeat_interval=HEARTBEAT_SECONDS,
                           grace_period=3 * HEARTBEAT_SECONDS,
                           heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_ATTEMPTS - 1))


def _stored_grid(study, storage_url: str, wait_seconds: float = 30.0) -> dict[str, Any]:
    """The grid the study was made with; its creator records it right after creating the study."""
    deadline = time.monotonic() + wait_seconds
    while "grid" not in (attrs := study.user_attrs):
        if time.monotonic() > deadline:
            raise UserError(f"the sweep in {storage_url!r} records no grid (its creator stopped before "
                            "writing it); start the sweep in a new database")
        time.sleep(0.2)
    return attrs["grid"]


def _search_space(grid: Grid) -> dict[str, list]:
    return {"blocks": list(grid.blocks), "width": list(grid.widths), "q": list(grid.qs)}


# -- the state of the grid ----------------------------------------------------------------------

@dataclasses.dataclass
class PointState:
    complete: Any = None          # the COMPLETE trial, if any
    running: list = dataclasses.field(default_factory=list)
    waiting: list = dataclasses.field(default_factory=list)
    failures: int = 0             # failed attempts that count (not interruptions)
    errors: list = dataclasses.field(default_factory=list)


def grid_state(study, grid: Grid) -> dict[str, PointState]:
    from optuna.trial import TrialState

    state = {point_key(p): PointState() for p in grid.points()}
    for t in study.get_trials(deepcopy=False):
        params = t.params or t.system_attrs.get("fixed_params")
        if not params:
            continue
        s = state.get(point_key(params))
        if s is None:
            continue
        if t.state == TrialState.COMPLETE and s.complete is None:
            s.complete = t
        elif t.state == TrialState.RUNNING:
            s.running.append(t)
        elif t.state == TrialState.WAITING:
            s.waiting.append(t)
        elif t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"):
            s.failures += 1
            s.errors.append(t.user_attrs.get("error", "worker lost (no heartbeat)"))
    return state


def open_points(state: dict[str, PointState]) -> list[str]:
    """Points nobody has finished, nobody is running, and that have attempts left."""
    return [k for k, s in state.items()
            if s.complete is None and not s.running and s.failures < MAX_ATTEMPTS]


# -- the worker -----------------------------------------------------------------------------------

TrainFn = Callable[[Grid, dict[str, Any], Path], dict[str, Any]]


def train_point(grid: Grid, params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train one grid point exactly as `qjoule train` would, into `run_dir` (written whole)."""
    from .io import staged_output
    from .sw.quant import parse_q
    from .sw.train import TrainConfig, train

    config = TrainConfig(dataset=grid.dataset, q=parse_q(params["q"]), blocks=params["blocks"],
                         width=params["width"], epochs=grid.epochs, seed=grid.seed)
    with staged_output(run_dir, "train", config.key()) as stage:
        return train(config, stage, progress=False)


def run_worker(study, grid: Grid, out: Path, train: TrainFn = train_point,
               log: Callable[[str], None] = print, poll_seconds: float = 2.0) -> int:
    """Work on the grid until every point is finished or out of attempts; returns runs done here."""
    import optuna

    done_here = 0

    def objective(trial: "optuna.Trial") -> float:
        params = {"blocks": trial.suggest_categorical("blocks", list(grid.blocks)),
                  "width": trial.suggest_categorical("width", list(grid.widths)),
                  "q": trial.suggest_categorical("q", list(grid.qs))}
        key = point_key(params)
        owner = _owner(study, key, trial.number)
        if owner is not None:
            trial.set_user_attr("duplicate_of", owner)
            raise optuna.TrialPruned(f"{key} is taken by trial {owner}")
        started = time.monotonic()
        log(f"[sweep] trial {trial.number}: {key} training")
        try:
            metrics = train(grid, params, out / "runs" / key)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{e.__class__.__name__}: {e}".splitlines()[0])
            log(f"[sweep] trial {trial.number}: {key} FAILED: {e}")
            raise
        trial.set_user_attr("metrics", metrics)
        log(f"[sweep] trial {trial.number}: {key} test error {metrics['test_error']:.4f} "
            f"in {time.monotonic() - started:.1f} s")
        return float(metrics["test_error"])

    while True:
        state = grid_state(study, grid)
        todo = open_points(state)
        finished = sum(s.complete is not None for s in state.values())
        if not todo:
            if any(s.running for s in state.values()):
                # Another worker is still busy (or died: its heartbeat runs out, optuna fails the
                # trial and the retry callback enqueues it again). Wait and look again.
                _retry_stale(study)
                time.sleep(poll_seconds)
                continue
            return done_here
        log(f"[sweep] {finished}/{len(state)} points finished, {len(todo)} open")
        _enqueue_retries(study, state)
        study.optimize(objective, n_trials=1, catch=(Exception,))
        done_here += 1


CLAIM_WAIT_SECONDS = 30.0


def _owner(study, key: str, number: int, wait_seconds: float = CLAIM_WAIT_SECONDS) -> int | None:
    """The lower-numbered live or finished trial that already holds this point, if any.

    A trial claims its point by writing its parameters, a moment after it was created. A
    lower-numbered running trial that has not written them yet may be about to claim this very
    point: if we decided without it, it would not see us either (it only defers to lower numbers)
    and both would train. So wait until every lower-numbered running trial names its point. One
    that never does within `wait_seconds` belongs to a dead worker and will never train.
    """
    from optuna.trial import TrialState

    deadline = time.monotonic() + wait_seconds
    while True:
        unclaimed = False
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number >= number:
                continue
            claimed = point_key(t.params) or point_key(t.system_attrs.get("fixed_params") or {})
            if claimed == key:
                return t.number
            unclaimed |= claimed is None and t.state == TrialState.RUNNING
        if not unclaimed or time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _enqueue_retries(study, state: dict[str, PointState]) -> None:
    """Points that failed (or were interrupted) get one waiting trial with their parameters.

    The retry carries the failed trial's system attributes (its grid id), as optuna's own
    heartbeat retry does, so the grid sampler keeps counting it as that point; user attributes
    (the error) are not copied.
    """
    import optuna

    for key, s in state.items():
        if s.complete is None and not s.running and not s.waiting and s.failures < MAX_ATTEMPTS:
            tried = [t for t in study.get_trials(deepcopy=False) if point_key(t.params) == key]
            if tried:
                last = tried[-1]
                study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.WAITING, params=dict(last.params),
                    distributions=dict(last.distributions),
                    system_attrs={**last.system_attrs, "retry_of": last.number}))


def _retry_stale(study) -> None:
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)


# -- results --------------------------------------------------------------------------------------

RESULT_FIELDS = ("dataset", "q", "blocks", "width", "seed", "epochs", "test_accuracy", "test_error",
                 "macs", "weights", "activations", "max_feature_map_bits", "model_bits", "train_seconds")


def collect_results(study, grid: Grid) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One record per finished point (sorted), and the points that failed for good."""
    state = grid_state(study, grid)
    records, failed = [], []
    for key, s in state.items():
        if s.complete is not None:
            records.append({**s.complete.user_attrs["metrics"], "trial": s.complete.number})
        elif s.failures >= MAX_ATTEMPTS:
            failed.append({"point": key, "errors": s.errors})
    records.sort(key=lambda r: (str(r["q"]), r["blocks"], r["width"]))
    return records, failed


def write_results(out: Path, records: list[dict[str, Any]]) -> None:
    from .io import write_json

    write_json(out / "results.json", records)
    fields = list(RESULT_FIELDS) + sorted({k for r in records for k in r} - set(RESULT_FIELDS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()})
    tmp = out / ".results.csv.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out / "results.csv")
