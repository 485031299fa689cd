"""The send ledger's queries: claim an issue's planned batches and record their outcomes.

Owns: reading and updating `batches` and `deliveries` once planned (`planning` writes
them). Imports `models`, `tables`, and
what `subscribers` exports. Callers own the transaction; every state change is meant to
be committed on its own, so a crash leaves each batch in a state that says what to do.

Batch states: planned → in_flight → accepted | failed. A delivery row is a recipient of
a batch: planned, or skipped (no longer mailable when its batch went out, and counted in
the batch's `skipped`). A planned row of an accepted batch has been sent: accepting a
batch writes its one row, not a thousand rows of recipients scattered over the table.
A row of an accepted batch may later say "recalled" (`recall`): its copy was stopped before
it was due, and the batch counts it in `recalled`.
Rows written before that rule say "sent" themselves, and count as sent the same way. So
an issue's figures are sums over its batches (`recipients` − `skipped` of the accepted
ones are its recipients), never a count of a million deliveries.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, Update, and_, bindparam, case, exists, func, select, update

from subscribers import mailable_clause, subscribers

from ..models import BatchStatus, DeliveryStatus
from ..tables import batches, deliveries



@dataclass(frozen=True)
class BatchRow:
    id: int
    issue_id: int
    segment_id: int
    status: BatchStatus
    recipients: int
    attempts: int


def _batch(row: Any) -> BatchRow:
    return BatchRow(row.id, row.issue_id, row.segment_id, BatchStatus(row.status), row.recipients, row.attempts)


def send_started(conn: Connection, issue_id: int) -> bool:
    """Whether any batch of the issue has been planned (some readers may have it already)."""
    return conn.execute(select(batches.c.id).where(batches.c.issue_id == issue_id).limit(1)).first() is not None


def was_recalled(conn: Connection, issue_id: int) -> bool:
    """Whether some copies of the issue were stopped by a recall (`recall`)."""
    query = select(deliveries.c.id).where(deliveries.c.issue_id == issue_id,
                                          deliveries.c.status == DeliveryStatus.RECALLED.value).limit(1)
    return conn.execute(query).first() is not None


def batches_in(conn: Connection, issue_id: int, *statuses: BatchStatus) -> list[BatchRow]:
    """The issue's batches in these states (all states when none are given), by id."""
    query = select(batches).where(batches.c.issue_id == issue_id).order_by(batches.c.id)
    if statuses:
        query = query.where(batches.c.status.in_([s.value for s in statuses]))
    return [_batch(row) for row in conn.execute(query)]


def claim_batch(conn: Connection, issue_id: int, statuses: tuple[BatchStatus, ...], *, now: datetime) -> BatchRow | None:
    """Take the next batch in one of `statuses` and mark it in flight.

    On PostgreSQL the row is locked with SKIP LOCKED, so several workers never take the
    same batch. On SQLite the claim is one UPDATE … RETURNING that picks the batch and
    takes it in one step under the database's write lock, so two sending processes (a
    send and its helpers) never take the same batch and need no re-check and retry.
    """
    wanted = tuple(s.value for s in statuses)
    if conn.dialect.name != "postgresql":
        taken = conn.execute(_claim_next(wanted), {"of_issue": issue_id, "claimed_at": now}).first()
        if taken is None:
            return None
        return BatchRow(taken.id, taken.issue_id, taken.segment_id, BatchStatus.IN_FLIGHT, taken.recipients, taken.attempts)
    taking = dict(status=BatchStatus.IN_FLIGHT.value, attempts=batches.c.attempts + 1, updated_at=now)
    while True:
        row = conn.execute(
            select(batches)
            .where(batches.c.issue_id == issue_id, batches.c.status.in_(wanted))
            .order_by(batches.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        count = conn.execute(update(batches).where(batches.c.id == row.id, batches.c.status.in_(wanted)).values(**taking)).rowcount
        if count == 1:
            return BatchRow(row.id, row.issue_id, row.segment_id, BatchStatus.IN_FLIGHT, row.recipients, row.attempts + 1)


# The statements of the send loop are built once: building one (the mailable clause
# above all) cost more than running it, a thousand times per issue.


@functools.cache
def _claim_next(wanted: tuple[str, ...]) -> Update:
    """SQLite's claim: the issue's next batch in one of the `wanted` states, taken."""
    next_batch = (
        select(batches.c.id)
        .where(batches.c.issue_id == bindparam("of_issue"), batches.c.status.in_(wanted))
        .order_by(batches.c.id)
        .limit(1)
    )
    return (
        update(batches)
        .where(batches.c.id == next_batch.scalar_subquery())
        .values(status=BatchStatus.IN_FLIGHT.value, attempts=batches.c.attempts + 1,
                updated_at=bindparam("claimed_at", type_=batches.c.updated_at.type))
        .returning(batches.c.id, batches.c.issue_id, batches.c.segment_id, batches.c.recipients, batches.c.attempts)
    )


@functools.cache
def _recipients_of_batch() -> Select[Any]:
    return (
        select(
            deliveries.c.id,
            subscribers.c.id.label("subscriber_id"),
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.token,
            mailable_clause(few=True).label("mailable"),
            deliveries.c.send_at,
        )
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.batch_id == bindparam("batch_id"), deliveries.c.status == DeliveryStatus.PLANNED.value)
        .order_by(deliveries.c.id)
    )


@functools.cache
def _recipients_of_batch_packed() -> Select[Any]:
    """SQLite: the same rows as one JSON array of arrays, in one value."""
    rows = _recipients_of_batch().subquery()
    return select(func.json_group_array(func.json_array(*rows.c)))


@functools.cache
def _accept() -> Update:
    return (
        update(batches)
        .where(batches.c.id == bindparam("accepted_batch"))
        .values(status=BatchStatus.ACCEPTED.value, message_id=bindparam("accepted_id"), status_code=bindparam("answer"),
                error="", updated_at=bindparam("accepted_at", type_=batches.c.updated_at.type))
    )


@contextmanager
def sending_cache(conn: Connection) -> Iterator[None]:
    """SQLite: a page cache of `SENDING_CACHE_KIB` on this connection while it sends
    batches (SQLite's default is 2 MiB), back to the default after (left as it is when
    the send raised: a pooled connection with a larger cache does no harm).

    Reading a batch looks up a thousand subscribers spread over a stretch of the table
    (see `plan_batches`), which a 2 MiB cache cannot hold: each lookup then copies its page
    from the operating system again. The cache is bounded, whatever the list's size, and
    it is not set for planning: SQLite's sorter takes as much memory as the cache may, and
    planning a million subscribers then held 85 MB more at its peak, for no gain."""
    if conn.dialect.name != "sqlite":
        yield
        return
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SENDING_CACHE_KIB}")
    conn.commit()
    yield
    conn.exec_driver_sql("PRAGMA cache_size = -2000")
    conn.commit()


#: The page cache of a sending connection on SQLite, in KiB: more than one round of
#: batches reads (a sixteenth of the subscribers table at a million, about 12 MB).
SENDING_CACHE_KIB = 16 * 1024


def batch_recipients(conn: Connection, batch_id: int) -> Sequence[Sequence[Any]]:
    """The batch's planned recipients as (delivery id, subscriber id, email, name, token,
    mailable, send_at): `send_at` is when their copy is due (None: at once; on SQLite the
    stored text, which `as_utc` reads), `mailable` is false for those who may not be mailed any more (unsubscribed
    or suppressed since planning). Rows as the database gives them: the caller makes a
    thousand recipients of them in one pass.

    On SQLite the rows come as one JSON value, which SQLite builds in the one step that
    reads them. Row by row, the driver lets go of Python's interpreter lock around every
    row and must take it back after each: with another thread of the process busy (the
    requests being built), each row waited its turn, up to 5 ms, and a batch's read took
    10 ms instead of 6 (seconds, had that thread never waited for the network).
    PostgreSQL's driver takes the whole result in one call anyway."""
    if conn.dialect.name == "sqlite":
        packed = conn.execute(_recipients_of_batch_packed(), {"batch_id": batch_id}).scalar_one()
        rows: list[list[Any]] = json.loads(packed)
        return rows
    return conn.execute(_recipients_of_batch(), {"batch_id": batch_id}).all()


def as_utc(value: datetime | str) -> datetime:
    """A `send_at` as `batch_recipients` gives it (SQLite's packed rows hold the stored
    text, naive UTC) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def skip_deliveries(conn: Connection, batch_id: int, delivery_ids: list[int]) -> None:
    """These recipients of the batch are left out (no longer mailable), and counted so."""
    if delivery_ids:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(delivery_ids)).values(status=DeliveryStatus.SKIPPED.value))
        conn.execute(update(batches).where(batches.c.id == batch_id).values(skipped=batches.c.skipped + len(delivery_ids)))


def refuse_deliveries(conn: Connection, batch_id: int, refused: Sequence[tuple[int, str]]) -> None:
    """These recipients of the batch were refused for good by the provider (subscriber ids
    with its answer): their deliveries say "refused", they are counted with the batch's
    left-out recipients (never as sent), and the first answer is kept in its `error`."""
    if not refused:
        return
    ids = [subscriber_id for subscriber_id, _ in refused]
    conn.execute(
        update(deliveries).where(deliveries.c.batch_id == batch_id, deliveries.c.subscriber_id.in_(ids)).values(status="refused")
    )
    error = f"{len(ids)} recipient(s) refused: {refused[0][1]}"[:1000]
    conn.execute(update(batches).where(batches.c.id == batch_id).values(skipped=batches.c.skipped + len(ids), error=error))


def mark_accepted(conn: Connection, batch_id: int, *, message_id: str, status_code: int, now: datetime) -> None:
    """The provider took the batch: its recipients not skipped have the issue."""
    conn.execute(_accept(), {"accepted_batch": batch_id, "accepted_id": message_id, "answer": status_code, "accepted_at": now})


def recipients_sent_by_segment(conn: Connection, issue_id: int) -> dict[int, int]:
    """How many recipients each segment of the issue has been sent to."""
    return {
        segment: int(count)
        for segment, count in conn.execute(
            select(batches.c.segment_id, func.sum(batches.c.recipients - batches.c.skipped - batches.c.recalled))
            .where(batches.c.issue_id == issue_id, batches.c.status == BatchStatus.ACCEPTED.value)
            .group_by(batches.c.segment_id)
        )
    }


def mark_failed(conn: Connection, batch_id: int, *, status_code: int, error: str, now: datetime) -> None:
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(status=BatchStatus.FAILED.value, status_code=status_code, error=error[:4000], updated_at=now)
    )


def release_batch(conn: Connection, batch_id: int, *, now: datetime) -> None:
    """Put an in-flight batch back to planned (it was not sent: interrupted before the request)."""
    conn.execute(
        update(batches).where(batches.c.id == batch_id).values(status=BatchStatus.PLANNED.value, updated_at=now)
    )


def ledger_summary(conn: Connection, issue_id: int) -> dict[str, int]:
    """Counts of batches by state and of recipients sent, skipped and planned: one query
    over the issue's batches (a thousand rows at a million recipients)."""
    summary = {s.value: 0 for s in BatchStatus}
    sent = skipped = recalled = everyone = 0
    for status, count, recipients, left_out, stopped in conn.execute(
        select(batches.c.status, func.count(), func.sum(batches.c.recipients), func.sum(batches.c.skipped),
               func.sum(batches.c.recalled))
        .where(batches.c.issue_id == issue_id)
        .group_by(batches.c.status)
    ):
        summary[status] = count
        everyone += recipients
        skipped += left_out
        recalled += stopped
        if status == BatchStatus.ACCEPTED.value:
            sent += recipients - left_out - stopped
    summary["recipients_sent"] = sent
    summary["recipients_skipped"] = skipped
    summary["recipients_recalled"] = recalled
    summary["recipients_planned"] = everyone - sent - skipped - recalled
    return summary


@dataclass(frozen=True)
class BatchDetail:
    """A batch as `newsletter send --status` shows it."""

    id: int
    segment_id: int
    status: BatchStatus
    recipients: int
    attempts: int
    status_code: int
    message_id: str
    error: str
    updated_at: datetime


def batch_details(conn: Connection, issue_id: int, *statuses: BatchStatus) -> list[BatchDetail]:
    """The issue's batches in these states, by id, with their last answer."""
    query = select(batches).where(batches.c.issue_id == issue_id).order_by(batches.c.id)
    if statuses:
        query = query.where(batches.c.status.in_([s.value for s in statuses]))
    return [
        BatchDetail(r.id, r.segment_id, BatchStatus(r.status), r.recipients, r.attempts, r.status_code, r.message_id, r.error, r.updated_at)
        for r in conn.execute(query)
    ]


def confirm_processed(conn: Connection, issue_id: int, *, now: datetime) -> list[int]:
    """Mark accepted the issue's in-flight batches for which the provider has reported a
    `processed` event (stored by `events.py`, matched by the batch id the message
    carried): the provider took them, so they are never unknown and never sent again.
    Returns their ids."""
    # Imported here: `delivery_events` is the webhook's table, read only by this query.
    from ..tables import delivery_events

    confirmed = list(
        conn.execute(
            select(batches.c.id)
            .where(
                batches.c.issue_id == issue_id,
                batches.c.status == BatchStatus.IN_FLIGHT.value,
                exists().where(delivery_events.c.batch_id == batches.c.id, delivery_events.c.kind == "processed"),
            )
            .order_by(batches.c.id)
        ).scalars()
    )
    for batch_id in confirmed:
        mark_accepted(conn, batch_id, message_id="", status_code=202, now=now)
    return confirmed


def deliveries_by_hour(conn: Connection, issue_id: int) -> list[tuple[datetime, str, int]]:
    """The issue's scheduled deliveries as (time, state, count): state "sent" (accepted
    batch), "recalled" or "planned" (not yet sent), by time. One row per zone's time, so a
    handful; none when the issue was delivered at once."""
    sent = and_(batches.c.status == BatchStatus.ACCEPTED.value, deliveries.c.status == "planned")
    state = case((deliveries.c.status == DeliveryStatus.RECALLED.value, DeliveryStatus.RECALLED.value), (sent, "sent"), else_=deliveries.c.status)
    rows = conn.execute(
        select(deliveries.c.send_at, state.label("state"), func.count())
        .join(batches, batches.c.id == deliveries.c.batch_id)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.send_at.is_not(None))
        .group_by(deliveries.c.send_at, state)
        .order_by(deliveries.c.send_at)
    ).all()
    return [(as_utc(at), str(label), int(count)) for at, label, count in rows]
