"""The SQLAlchemy engine and the per-app-context session (no Flask-SQLAlchemy needed)."""

from __future__ import annotations

import select
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

EXTENSION_KEY = "database"


def make_engine(url: str) -> Engine:
    """Create the engine for a database URL, with the options each backend needs."""
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Web threads and worker children write the same file: wait for locks, not fail.
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, **options)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "checkout", _discard_if_server_closed)
    return engine


def server_closed(dbapi_connection) -> bool:
    """Tell whether the server has spoken on an idle pooled connection (it closed it)."""
    # An idle connection has nothing to read unless the server ended the session: a restart,
    # pg_terminate_backend or an idle timeout sends a FATAL notice and closes the socket, and
    # a crashed server's kernel closes it. One poll of the socket sees either, without the
    # round trip that pool_pre_ping's SELECT 1 adds to every request (docs/benchmarks.md).
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _discard_if_server_closed(dbapi_connection, _record, _proxy) -> None:
    # DisconnectionError makes the pool drop this connection and check out a fresh one.
    # https://docs.sqlalchemy.org/en/20/core/events.html#sqlalchemy.events.PoolEvents.checkout
    if dbapi_connection.closed or server_closed(dbapi_connection):
        raise DisconnectionError("the database server closed this pooled connection")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers proceed while a worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def init_app(app: Flask, url: str) -> None:
    """Attach an engine and a session factory to the Flask app."""
    engine = make_engine(url)
    app.extensions[EXTENSION_KEY] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine_of(app: Flask) -> Engine:
    """Return the engine of a Flask app."""
    return app.extensions[EXTENSION_KEY].kw["bind"]


def get_session() -> Session:
    """Return the session of the current app context, opening it on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions[EXTENSION_KEY]()
    return g.db_session


def _close_session(_exception: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def dispose_after_fork(app: Flask) -> None:
    """Drop pooled connections inherited from the parent process (they share its sockets)."""
    engine_of(app).dispose(close=False)
