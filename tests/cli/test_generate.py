"""`qjoule generate`: files, determinism, --model sizing, bad input (exit 2, nothing written)."""

import json

import pytest

from qjoule.cli import main
from qjoule.config import variant
from qjoule.sw import intmodel


def _generate(tmp_path, name, *args):
    out = tmp_path / name
    return main(["generate", *args, "--out", str(out)]), out


def test_files_ports_and_byte_identical(tmp_path):
    rc1, a = _generate(tmp_path, "a", "--q", "4", "--variant", "tiny")
    rc2, b = _generate(tmp_path, "b", "--q", "4", "--variant", "tiny")
    assert rc1 == rc2 == 0
    text = (a / "qjoule_accel.v").read_text()
    assert "module qjoule_accel(" in text
    assert text == (b / "qjoule_accel.v").read_text()
    info = json.loads((a / "accel.json").read_text())
    cfg = variant("tiny", q=4)
    assert info["config"]["q"] == 4 and info["config"]["rows"] == cfg.rows
    assert info["derived"]["p"] == cfg.rows * cfg.cols * 4 and info["derived"]["acc_bits"] == cfg.acc_bits
    ports = {p["name"]: (p["direction"], p["width"]) for p in info["ports"]}
    assert ports["i__payload"] == ("input", 32) and ports["o__payload"] == ("output", 32)
    assert ports["i__ready"] == ("output", 1) and ports["o__ready"] == ("input", 1)
    assert ports["clk"] == ("input", 1) and ports["rst"] == ("input", 1)


@pytest.mark.parametrize("args, fragment", [
    (["--q", "0"], "q must be 1..16, got 0"),
    (["--q", "17"], "q must be 1..16, got 17"),
    (["--q", "4", "--datapath", "15"], "multiple of q=4, got 15"),
    (["--q", "4", "--rows", "0"], "rows must be >= 1, got 0"),
    (["--q", "4", "--cols", "0"], "cols must be >= 1, got 0"),
    (["--config", "missing.json"], "does not exist"),
    ([], "give --q"),
])
def test_bad_input_exit_2_nothing_written(tmp_path, capsys, args, fragment):
    rc, out = _generate(tmp_path, "bad", *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and fragment in err[0]
    assert not out.exists()


def test_unreadable_config(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    rc, out = _generate(tmp_path, "bad", "--config", str(bad))
    assert rc == 2 and "not valid JSON" in capsys.readouterr().err and not out.exists()


def test_model_sizes_buffers_and_reports_misfit(tmp_path, capsys):
    model = intmodel.random_model((1, 8, 8), 10, 1, 12, 4, seed=0)
    path = tmp_path / "m.qjm"
    intmodel.save(model, path)
    rc, out = _generate(tmp_path, "fit", "--model", str(path), "--variant", "tiny")
    assert rc == 0
    info = json.loads((out / "accel.json").read_text())
    cfg = info["config"]
    assert cfg["q"] == 4 and cfg["max_channels"] == 12 and cfg["max_classes"] == 10
    # largest map per bank: the image, 2 planes x 8 x 4 = 64 words (A1's 8x8 output is never
    # stored: its max-pool runs in A1's writer, and the pooled 4x4 map needs 3 groups x 8 = 24)
    assert cfg["act_buffer_bits"] == 2 * cfg["rows"] * 64 * cfg["datapath"]
    assert info["model"]["external_layers"] == []
    # an explicitly too-small activation buffer is named with the shortfall
    rc, out = _generate(tmp_path, "small", "--model", str(path), "--variant", "tiny", "--act-buffer-bits", "2048")
    err = capsys.readouterr().err
    assert rc == 2 and "does not fit" in err and "act_half_words/rows" in err and not out.exists()
    rc, _ = _generate(tmp_path, "q", "--model", str(path), "--q", "2")
    assert rc == 2 and "does not match" in capsys.readouterr().err


def test_config_from_accel_json_round_trips(tmp_path):
    rc, a = _generate(tmp_path, "a", "--q", "2", "--variant", "tiny", "--rows", "3", "--cols", "1")
    assert rc == 0
    rc, b = _generate(tmp_path, "b", "--config", str(a / "accel.json"))
    assert rc == 0
    assert (a / "qjoule_accel.v").read_bytes() == (b / "qjoule_accel.v").read_bytes()
    assert json.loads((a / "accel.json").read_text())["config"] == json.loads((b / "accel.json").read_text())["config"]


def test_pot_lanes_from_flag_and_from_model(tmp_path):
    """--weights pot builds the shift-and-accumulate lanes; a PoT model selects them by itself;
    a PoT model on a uniform config is a one-line error (exit 2)."""
    rc, out = _generate(tmp_path, "flag", "--q", "3", "--variant", "tiny", "--weights", "pot")
    assert rc == 0
    info = json.loads((out / "accel.json").read_text())
    cfg = variant("tiny", q=3, weights="pot")
    assert info["config"]["weights"] == "pot" and info["derived"]["acc_bits"] == cfg.acc_bits
    assert "pot_lane" in (out / "qjoule_accel.v").read_text()
    model = tmp_path / "pot.qjm"
    intmodel.save(intmodel.random_model((1, 8, 8), 10, 1, 4, 3, seed=0, w_kind="pot"), model)
    rc, out = _generate(tmp_path, "model", "--variant", "tiny", "--model", str(model))
    assert rc == 0 and json.loads((out / "accel.json").read_text())["config"]["weights"] == "pot"
    rc, out = _generate(tmp_path, "bad", "--variant", "tiny", "--model", str(model), "--weights", "uniform")
    assert rc == 2 and not out.exists()
