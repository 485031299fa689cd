"""What the bulk import and export send to PostgreSQL past SQLAlchemy's statements, for
speed, keeping SQLAlchemy's transaction and error handling: a list of texts as one
text the server cuts (`texts`, `integers`), statements left running in pipeline mode
while Python goes on (`Sent`), and a driver error raised as SQLAlchemy raises one from
`execute` (`raise_through`).

Owns: `texts`, `integers`, `Sent`, `raise_through`. Imports nothing of ours.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from sqlalchemy import Connection

log = logging.getLogger(__name__)

#: Separators for a list of texts sent to PostgreSQL as one text (`texts`), tried in
#: turn: control characters that no address, name, sections key or time zone holds.
SEPARATORS = ("\x1f", "\x1e", "\x1d", "\x1c")


def texts(name: str, values: Sequence[str | None], params: dict[str, Any]) -> str:
    """SQL for a text[] parameter holding `values` (None for NULL), which it adds to
    `params`: one text the server cuts (`string_to_array`), with a separator that no
    value holds, else psycopg's binary array. psycopg adapts a list value by value in
    Python: a batch's five lists of 5,000 took 5.4 ms as binary arrays, 1.4 ms so."""
    nulls = None in values
    if len(values) > 1 and not (nulls and "" in values):
        parts = cast(list[str], ["" if v is None else v for v in values] if nulls else values)
        for separator in SEPARATORS:
            text = separator.join(parts)
            if text.count(separator) == len(parts) - 1:
                params[name], params[f"{name}_separator"] = text, separator
                null = ", ''" if nulls else ""
                return f"string_to_array(%({name})s, %({name}_separator)s{null})"
    params[name] = list(values)
    return f"%({name})b::text[]"


def integers(name: str, values: Sequence[int], params: dict[str, Any]) -> str:
    """SQL for an integer[] parameter holding `values`, as `texts` does."""
    params[name] = ",".join(map(str, values))
    return f"string_to_array(%({name})s, ',')::integer[]"


class Sent:
    """Statements whose results nobody reads, sent to PostgreSQL in pipeline mode
    (psycopg's `Connection.pipeline`) and left running, so that the server writes one
    batch while Python reads and checks the next (two cores, one each). `wait` ends
    the pipeline: it waits for them and raises their error as SQLAlchemy raises one
    from `execute` (through the engine's error handling, which hides the row's values
    and notices a lost connection). It comes before any other use of the connection
    (`ImportBatch.conn`) and before the transaction ends (`ImportBatch.open`)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pipeline: Any = None
        self.statement = ""

    def send(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Send the statements and return; with a libpq without pipeline mode, run them."""
        self.wait()
        driver: Any = self.conn.connection.driver_connection
        if not _pipelines():
            for statement, params in statements:
                self.conn.exec_driver_sql(statement, params)
            return
        self.pipeline = driver.pipeline()
        self.pipeline.__enter__()
        try:
            for self.statement, params in statements:
                self.conn.exec_driver_sql(self.statement, params)
            # psycopg sends what the socket takes at once; the rest of a batch would
            # wait in libpq's buffer, and the server with it, until the pipeline ends.
            while driver.pgconn.flush():
                select.select([], [driver.pgconn.socket], [])
        except self.conn.dialect.loaded_dbapi.Error as exc:
            self.abandon()
            raise_through(self.conn, exc, self.statement)
        except BaseException:
            self.abandon()
            raise

    def wait(self, *_: object) -> None:
        """Wait for the statements sent (also as the transaction commits); raise their error."""
        self._end(raise_error=True)

    def abandon(self, *_: object) -> None:
        """End the pipeline as the transaction rolls back: its error, if any, goes
        with it (the error that caused the rollback is the one raised)."""
        self._end(raise_error=False)

    def _end(self, *, raise_error: bool) -> None:
        if self.pipeline is None:
            return
        pipeline, self.pipeline = self.pipeline, None
        try:
            pipeline.__exit__(None, None, None)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            if raise_error:
                raise_through(self.conn, exc, self.statement)
            log.debug("import: a write sent failed as the transaction rolled back: %s", type(exc).__name__)


def _pipelines() -> bool:
    """Whether psycopg's libpq has pipeline mode (libpq 14 and later)."""
    # Imported here: psycopg is only installed with PostgreSQL.
    from psycopg import Pipeline

    return bool(Pipeline.is_supported())


def raise_through(conn: Connection, error: Exception, statement: str) -> NoReturn:
    """Raise a driver's error from a statement sent past SQLAlchemy (COPY, a pipeline) as
    SQLAlchemy raises one from `execute`: through the engine's error handling, which
    hides the row's values (a broken constraint's DETAIL) and notices a lost connection."""
    conn._handle_dbapi_exception(error, statement, None, None, None)
