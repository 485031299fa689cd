"""The statements of a large import, a batch of rows at a time, written for each
database. SQLite takes a batch as one JSON array (`json_each`) or through `executemany`.
PostgreSQL takes it as lists sent as one text (`pipeline.texts`), one statement per
batch, its writes left running at the server while Python reads the next batch
(`pipeline.Sent`), and looks the addresses seen so far up only when a filter says they
may be there (`SeenFilter`). Everything goes through the caller's SQLAlchemy connection
(so its transaction and its error translation hold), none of it through SQLAlchemy's
statement construction, which cost more than the work itself when done row by row.

Owns: `ImportBatch` (the per-import scratch table of addresses seen, and the writes),
`SeenFilter`, `new_tokens`. Imports `pipeline`, `tables` and `tokens` of this package.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, event

from .pipeline import Sent, integers, texts
from .tables import subscribers
from .tokens import TOKEN_BYTES

#: The scratch table of one import: each address of the file with the line it was
#: first seen on, so a later duplicate names that line without the whole file in memory.
SEEN = "import_seen"
#: SQLite's page cache while importing, in KiB (its default is 2 MiB). Inserting a
#: million addresses walks the email and token indexes at random places; a cache this
#: size holds their upper levels. It is bounded, whatever the file's size.
IMPORT_CACHE_KIB = 32 * 1024


#: The filter of the addresses an import has seen (PostgreSQL): 2**26 bits (8 MiB)
#: whatever the file's size, two bits an address. At a million addresses about 1 in
#: 1,100 of those not seen yet passes it and is looked up; at ten million, 1 in 15.
SEEN_FILTER_BITS = 1 << 26


class SeenFilter:
    """A Bloom filter of addresses: `maybe` keeps every address that was `add`ed and
    drops nearly all that were not, so only those few are looked up in the scratch
    table. Python's string hash (fixed for a string throughout a process) gives the
    two bits of an address."""

    def __init__(self, bits: int = SEEN_FILTER_BITS) -> None:
        if bits < 8 or bits & (bits - 1):
            raise ValueError("the filter's size must be a power of two of at least 8 bits")
        self.mask = bits - 1
        self.bits = bytearray(bits >> 3)

    def add(self, addresses: Iterable[str]) -> None:
        bits, mask = self.bits, self.mask
        for address in addresses:
            h = hash(address)
            i, j = h & mask, (h >> 32) & mask
            bits[i >> 3] |= 1 << (i & 7)
            bits[j >> 3] |= 1 << (j & 7)

    def maybe(self, addresses: Iterable[str]) -> list[str]:
        """The addresses that may have been added: all that were, few that were not."""
        bits, mask = self.bits, self.mask
        return [a for a in addresses
                if bits[(i := (h := hash(a)) & mask) >> 3] >> (i & 7) & 1 and bits[(j := (h >> 32) & mask) >> 3] >> (j & 7) & 1]


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
    commit or rollback). On PostgreSQL the writes (`remember`, `update`, `create`) go on
    at the server (`Sent`) until the connection is next needed."""

    def __init__(self, conn: Connection, *, now: datetime, source: str, form: str) -> None:
        self._conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        # The timestamp as SQLAlchemy's column type stores it (SQLite keeps text).
        bind = subscribers.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.now: Any = bind(now) if bind is not None else now
        self.source = source
        self.form = form
        # PostgreSQL: the addresses remembered, so that few are looked up (see
        # `seen_before`); those not written to the scratch table yet; the writes going on.
        self.seen = SeenFilter() if self.postgres else None
        self.unsaved: list[tuple[str, int]] = []
        self.sent = Sent(conn)

    @property
    def conn(self) -> Connection:
        """The connection, once the writes going on at the server are done."""
        self.sent.wait()
        return self._conn

    def open(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SEEN}")
        if self.postgres:
            # The caller's transaction ends, an error part-way included: the writes sent
            # finish first; a failed one fails the commit.
            for name, listener in self._transaction_ends():
                event.listen(self._conn, name, listener)
            # A hash index: it is looked up for the few addresses the filter passes, and
            # keeping it costs less than a btree's random inserts (`seen_before`).
            self.conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {SEEN} (email text NOT NULL, line integer NOT NULL) ON COMMIT DROP"
            )
            self.conn.exec_driver_sql(f"CREATE INDEX ON {SEEN} USING hash (email)")
        else:
            self.conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {SEEN} (email TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
            )
            self.conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")

    def close(self) -> None:
        if self.postgres:
            # The scratch table goes: the addresses not written to it yet need not be.
            self.unsaved = []
            self.sent.wait()
            for name, listener in self._transaction_ends():
                event.remove(self._conn, name, listener)
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SEEN}")
        if not self.postgres:
            self.conn.exec_driver_sql("PRAGMA cache_size = -2000")

    def _transaction_ends(self) -> list[tuple[str, Callable[..., None]]]:
        wait, abandon = self.sent.wait, self.sent.abandon
        return [("commit", wait), ("release_savepoint", wait), ("rollback", abandon), ("rollback_savepoint", abandon)]

    def _in(self, column: str) -> str:
        """`column IN (the batch)`, the batch being one parameter (SQLite)."""
        return f"{column} IN (SELECT value FROM json_each(:batch))"

    def _rows_by(self, table: str, key: str, columns: str, values: Sequence[Any]) -> Any:
        """`columns` of the rows of `table` whose `key` is one of `values`. SQLite walks
        the JSON array and looks each value up by the key's index: written as
        `key IN (SELECT … json_each)`, it first builds a temporary index of the whole
        array, which cost seven times as much for 100,000 values. (PostgreSQL's lookups
        are `seen_before`'s and `existing`'s own.)"""
        picked = ", ".join(f"t.{c.strip()}" for c in columns.split(","))
        return self.conn.exec_driver_sql(
            f"SELECT {picked} FROM json_each(:batch) AS j CROSS JOIN {table} AS t ON t.{key} = j.value", self._batch(values)
        )

    def _batch(self, values: Sequence[Any]) -> dict[str, Any]:
        return {"batch": json.dumps(list(values))}

    def seen_before(self, emails: Sequence[str]) -> dict[str, int]:
        """Of these addresses, those an earlier batch of this import held, with their line."""
        if self.seen is not None:
            if self.unsaved:
                # The last batch wrote nothing (a dry run): its addresses go on their own.
                self.sent.send([self._seen_insert()])
            # Asking PostgreSQL's scratch table for every address of a million took 4 s,
            # and 13 s when the planner chose to read the table; the filter passes those
            # seen and a few more.
            emails = self.seen.maybe(emails)
            if not emails:
                return {}
            self.sent.wait()
            # `= ANY` here: the planner looks the few addresses up in the hash index, where
            # with `IN (SELECT unnest(...))` it hashed them and read the whole table.
            rows = self._conn.exec_driver_sql(
                f"SELECT email, line FROM {SEEN} WHERE email = ANY(%(batch)b::text[])", {"batch": emails}
            )
            return {email: line for email, line in rows}
        return {email: line for email, line in self._rows_by(SEEN, "email", "email, line", emails)}

    def remember(self, firsts: Sequence[tuple[str, int]]) -> None:
        """Note where each address (new to this import) was first seen."""
        if not firsts:
            return
        if self.seen is not None:
            # Written with the batch's other writes, sent and left running (`_send`).
            self.seen.add(e for e, _ in firsts)
            self.unsaved.extend(firsts)
        else:
            self.conn.exec_driver_sql(f"INSERT INTO {SEEN} (email, line) VALUES (?, ?)", list(firsts))

    def _seen_insert(self) -> tuple[str, dict[str, Any]]:
        firsts, self.unsaved = self.unsaved, []
        params: dict[str, Any] = {}
        emails = texts("emails", [e for e, _ in firsts], params)
        lines = integers("lines", [n for _, n in firsts], params)
        return f"INSERT INTO {SEEN} (email, line) SELECT * FROM unnest({emails}, {lines})", params

    def _send(self, statement: str, params: dict[str, Any]) -> None:
        """Send the statement, after the remembered addresses' insert, and go on (`Sent`)."""
        self.sent.send([self._seen_insert(), (statement, params)] if self.unsaved else [(statement, params)])

    def existing(self, emails: Sequence[str]) -> dict[str, tuple[int, str]]:
        """The subscribers with these addresses: address → (id, status)."""
        if self.postgres:
            # `IN (SELECT unnest(...))`: `= ANY` of a parameter let PostgreSQL's generic
            # plan compare every row with every address when it chose to read the table.
            params: dict[str, Any] = {}
            rows = self.conn.exec_driver_sql(
                f"SELECT email, id, status FROM subscribers WHERE email IN (SELECT unnest({texts('batch', emails, params)}))",
                params,
            )
            return {email: (id_, status) for email, id_, status in rows}
        rows = self._rows_by("subscribers", "email", "email, id, status", emails)
        return {email: (id_, status) for email, id_, status in rows}

    def update(self, rows: Sequence[tuple[int, str, str, str | None]], *, names: bool) -> None:
        """Give existing subscribers (id, name, sections key, time zone); the name only if
        `names`, the time zone only where it is not None."""
        if not rows:
            return
        zone = "timezone = coalesce({}, {}timezone)"
        if self.postgres:
            # In id order: the rows are then found at neighbouring places in the table.
            ids, name_list, keys, zones = zip(*sorted(rows), strict=True)
            params: dict[str, Any] = {}
            arrays = ", ".join((integers("ids", ids, params), texts("names", name_list, params),
                                texts("keys", keys, params), texts("zones", zones, params)))
            self._send(
                "UPDATE subscribers AS s SET sections = v.sections, " + zone.format("v.zone", "s.")
                + (", name = v.name" if names else "")
                + f" FROM unnest({arrays}) AS v(id, name, sections, zone) WHERE s.id = v.id"
                # A row the file leaves as it is stays untouched: no new row version and
                # no index entries for it (a file imported again changes few rows).
                " AND (s.sections <> v.sections OR s.timezone IS DISTINCT FROM coalesce(v.zone, s.timezone)"
                + (" OR s.name <> v.name" if names else "") + ")",
                params,
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
        params: dict[str, Any] = {
            "now": self.now, "status": status, "source": self.source, "action": action, "form": self.form,
        }
        if self.postgres:
            emails, names, keys, zones = zip(*rows, strict=True)
            arrays = ", ".join(texts(name, values, params) for name, values in (
                ("emails", emails), ("names", names), ("keys", keys), ("tokens", tokens), ("zones", zones)))
            self._send(
                "WITH new AS (INSERT INTO subscribers"
                " (email, name, status, sections, token, created_at, confirmed_at, source, timezone)"
                " SELECT v.email, v.name, %(status)s, v.sections, v.token, %(now)s, %(now)s, %(source)s, v.zone"
                f" FROM unnest({arrays}) AS v(email, name, sections, token, zone) RETURNING id, sections)"
                " INSERT INTO consents (subscriber_id, action, sections, at, ip, user_agent, form)"
                " SELECT id, %(action)s, sections, %(now)s, '', '', %(form)s FROM new",
                params,
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
