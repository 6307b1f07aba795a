"""Two `qjoule sweep` workers on one study in a real PostgreSQL server (Debian's packages).

The server runs on loopback with trust authentication in a throw-away data directory. PostgreSQL
refuses to run as root, so as root the server runs as `nobody` (the data directory is made in
/tmp, not in pytest's tmp_path, whose parents `nobody` cannot enter). It is stopped and removed in
the fixture's finalizer whatever happens in the test.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from qjoule.sweep import grid_state, open_study

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
GRID = ["--dataset", "digits", "--blocks", "1", "--width", "4,8", "--q", "1,2,float", "--epochs", "2"]
POINTS = sorted(f"q{q}-b1-w{w}" for q in ("1", "2", "float") for w in (4, 8))


def _pg_bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).is_file():
            return str(d / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not installed (QJOULE_SLOW=1 scripts/setup.sh installs them)")
    psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="qjoule-pg-"))
    if as_user:
        shutil.chown(root, "nobody", "nogroup")
    data, port = root / "data", _free_port()
    started = False
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "qjoule", "-N", "-E", "UTF8"],
                       check=True, capture_output=True, text=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        started = True
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                        "-o", options, "start"], check=True, capture_output=True, text=True)
        with psycopg.connect(f"host=127.0.0.1 port={port} user=qjoule dbname=postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE sweep")
        yield f"postgresql+psycopg://qjoule@127.0.0.1:{port}/sweep"
    finally:
        if started:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _worker(url, out):
    return subprocess.Popen([sys.executable, "-m", "qjoule", "sweep", *GRID, "--storage", url, "--out", str(out)],
                            env={**os.environ, "QJOULE_SWEEP_HEARTBEAT": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    # Both start at once on an empty database: they race to create the tables and the study.
    workers = [_worker(postgres_url, tmp_path / f"machine{i}") for i in (0, 1)]
    outputs = []
    for w in workers:
        output, _ = w.communicate(timeout=600)
        outputs.append(output)
        assert w.returncode == 0, output
    trained = sorted(line.split(": ")[1].split()[0] for output in outputs
                     for line in output.splitlines() if line.endswith(" training"))
    assert trained == POINTS, outputs          # every point trained once, none twice

    study, grid = open_study(postgres_url, None, create=False)
    with_metrics = sorted(f"q{t.params['q']}-b{t.params['blocks']}-w{t.params['width']}"
                          for t in study.get_trials() if "metrics" in t.user_attrs)
    assert with_metrics == POINTS
    assert all(s.complete is not None and s.failures == 0 for s in grid_state(study, grid).values())
    for i in (0, 1):   # each machine's results.json holds the whole grid, read from the shared study
        records = json.loads((tmp_path / f"machine{i}" / "results.json").read_text())
        assert sorted(f"q{r['q']}-b{r['blocks']}-w{r['width']}" for r in records) == POINTS
        assert all(r["epochs"] == 2 and r["dataset"] == "digits" for r in records)
