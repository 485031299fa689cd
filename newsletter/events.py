"""Taking in what the email provider reports after sending: store each event once, keep
the per-recipient aggregates the statistics read, confirm batches, act on people.

Owns: `ingest_events`, `IngestReport`, `prune_events`. Imports `models`, `tables`,
`sending.ledger` and what `subscribers` exports. The caller (the webhook endpoint) has checked
the request's signature and translated its events; it owns the transaction, so a batch
of events is taken in whole or not at all.

Exactly once: every event is keyed by the provider's event id (`delivery_events` is
unique on it), and events already stored are left out before anything is counted or
applied, so a redelivered batch changes nothing. Two deliveries of one batch racing on
PostgreSQL end with one of them failing on the key and being redelivered later.

An event is `known` when its issue and subscriber ids name a recipient of that issue in
the send ledger. Unknown events are stored and counted, never an error; people events
(bounces, complaints, unsubscribes) still reach the person with that address.
"""

from __future__ import annotations

import logging
from collections import Counter
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete

import subscribers as people

from .sending import ledger
from .tables import delivery_events
from .models import DeliveryEvent, EventKind

log = logging.getLogger(__name__)

_PERSON: dict[EventKind, people.PersonEvent] = {
    EventKind.BOUNCED: people.PersonEvent.BOUNCED,
    EventKind.COMPLAINED: people.PersonEvent.COMPLAINED,
    EventKind.UNSUBSCRIBED: people.PersonEvent.UNSUBSCRIBED,
    EventKind.RESUBSCRIBED: people.PersonEvent.RESUBSCRIBED,
}
#: Which first-time column of `recipient_activity` each kind of event sets, by its
#: place among `_FIRST_COLUMNS`.
_FIRST_COLUMNS = ("delivered_at", "bounced_at", "complained_at", "unsubscribed_at", "opened_at", "clicked_at")
_FIRST: dict[EventKind, int] = {
    EventKind.DELIVERED: 0,
    EventKind.BOUNCED: 1,
    EventKind.COMPLAINED: 2,
    EventKind.UNSUBSCRIBED: 3,
    EventKind.OPENED: 4,
    EventKind.CLICKED: 5,
}
_OPENED, _CLICKED = _FIRST[EventKind.OPENED], _FIRST[EventKind.CLICKED]
#: The text of each kind (a StrEnum's `.value` is a property, slow in a loop of thousands).
_KIND_TEXT = {kind: kind.value for kind in EventKind}
_EVENT_COLUMNS = ("event_key", "kind", "provider_event", "issue_id", "batch_id", "subscriber_id", "known",
                  "occurred_at", "received_at", "url", "reason")


@dataclass
class IngestReport:
    """What one batch of events did."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    unknown: int = 0
    people_changed: int = 0
    batches_confirmed: list[int] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)


class _Statements:
    """The few statements of one batch of events, written for each database and sent
    through the caller's connection without SQLAlchemy's statement construction and
    per-value processing, which cost more than the work itself for a thousand events:
    SQLite takes a list as one JSON array (`json_each`) or rows through `executemany`;
    PostgreSQL takes a list as an array (`= ANY`) and rows as one JSON array of arrays
    (`json_array_elements`: psycopg adapts a JSON text several times faster than arrays
    of values). The aggregates are upserts that keep the earliest time and add the counts."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        # Timestamps as the column type stores them (SQLite keeps SQLAlchemy's text);
        # for PostgreSQL as ISO text in the JSON rows.
        bulk = people.UTCDateTime.bulk_processor(conn.dialect)
        self.stamp: Callable[[datetime], Any] = (lambda value: bulk(value).isoformat()) if self.postgres else bulk

    def _among(self, table: str, column: str, kind: str, values: Sequence[Any], where: str = "") -> set[Any]:
        """The values of `column` (of PostgreSQL type `kind`) in `table` (rows also meeting
        `where`) that are among `values`, the list being one parameter. SQLite walks the
        JSON array and looks each value up by the column's index (`column IN (SELECT …
        json_each)` would first build a temporary index of the whole array). PostgreSQL
        gets the array's type: psycopg sends small numbers as `smallint[]`, against which
        the index of an integer column went unused (a scan of the issue's deliveries)."""
        if self.postgres:
            sql = f"SELECT {column} FROM {table} WHERE {column} = ANY(%(values)s::{kind}[])" + (
                f" AND {where}" if where else ""
            )
            return set(self.conn.exec_driver_sql(sql, {"values": list(values)}).scalars())
        sql = f"SELECT t.{column} FROM json_each(:values) AS j CROSS JOIN {table} AS t ON t.{column} = j.value" + (
            f" WHERE t.{where}" if where else ""
        )
        return set(self.conn.exec_driver_sql(sql, {"values": json.dumps(list(values))}).scalars())

    def stored_keys(self, keys: Sequence[str]) -> set[str]:
        return self._among("delivery_events", "event_key", "text", keys)

    def recipients(self, issue_id: int, subscriber_ids: Sequence[int]) -> set[int]:
        """Of these subscribers, those in the send ledger of the issue."""
        return self._among("deliveries", "subscriber_id", "integer", subscriber_ids, f"issue_id = {int(issue_id)}")

    def _insert(self, table: str, columns: Sequence[str], types: Sequence[str], rows: list[tuple[Any, ...]],
                conflict: str = "") -> None:
        """Insert `rows` (tuples in the order of `columns`; `types` are PostgreSQL's)."""
        names = ", ".join(columns)
        if self.postgres:
            values = ", ".join(f"(v->>{n})::{kind}" for n, kind in enumerate(types))
            self.conn.exec_driver_sql(
                f"INSERT INTO {table} ({names}) SELECT {values} FROM jsonb_array_elements(%(rows)s::jsonb) AS v {conflict}",
                {"rows": json.dumps(rows)},
            )
        else:
            marks = ", ".join("?" for _ in columns)
            self.conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}", rows)

    def store(self, rows: list[tuple[Any, ...]]) -> None:
        """Raw events, tuples in the order of `_EVENT_COLUMNS`."""
        self._insert("delivery_events", _EVENT_COLUMNS, (
            "text", "text", "text", "integer", "integer", "integer", "boolean", "timestamptz", "timestamptz", "text", "text",
        ), rows)

    def _earliest(self, table: str, column: str) -> str:
        if self.postgres:
            return f"{column} = LEAST({table}.{column}, EXCLUDED.{column})"
        # SQLite's min() of several values is NULL when one is; its times are text that sorts as time.
        return f"{column} = min(coalesce({column}, excluded.{column}), coalesce(excluded.{column}, {column}))"

    def add_activity(self, rows: list[tuple[Any, ...]]) -> None:
        """Per recipient: (issue, subscriber, the six first times in the order of
        `_FIRST_COLUMNS` or None, opens, clicks)."""
        table = "recipient_activity"
        sets = ", ".join([self._earliest(table, c) for c in _FIRST_COLUMNS]
                         + [f"{c} = {table}.{c} + excluded.{c}" for c in ("opens", "clicks")])
        self._insert(table, ("issue_id", "subscriber_id", *_FIRST_COLUMNS, "opens", "clicks"),
                     ("integer", "integer", *["timestamptz"] * 6, "integer", "integer"), rows,
                     f"ON CONFLICT (issue_id, subscriber_id) DO UPDATE SET {sets}")

    def add_clicks(self, rows: list[tuple[Any, ...]]) -> None:
        """Per recipient and link: (issue, url, subscriber, clicks, first time)."""
        table = "link_clicks"
        self._insert(table, ("issue_id", "url", "subscriber_id", "clicks", "first_at"),
                     ("integer", "text", "integer", "integer", "timestamptz"), rows,
                     f"ON CONFLICT (issue_id, url, subscriber_id) DO UPDATE SET clicks = {table}.clicks + excluded.clicks, "
                     + self._earliest(table, "first_at"))


def _new_events(sql: _Statements, events: Sequence[DeliveryEvent]) -> list[DeliveryEvent]:
    """The events not stored before, each once (the first of a key in the request)."""
    unique = list({e.key: e for e in reversed(events)}.values())[::-1]
    seen = sql.stored_keys([e.key for e in unique]) if unique else set()
    return [e for e in unique if e.key not in seen]


def _recipients(sql: _Statements, events: Sequence[DeliveryEvent]) -> set[tuple[int, int]]:
    """The (issue, subscriber) pairs among the events that are in the send ledger."""
    wanted: dict[int, set[int]] = {}
    for e in events:
        if e.issue_id is not None and e.subscriber_id is not None:
            wanted.setdefault(e.issue_id, set()).add(e.subscriber_id)
    return {(issue_id, s) for issue_id, ids in wanted.items() for s in sql.recipients(issue_id, sorted(ids))}


def _aggregate(sql: _Statements, events: Sequence[DeliveryEvent]) -> None:
    """Fold known events into `recipient_activity` and `link_clicks`: one row per
    recipient (and per recipient and link) with the batch's earliest times and counts,
    added to what is stored by one upsert each."""
    firsts: dict[tuple[int, int], list[Any]] = {}
    clicks: dict[tuple[int, str, int], list[Any]] = {}
    for e in events:
        place = _FIRST.get(e.kind)
        if place is None:
            continue
        issue_id, subscriber_id = e.issue_id, e.subscriber_id
        assert issue_id is not None and subscriber_id is not None
        row = firsts.get((issue_id, subscriber_id))
        if row is None:
            # The six first times, then opens and clicks.
            row = firsts[(issue_id, subscriber_id)] = [None] * 6 + [0, 0]
        if row[place] is None or e.occurred_at < row[place]:
            row[place] = e.occurred_at
        if place == _OPENED:
            row[6] += 1
        elif place == _CLICKED:
            row[7] += 1
            if e.url:
                link = clicks.setdefault((issue_id, e.url, subscriber_id), [0, e.occurred_at])
                link[0] += 1
                link[1] = min(link[1], e.occurred_at)
    stamp = sql.stamp
    if firsts:
        sql.add_activity([
            (i, s, *[None if t is None else stamp(t) for t in row[:6]], row[6], row[7])
            for (i, s), row in sorted(firsts.items())
        ])
    if clicks:
        sql.add_clicks([(i, u, s, n, stamp(t)) for (i, u, s), (n, t) in sorted(clicks.items())])


def ingest_events(conn: Connection, events: Sequence[DeliveryEvent], *, source: str, now: datetime) -> IngestReport:
    """Store the events not seen before and apply them: aggregates for statistics,
    `processed` confirming in-flight batches, people events through
    `subscribers.apply_person_event` (the consent log's form is `{source}-{event}`)."""
    report = IngestReport(received=len(events))
    sql = _Statements(conn)
    new = _new_events(sql, events)
    report.duplicates = len(events) - len(new)
    if not new:
        return report
    recipients = _recipients(sql, new)
    known = [e for e in new if (e.issue_id, e.subscriber_id) in recipients]
    report.stored = len(new)
    report.unknown = len(new) - len(known)
    report.kinds.update(_KIND_TEXT[e.kind] for e in new)
    stamp, received = sql.stamp, sql.stamp(now)
    sql.store([
        (e.key, _KIND_TEXT[e.kind], e.provider_event, e.issue_id, e.batch_id, e.subscriber_id,
         (e.issue_id, e.subscriber_id) in recipients, stamp(e.occurred_at), received, e.url, e.reason)
        for e in new
    ])
    _aggregate(sql, known)
    for e in sorted((e for e in new if e.kind in _PERSON), key=lambda e: e.occurred_at):
        result = people.apply_person_event(
            conn, _PERSON[e.kind], subscriber_id=e.subscriber_id, email=e.email,
            source=f"{source}-{e.provider_event}"[:50], at=e.occurred_at, now=now,
        )
        report.people_changed += result is people.EventResult.CHANGED
    for issue_id in sorted({e.issue_id for e in known if e.kind is EventKind.PROCESSED and e.issue_id is not None}):
        report.batches_confirmed += ledger.confirm_processed(conn, issue_id, now=now)
    if report.batches_confirmed:
        log.info("batches %s confirmed by processed events", ", ".join(map(str, report.batches_confirmed)))
    return report


def prune_events(conn: Connection, *, before: datetime) -> int:
    """Delete the raw events received before `before`; the aggregates stay. Returns how
    many were deleted."""
    return int(conn.execute(delete(delivery_events).where(delivery_events.c.received_at < before)).rowcount or 0)
