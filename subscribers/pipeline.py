"""What the bulk export sends to PostgreSQL past SQLAlchemy's statements, for speed,
keeping SQLAlchemy's transaction and error handling: a driver error raised as SQLAlchemy
raises one from `execute` (`raise_through`).

Owns: `raise_through`. Imports nothing of ours.
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import Connection


def raise_through(conn: Connection, error: Exception, statement: str) -> NoReturn:
    """Raise a driver's error from a statement sent past SQLAlchemy (COPY, a pipeline) as
    SQLAlchemy raises one from `execute`: through the engine's error handling, which
    hides the row's values (a broken constraint's DETAIL) and notices a lost connection."""
    conn._handle_dbapi_exception(error, statement, None, None, None)
