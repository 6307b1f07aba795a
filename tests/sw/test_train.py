"""`qjoule train`, `export` and `eval` end to end on digits (tiny networks), determinism, bad input."""

import json

import numpy as np
import pytest

from qjoule.cli import main

TINY = ["--dataset", "digits", "--blocks", "1", "--width", "8", "--epochs", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def run_q2(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "q2"
    assert main(["train", *TINY, "--q", "2", "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoint_model_and_metrics(run_q2):
    assert {p.name for p in run_q2.iterdir()} >= {"model.pt", "model.qjm", "metrics.json"}
    m = json.loads((run_q2 / "metrics.json").read_text())
    for key in ("dataset", "q", "blocks", "width", "seed", "epochs", "test_accuracy", "test_error", "macs",
                "weights", "activations", "max_feature_map_bits", "model_bits", "train_seconds", "int_test_accuracy"):
        assert key in m, key
    assert (m["dataset"], m["q"], m["blocks"], m["width"], m["seed"], m["epochs"]) == ("digits", 2, 1, 8, 3, 1)
    # By hand: A1 8·8·8·9·1 + B1 4·4·8·9·8 + C1 2·2·8·9·8 + fc 8·10
    assert m["macs"] == 4608 + 9216 + 2304 + 80
    assert m["weights"] == 72 + 576 + 576 + 80
    assert m["test_error"] == pytest.approx(1 - m["test_accuracy"])
    assert m["int_test_accuracy"] == m["test_accuracy"] and m["int_agreement"] == 1.0


def test_train_is_deterministic(run_q2, tmp_path):
    assert main(["train", *TINY, "--q", "2", "--out", str(tmp_path / "again")]) == 0
    for name in ("model.qjm", "model.pt"):
        assert (tmp_path / "again" / name).read_bytes() == (run_q2 / name).read_bytes(), name


def test_export_and_eval_commands(run_q2, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run_q2 / "model.pt"), "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "model.qjm").read_bytes() == (run_q2 / "model.qjm").read_bytes()
    assert main(["eval", "--model", str(tmp_path / "exp" / "model.qjm"), "--dataset", "digits",
                 "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    metrics = json.loads((run_q2 / "metrics.json").read_text())
    assert result["samples"] == 360 and result["accuracy"] == metrics["int_test_accuracy"]
    assert np.trace(np.array(result["confusion"])) == result["correct"]
    assert f"{result['accuracy']:.4f}" in capsys.readouterr().out


def test_float_trains_but_does_not_export(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["train", *TINY, "--q", "float", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["q"] == "float" and m["int_test_accuracy"] is None and not (out / "model.qjm").exists()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(out / "model.pt"), "--out", str(tmp_path / "e")]) == 2
    assert "float" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("args,needle", [
    (["--q", "0"], "'0'"), (["--q", "17"], "'17'"), (["--q", "x"], "'x'"),
    (["--width", "0"], "--width"), (["--blocks", "0"], "--blocks"), (["--epochs", "0"], "--epochs"),
    (["--widths", "8,8"], "--widths"), (["--dataset", "imagenet"], "imagenet"),
])
def test_bad_train_input_exits_2_one_line_nothing_written(tmp_path, capsys, args, needle):
    out = tmp_path / "o"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not out.exists()


def test_different_run_in_out_is_refused(run_q2, capsys):
    before = {p.name: p.read_bytes() for p in run_q2.iterdir() if p.is_file()}
    assert main(["train", *TINY, "--q", "3", "--out", str(run_q2)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different run" in err
    assert {p.name: p.read_bytes() for p in run_q2.iterdir() if p.is_file()} == before


def test_bad_files_exit_2(tmp_path, run_q2, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes((run_q2 / "model.pt").read_bytes()[:1000])
    assert main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "x")]) == 2
    trunc = tmp_path / "bad.qjm"
    trunc.write_bytes((run_q2 / "model.qjm").read_bytes()[:500])
    assert main(["eval", "--model", str(trunc)]) == 2
    assert main(["eval", "--model", str(run_q2 / "model.qjm"), "--dataset", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("qjoule: error:") for line in err)
    assert not (tmp_path / "x").exists()
