"""Mutants (qjoule.sim.mutate): exact text and model edits, and the RTL check catching one of each kind."""

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.errors import UserError
from qjoule.program import encode
from qjoule.sim import mutate
from qjoule.sw import golden, intmodel

# Yosys-style Verilog: escaped identifiers end at a space, `$N` nets, one module per instance.
VERILOG = """module top(a, b, y);
  assign \\$1  = a - b;
  assign \\$2  = sel ? \\$1  : 4'h0;
  assign \\$3  = cnt + 1'h1;
  assign \\$4  = x + carry;
  assign \\$5  = x + 1'h0;
  assign \\$6  = sel ? a : a;
endmodule
module \\top.sub (a, y);
  assign \\$1  = a - b;
  assign \\$7  = $signed(\\$6 ) >>> sh[2:0];
endmodule
"""


def _line(text, net, module_start=0):
    return next(line for line in text[module_start:].splitlines() if line.strip().startswith(f"assign \\{net} "))


@pytest.mark.parametrize("operator, rhs, expected", [
    ("operand-swap", "a - b", "  assign \\$1  = b - a ;"),
    ("mux-swap", "sel ? \\$1  : 4'h0", "  assign \\$2  = sel ? 4'h0 : \\$1 ;"),
    ("off-by-one", "cnt + 1'h1", "  assign \\$3  = cnt + 2'h2 ;"),
    ("drop-term", "x + carry", "  assign \\$4  = x ;"),
])
def test_design_mutation_edits_one_assign(operator, rhs, expected):
    mutant = mutate.Mutant(operator, module="top", rhs=rhs)
    text = mutant.apply_verilog(VERILOG)
    changed = [(a, b) for a, b in zip(VERILOG.splitlines(), text.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1] == expected


def test_occurrence_and_module_pick_the_site():
    # `a - b` is in both modules: the one in \top.sub changes, the top's stays
    text = mutate.Mutant("operand-swap", module="\\top.sub", rhs="a - b").apply_verilog(VERILOG)
    top, sub = text.split("endmodule")[:2]
    assert "\\$1  = a - b;" in top and "\\$1  = b - a ;" in sub
    shift = mutate.Mutant("operand-swap", module="\\top.sub", rhs="$signed(\\$6 ) >>> sh[2:0]").apply_verilog(VERILOG)
    assert "\\$7  = sh[2:0] >>> $signed(\\$6 ) ;" in shift
    with pytest.raises(UserError, match="the module has 1 such assignments"):
        mutate.Mutant("operand-swap", module="top", rhs="a - b", occurrence=1).apply_verilog(VERILOG)
    with pytest.raises(UserError, match="no module 'nope'"):
        mutate.Mutant("operand-swap", module="nope", rhs="a - b").apply_verilog(VERILOG)


def test_sites_skip_equivalent_mutations_and_names_round_trip():
    sites = {op: [m.rhs for m in mutate.verilog_sites(VERILOG, op)] for op in mutate.VERILOG_OPERATORS}
    assert sites == {"mux-swap": ["sel ? \\$1  : 4'h0"],            # `sel ? a : a` swaps nothing
                     "operand-swap": ["a - b", "a - b", "$signed(\\$6 ) >>> sh[2:0]"],
                     "off-by-one": ["cnt + 1'h1"],
                     "drop-term": ["cnt + 1'h1", "x + carry"]}      # `x + 1'h0` drops nothing
    for op in mutate.VERILOG_OPERATORS:
        for m in mutate.verilog_sites(VERILOG, op):
            assert mutate.parse(m.name) == m


@pytest.fixture(scope="module")
def model():
    return intmodel.random_model((1, 8, 8), 10, 1, 4, 4, seed=3)


def test_weight_bit_flips_one_code(model):
    layer = model.layers[0]
    w = model.arrays[layer["weight"]].reshape(-1)
    index = int(np.flatnonzero(w == 3)[0])
    mutant = mutate.Mutant("weight-bit", layer=layer["name"], index=index, bit=3).apply_model(model)
    after = mutant.arrays[layer["weight"]].reshape(-1)
    assert after[index] == -5                      # 0011 -> 1011 in 4-bit two's complement
    assert np.count_nonzero(after != w) == 1
    assert mutate.parse(f"weight-bit@{layer['name']}[{index}].bit3").apply_model(model).arrays[layer["weight"]].tolist() \
        == mutant.arrays[layer["weight"]].tolist()
    binary = intmodel.random_model((1, 8, 8), 10, 1, 4, 1, seed=3)
    b0 = binary.layers[0]
    flipped = mutate.Mutant("weight-bit", layer=b0["name"], index=5).apply_model(binary).arrays[b0["weight"]]
    assert flipped.reshape(-1)[5] == -binary.arrays[b0["weight"]].reshape(-1)[5]


def test_drop_rounding_subtracts_half_an_lsb(model):
    layer = model.layers[0]
    mutant = mutate.Mutant("drop-rounding", layer=layer["name"]).apply_model(model)
    assert (model.arrays[layer["pp_bias"]] - mutant.arrays[layer["pp_bias"]]).tolist() \
        == [1 << (layer["pp_shift"] - 1)] * layer["out_shape"][0]
    names = [m.layer for m in mutate.drop_rounding_mutants(model)]
    assert names == [l["name"] for l in model.layers if "pp_bias" in l]


@pytest.mark.rtl
def test_one_mutant_of_each_kind_is_caught(tmp_path, model):
    from qjoule.gateware.top import QjouleAccel
    from qjoule.hw.verilog import emit_verilog
    from qjoule.sim.simulate import TOPLEVEL, run_jobs

    cfg = variant("tiny", q=4)
    text = emit_verilog(QjouleAccel(cfg), TOPLEVEL)
    original = tmp_path / "model.qjm"
    intmodel.save(model, original)
    images = np.random.default_rng(7).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    first = model.layers[0]
    model_mutants = [mutate.Mutant("weight-bit", layer=first["name"], index=0, bit=3),
                     mutate.Mutant("drop-rounding", layer=first["name"])]
    jobs = []
    for i, m in enumerate(model_mutants):
        mutant = m.apply_model(model)
        # a mutant the golden model cannot tell apart on this image would prove nothing
        assert not np.array_equal(golden.run(mutant, images).outputs[first["name"]],
                                  golden.run(model, images).outputs[first["name"]])
        path = tmp_path / f"mutant-{i}.qjm"
        intmodel.save(mutant, path)
        jobs.append({"model": path, "images": images, "golden_model": original})
    tb, outcome, _ = run_jobs(jobs, cfg, tmp_path / "model-mutants", verilog_text=text, max_cycles=20_000)
    assert not outcome.passed
    for job in tb["jobs"]:
        # (the first layer's dump is its fused pool's output when the config fuses it)
        assert job["images"][0]["first_mismatch"]["layer"] == encode(model, cfg).layers[0].output_name

    design = [mutate.Mutant("operand-swap", module="\\qjoule_accel.seq.pp0", rhs="$signed(s3_total) >>> s3_shift"),
              mutate.Mutant("off-by-one", module="\\qjoule_accel.seq", rhs="kw + 1'h1")]
    for i, m in enumerate(design):
        tb, outcome, _ = run_jobs([{"model": original, "images": images}], cfg, tmp_path / f"design-{i}",
                                  verilog_text=m.apply_verilog(text), max_cycles=20_000, waves=False)
        assert not outcome.passed, m.name
        assert tb["error"] is not None or not tb["jobs"][0]["images"][0]["match"], m.name
