"""Opening an Optuna study storage (SQLite file or any SQLAlchemy URL), shared by `qjoule sweep`
and `qjoule search`, so both get the same concurrency fixes and the same one-line errors."""

from __future__ import annotations

import time

from .errors import UserError


def connect_storage(storage_url: str, what: str, **rdb_kwargs):
    """An `optuna.storages.RDBStorage` on `storage_url`; a bad URL or an unreachable server is a
    UserError naming `what` ("sweep", "search") and the URL."""
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    sqlite = storage_url.startswith("sqlite")
    for attempt in range(3):
        try:
            storage = RDBStorage(storage_url, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
                                 **rdb_kwargs)
            if sqlite:
                serialize_sqlite(storage.engine)
            return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            # Two workers creating the tables at once (PostgreSQL: a unique violation in its
            # catalog): the tables exist now, so the next attempt finds them.
            error = e
            time.sleep(0.5 + attempt)
        except Exception as e:  # SQLAlchemy/driver errors: a bad URL or an unreachable server
            error = e
            break
    raise UserError(f"cannot open {what} storage {storage_url!r}: {str(error).splitlines()[0]}") from None


def serialize_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna claims a waiting trial (a retry) by reading that it is WAITING and then marking it
    RUNNING; on PostgreSQL the read locks the row (SELECT ... FOR UPDATE), but SQLite ignores
    FOR UPDATE and the Python driver starts a transaction only at the write, so two workers could
    both read WAITING and both run the same trial. With BEGIN IMMEDIATE the read and the write
    are one serialized transaction. Connections opened before this (RDBStorage's set-up) are
    dropped so every later one gets the hooks.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, record):
        dbapi_connection.isolation_level = None   # SQLAlchemy's "begin" hook below starts them

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
