"""Profiles: every parameter sourced, the published numbers mapped as documented, overrides checked."""

import json

import pytest

from qjoule.errors import UserError
from qjoule.sw.energy_profiles import SCALARS, builtin_profiles, load_profile, parse_overrides


def test_builtins_have_every_parameter_with_a_source():
    assert {"moons2017", "horowitz45"} <= set(builtin_profiles())
    for name in builtin_profiles():
        p = load_profile(name)
        assert set(SCALARS) <= set(p.parameters)
        assert all(len(entry["source"]) > 20 for entry in p.parameters.values())


def test_moons2017_relative_costs():
    p = load_profile("moons2017")
    for q in (1, 2, 4, 8, 16):
        assert p.e_local(q) == p.e_mac(q)
        assert p.e_main(q) == 2 * p.e_mac(q)
        assert p.e_dram(q) == 100 * p.e_mac(q)
        assert p.parallelism(q) == 256 * 16 / q
    assert p.e_mac(16) == 1.0


def test_horowitz45_reproduces_the_table():
    p = load_profile("horowitz45")
    assert p.unit == "pJ"
    assert float(p.e_mac(8)) == pytest.approx(0.2 + 0.03, rel=1e-3)     # 8b mult + 8b add
    assert float(p.e_mac(32)) == pytest.approx(3.1 + 0.1, rel=1e-3)     # 32b mult + 32b add
    assert float(p.e_local(64)) == pytest.approx(10.0, rel=1e-3)        # 8 KB SRAM, 64b read
    assert float(p.e_dram(64)) == pytest.approx((1300 + 2600) / 2, rel=1e-3)
    # main buffer: between the 32 KB (20 pJ) and 1 MB (100 pJ) SRAMs
    assert 20.0 < float(p.e_main(64)) < 100.0


def test_overrides_and_errors(tmp_path):
    p = load_profile("moons2017").with_overrides(parse_overrides(["alpha=2", "p_table.4=10"]))
    assert p["alpha"] == 2.0 and p.e_mac(8) == 0.25 and p.parallelism(4) == 10.0 and p.parallelism(8) == 512
    assert p.parameters["alpha"]["source"] == "command line --set"
    with pytest.raises(UserError, match="unknown energy profile 'nope'"):
        load_profile("nope")
    with pytest.raises(UserError, match="unknown energy parameter 'beta'"):
        p.with_overrides({"beta": 1.0})
    with pytest.raises(UserError, match="'p16' must be > 0, got -1.0"):
        p.with_overrides({"p16": -1.0})
    with pytest.raises(UserError, match="expects a number, got 'x'"):
        parse_overrides(["alpha=x"])
    with pytest.raises(UserError, match="name=value"):
        parse_overrides(["alpha"])
    with pytest.raises(UserError, match="table key must be a Q"):
        p.with_overrides({"p_table.0": 1.0})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**load_profile("moons2017").to_dict(), "version": 7}))
    with pytest.raises(UserError, match="version 7"):
        load_profile(str(bad))
    good = tmp_path / "copy.json"
    good.write_text(json.dumps(load_profile("horowitz45").to_dict()))
    assert load_profile(str(good)).values() == load_profile("horowitz45").values()
