"""`qjoule energy` on what `qjoule sweep` and `qjoule train --q-per-layer` write."""

import json

from qjoule.cli import main
from qjoule.sweep import write_results
from qjoule.sw.energy_model import network_energy
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.netstats import describe_topology


def _sweep_record(q, width, error, trial):
    """A record as the sweep exports it: metrics.json fields plus the trial number."""
    quantized = q != "float"
    return {"dataset": "digits", "q": q, "blocks": 1, "width": width, "widths": [width] * 3, "seed": 0,
            "epochs": 10, "test_accuracy": 1 - error, "test_error": error, "train_seconds": 1.5,
            "int_test_accuracy": 1 - error if quantized else None, "int_test_error": error if quantized else None,
            "int_agreement": 1.0 if quantized else None, "trial": trial}


def test_sweep_results_are_priced_per_network(tmp_path):
    records = [_sweep_record(1, 16, 0.08, 3), _sweep_record(4, 16, 0.02, 0), _sweep_record("float", 16, 0.01, 1)]
    write_results(tmp_path, records)
    assert main(["energy", "--results", str(tmp_path / "results.json"), "--memory", "2", "--no-plots",
                 "--error", "int_test_error", "--out", str(tmp_path / "energy")]) == 0
    doc = json.loads((tmp_path / "energy" / "energy.json").read_text())
    layers = describe_topology((1, 8, 8), 10, 1, 16)
    profile = load_profile("moons2017")
    by_q = {n["q"]: n for n in doc["networks"]}
    assert set(by_q) == {1, 4, None}
    for q in (1, 4, None):
        assert by_q[q]["energy"]["2"]["E_inf"] == network_energy(layers, q, 2.0, profile)["E_inf"]
    assert [(n["q"], n["test_error"]) for n in doc["networks"]] == [(1, 0.08), (4, 0.02), (None, 0.01)]


def test_mixed_precision_record_is_refused_in_one_line(tmp_path, capsys):
    record = {"dataset": "digits", "q": "mixed", "q_per_layer": [4, 2, 8], "blocks": 1, "width": 8,
              "test_error": 0.05}
    results = tmp_path / "results.json"
    results.write_text(json.dumps([_sweep_record(4, 8, 0.03, 0), record]))
    assert main(["energy", "--results", str(results), "--out", str(tmp_path / "energy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["qjoule: error: results record 1 is a mixed-precision network (q_per_layer [4, 2, 8]); "
                   "qjoule energy prices uniform-Q networks only (per-layer Q assignments are priced by qjoule search)"]
    assert not (tmp_path / "energy").exists()


def test_power_of_two_record_is_refused_in_one_line(tmp_path, capsys):
    # The model has no shift-and-accumulate MAC cost: pricing a PoT network as uniform would be wrong.
    record = dict(_sweep_record(4, 8, 0.03, 0), w_kind="pot")
    results = tmp_path / "results.json"
    results.write_text(json.dumps([record]))
    assert main(["energy", "--results", str(results), "--out", str(tmp_path / "energy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qjoule: error: results record 0 has w_kind='pot'; "), err
    assert not (tmp_path / "energy").exists()
