"""Opening the database and bringing its schema up to date.

Owns: `open_engine`, `upgrade`, `current_revision`. Imports `errors`, `tables` (so the
whole metadata is known) and Alembic, the latter only when a schema is looked at: a
helper process that only opens the database starts without it (a quarter of a second).
SQLite runs in WAL mode with foreign keys on and a busy timeout, so the web app, the
scheduler and a manual send can share one file.

Every engine hides statement parameters (from error messages and SQLAlchemy's own log
lines), PostgreSQL's DETAIL lines (a broken constraint's values) are cut from its errors,
and its result rows are kept out of the log: they hold addresses and tokens.
A driver error that means the database cannot be used now (read-only, locked past the
busy timeout, disk full, server unreachable) becomes `DatabaseUnavailableError`, one
line naming the database and the problem.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from . import tables as _tables  # noqa: F401  (registers the tables on the shared metadata)
from .errors import DatabaseUnavailableError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT = 30.0

# SQLite's primary result codes (sqlite_errorcode & 0xff) that say the database cannot be
# used now, in words; see https://www.sqlite.org/rescode.html.
_SQLITE_PROBLEMS = {
    3: "access to it is denied",
    5: "it is locked by another connection past the busy timeout",
    6: "it is locked by another connection past the busy timeout",
    8: "it is read-only (the file, or the folder it is in, cannot be written)",
    10: "the disk cannot be read or written (I/O error)",
    11: "the file is damaged",
    13: "the disk is full (or the database reached its size limit)",
    14: "it cannot be opened (the file, or the folder it is in, is missing or cannot be written)",
    26: "the file is not a database",
}
# PostgreSQL's SQLSTATE classes and codes that say the same.
_POSTGRES_PROBLEMS = {
    "08": "the connection to the server failed",
    "25006": "it is read-only (a read-only transaction or a standby server)",
    "53100": "the server's disk is full",
    "53": "the server is out of resources",
    "55P03": "it is locked by another connection past the lock timeout",
    "57014": "a statement ran past its timeout",
    "57P": "the server is shutting down or starting up",
}


class _HideRows(logging.Filter):
    """Drops SQLAlchemy's DEBUG lines that show result rows (addresses, tokens); the
    statements themselves are still logged, their parameters hidden by the engine."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and str(record.msg).startswith("Row "))


# Every engine without a `logging_name` (all of ours) logs through this one logger.
logging.getLogger("sqlalchemy.engine.Engine").addFilter(_HideRows())


def _problem(error: BaseException) -> str | None:
    """What the driver's error says about the database, in words, or None when it is not
    about the database being usable (a constraint, a bad statement)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return _SQLITE_PROBLEMS.get(code & 0xFF)
    if type(error).__module__.startswith("psycopg"):
        state = getattr(error, "sqlstate", None)
        if state is None:
            # No SQLSTATE: no connection was made (refused, no route, a wrong password).
            if type(error).__name__ != "OperationalError":
                return None
            detail = str(error).strip().splitlines()
            return "cannot connect to the server" + (f" ({detail[0]})" if detail else "")
        for prefix in (state, state[:3], state[:2]):
            if prefix in _POSTGRES_PROBLEMS:
                return _POSTGRES_PROBLEMS[prefix]
    return None


def _naming(url: URL) -> str:
    """The database as the error line names it: the URL without its password."""
    return url.render_as_string(hide_password=True)


def _translate_errors(engine: Engine) -> None:
    """Raise `DatabaseUnavailableError` in place of the driver errors that mean the
    database cannot be used now. The driver's own error stays chained (`__cause__`) for
    `--debug`; it carries no parameters."""
    where = _naming(engine.url)

    def translate(context: ExceptionContext) -> BaseException | None:
        if context.is_pre_ping:
            # The pool handles a dead connection found by its ping by opening a new one.
            return None
        problem = _problem(context.original_exception)
        if problem is None:
            return _without_detail(context)
        return DatabaseUnavailableError(f"database {where}: {problem}")

    event.listen(engine, "handle_error", translate)


def _without_detail(context: ExceptionContext) -> BaseException | None:
    """PostgreSQL's message for a broken constraint holds the row's values on its DETAIL
    line (`Key (email)=(ann@example.com) already exists`), which a traceback or a log line
    would print. The same error, of the same class, with the message's first line only; the
    values stay in `orig.diag` for code that asks."""
    error, wrapped = context.original_exception, context.sqlalchemy_exception
    lines = str(error).splitlines()
    if len(lines) < 2 or not isinstance(wrapped, DBAPIError) or not type(error).__module__.startswith("psycopg"):
        return None
    # The driver's error is chained under the one raised (`from`), so it is shortened too.
    error.args = (lines[0],)
    return type(wrapped)(
        context.statement, None, error, hide_parameters=True,
        connection_invalidated=wrapped.connection_invalidated, code=wrapped.code,
    )


def _busy_timeout(url: URL) -> float:
    """Seconds a SQLite connection waits for another's write lock: `?timeout=` on the
    URL, else 30."""
    given = url.query.get("timeout")
    try:
        return float(given) if isinstance(given, str) else BUSY_TIMEOUT
    except ValueError:
        raise StorageError(f"database URL: timeout={given!r} is not a number of seconds") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    # FULL: each commit is on the disk before the next request goes out. A batch's
    # in-flight mark must outlive a power cut, or the batch would be sent a second time;
    # NORMAL may lose the last commits to one. It costs an fsync per commit (0.2 ms on the
    # benchmark machine; sending 300,000 was no slower for it).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout (30 s, or
    `?timeout=` seconds on the URL). Parameters are hidden from errors and logs.

    Raises `StorageError` naming the URL's scheme when it cannot be used, and
    `DatabaseUnavailableError` when a SQLite file's folder cannot be created.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database or ""
            if path and path != ":memory:" and not path.startswith("file:"):
                _make_folder(parsed, Path(path).parent)
            # Pooled connections: opening one costs more than a short transaction (the
            # PRAGMAs run once per connection, and closing the last connection
            # checkpoints the WAL), which the web app pays on every request otherwise.
            engine = create_engine(parsed, pool_size=5, max_overflow=10, hide_parameters=True)
            busy_ms = round(_busy_timeout(parsed) * 1000)
            event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=busy_ms))
        else:
            engine = create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"database URL cannot be used ({url.split(':', 1)[0]}): {exc}") from None
    _translate_errors(engine)
    return engine


def _make_folder(url: URL, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailableError(
            f"database {_naming(url)}: its folder cannot be created ({exc.strerror})"
        ) from None


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> bool:
    """Apply pending migrations. Returns True when anything was applied."""
    from alembic import command

    try:
        if current_revision(engine) == head_revision():
            return False
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise StorageError(f"database cannot be opened or migrated: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise StorageError(f"database migration failed: {exc}") from None
    log.info("database schema upgraded to %s", head_revision())
    return True
