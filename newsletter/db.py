"""Opening the database and bringing its schema up to date.

Owns: `open_engine`, `upgrade`, `current_revision`. Imports `errors`, `tables` (so the
whole metadata is known) and Alembic, the latter only when a schema is looked at: a
helper process that only opens the database starts without it (a quarter of a second).
SQLite runs in WAL mode with foreign keys on and a busy timeout, so the web app, the
scheduler and a manual send can share one file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from . import tables as _tables  # noqa: F401  (registers the tables on the shared metadata)
from .errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # FULL: each commit is on the disk before the next request goes out. A batch's
    # in-flight mark must outlive a power cut, or the batch would be sent a second time;
    # NORMAL may lose the last commits to one. It costs an fsync per commit (0.2 ms on the
    # benchmark machine; sending 300,000 was no slower for it).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout.

    Raises `StorageError` naming the URL's scheme when it cannot be used.
    """
    try:
        if url.startswith("sqlite"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Pooled connections: opening one costs more than a short transaction (the
            # PRAGMAs run once per connection, and closing the last connection
            # checkpoints the WAL), which the web app pays on every request otherwise.
            engine = create_engine(url, pool_size=5, max_overflow=10)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"database URL cannot be used ({url.split(':', 1)[0]}): {exc}") from None


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
