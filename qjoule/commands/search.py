"""`qjoule search`: multi-objective search over per-layer Q (Optuna NSGA-II); writes the Pareto front."""

from __future__ import annotations

import argparse
from pathlib import Path

from qjoule.argtypes import integer
from qjoule.errors import UserError

HELP = "search per-layer Q assignments (NSGA-II) for error vs energy[/memory]; resumable; writes pareto.json/csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", metavar="NAME", help="data set (default digits)")
    p.add_argument("--objectives", default="error,energy", metavar="LIST",
                   help="error plus energy and/or memory, comma-separated (default error,energy)")
    p.add_argument("--trials", required=True, metavar="N", help="finished trials to reach (a rerun continues)")
    p.add_argument("--choices", default="1,2,3,4,5,6,8", metavar="Q,...", help="Qs a layer may take (default 1,2,3,4,5,6,8)")
    p.add_argument("--weights", default="uniform", choices=("uniform", "pot"),
                   help="weight quantizer of every layer: uniform (default) or pot (power of two; --choices within 2..6)")
    p.add_argument("--blocks", default="1", metavar="N", help="conv layers per block (default 1)")
    p.add_argument("--width", default="16", metavar="F", help="filters per block (default 16)")
    p.add_argument("--epochs", default="3", metavar="E", help="training epochs per trial (default 3: short)")
    p.add_argument("--seed", default="0", metavar="S", help="seed of training and of the sampler (default 0)")
    p.add_argument("--profile", default="moons2017", metavar="NAME|FILE", help="energy profile (default moons2017)")
    p.add_argument("--memory", default="2", metavar="MB", help="on-chip memory M in Mb for the energy model (default 2)")
    p.add_argument("--population", default="10", metavar="P", help="NSGA-II population size (default 10)")
    p.add_argument("--storage", default=None, metavar="URL", help="SQLAlchemy URL of the study (default: sqlite file in --out)")
    p.add_argument("--out", required=True, metavar="DIR", help="search folder: storage, search.json, pareto.json, pareto.csv")


def parse_spec(args: argparse.Namespace):
    from qjoule.search import SearchSpec
    from qjoule.sw.mixed import parse_q_list

    try:
        memory = float(args.memory)
    except ValueError:
        raise UserError(f"--memory must be a size in Mb > 0, got {args.memory!r}") from None
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    return SearchSpec(dataset=args.dataset, objectives=objectives, choices=parse_q_list(args.choices, "--choices"),
                      blocks=integer(args.blocks, "--blocks", 1), width=integer(args.width, "--width", 1),
                      epochs=integer(args.epochs, "--epochs", 1), seed=integer(args.seed, "--seed", 0),
                      profile=args.profile, memory_mb=memory, w_kind=args.weights, population=integer(args.population, "--population", 2))


def run(args: argparse.Namespace) -> int:
    spec = parse_spec(args)
    trials = integer(args.trials, "--trials", 1)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "search.json").exists())):
        raise UserError(f"--out {str(out)!r} is not empty and holds no qjoule search; choose a new or empty folder")

    import torch

    from qjoule.io import write_json
    from qjoule.search import collect, default_storage, open_study, run_search, write_results
    from qjoule.sw import data
    from qjoule.sw.energy_profiles import load_profile
    from qjoule.sw.mixed import weight_layer_names
    from qjoule.sw.netstats import describe_topology

    profile = load_profile(spec.profile)
    ds = data.load(spec.dataset)
    layers = describe_topology(ds.input_shape, ds.classes, spec.blocks, spec.width)
    n_layers = len(weight_layer_names(layers))
    torch.set_num_threads(1)
    url = args.storage or default_storage(out)
    if args.storage is None:
        out.mkdir(parents=True, exist_ok=True)
    study = open_study(url, spec)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "search.json", {"spec": spec.to_dict(), "storage": url, "trials": trials, "layers": n_layers})
    print(f"[search] {n_layers} layers x choices {','.join(map(str, spec.choices))}; storage {url}")
    ran = run_search(study, spec, trials, ds, profile, n_layers)
    results = collect(study, spec)
    write_results(out, results)
    print(f"[search] {results['finished']} trials finished ({ran} run now); Pareto front of "
          f"{len(results['pareto'])} in {out / 'pareto.json'}")
    for r in results["pareto"]:
        print(f"  Q {','.join(map(str, r['q_per_layer']))}: " + ", ".join(f"{o} {r[o]:.4g}" for o in spec.objectives))
    return 0
