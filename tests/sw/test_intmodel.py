"""The .qjm file: round trip, deterministic bytes, every load error as a one-line UserError;
post-processing folding by hand; random models valid at every Q."""

import io
import json
import zipfile

import numpy as np
import pytest

from qjoule.errors import UserError
from qjoule.sw import golden, intmodel


@pytest.fixture(scope="module")
def model4():
    return intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=3)


def _rewrite(src, dst, change):
    """Copy a .qjm zip member by member, letting `change(name, data)` alter the bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))


def test_round_trip_and_deterministic_bytes(tmp_path, model4):
    intmodel.save(model4, tmp_path / "a.qjm")
    intmodel.save(intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=3), tmp_path / "b.qjm")
    assert (tmp_path / "a.qjm").read_bytes() == (tmp_path / "b.qjm").read_bytes()
    loaded = intmodel.load(tmp_path / "a.qjm")
    assert loaded.header == model4.header
    assert loaded.arrays.keys() == model4.arrays.keys()
    for name, arr in model4.arrays.items():
        assert loaded.arrays[name].dtype == arr.dtype and np.array_equal(loaded.arrays[name], arr)
    assert loaded.q == 4 and loaded.input_shape == (1, 8, 8) and loaded.classes == 10
    assert [l["name"] for l in loaded.layers] == ["A1", "A.pool", "B1", "B.pool", "C1", "C.pool", "fc"]


def test_load_errors_are_one_line_user_errors(tmp_path, model4):
    good = tmp_path / "good.qjm"
    intmodel.save(model4, good)
    data = good.read_bytes()

    (tmp_path / "trunc.qjm").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        intmodel.load(tmp_path / "trunc.qjm")

    (tmp_path / "text.qjm").write_text("hello")
    with pytest.raises(UserError, match="truncated or corrupt"):
        intmodel.load(tmp_path / "text.qjm")

    with pytest.raises(UserError, match="does not exist"):
        intmodel.load(tmp_path / "missing.qjm")

    def flip_weight(name, b):
        if name == "arrays/A1.weight.npy":
            arr = np.load(io.BytesIO(b))
            arr.flat[3] = 0 if arr.flat[3] else 1
            out = io.BytesIO()
            np.save(out, arr)
            return out.getvalue()
        return b
    _rewrite(good, tmp_path / "sha.qjm", flip_weight)
    with pytest.raises(UserError, match="A1.weight.*sha256"):
        intmodel.load(tmp_path / "sha.qjm")

    def header_change(**changes):
        def change(name, b):
            if name == "header.json":
                h = json.loads(b)
                h.update(changes)
                return json.dumps(h).encode()
            return b
        return change
    _rewrite(good, tmp_path / "v2.qjm", header_change(version=2))
    with pytest.raises(UserError, match="version 2"):
        intmodel.load(tmp_path / "v2.qjm")
    _rewrite(good, tmp_path / "fmt.qjm", header_change(format="other"))
    with pytest.raises(UserError, match="not a qjoule integer model"):
        intmodel.load(tmp_path / "fmt.qjm")
    _rewrite(good, tmp_path / "json.qjm", lambda n, b: b[:-20] if n == "header.json" else b)
    with pytest.raises(UserError, match="truncated or corrupt"):
        intmodel.load(tmp_path / "json.qjm")


def _copy(model):
    return intmodel.IntModel(json.loads(json.dumps(model.header)), {k: v.copy() for k, v in model.arrays.items()})


def test_validation_catches_bad_models(model4):
    m = _copy(model4)
    m.arrays["A1.weight"][0, 0, 0, 0] = 8  # Q=4 weights are -8..7
    with pytest.raises(UserError, match=r"A1.weight.*\[-8, 7\]"):
        intmodel.validate(m)
    m = _copy(model4)
    m.arrays["B1.pp_mult"][0] = -(2 ** 17)
    with pytest.raises(UserError, match="B1.pp_mult"):
        intmodel.validate(m)
    m = _copy(model4)
    m.layers[2]["in_shape"] = [8, 8, 8]
    with pytest.raises(UserError, match="does not chain"):
        intmodel.validate(m)
    m = _copy(model4)
    m.layers[2]["q_in"] = 3
    with pytest.raises(UserError, match="q_in 3 does not chain"):
        intmodel.validate(m)
    m = _copy(model4)
    m.arrays["fc.pp_bias"] = m.arrays["fc.pp_bias"].astype(np.int32)
    with pytest.raises(UserError, match="expected int64"):
        intmodel.validate(m)
    m = _copy(model4)
    m.layers[0]["pp_shift"] = 0
    with pytest.raises(UserError, match="pp_shift"):
        intmodel.validate(m)
    m1 = intmodel.random_model((1, 8, 8), 10, 1, 4, 1, seed=0)
    m1.arrays["A1.weight"][0, 0, 0, 0] = 0
    with pytest.raises(UserError, match="-1 or \\+1"):
        intmodel.validate(m1)


def test_fold_postprocess_hand_values():
    # A = 0.5: the largest s with rnd(0.5·2^s) <= 2^17 - 1 is 17 (m = 65536; s = 18 would give 131072).
    m, b, s = intmodel.fold_postprocess([0.5, -0.25], [0.25, 1.0], 4)
    assert s == 17 and m.tolist() == [65536, -32768]
    assert b.tolist() == [32768 + 65536, 131072 + 65536]
    assert m.dtype == np.int32 and b.dtype == np.int64
    # t = rnd(0.5·acc + 0.25): acc = 1 -> rnd(0.75) = 1; acc = -1 -> rnd(-0.25) = 0; acc = 3 -> rnd(1.75) = 2
    acc = np.array([[1, 0], [-1, 0], [3, 0]])
    assert golden.postprocess(acc, m, b, s, None, "none")[:, 0].tolist() == [1, 0, 2]
    # Ties round half up: 0.5·acc + 0.5 at acc = 0 is exactly 0.5 -> 1; at acc = -1 it is 0 -> 0.
    m, b, s = intmodel.fold_postprocess([0.5], [0.5], 4)
    assert golden.postprocess(np.array([[0], [-1], [1]]), m, b, s, None, "none").ravel().tolist() == [1, 0, 1]
    # Q_out = 1: no rounding offset, the sign of A·acc + B.
    m, b, s = intmodel.fold_postprocess([1.0], [-2.0], 1)
    assert b.tolist() == [-2 * 2 ** s]
    assert golden.postprocess(np.array([[1], [2], [3]]), m, b, s, 1, "sign").ravel().tolist() == [0, 1, 1]


def test_fold_postprocess_zero_scale_keeps_bias_in_int64():
    m, b, s = intmodel.fold_postprocess([0.0, 0.0], [3.0, -1.5], 4)
    assert m.tolist() == [0, 0] and 1 <= s <= 62
    assert golden.postprocess(np.array([[123, -7]]), m, b, s, 4, "relu").tolist() == [[3, 0]]


@pytest.mark.parametrize("q", list(range(1, 17)))
def test_random_model_valid_at_every_q(q, tmp_path):
    model = intmodel.random_model((1, 8, 8), 10, 1, 6, q, seed=q)
    intmodel.save(model, tmp_path / "m.qjm")
    loaded = intmodel.load(tmp_path / "m.qjm")
    lo, hi = intmodel.weight_range(q)
    for layer in loaded.layers:
        if layer["kind"] != "maxpool2x2":
            w = loaded.arrays[layer["weight"]]
            assert w.min() == lo and w.max() == hi
            assert set(np.unique(w)) <= set(range(lo, hi + 1)) - ({0} if q == 1 else set())


@pytest.mark.parametrize("q", [1, 2, 3])
def test_random_model_codes_spread(q):
    model = intmodel.random_model((1, 8, 8), 10, 1, 16, q, seed=0)
    images = np.random.default_rng(123).integers(0, 256, size=(64, 1, 8, 8), dtype=np.uint8)
    r = golden.run(model, images)
    for name in ("A1", "B1", "C1"):
        assert set(np.unique(r.outputs[name])) == set(range(2 ** q)), name
    assert len(np.unique(r.predictions)) >= 3
    assert any((model.arrays[f"{n}.pp_mult"] < 0).any() for n in ("A1", "B1", "C1"))  # negative scales too


def test_random_model_deterministic_and_seeded():
    a = intmodel.random_model((3, 12, 10), 5, 2, (4, 6, 8), 5, seed=1)
    b = intmodel.random_model((3, 12, 10), 5, 2, (4, 6, 8), 5, seed=1)
    c = intmodel.random_model((3, 12, 10), 5, 2, (4, 6, 8), 5, seed=2)
    assert a.header == b.header and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    assert not np.array_equal(a.arrays["A1.weight"], c.arrays["A1.weight"])
    assert [l["name"] for l in a.layers if l["kind"] == "conv3x3"] == ["A1", "A2", "B1", "B2", "C1", "C2"]
