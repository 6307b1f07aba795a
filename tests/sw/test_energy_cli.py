"""`qjoule energy`: a results file in, energy.json and plots out; bad input is one line, exit 2."""

import json

import pytest

from qjoule.cli import main
from qjoule.sw.energy_model import network_energy
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.netstats import describe_topology

RECORDS = [
    {"dataset": "digits", "q": 8, "blocks": 1, "width": 8, "seed": 0, "test_error": 0.05},
    {"dataset": "digits", "q": 4, "blocks": 1, "width": 8, "seed": 0, "test_error": 0.06},
    {"dataset": "digits", "q": 2, "blocks": 1, "width": 8, "seed": 0, "test_error": 0.09},
    {"dataset": "digits", "q": 1, "blocks": 1, "width": 8, "seed": 0, "test_error": 0.15},
    {"dataset": "digits", "q": 4, "blocks": 1, "width": 16, "seed": 0, "test_error": 0.045},
    {"dataset": "digits", "q": "float", "blocks": 2, "width": 8, "seed": 0, "test_accuracy": 0.97},
]


def energy_of(record, memory, profile="moons2017"):
    q = None if record["q"] == "float" else record["q"]
    layers = describe_topology((1, 8, 8), 10, record["blocks"], record["width"])
    return network_energy(layers, q, memory, load_profile(profile))["E_inf"]


def run(tmp_path, records, *args):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(records))
    return main(["energy", "--results", str(results), "--out", str(tmp_path / "out"), *args])


def test_selection_and_outputs(tmp_path):
    assert run(tmp_path, RECORDS, "--memory", "0.001,2", "--target-error", "0.05,0.1") == 0
    out = tmp_path / "out"
    doc = json.loads((out / "energy.json").read_text())
    assert doc["memory"] == [{"label": "0.001", "weights_mb": 0.001, "activations_mb": 0.001},
                             {"label": "2", "weights_mb": 2.0, "activations_mb": 2.0}]
    assert doc["targets"] == [0.05, 0.1]
    assert [n["q"] for n in doc["networks"]] == [8, 4, 2, 1, 4, None]
    assert doc["networks"][5]["test_error"] == pytest.approx(0.03)
    for s in doc["selections"]:
        m, t = float(s["memory"]), s["target_error"]
        eligible = [i for i, r in enumerate(RECORDS) if doc["networks"][i]["test_error"] <= t]
        expected = min(eligible, key=lambda i: energy_of(RECORDS[i], m))
        assert s["best"]["index"] == expected
        assert s["best"]["E_inf"] == pytest.approx(energy_of(RECORDS[expected], m), rel=1e-12)
        q4 = min((i for i in eligible if RECORDS[i]["q"] == 4), key=lambda i: energy_of(RECORDS[i], m))
        assert s["per_q"]["4"]["index"] == q4
        if t == 0.05:
            assert s["per_q"]["1"] is None and s["per_q"]["2"] is None
    for name in ("complexity.png", "energy_2Mb.png", "energy_0.001Mb.png", "breakdown_2Mb.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = (out / "energy.json").read_bytes(), (out / "energy_2Mb.png").read_bytes()
    assert run(tmp_path, RECORDS, "--memory", "0.001,2", "--target-error", "0.05,0.1") == 0
    assert ((out / "energy.json").read_bytes(), (out / "energy_2Mb.png").read_bytes()) == first


def test_profile_override_changes_energy(tmp_path):
    assert run(tmp_path, RECORDS[:1], "--memory", "2", "--set", "dram_rel=1000", "--no-plots") == 0
    doc = json.loads((tmp_path / "out" / "energy.json").read_text())
    base = energy_of(RECORDS[0], 2.0)
    assert doc["networks"][0]["energy"]["2"]["E_inf"] > base
    assert doc["profile"]["parameters"]["dram_rel"] == 1000.0


def test_unreachable_target_is_recorded_and_exits_2(tmp_path, capsys):
    assert run(tmp_path, RECORDS, "--memory", "2", "--target-error", "0.01", "--no-plots") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qjoule: error: target error 0.01 is reached by no network")
    doc = json.loads((tmp_path / "out" / "energy.json").read_text())
    assert doc["selections"][0]["reachable"] is False and doc["selections"][0]["best"] is None


@pytest.mark.parametrize("records,args,needle", [
    (RECORDS, ["--profile", "nosuch"], "unknown energy profile 'nosuch'"),
    (RECORDS, ["--memory", "0"], "memory size must be > 0 Mb, got 0.0"),
    (RECORDS, ["--memory", "2,-1"], "memory size must be > 0 Mb, got -1.0"),
    (RECORDS, ["--memory", "two"], "--memory expects comma-separated numbers"),
    (RECORDS, ["--target-error", "1.5"], "target error must be a fraction in [0, 1], got 1.5"),
    (RECORDS, ["--set", "gamma=1"], "unknown energy parameter 'gamma'"),
    ([{"dataset": "digits", "q": 4, "blocks": 1, "width": 8}], [], "results record 0 has no 'test_error'"),
    ([{"dataset": "digits", "blocks": 1, "width": 8, "test_error": 0.1}], [], "results record 0 has no 'q'"),
    ([{"dataset": "digits", "q": 17, "blocks": 1, "width": 8, "test_error": 0.1}], [], "q=17"),
    ([{"dataset": "digits", "q": 4, "width": 8, "test_error": 0.1}], [], "has no 'blocks'"),
    ([{"dataset": "imagenet", "q": 4, "blocks": 1, "width": 8, "test_error": 0.1}], [], "dataset 'imagenet'"),
    ([{"dataset": "digits", "q": 4, "blocks": 1, "width": 8, "test_error": 0.1, "macs": 5}], [], "macs=5"),
    ([], [], "hold no records"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, records, args, needle):
    assert run(tmp_path, records, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qjoule: error: ") and needle in err
    assert not (tmp_path / "out").exists()


def test_missing_results_file(tmp_path, capsys):
    assert main(["energy", "--results", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_integer_model_error_field(tmp_path, capsys):
    records = [dict(RECORDS[0], int_test_error=0.2), dict(RECORDS[5])]
    assert run(tmp_path, records, "--memory", "2", "--error", "int_test_error", "--no-plots") == 0
    doc = json.loads((tmp_path / "out" / "energy.json").read_text())
    assert [n["test_error"] for n in doc["networks"]] == [0.2, pytest.approx(0.03)]
    assert doc["summary"]["2"]["winner_q"] == {"0.03": "float", "0.2": "8"}
    (tmp_path / "x").mkdir()
    assert run(tmp_path / "x", [RECORDS[0]], "--error", "int_test_error") == 2
    assert "has no 'int_test_error'" in capsys.readouterr().err


def test_accelerator_config_scenario(tmp_path):
    from qjoule.config import AccelConfig
    from qjoule.sw.energy_model import MB_BITS
    config = AccelConfig(q=4, rows=2, cols=3, act_buffer_bits=4096, weight_buffer_bits=8192, name="tiny")
    path = tmp_path / "accel.json"
    path.write_text(config.to_json())
    assert run(tmp_path, RECORDS[:3], "--memory", "2", "--config", str(path), "--no-plots") == 0
    doc = json.loads((tmp_path / "out" / "energy.json").read_text())
    assert doc["memory"][1] == {"label": "config-tiny", "weights_mb": 8192 / MB_BITS, "activations_mb": 4096 / MB_BITS}
    p_table = doc["profile"]["parameters"]["p_table"]
    assert p_table["4"] == 2 * 3 * 4 and p_table["3"] == 2 * 3 * 5 and p_table["1"] == 2 * 3 * 16
    profile = load_profile("moons2017").with_overrides({f"p_table.{q}": v for q, v in p_table.items()})
    for i, record in enumerate(RECORDS[:3]):
        layers = describe_topology((1, 8, 8), 10, record["blocks"], record["width"])
        expected = network_energy(layers, record["q"], 8192 / MB_BITS, profile, act_memory_mb=4096 / MB_BITS)
        assert doc["networks"][i]["energy"]["config-tiny"]["E_inf"] == pytest.approx(expected["E_inf"], rel=1e-12)
        assert doc["networks"][i]["energy"]["config-tiny"]["w_s"] == expected["w_s"]
    # 1338 weights and biases at 8 bits do not fit 8192 bits; at 4 bits they do.
    assert doc["networks"][0]["energy"]["config-tiny"]["w_s"] == 1338 - 1024
    assert doc["networks"][1]["energy"]["config-tiny"]["w_s"] == 0


def test_memory_sweep_is_the_per_q_minimum(tmp_path):
    import numpy as np
    assert run(tmp_path, RECORDS, "--memory", "2", "--no-plots") == 0
    sweep = json.loads((tmp_path / "out" / "energy.json").read_text())["memory_sweep"]
    # Per-Q best errors: q8 0.05, q4 0.045, q2 0.09, q1 0.15, float 0.03 -> every Q reaches 0.15.
    assert sweep["target_error"] == 0.15
    for j in (0, 25, 50):
        m = sweep["memory_mb"][j]
        q4 = min(energy_of(RECORDS[i], m) for i in (1, 4))
        assert sweep["per_q"]["4"][j] == pytest.approx(q4, rel=1e-12)
        assert sweep["best_q"][j] == min(sweep["per_q"], key=lambda q: sweep["per_q"][q][j])
    assert sweep["memory_mb"][0] == pytest.approx(1e-3) and sweep["memory_mb"][-1] == pytest.approx(100.0)
    assert all(np.diff(sweep["per_q"]["8"]) <= 0)   # more memory never costs more
