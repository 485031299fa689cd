"""The statements of a large import, a batch of rows at a time, written for each
database: SQLite takes a batch as one JSON array (`json_each`) or through `executemany`;
PostgreSQL takes it as arrays (`unnest`, `= ANY`), one statement per batch (the export is
`export`'s). Everything goes through the caller's
SQLAlchemy connection (so its transaction and its error translation hold), none of it
through SQLAlchemy's statement construction, which cost more than the work itself when
done row by row.

Owns: `ImportBatch` (the per-import scratch table of addresses seen, and the writes).
Imports `tables` and `tokens` of this package.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from .tables import subscribers
from .tokens import TOKEN_BYTES

#: The scratch table of one import: each address of the file with the line it was
#: first seen on, so a later duplicate names that line without the whole file in memory.
SEEN = "import_seen"
#: SQLite's page cache while importing, in KiB (its default is 2 MiB). Inserting a
#: million addresses walks the email and token indexes at random places; a cache this
#: size holds their upper levels. It is bounded, whatever the file's size.
IMPORT_CACHE_KIB = 32 * 1024


def new_tokens(count: int) -> list[str]:
    """`count` link tokens, each as `tokens.new_token` makes one (24 random bytes as
    URL-safe base64 without padding), from one read of the system's random source:
    24 is a multiple of 3, so the encoding of the concatenation is the concatenation of
    the encodings."""
    text = base64.urlsafe_b64encode(os.urandom(TOKEN_BYTES * count)).decode("ascii")
    size = TOKEN_BYTES * 4 // 3
    return [text[i:i + size] for i in range(0, len(text), size)]


class ImportBatch:
    """The writes of one import on one connection, in the caller's transaction.
    `open` prepares the scratch table; `close` drops it (PostgreSQL also drops it at
    commit or rollback)."""

    def __init__(self, conn: Connection, *, now: datetime, source: str, form: str) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        # The timestamp as SQLAlchemy's column type stores it (SQLite keeps text).
        bind = subscribers.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.now: Any = bind(now) if bind is not None else now
        self.source = source
        self.form = form

    def open(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SEEN}")
        if self.postgres:
            self.conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {SEEN} (email text PRIMARY KEY, line integer NOT NULL) ON COMMIT DROP"
            )
        else:
            self.conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {SEEN} (email TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
            )
            self.conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")

    def close(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SEEN}")
        if not self.postgres:
            self.conn.exec_driver_sql("PRAGMA cache_size = -2000")

    def _in(self, column: str) -> str:
        """`column IN (the batch)`, the batch being one parameter."""
        return f"{column} = ANY(%(batch)s)" if self.postgres else f"{column} IN (SELECT value FROM json_each(:batch))"

    def _rows_by(self, table: str, key: str, columns: str, values: Sequence[Any]) -> Any:
        """`columns` of the rows of `table` whose `key` is one of `values`. SQLite walks
        the JSON array and looks each value up by the key's index: written as
        `key IN (SELECT … json_each)`, it first builds a temporary index of the whole
        array, which cost seven times as much for 100,000 values."""
        if self.postgres:
            return self.conn.exec_driver_sql(
                f"SELECT {columns} FROM {table} WHERE {key} = ANY(%(batch)s)", self._batch(values)
            )
        picked = ", ".join(f"t.{c.strip()}" for c in columns.split(","))
        return self.conn.exec_driver_sql(
            f"SELECT {picked} FROM json_each(:batch) AS j CROSS JOIN {table} AS t ON t.{key} = j.value", self._batch(values)
        )

    def _batch(self, values: Sequence[Any]) -> dict[str, Any]:
        return {"batch": list(values) if self.postgres else json.dumps(list(values))}

    def seen_before(self, emails: Sequence[str]) -> dict[str, int]:
        """Of these addresses, those an earlier batch of this import held, with their line."""
        return {email: line for email, line in self._rows_by(SEEN, "email", "email, line", emails)}

    def remember(self, firsts: Sequence[tuple[str, int]]) -> None:
        """Note where each address (new to this import) was first seen."""
        if not firsts:
            return
        if self.postgres:
            self.conn.exec_driver_sql(
                f"INSERT INTO {SEEN} (email, line) SELECT * FROM unnest(%(emails)s::text[], %(lines)s::integer[])",
                {"emails": [e for e, _ in firsts], "lines": [n for _, n in firsts]},
            )
        else:
            self.conn.exec_driver_sql(f"INSERT INTO {SEEN} (email, line) VALUES (?, ?)", list(firsts))

    def existing(self, emails: Sequence[str]) -> dict[str, tuple[int, str]]:
        """The subscribers with these addresses: address → (id, status)."""
        rows = self._rows_by("subscribers", "email", "email, id, status", emails)
        return {email: (id_, status) for email, id_, status in rows}

    def update(self, rows: Sequence[tuple[int, str, str, str | None]], *, names: bool) -> None:
        """Give existing subscribers (id, name, sections key, time zone); the name only if
        `names`, the time zone only where it is not None."""
        if not rows:
            return
        zone = "timezone = coalesce({}, {}timezone)"
        if self.postgres:
            ids, name_list, keys, zones = zip(*rows, strict=True)
            self.conn.exec_driver_sql(
                "UPDATE subscribers AS s SET sections = v.sections, " + zone.format("v.zone", "s.")
                + (", name = v.name" if names else "")
                + " FROM unnest(%(ids)s::integer[], %(names)s::text[], %(keys)s::text[], %(zones)s::text[])"
                " AS v(id, name, sections, zone) WHERE s.id = v.id",
                {"ids": list(ids), "names": list(name_list), "keys": list(keys), "zones": list(zones)},
            )
        elif names:
            self.conn.exec_driver_sql(
                f"UPDATE subscribers SET name = ?, sections = ?, {zone.format('?', '')} WHERE id = ?",
                [(n, k, z, i) for i, n, k, z in rows],
            )
        else:
            self.conn.exec_driver_sql(
                f"UPDATE subscribers SET sections = ?, {zone.format('?', '')} WHERE id = ?",
                [(k, z, i) for i, _, k, z in rows],
            )

    def create(self, rows: Sequence[tuple[str, str, str, str | None]], *, status: str, action: str) -> None:
        """New subscribers (email, name, sections key, time zone) with `status`, confirmed now, each
        with a fresh token and one consent row (`action`, the import's form)."""
        if not rows:
            return
        tokens = new_tokens(len(rows))
        params = {"now": self.now, "status": status, "source": self.source, "action": action, "form": self.form}
        if self.postgres:
            emails, names, keys, zones = zip(*rows, strict=True)
            self.conn.exec_driver_sql(
                "WITH new AS (INSERT INTO subscribers"
                " (email, name, status, sections, token, created_at, confirmed_at, source, timezone)"
                " SELECT v.email, v.name, %(status)s, v.sections, v.token, %(now)s, %(now)s, %(source)s, v.zone"
                " FROM unnest(%(emails)s::text[], %(names)s::text[], %(keys)s::text[], %(tokens)s::text[],"
                " %(zones)s::text[]) AS v(email, name, sections, token, zone) RETURNING id, sections)"
                " INSERT INTO consents (subscriber_id, action, sections, at, ip, user_agent, form)"
                " SELECT id, %(action)s, sections, %(now)s, '', '', %(form)s FROM new",
                {**params, "emails": list(emails), "names": list(names), "keys": list(keys), "tokens": tokens,
                 "zones": list(zones)},
            )
            return
        # SQLite gives a new row the largest id so far plus one, and this transaction is
        # the only writer: the rows after the largest id before the insert are this
        # batch's, which the count confirms (else they are found by address).
        before = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM subscribers").scalar_one()
        self.conn.exec_driver_sql(
            "INSERT INTO subscribers (email, name, status, sections, token, created_at, confirmed_at, source, timezone)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e, n, status, k, t, self.now, self.now, self.source, z)
             for (e, n, k, z), t in zip(rows, tokens, strict=True)],
        )
        ours = self.conn.exec_driver_sql("SELECT count(*) FROM subscribers WHERE id > ?", (before,)).scalar_one()
        where = "id > :before" if ours == len(rows) else self._in("email")
        self.conn.exec_driver_sql(
            "INSERT INTO consents (subscriber_id, action, sections, at, ip, user_agent, form)"
            f" SELECT id, :action, sections, :now, '', '', :form FROM subscribers WHERE {where} ORDER BY id",
            {**params, "before": before, **self._batch([e for e, _, _, _ in rows])},
        )
