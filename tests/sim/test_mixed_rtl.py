"""Per-layer mixed precision on the generated Verilog (Icarus, cocotb) against the golden model,
exact equality at every layer (the debug dump compares each layer's codes, then the logits).

Networks: trained digits networks with Q per layer (4, 2, 8, 4) and (2, 4, 2, 4) (max-pools
between layers of different Q), random topology-family networks with Q = 3/5 containers
(D = 15), a 1-bit (XNOR) layer pair behind a 4-bit layer, three modes on a 24-bit datapath, a
uniform model on multi-mode hardware, random per-layer assignments from seeds on one build, and
the other pool engines (R = 4: R/2 words per step; R = 1: four cycles per word).
Plus the one-line refusals (no simulation) and the encoder's per-layer packing.
"""

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.errors import UserError
from qjoule.program import encode, layer_modes, variant_for_model
from qjoule.sim.checker import failures
from qjoule.sim.simulate import run_jobs
from qjoule.sw import intmodel


def _assert_all_match(tb, outcome):
    assert not failures(tb), failures(tb)
    assert outcome.passed


def _images(seed: int, n: int = 2) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    images[0, 0, :3] = 255  # saturated pixels: every first-layer pass at its largest chunk
    return images


def _random_mixed(qs, seed: int, tmp_path):
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=seed, q_per_layer=list(qs))
    path = tmp_path / f"mixed-{'-'.join(map(str, qs))}-{seed}.qjm"
    intmodel.save(model, path)
    return model, path


# -- the encoder's side (fast, no simulation) ------------------------------------------------------

def test_layer_modes_follow_the_container_rule():
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0, q_per_layer=[2, 4, 2, 4])
    # A1 at its q_w (pixels), A.pool/B1 at max(2, 4), B.pool/C1 at max(4, 2), C.pool/fc at max(2, 4)
    assert layer_modes(model) == [2, 4, 4, 4, 4, 4, 4]
    assert layer_modes(model, first_q=4) == [4, 4, 4, 4, 4, 4, 4]
    cfg = variant_for_model("tiny", model)
    assert (cfg.q, cfg.modes, cfg.datapath) == (2, (2, 4), 16)
    one_bit = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0, q_per_layer=[4, 1, 1, 1])
    assert layer_modes(one_bit) == [4, 4, 4, 1, 1, 1, 1]   # B1: 4-bit codes times ±1 weights


def test_encode_packs_each_map_at_the_next_layers_container():
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0, q_per_layer=[4, 2, 8, 4])
    cfg = variant_for_model("tiny", model)
    assert cfg.modes == (4, 8)
    program = encode(model, cfg.replace(fuse_pool=False))   # (the pools as layers of their own)
    entries = {plan.name: plan.entry for plan in program.layers}
    # B1 (q_in 4, q_w 2) runs at 4 and writes 2-bit codes into 8-bit containers for C1 (q_w 8)
    assert (entries["B1"]["mode_q"], entries["B1"]["out_q"], entries["B1"]["clamp_q"]) == (4, 8, 2)
    assert (entries["B.pool"]["mode_q"], entries["B.pool"]["out_q"]) == (8, 8)
    # B1's 8 output channels in 2 lanes per word: 4 groups; its 8 inputs in 4 lanes: 2 groups
    assert entries["B1"]["out_groups"] == 4 and entries["B1"]["groups"] == 2
    # C1 (8 in, 8 out channels) at mode 8: 2 lanes per word, so 4 input groups; 8 / C = 4 tiles
    assert len(program.layers[4].weights) == (8 // cfg.cols) * 4 * 9
    # fused (the default): B1 writes the pooled map, at B.pool's container (C1's mode)
    fused = {plan.label: plan.entry for plan in encode(model, cfg).layers}
    assert list(fused) == ["A1+A.pool", "B1+B.pool", "C1+C.pool", "fc"]
    assert (fused["B1+B.pool"]["mode_q"], fused["B1+B.pool"]["out_q"], fused["B1+B.pool"]["fused_pool"]) == (4, 8, 1)
    # a uniform config's entries leave the mode fields 0 (its table does not hold them)
    uniform = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0)
    assert all(p.entry.get("mode_q", 0) == 0 for p in encode(uniform, variant("tiny", 4)).layers)


def test_refusals_are_one_line():
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0, q_per_layer=[4, 2, 8, 4])
    with pytest.raises(UserError, match=r"^layer 'C1' runs at Q=8 \(q_in=2, q_w=8\), which is not one of the "
                                        r"config's q_modes \[2, 4\]$"):
        encode(model, variant("tiny", 4, q_modes=(2, 4)))
    with pytest.raises(UserError, match=r"per-layer Qs \[4, 2, 8, 4\] \(mixed precision\); the config runs one "
                                        r"uniform q=4"):
        encode(model, variant("tiny", 4))
    ones_in = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=0, q_per_layer=[4, 1, 2, 4])
    with pytest.raises(UserError, match=r"^layer 'C1' takes ±1 inputs \(q_in=1\) with q_w=2 weights"):
        variant_for_model("tiny", ones_in)
    with pytest.raises(UserError, match=r"^layer 'A1' has q_w=4 weights, wider than the first layer's mode q=2"):
        encode(model, variant("tiny", 2, q_modes=(2, 4, 8)))
    with pytest.raises(UserError, match=r"^q_modes \[2, 4\]: per-layer modes run uniform weights only"):
        variant("tiny", 4, q_modes=(2, 4), weights="pot")
    with pytest.raises(UserError, match=r"^datapath must be a multiple of every q_modes entry"):
        variant("tiny", 4).replace(q_modes=(3, 4))


# -- RTL ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits networks trained briefly with per-layer Qs (the RTL check needs real weights)."""
    import torch

    from qjoule.sw import data
    from qjoule.sw.train import TrainConfig, train

    torch.set_num_threads(1)
    ds = data.load("digits")
    models = {}
    for qs in ((4, 2, 8, 4), (2, 4, 2, 4)):
        out = tmp_path_factory.mktemp("train-" + "-".join(map(str, qs)))
        train(TrainConfig(q_per_layer=qs, width=8, epochs=2, seed=sum(qs)), out, progress=False, ds=ds)
        models[qs] = out / "model.qjm"
    return models, ds.test_x[:2]


@pytest.mark.rtl
@pytest.mark.parametrize("qs", [(4, 2, 8, 4), (2, 4, 2, 4)])
def test_trained_digits_mixed_network(trained, tmp_path, qs):
    models, images = trained
    model = intmodel.load(models[qs])
    assert model.q is None and [layer["q_w"] for layer in model.layers if "q_w" in layer] == list(qs)
    cfg = variant_for_model("tiny", model)
    assert cfg.mixed
    tb, outcome, _ = run_jobs([{"model": models[qs], "images": images}], cfg, tmp_path, seed=1)
    _assert_all_match(tb, outcome)


@pytest.mark.rtl
@pytest.mark.parametrize("qs,modes,datapath", [
    ((3, 5, 3, 5), (3, 5), 15),        # Q = 3/5 containers: 5 and 3 lanes of a 15-bit word
    ((4, 1, 1, 1), (1, 4), 16),        # a 1-bit layer pair (XNOR) behind a 4-bit layer
    ((8, 3, 2, 6), (3, 6, 8), 24),     # three modes, first layer at 8 bits (one pass)
])
def test_random_mixed_network(tmp_path, qs, modes, datapath):
    model, path = _random_mixed(qs, 3, tmp_path)
    cfg = variant_for_model("tiny", model)
    assert (cfg.modes, cfg.datapath) == (modes, datapath)
    tb, outcome, _ = run_jobs([{"model": path, "images": _images(sum(qs))}], cfg, tmp_path / "sim", seed=2)
    _assert_all_match(tb, outcome)


def _random_assignment(rng, modes=(1, 2, 4, 8), first_max=4) -> list[int]:
    """Per-layer Qs from `modes` that the hardware runs: no ±1 inputs into wider weights."""
    while True:
        qs = [int(rng.choice([q for q in modes if q <= first_max]))] + [int(rng.choice(modes)) for _ in range(3)]
        if all(not (a == 1 and b != 1) for a, b in zip(qs, qs[1:])) and len(set(qs)) > 1:
            return qs


def _run_random_assignments(seeds, tmp_path):
    """Random per-layer assignments (and R, C fixed by the build) on one multi-mode build: modes
    1, 2, 4, 8 on D = 16, first layer at mode 4; a uniform model runs on it too."""
    cfg = variant("tiny", 4, q_modes=(1, 2, 4, 8), rows=3, cols=2)
    jobs = []
    uniform, path = _random_mixed((4, 4, 4, 4), 99, tmp_path)
    assert uniform.q == 4
    jobs.append({"model": path, "images": _images(99, 1)})
    for seed in seeds:
        qs = _random_assignment(np.random.default_rng(seed))
        _, path = _random_mixed(qs, seed, tmp_path)
        jobs.append({"model": path, "images": _images(seed, 1)})
    tb, outcome, _ = run_jobs(jobs, cfg, tmp_path / "sim", seed=3)
    _assert_all_match(tb, outcome)
    return len(tb["jobs"])


@pytest.mark.rtl
def test_random_assignments_on_one_build(tmp_path):
    assert _run_random_assignments(range(4), tmp_path) == 5


@pytest.mark.rtl
@pytest.mark.parametrize("rows,cols", [(4, 3), (1, 1)])
def test_mixed_networks_on_other_array_shapes(tmp_path, rows, cols):
    """Even R >= 4 pools R/2 output words per step (a mode mux per half-row of lanes), R = 1 pools
    in four cycles: both with the modes switching between layers."""
    cfg = variant("tiny", 4, q_modes=(1, 2, 4, 8), rows=rows, cols=cols)
    jobs = []
    for seed, qs in enumerate([(4, 2, 8, 4), (2, 4, 2, 4), (4, 1, 1, 1), (4, 8, 2, 2)]):
        _, path = _random_mixed(qs, seed, tmp_path)
        jobs.append({"model": path, "images": _images(seed, 1)})
    tb, outcome, _ = run_jobs(jobs, cfg, tmp_path / "sim", seed=rows)
    _assert_all_match(tb, outcome)


@pytest.mark.rtl
@pytest.mark.slow
def test_random_assignments_campaign(tmp_path):
    assert _run_random_assignments(range(100, 140), tmp_path) == 41


# -- the CLI -------------------------------------------------------------------------------------

def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "qjoule", *map(str, args)], capture_output=True, text=True, timeout=900)


@pytest.mark.rtl
def test_generate_and_simulate_pick_the_modes_from_the_model(tmp_path):
    """`qjoule generate --model` builds the modes the layers need; `qjoule simulate` runs the
    per-layer-Q model on them and matches; a config file without a needed mode is one line."""
    import json

    _, path = _random_mixed((2, 4, 2, 4), 5, tmp_path)
    r = _cli("generate", "--model", path, "--variant", "tiny", "--out", tmp_path / "g")
    assert r.returncode == 0, r.stderr[-2000:]
    accel = json.loads((tmp_path / "g" / "accel.json").read_text())
    assert (accel["config"]["q"], accel["config"]["q_modes"]) == (2, [2, 4])
    r = _cli("simulate", "--model", path, "--images", "1", "--out", tmp_path / "s")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    assert result["match"] is True and result["config"]["q_modes"] == [2, 4]
    narrow = tmp_path / "narrow.json"
    narrow.write_text(variant("tiny", 2, q_modes=(1, 2)).to_json())
    r = _cli("simulate", "--model", path, "--images", "1", "--config", narrow, "--out", tmp_path / "n")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["qjoule: error: layer 'B1' runs at Q=4 (q_in=2, q_w=4), which is not one "
                                             "of the config's q_modes [1, 2]"]
