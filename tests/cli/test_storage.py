"""qjoule.storage: the study storage shared by sweep and search."""

import sqlite3

import pytest

from qjoule.errors import UserError
from qjoule.storage import connect_storage


@pytest.mark.parametrize("what", ["sweep", "search"])
def test_bad_url_is_one_line_naming_the_command_and_url(what):
    with pytest.raises(UserError, match=f"^cannot open {what} storage 'nosuchdb://x': ") as info:
        connect_storage("nosuchdb://x", what)
    assert "\n" not in str(info.value)


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path):
    # Two workers must not both read a WAITING trial before either writes: a transaction that
    # only reads already holds the write lock, so a second writer times out meanwhile.
    storage = connect_storage(f"sqlite:///{tmp_path / 's.db'}", "sweep")
    with storage.engine.connect() as conn:
        with conn.begin():
            conn.exec_driver_sql("SELECT 1")
            other = sqlite3.connect(tmp_path / "s.db", timeout=0.1, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
