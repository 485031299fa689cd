"""The send ledger's queries: plan the batches of an issue, claim them, record outcomes.

Owns: reading and writing `batches` and `deliveries`. Imports `models`, `tables`, and
what `subscribers` exports. Callers own the transaction; every state change is meant to
be committed on its own, so a crash leaves each batch in a state that says what to do.

Batch states: planned → in_flight → accepted | failed. A delivery row is a recipient of
a batch: planned, then sent (its batch accepted) or skipped (no longer mailable when its
batch went out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, select, update

from subscribers import mailable_clause, subscribers

from .models import BatchStatus
from .tables import batches, deliveries

PAGE = 10_000


@dataclass(frozen=True)
class PlanCounts:
    batches: int
    recipients: int
    unsegmented: int


@dataclass(frozen=True)
class BatchRow:
    id: int
    issue_id: int
    segment_id: int
    status: BatchStatus
    recipients: int
    attempts: int


@dataclass(frozen=True)
class RecipientRow:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    token: str


def _not_planned(issue_id: int) -> Any:
    return ~exists().where(and_(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id))


def unplanned_section_keys(conn: Connection, issue_id: int) -> list[str]:
    """The distinct section choices of mailable subscribers not yet planned for the issue."""
    query = (
        select(subscribers.c.sections)
        .where(mailable_clause(), _not_planned(issue_id))
        .distinct()
        .order_by(subscribers.c.sections)
    )
    return list(conn.execute(query).scalars())


def plan_batches(
    conn: Connection,
    issue_id: int,
    *,
    segment_for: Callable[[str], int | None],
    batch_size: int,
    transport: str,
    now: datetime,
) -> PlanCounts:
    """Put every mailable subscriber not yet planned for the issue into a batch of their
    segment. `segment_for` maps a subscriber's section choice to a segment id, or None
    when nothing they chose is in this issue (they get no email this time).

    Subscribers are read in pages by id, and each segment fills its own batches, so
    memory holds at most one open batch per segment.
    """
    open_batches: dict[int, list[int]] = {}
    made_batches = recipients = unsegmented = 0

    def flush(segment_id: int) -> None:
        nonlocal made_batches, recipients
        members = open_batches.pop(segment_id)
        batch_id = conn.execute(
            insert(batches).values(
                issue_id=issue_id,
                segment_id=segment_id,
                status=BatchStatus.PLANNED.value,
                transport=transport,
                recipients=len(members),
                attempts=0,
                message_id="",
                status_code=0,
                error="",
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(
            insert(deliveries),
            [
                {"issue_id": issue_id, "subscriber_id": sid, "segment_id": segment_id, "batch_id": batch_id, "status": "planned"}
                for sid in members
            ],
        )
        made_batches += 1
        recipients += len(members)

    last_id = 0
    while True:
        page = conn.execute(
            select(subscribers.c.id, subscribers.c.sections)
            .where(mailable_clause(), _not_planned(issue_id), subscribers.c.id > last_id)
            .order_by(subscribers.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            break
        last_id = page[-1].id
        for subscriber_id, key in page:
            segment_id = segment_for(key)
            if segment_id is None:
                unsegmented += 1
                continue
            members = open_batches.setdefault(segment_id, [])
            members.append(subscriber_id)
            if len(members) >= batch_size:
                flush(segment_id)
    for segment_id in list(open_batches):
        flush(segment_id)
    return PlanCounts(made_batches, recipients, unsegmented)


def _batch(row: Any) -> BatchRow:
    return BatchRow(row.id, row.issue_id, row.segment_id, BatchStatus(row.status), row.recipients, row.attempts)


def batches_in(conn: Connection, issue_id: int, *statuses: BatchStatus) -> list[BatchRow]:
    """The issue's batches in these states (all states when none are given), by id."""
    query = select(batches).where(batches.c.issue_id == issue_id).order_by(batches.c.id)
    if statuses:
        query = query.where(batches.c.status.in_([s.value for s in statuses]))
    return [_batch(row) for row in conn.execute(query)]


def claim_batch(conn: Connection, issue_id: int, statuses: tuple[BatchStatus, ...], *, now: datetime) -> BatchRow | None:
    """Take the next batch in one of `statuses` and mark it in flight.

    On PostgreSQL the row is locked with SKIP LOCKED, so several workers never take the
    same batch; SQLite serialises writers, so one process sends there.
    """
    query = (
        select(batches)
        .where(batches.c.issue_id == issue_id, batches.c.status.in_([s.value for s in statuses]))
        .order_by(batches.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    if row is None:
        return None
    conn.execute(
        update(batches)
        .where(batches.c.id == row.id)
        .values(status=BatchStatus.IN_FLIGHT.value, attempts=batches.c.attempts + 1, updated_at=now)
    )
    return BatchRow(row.id, row.issue_id, row.segment_id, BatchStatus.IN_FLIGHT, row.recipients, row.attempts + 1)


def batch_recipients(conn: Connection, batch_id: int) -> tuple[list[RecipientRow], list[int]]:
    """The batch's planned recipients who may still be mailed, and the delivery ids of
    those who may not any more (unsubscribed or suppressed since planning)."""
    rows = conn.execute(
        select(
            deliveries.c.id,
            subscribers.c.id.label("subscriber_id"),
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.token,
            mailable_clause().label("mailable"),
        )
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.batch_id == batch_id, deliveries.c.status == "planned")
        .order_by(deliveries.c.id)
    ).all()
    keep = [RecipientRow(r.id, r.subscriber_id, r.email, r.name, r.token) for r in rows if r.mailable]
    drop = [r.id for r in rows if not r.mailable]
    return keep, drop


def skip_deliveries(conn: Connection, delivery_ids: list[int]) -> None:
    if delivery_ids:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(delivery_ids)).values(status="skipped"))


def mark_accepted(conn: Connection, batch_id: int, *, message_id: str, status_code: int, now: datetime) -> None:
    """The provider took the batch: its recipients have the issue."""
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(status=BatchStatus.ACCEPTED.value, message_id=message_id, status_code=status_code, error="", updated_at=now)
    )
    conn.execute(
        update(deliveries)
        .where(deliveries.c.batch_id == batch_id, deliveries.c.status == "planned")
        .values(status="sent", sent_at=now)
    )


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
    """Counts of batches by state and of recipients sent, skipped and planned."""
    summary = {s.value: 0 for s in BatchStatus}
    for status, count in conn.execute(
        select(batches.c.status, func.count()).where(batches.c.issue_id == issue_id).group_by(batches.c.status)
    ):
        summary[status] = count
    for status, count in conn.execute(
        select(deliveries.c.status, func.count()).where(deliveries.c.issue_id == issue_id).group_by(deliveries.c.status)
    ):
        summary[f"recipients_{status}"] = count
    return summary
