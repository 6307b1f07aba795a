"""Staged output folders: all or nothing, never overwrite a different run or a user's files."""

import pytest

from qjoule.errors import UserError
from qjoule.io import RUN_MARKER, staged_output


def test_success_moves_files_in(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, "train", {"q": 4}) as stage:
        (stage / "metrics.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER, "metrics.json"]


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with staged_output(out, "train", {"q": 4}) as stage:
            (stage / "half.json").write_text("{")
            raise RuntimeError("boom")
    assert not out.exists()


def test_rerun_same_key_replaces_and_different_key_refused(tmp_path):
    out = tmp_path / "run"
    with staged_output(out, "train", {"q": 4}) as stage:
        (stage / "a.txt").write_text("1")
    with staged_output(out, "train", {"q": 4}) as stage:
        (stage / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2"
    with pytest.raises(UserError, match=r"already holds a different run \(q=4, not 8\)"):
        with staged_output(out, "train", {"q": 8}):
            pass
    assert (out / "a.txt").read_text() == "2"


def test_user_files_are_never_touched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="is not empty and holds no qjoule run"):
        with staged_output(out, "train", {}):
            pass
    assert (out / "notes.txt").read_text() == "precious"
