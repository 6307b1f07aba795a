"""Calibration on synthetic activity files: known parameters come back, a different law shows up
as held-out error, bad files are one-line errors."""

import json

import pytest

from qjoule.cli import main
from qjoule.errors import UserError
from qjoule.sw.calibrate import (calibrate, find_activity_files, fit_synthesis, per_bit_energies,
                                 read_activity)
from qjoule.sw.energy_profiles import load_profile
from qjoule.sw.netstats import describe_topology, network_stats

IMAGES = 1000
# The "true" hardware the synthetic activity is generated from.
TRUE = {"e_mac16": 1.3, "alpha": 1.4, "local": 0.9, "main": 2.5, "dram": 120.0, "mem_alpha": 0.8, "post": 2.0,
        "idle": 0.1}
QS = (1, 2, 3, 4, 8)


def power_law(group, q):
    mac = TRUE["e_mac16"] * (q / 16) ** TRUE["alpha"]
    if group == "mac":
        return mac
    if group in ("post", "idle"):
        return TRUE[group] * mac
    return TRUE[group] * (q / 16) ** TRUE["mem_alpha"]


BUMP = {1: 1.0, 2: 1.8, 3: 0.6, 4: 1.5, 8: 0.7}


def bumpy_law(group, q):
    """Not a power law in Q: the MAC energy jumps up and down between Qs."""
    return power_law(group, q) * (BUMP[q] if group in ("mac", "post", "idle") else 1.0)


def synthetic_activity(q, blocks, width, law, base):
    layers = describe_topology((1, 8, 8), 10, blocks, width)
    stats = network_stats(layers, q)
    e_bit = per_bit_energies(base)
    config = {"format": "qjoule-accel-config", "version": 1, "q": q, "datapath": 16, "rows": 4, "cols": 4}
    p = 16 * (16 // q)
    out_layers = []
    for i, s in enumerate(stats.layers):
        passes = stats.total.first_layer_passes if i == 0 else 1
        macs = s.macs * passes
        values = {  # Q-bit values per image through each store
            "act_local": (macs // 2, s.in_values), "weight_local": (macs // 4, s.weights),
            "act_main": (s.in_values if i else 0, s.out_values), "weight_main": (s.weights_and_biases, 0)}
        ext_in = s.in_values * 8 // q if i == 0 else (s.weights_and_biases if i % 2 else 0)
        events = {"mac": ("mac", macs), "postproc": ("post", s.activations),
                  "act_local": ("local", sum(values["act_local"])), "weight_local": ("local", sum(values["weight_local"])),
                  "act_main": ("main", sum(values["act_main"])), "weight_main": ("main", sum(values["weight_main"])),
                  "external": ("dram", ext_in)}
        cycles = -(-macs // p) + 5
        idle = cycles * p - macs
        toggles = {c: round(IMAGES * (n * law(g, q) + (idle * law("idle", q) if c == "mac" else 0)) / e_bit[c])
                   for c, (g, n) in events.items()}
        toggles["control"] = 3 * cycles * IMAGES
        out_layers.append({
            "name": s.name, "cycles": cycles * IMAGES, "mac_lane_ops": macs * IMAGES,
            "idle_lane_cycles": idle * IMAGES, "postproc_ops": s.activations * IMAGES,
            "buffers": {b: {"reads": {"words": r * IMAGES, "bits": r * q * IMAGES},
                            "writes": {"words": w * IMAGES, "bits": w * q * IMAGES}} for b, (r, w) in values.items()},
            "external": {"words_in": ext_in * IMAGES, "words_out": 0, "bits_in": ext_in * q * IMAGES, "bits_out": 0},
            "toggles": toggles})
    return {"format": "qjoule-activity", "version": 1,
            "run": {"name": f"q{q}-b{blocks}-w{width}", "images": IMAGES, "seed": 0, "simulator": "synthetic"},
            "q": q, "config": config,
            "network": {"input": {"channels": 1, "height": 8, "width": 8, "bits": 8}, "classes": 10, "layers": layers},
            "layers": out_layers}


def write_runs(folder, law, base):
    for q in QS:
        for blocks, width in ((1, 8), (2, 4)):
            d = folder / f"q{q}-b{blocks}-w{width}"
            d.mkdir(parents=True)
            (d / "activity.json").write_text(json.dumps(synthetic_activity(q, blocks, width, law, base)))
    return folder


def samples_of(folder, base):
    return [s for f in find_activity_files([folder]) for s in read_activity(f, base)]


@pytest.fixture(scope="module")
def base():
    return load_profile("moons2017")


def test_recovers_known_parameters(tmp_path, base):
    profile, report = calibrate(samples_of(write_runs(tmp_path, power_law, base), base), base)
    assert profile["alpha"] == pytest.approx(TRUE["alpha"], abs=1e-3)
    assert profile["e_mac16"] == pytest.approx(TRUE["e_mac16"], rel=1e-3)
    assert profile["mem_alpha"] == pytest.approx(TRUE["mem_alpha"], abs=1e-3)
    for group, rel in (("local", "local_rel"), ("main", "main_rel")):
        assert profile[rel] == pytest.approx(TRUE[group] / TRUE["e_mac16"], rel=1e-3)
    # The interface's energy per external value is fitted and reported; E_D stays the base's (off chip).
    assert report["laws"]["word16"]["dram"] == pytest.approx(TRUE["dram"], rel=1e-3)
    assert profile["dram_rel"] * profile["e_mac16"] == pytest.approx(float(base.e_dram(16)), rel=1e-12)
    assert profile["post_ops"] == pytest.approx(TRUE["post"], rel=1e-3)
    assert report["laws"]["post_ratio"] == pytest.approx(TRUE["post"], rel=1e-3)
    assert report["laws"]["idle_ratio"] == pytest.approx(TRUE["idle"], rel=1e-3)
    for q in QS:
        assert profile["idle_table"][str(q)] == pytest.approx(power_law("idle", q), rel=1e-3)
        assert 0 < profile["utilization_table"][str(q)] < 1
    for q in QS:
        assert profile["e_mac_table"][str(q)] == pytest.approx(power_law("mac", q), rel=1e-3)
        assert profile["reuse_w_table"][str(q)] == pytest.approx(4.0, rel=1e-9)   # macs / (macs // 4)
        assert profile["reuse_a_table"][str(q)] == pytest.approx(2.0, rel=1e-9)
    assert report["held_out_q_mean_abs_rel_error"] < 1e-3
    assert report["held_out_layers"]["mean_abs_rel_error"] < 1e-3
    assert report["in_sample"]["laws_only"]["max_abs_rel_error"] < 1e-3
    assert 0 < report["unmodelled_fraction"] < 1
    assert {r["layer"] for r in report["paper_model"]} >= {"A1", "fc"}


def test_different_law_shows_in_held_out_error(tmp_path, base):
    good = calibrate(samples_of(write_runs(tmp_path / "good", power_law, base), base), base)[1]
    bad = calibrate(samples_of(write_runs(tmp_path / "bad", bumpy_law, base), base), base)[1]
    assert bad["held_out_q_mean_abs_rel_error"] > 0.03
    assert bad["held_out_q_mean_abs_rel_error"] > 100 * good["held_out_q_mean_abs_rel_error"]
    # Per-Q tables still fit the bumpy data in sample: the error is in the law, not the fit.
    assert bad["in_sample"]["per_q_tables"]["max_abs_rel_error"] < 1e-3


def test_synthesis_gives_area_equal_parallelism(base):
    reports = [{"q": q, "p": 16 * 16 // q, "luts": round(50 * (q / 16) ** 1.2 * (16 * 16 // q) * 1000), "dsps": 0}
               for q in (1, 2, 4, 8, 16)]
    synth = fit_synthesis(reports, base)
    assert synth["p_exponent"] == pytest.approx(1.2, abs=1e-4)
    for q in (1, 2, 4, 8, 16):
        assert synth["p_table"][str(q)] == pytest.approx(256 * (16 / q) ** 1.2, rel=1e-4)


def test_cli_writes_a_profile_energy_can_use(tmp_path, capsys, base):
    write_runs(tmp_path / "act", power_law, base)
    synth = tmp_path / "synth.json"
    synth.write_text(json.dumps([{"q": q, "p": 64 // q * 4, "luts": 1000 * q, "dsps": 0} for q in (1, 4)]))
    assert main(["calibrate", "--activity", str(tmp_path / "act"), "--synth", str(synth),
                 "--out", str(tmp_path / "cal")]) == 0
    profile = load_profile(str(tmp_path / "cal"))
    assert profile["alpha"] == pytest.approx(TRUE["alpha"], abs=1e-3)
    assert set(profile["p_table"]) == {"1", "4"}
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert (tmp_path / "cal" / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["q"] for r in report["held_out_q"]] == list(QS)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"dataset": "digits", "q": 4, "blocks": 1, "width": 8, "test_error": 0.1}]))
    assert main(["energy", "--results", str(results), "--profile", str(tmp_path / "cal"),
                 "--memory", "2", "--no-plots", "--out", str(tmp_path / "e")]) == 0
    doc = json.loads((tmp_path / "e" / "energy.json").read_text())
    assert doc["profile"]["name"] == "calibrated-moons2017"


def test_bad_activity_is_one_line_exit_2(tmp_path, capsys, base):
    data = synthetic_activity(4, 1, 8, power_law, base)
    del data["layers"][1]["toggles"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "activity.json").write_text(json.dumps(data))
    cases = [
        (["--activity", str(tmp_path / "a")], "layer 'A.pool' has no 'toggles'"),
        (["--activity", str(tmp_path / "none")], "does not exist"),
        (["--activity", str(tmp_path / "a"), "--base", "nosuch"], "unknown energy profile 'nosuch'"),
    ]
    for args, needle in cases:
        assert main(["calibrate", *args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "o").exists()
    data = synthetic_activity(4, 1, 8, power_law, base)
    data["version"] = 2
    (tmp_path / "a" / "activity.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="version 2"):
        read_activity(tmp_path / "a" / "activity.json", base)


def test_fit_weighs_layers_by_relative_error():
    from qjoule.sw.calibrate import GROUPS, Sample, fit_per_q

    def sample(name, macs, energy):
        return Sample(run="r", q=4, index=0, name=name, p=16, events={g: (macs if g == "mac" else 0.0) for g in GROUPS},
                      energy={g: (energy if g == "mac" else 0.0) for g in GROUPS}, unmodelled=0.0,
                      mac_lane_ops=macs, local_reads={"weight": 0.0, "act": 0.0}, cycles=1.0,
                      idle_lane_cycles=0.0, layer={})
    # Relative residuals: minimize (e - 1)^2 + (e/2 - 1)^2 -> e = 1.2 (absolute ones would give ~1.0001).
    per_q = fit_per_q([sample("big", 100.0, 100.0), sample("small", 1.0, 2.0)])
    assert per_q[4]["mac"] == pytest.approx(1.2, rel=1e-12)
