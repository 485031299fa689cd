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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, case, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

import subscribers as people

from .sending import ledger
from .models import DeliveryEvent, EventKind
from .tables import deliveries, delivery_events, link_clicks, recipient_activity

log = logging.getLogger(__name__)

_CHUNK = 900
_PERSON: dict[EventKind, people.PersonEvent] = {
    EventKind.BOUNCED: people.PersonEvent.BOUNCED,
    EventKind.COMPLAINED: people.PersonEvent.COMPLAINED,
    EventKind.UNSUBSCRIBED: people.PersonEvent.UNSUBSCRIBED,
    EventKind.RESUBSCRIBED: people.PersonEvent.RESUBSCRIBED,
}
#: Which first-time column of `recipient_activity` each kind of event sets.
_FIRST: dict[EventKind, str] = {
    EventKind.DELIVERED: "delivered_at",
    EventKind.BOUNCED: "bounced_at",
    EventKind.COMPLAINED: "complained_at",
    EventKind.UNSUBSCRIBED: "unsubscribed_at",
    EventKind.OPENED: "opened_at",
    EventKind.CLICKED: "clicked_at",
}


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


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose primary key is not there yet (others are left as they are)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def _earliest(column: Any, name: str) -> Any:
    value = bindparam(name, type_=column.type)
    return case((value.is_(None), column), (column.is_(None), value), (column > value, value), else_=column)


def _recipients(conn: Connection, events: Sequence[DeliveryEvent]) -> set[tuple[int, int]]:
    """The (issue, subscriber) pairs among the events that are in the send ledger."""
    wanted: dict[int, set[int]] = {}
    for e in events:
        if e.issue_id is not None and e.subscriber_id is not None:
            wanted.setdefault(e.issue_id, set()).add(e.subscriber_id)
    found: set[tuple[int, int]] = set()
    for issue_id, ids in wanted.items():
        for chunk in _chunks(sorted(ids)):
            rows = conn.execute(
                select(deliveries.c.subscriber_id).where(
                    deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id.in_(chunk)
                )
            ).scalars()
            found.update((issue_id, s) for s in rows)
    return found


def _new_events(conn: Connection, events: Sequence[DeliveryEvent]) -> list[DeliveryEvent]:
    """The events not stored before, each once (the first of a key in the request)."""
    unique = list({e.key: e for e in reversed(events)}.values())[::-1]
    seen: set[str] = set()
    for chunk in _chunks([e.key for e in unique]):
        seen.update(conn.execute(select(delivery_events.c.event_key).where(delivery_events.c.event_key.in_(chunk))).scalars())
    return [e for e in unique if e.key not in seen]


def _aggregate(conn: Connection, events: Sequence[DeliveryEvent]) -> None:
    """Fold known events into `recipient_activity` and `link_clicks`: one UPDATE per kind
    of event present, each with only the recipients that had it (few bound values)."""
    firsts: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    clicks: dict[tuple[int, str, int], dict[str, Any]] = {}
    for e in events:
        assert e.issue_id is not None and e.subscriber_id is not None
        column = _FIRST.get(e.kind)
        if column is None:
            continue
        row = firsts.setdefault(column, {}).setdefault(
            (e.issue_id, e.subscriber_id), {"i": e.issue_id, "s": e.subscriber_id, "t": e.occurred_at, "n": 0}
        )
        row["t"] = min(row["t"], e.occurred_at)
        row["n"] += 1
        if e.kind is EventKind.CLICKED and e.url:
            link = clicks.setdefault((e.issue_id, e.url, e.subscriber_id),
                                     {"i": e.issue_id, "u": e.url, "s": e.subscriber_id, "n": 0, "t": e.occurred_at})
            link["n"] += 1
            link["t"] = min(link["t"], e.occurred_at)
    keys = {key for rows in firsts.values() for key in rows}
    if keys:
        _insert_ignore(conn, recipient_activity, [
            {"issue_id": i, "subscriber_id": s, "opens": 0, "clicks": 0} for i, s in sorted(keys)
        ])
    t = recipient_activity.c
    for column, rows in firsts.items():
        values: dict[str, Any] = {column: _earliest(t[column], "t")}
        if column == "opened_at":
            values["opens"] = t.opens + bindparam("n")
        elif column == "clicked_at":
            values["clicks"] = t.clicks + bindparam("n")
        conn.execute(
            update(recipient_activity).where(t.issue_id == bindparam("i"), t.subscriber_id == bindparam("s")).values(**values),
            list(rows.values()),
        )
    if clicks:
        _insert_ignore(conn, link_clicks, [
            {"issue_id": i, "url": u, "subscriber_id": s, "clicks": 0, "first_at": row["t"]}
            for (i, u, s), row in clicks.items()
        ])
        c = link_clicks.c
        conn.execute(
            update(link_clicks)
            .where(c.issue_id == bindparam("i"), c.url == bindparam("u"), c.subscriber_id == bindparam("s"))
            .values(clicks=c.clicks + bindparam("n"), first_at=_earliest(c.first_at, "t")),
            list(clicks.values()),
        )


def ingest_events(conn: Connection, events: Sequence[DeliveryEvent], *, source: str, now: datetime) -> IngestReport:
    """Store the events not seen before and apply them: aggregates for statistics,
    `processed` confirming in-flight batches, people events through
    `subscribers.apply_person_event` (the consent log's form is `{source}-{event}`)."""
    report = IngestReport(received=len(events))
    new = _new_events(conn, events)
    report.duplicates = len(events) - len(new)
    if not new:
        return report
    recipients = _recipients(conn, new)
    known = [e for e in new if (e.issue_id, e.subscriber_id) in recipients]
    report.stored = len(new)
    report.unknown = len(new) - len(known)
    report.kinds.update(e.kind.value for e in new)
    conn.execute(insert(delivery_events), [
        {
            "event_key": e.key, "kind": e.kind.value, "provider_event": e.provider_event, "issue_id": e.issue_id,
            "batch_id": e.batch_id, "subscriber_id": e.subscriber_id,
            "known": (e.issue_id, e.subscriber_id) in recipients, "occurred_at": e.occurred_at, "received_at": now,
            "url": e.url, "reason": e.reason,
        }
        for e in new
    ])
    _aggregate(conn, known)
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
