"""Planning a send: lock the issue, count who is not yet planned, and put every mailable
subscriber into a batch of their segment, in bulk.

Owns: `PlanCounts`, `lock_issue`, `unplanned_choices`, `unplanned_section_keys`,
`plan_batches`, and `plan_issue` (render each new segment once and
plan). Writes `batches` and `deliveries` (the ledger, see `ledger`); imports `models`,
`tables`, `store` and what `subscribers` exports: who is mailable is its query
(`mailable_recipients`), which the planning narrows and numbers, never a status it spells. Callers own the transaction, except
`plan_issue`, which is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)

from subscribers import UTCDateTime, mailable_recipients, parse_sections_key, time_zones

from .. import store
from ..models import BatchStatus, DeliveryStatus, Issue, IssueStatus, RenderedMessage, Segment
from ..tables import batches, deliveries, issues, recalls
from .options import SendReport
from .timing import delivery_times

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanCounts:
    batches: int
    recipients: int
    unsegmented: int


def _not_planned(conn: Connection, issue_id: int, subscriber_id: Any) -> Any:
    """A WHERE clause on the recipients (`subscriber_id`, their id column): not yet planned
    for the issue. Before anyone is planned it is no clause at all: asking a million times
    whether someone has a delivery of an issue that has none cost half a second of a first
    send's planning."""
    if conn.execute(select(deliveries.c.id).where(deliveries.c.issue_id == issue_id).limit(1)).first() is None:
        return true()
    return ~exists().where(and_(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id))


def unplanned_section_keys(conn: Connection, issue_id: int) -> list[str]:
    """The distinct section choices of mailable subscribers not yet planned for the issue."""
    recipients = mailable_recipients()
    who = recipients.selected_columns
    query = (
        recipients.with_only_columns(who.sections)
        .where(_not_planned(conn, issue_id, who.id))
        .distinct()
        .order_by(who.sections)
    )
    return list(conn.execute(query).scalars())


def lock_issue(conn: Connection, issue_id: int) -> None:
    """Hold the issue's row until the transaction ends, so that on PostgreSQL two workers
    starting together plan its batches one after the other, never both at once.

    On SQLite the transaction writes first (a no-op update of the row), which takes the
    database's write lock before anything is read. The driver begins a transaction only at
    the first write, so without it the counts read for planning and the rows written would
    not be one snapshot; with it, a write of the web app (an unsubscribe) waits until the
    plan is committed (seconds at a million subscribers, within the busy timeout) and is
    then applied when each batch is claimed."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(issues.c.id).where(issues.c.id == issue_id).with_for_update())
    else:
        conn.execute(update(issues).where(issues.c.id == issue_id).values(id=issues.c.id))


def unplanned_choices(conn: Connection, issue_id: int) -> dict[str, int]:
    """How many mailable subscribers not yet planned for the issue made each section choice."""
    recipients = mailable_recipients()
    who = recipients.selected_columns
    query = (
        recipients.with_only_columns(who.sections, func.count())
        .where(_not_planned(conn, issue_id, who.id))
        .group_by(who.sections)
    )
    return {raw: count for raw, count in conn.execute(query)}


def plan_batches(
    conn: Connection,
    issue_id: int,
    *,
    segment_for: Mapping[str, int | None],
    batch_size: int,
    transport: str,
    now: datetime,
    choices: Mapping[str, int] | None = None,
    send_at: Mapping[str, datetime] | None = None,
) -> PlanCounts:
    """Put every mailable subscriber not yet planned for the issue into a batch of their
    segment. `segment_for` maps a subscriber's section choice (the raw key) to a segment
    id, or None when nothing they chose is in this issue (they get no email this time).
    Choices it does not know (someone who joined since it was made) wait for a later run.
    `choices` is what `unplanned_choices` just said, when the caller has it already.

    The work is done by the database in bulk: one query counts the recipients of each
    segment, the batches are inserted, and one INSERT … SELECT numbers each segment's
    subscribers by id and puts every `batch_size` of them in the next batch. Memory does
    not grow with the list.

    With `send_at` (local-time delivery: each zone name, "" for none, mapped to when its
    readers get the issue) every delivery records its reader's time, joined in the same
    statement; a zone it does not name (a reader who changed zone since) gets the site's
    ("" key).
    """
    counts: dict[int, int] = {}
    unsegmented = 0
    for raw, count in (unplanned_choices(conn, issue_id) if choices is None else choices).items():
        segment_id = segment_for.get(raw)
        if segment_id is None:
            unsegmented += count if raw in segment_for else 0
            continue
        counts[segment_id] = counts.get(segment_id, 0) + count
    if not counts:
        return PlanCounts(0, 0, unsegmented)

    keys = _temporary_table("plan_keys", Column("sections", Text, primary_key=True), Column("segment_id", Integer, nullable=False))
    slots = _temporary_table(
        "plan_slots",
        Column("segment_id", Integer, primary_key=True),
        Column("ordinal", Integer, primary_key=True),
        Column("batch_id", Integer, nullable=False),
    )
    keys.create(conn)
    slots.create(conn)
    conn.execute(insert(keys), [{"sections": raw, "segment_id": sid} for raw, sid in segment_for.items() if sid is not None])
    # Every batch in one statement, its id returned in the order of the rows. Batches are
    # claimed by id, so their ids go first ordinal then segment: the first batch of each
    # segment, then the second of each, … Each ordinal's batches read their subscribers
    # from the same stretch of the table (every segment's readers sorted by id), which
    # then stays in the page cache (`sending_cache`): reading a batch back took 25% less.
    sizes_of = {segment_id: -(-count // batch_size) for segment_id, count in counts.items()}
    places = sorted(((segment_id, ordinal) for segment_id, n in sizes_of.items() for ordinal in range(n)),
                    key=lambda place: (place[1], place[0]))
    planned = dict(
        issue_id=issue_id, status=BatchStatus.PLANNED.value, transport=transport, recipients=0, attempts=0, message_id="",
        status_code=0, error="", updated_at=now,
    )
    batch_ids = conn.execute(
        insert(batches).returning(batches.c.id, sort_by_parameter_order=True),
        [{**planned, "segment_id": segment_id} for segment_id, _ in places],
    ).scalars().all()
    slot_rows = [
        {"segment_id": segment_id, "ordinal": ordinal, "batch_id": batch_id}
        for (segment_id, ordinal), batch_id in zip(places, batch_ids, strict=True)
    ]
    conn.execute(insert(slots), slot_rows)

    recipients = mailable_recipients()
    who = recipients.selected_columns
    zone_columns = [func.coalesce(who.timezone, "").label("zone")] if send_at is not None else []
    numbered = (
        recipients.with_only_columns(
            who.id.label("subscriber_id"),
            keys.c.segment_id,
            ((func.row_number().over(partition_by=keys.c.segment_id, order_by=who.id) - 1) // batch_size).label("ordinal"),
            *zone_columns,
        )
        .join(keys, keys.c.sections == who.sections)
        .where(_not_planned(conn, issue_id, who.id))
        .subquery()
    )
    columns = ["issue_id", "subscriber_id", "segment_id", "batch_id", "status"]
    rows = select(literal(issue_id), numbered.c.subscriber_id, numbered.c.segment_id, slots.c.batch_id, literal(DeliveryStatus.PLANNED.value))
    rows = rows.join(slots, and_(slots.c.segment_id == numbered.c.segment_id, slots.c.ordinal == numbered.c.ordinal))
    zones = None
    if send_at is not None:
        zones = _temporary_table("plan_zones", Column("zone", Text, primary_key=True), Column("send_at", UTCDateTime(), nullable=False))
        zones.create(conn)
        conn.execute(insert(zones), [{"zone": zone, "send_at": at} for zone, at in send_at.items()])
        site = send_at[""]
        columns.append("send_at")
        rows = rows.add_columns(func.coalesce(zones.c.send_at, literal(site, UTCDateTime()))).outerjoin(
            zones, zones.c.zone == numbered.c.zone)
    conn.execute(
        insert(deliveries).from_select(
            columns,
            # In subscriber order: every index of `deliveries` then grows at its end (or
            # at one place per segment), which at a million rows plans in 5 s instead of
            # 9 s in batch order, whose random inserts into the (issue, subscriber) index
            # cost more than reading a batch back from scattered rows saves.
            rows.order_by(numbered.c.subscriber_id),
        )
    )
    if zones is not None:
        zones.drop(conn)
    # Count what was really planned: the list may have changed between the two queries.
    new_ids = [row["batch_id"] for row in slot_rows]
    sizes: dict[int, int] = {
        batch_id: count
        for batch_id, count in conn.execute(
            select(deliveries.c.batch_id, func.count()).where(deliveries.c.batch_id.in_(new_ids)).group_by(deliveries.c.batch_id)
        )
    }
    empty = [b for b in new_ids if not sizes.get(b)]
    if empty:
        conn.execute(delete(batches).where(batches.c.id.in_(empty)))
    for size, ids in _group_by_size(sizes).items():
        conn.execute(update(batches).where(batches.c.id.in_(ids)).values(recipients=size))
    slots.drop(conn)
    keys.drop(conn)
    return PlanCounts(len(new_ids) - len(empty), sum(sizes.values()), unsegmented)


def _temporary_table(name: str, *columns: Column[Any]) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def _group_by_size(sizes: Mapping[int, int]) -> dict[int, list[int]]:
    """Batch ids grouped by their recipient count (nearly all batches are full)."""
    groups: dict[int, list[int]] = {}
    for batch_id, size in sizes.items():
        groups.setdefault(size, []).append(batch_id)
    return groups


def plan_issue(
    conn: Connection,
    issue: Issue,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available: set[str],
    *,
    batch_size: int,
    transport: str,
    report: SendReport,
    now: datetime,
    local_time: str = "",
    site_zone: str = "UTC",
) -> dict[int, Segment]:
    """In one transaction, with the issue locked: render each new segment once and plan
    batches for everyone not yet planned, and mark the issue as sending. Returns the
    issue's segments, by id.

    Readers whose delivery was recalled are planned again (their recalled rows give way
    to new ones), with segments rendered anew: a recall retired the old ones. With
    `local_time` ("HH:MM") each delivery records the next such time in its reader's zone
    after `now` (`timing`); readers clamped to the horizon and unknown zones are reported."""
    by_raw_key: dict[str, int | None] = {}
    with conn.begin():
        lock_issue(conn, issue.id)
        if conn.execute(select(recalls.c.id).where(recalls.c.issue_id == issue.id, recalls.c.action == "cancel").limit(1)).first():
            conn.execute(delete(deliveries).where(deliveries.c.issue_id == issue.id, deliveries.c.status == DeliveryStatus.RECALLED.value))
        choices = unplanned_choices(conn, issue.id)
        stored = store.issue_segments(conn, issue.id)
        key_of: dict[str, str] = {}
        new: dict[str, RenderedMessage] = {}
        for raw in choices:
            chosen = tuple(s for s in parse_sections_key(raw) if s in available)
            if not chosen:
                by_raw_key[raw] = None
                continue
            key = key_of[raw] = ",".join(chosen)
            if key not in stored and key not in new:
                new[key] = render(chosen)
        stored.update(store.save_segments(conn, issue.id, new))
        for raw, key in key_of.items():
            by_raw_key[raw] = stored[key].id
            report.segments[key] = stored[key].message.html_bytes
        # A subscriber who joined since the query above has a choice `by_raw_key` does
        # not know; they wait for the next run rather than holding this transaction for
        # a render.
        send_at = _send_times(conn, report, now=now, local_time=local_time, site_zone=site_zone) if local_time else None
        counts = plan_batches(
            conn, issue.id, segment_for=by_raw_key, batch_size=batch_size, transport=transport, now=now,
            choices=choices, send_at=send_at,
        )
        if issue.status not in (IssueStatus.SENDING, IssueStatus.SENT):
            store.set_issue_status(conn, issue.id, IssueStatus.SENDING)
    report.planned_recipients = counts.recipients
    report.unsegmented = counts.unsegmented
    log.info("issue %s planned: %d batches, %d recipients", issue.slug, counts.batches, counts.recipients)
    return {segment.id: segment for segment in stored.values()}


def _send_times(conn: Connection, report: SendReport, *, now: datetime, local_time: str, site_zone: str) -> dict[str, datetime]:
    """When the readers of each zone get the issue (zone "" is the site's), for every zone a
    subscriber has; clamped times and unknown zones go into the report."""
    zones = ["", *time_zones(conn)]
    times = delivery_times(now, zones, local_time, site_zone=site_zone)
    for zone, when in sorted(times.items()):
        if when.clamped:
            report.clamped_zones.append(zone or site_zone)
            log.warning("zone %s: the next %s is more than 72 hours away; clamped to %s", zone or site_zone, local_time, when.at)
        if when.unknown_zone:
            report.unknown_zones.append(zone)
            log.warning("zone %r is not an IANA time zone; its readers get the issue at %s", zone, when.at)
    return {zone: when.at for zone, when in times.items()}
