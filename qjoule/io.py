"""Output folders that are written whole or not at all, and JSON written the same way.

Every command that produces results writes them into `--out DIR` through `staged_output`:
files are first written into a staging folder inside DIR and moved into place only when the
command succeeds, so a failed or interrupted run leaves DIR as it was. A folder that already holds
a different run (another command, or the same command with other parameters) is refused, and
files qjoule did not write are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

RUN_MARKER = ".qjoule-run.json"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line UserError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} {str(path)!r}: {e.__class__.__name__}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {str(path)!r} is not valid JSON ({e.msg} at line {e.lineno})") from None


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the only non-JSON types results carry.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, command: str, key: dict[str, Any]) -> Iterator[Path]:
    """Yield a staging folder; on success move everything in it into `out`.

    `key` identifies the run (the parameters that determine its results). `out` may be missing,
    empty, or hold a run of the same `command` with an equal `key` (a rerun: its files are
    replaced). Anything else is refused with a UserError before anything is written.
    """
    out = Path(out)
    marker = {"command": command, "key": key}
    _check_reusable(out, marker)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
        write_json(staging / RUN_MARKER, marker)
        for entry in sorted(staging.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if created and out.exists() and not any(out.iterdir()):
            out.rmdir()


def _check_reusable(out: Path, marker: dict[str, Any]) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
    entries = [e for e in out.iterdir() if not e.name.startswith(".partial-")]
    if not entries:
        return
    marker_path = out / RUN_MARKER
    if not marker_path.exists():
        raise UserError(f"--out {str(out)!r} is not empty and holds no qjoule run; choose a new or empty folder")
    try:
        previous = json.loads(marker_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(f"--out {str(out)!r} has an unreadable {RUN_MARKER}; choose a new or empty folder") from None
    # Compare through JSON so tuples and lists, ints and floats compare as they were written.
    if json.loads(json.dumps(previous, default=_json_default)) != json.loads(json.dumps(marker, default=_json_default)):
        differing = _first_difference(previous, marker)
        raise UserError(f"--out {str(out)!r} already holds a different run ({differing}); choose a new or empty folder")


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("command") != new["command"]:
        return f"command {old.get('command')!r}, not {new['command']!r}"
    old_key, new_key = old.get("key", {}), json.loads(json.dumps(new["key"], default=_json_default))
    for name in sorted(set(old_key) | set(new_key)):
        if old_key.get(name) != new_key.get(name):
            return f"{name}={old_key.get(name)!r}, not {new_key.get(name)!r}"
    return "different parameters"
