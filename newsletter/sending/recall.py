"""Recall: stop (or hold) the copies of an issue's send that are not yet due, and mark
them in the ledger so that a corrected issue reaches exactly those readers.

Owns: `RecallPlan`, `RecallReport`, `RecallOutlook`, `plan_recall`, `recall_issue`,
`resume_issue`, `recall_outlook`, `pending_recall`, `settle_recall`, `recalled_at`, and
the `recalls` table. Asks `ledger`
for the deliveries and batches, `store` for the issue and its segments. Imports `store`,
`tables`, `models`, `errors`, `transports` (the registry and `Recalling`) and `ledger`;
nothing above.

A recall runs in three steps, each committed: a row of `recalls` says "asked" (with the
cutoff: copies due after it are the ones stopped); the transport is asked (SendGrid:
cancel or pause the send's `batch_id`); then one transaction marks the deliveries due
after the cutoff "recalled", counts them in their batches, retires the issue's rendered
segments, clears the provider's batch id and puts the issue back to approved (a cancel),
and says "done". A crash after the provider's answer leaves an "asked" row: the next
`recall` or `send` asks the transport again (it says whether it held the send already)
and finishes. A refusal deletes the row: nothing in the ledger changed.

Copies due within the transport's `recall_margin` (SendGrid: 10 minutes) of the recall
cannot be stopped: they count as delivered, and the corrected issue does not reach them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from .. import store
from ..errors import RecallError, RecallRefusedError
from ..models import Issue
from ..tables import recalls
from ..transports import RecallTarget, Transport, capabilities, recalling
from . import ledger

log = logging.getLogger(__name__)

CANCEL, PAUSE, RESUME = "cancel", "pause", "resume"
ASKED, DONE, UNDONE = "asked", "done", "undone"


@dataclass(frozen=True)
class RecallPlan:
    """What a recall would do, worked out before the provider is asked."""

    issue: Issue
    action: str
    transport: str
    provider_batch_id: str
    cutoff: datetime
    #: Deliveries due after the cutoff: the recall stops them.
    stoppable: int
    #: Deliveries already due or delivered, or due within the margin: they cannot be stopped.
    due: int
    margin: timedelta
    #: The id of an interrupted earlier request (state "asked") this one finishes.
    pending: int | None = None


@dataclass(frozen=True)
class RecallReport:
    issue: str
    action: str
    recalled: int
    due: int
    #: This finished a recall interrupted earlier (a crash after the provider's answer).
    settled_earlier: bool = False


def _row(conn: Connection, issue_id: int, *states: str) -> Any:
    return conn.execute(
        select(recalls).where(recalls.c.issue_id == issue_id, recalls.c.state.in_(states)).order_by(recalls.c.id.desc()).limit(1)
    ).first()


@dataclass(frozen=True)
class RecallOutlook:
    """The latest issue sent, while some of its copies are not yet due: what the desk's
    "Last sent issue" bar shows and which of Recall, Pause and Resume it offers."""

    issue: Issue
    #: The transports its batches went through, joined by ", ".
    transport: str
    #: Deliveries due after now (not yet delivered), and those due by now.
    waiting: int
    due: int
    last: datetime | None
    paused: bool
    can_pause: bool
    #: Why it cannot be recalled ("" when it can): the transport cannot recall.
    cannot: str


def recall_outlook(engine: Engine, now: datetime) -> RecallOutlook | None:
    """The latest issue sent (or being sent) while copies of it are not yet due; None
    when there is none. Nothing is asked of the provider: `plan_recall` decides."""
    with engine.connect() as conn:
        issue = store.latest_sent_issue(conn)
        if issue is None:
            return None
        waiting, due, last = ledger.recall_counts(conn, issue.id, now)
        if not waiting:
            return None
        names = ledger.transports_of(conn, issue.id)
        row = _row(conn, issue.id, DONE, UNDONE)
    unable = [n for n in names if not capabilities(n).recall]
    cannot = f"sent through {', '.join(unable)}, which cannot recall a message once it is sent" if unable else ""
    return RecallOutlook(issue, ", ".join(names), waiting, due, last,
                         paused=row is not None and row.action == PAUSE and row.state == DONE,
                         can_pause=bool(names) and all(capabilities(n).pause for n in names), cannot=cannot)


def pending_recall(conn: Connection, issue_id: int) -> Any:
    """The issue's interrupted recall (state "asked"), or None."""
    return _row(conn, issue_id, ASKED)


def recalled_at(conn: Connection, issue_id: int) -> datetime | None:
    """When the issue's send was last cancelled (None: never): its deliveries recalled
    then are planned again, and a web version older than that is replaced."""
    value: datetime | None = conn.execute(
        select(func.max(recalls.c.finished_at)).where(recalls.c.issue_id == issue_id, recalls.c.action == CANCEL,
                                                      recalls.c.state == DONE)
    ).scalar()
    return value


def _sent_by(conn: Connection, issue: Issue, transport: Transport) -> str:
    """The transport that sent the issue, once checked that it can recall and is the one
    configured; `RecallError` naming the issue and the reason otherwise."""
    names = ledger.transports_of(conn, issue.id)
    if not names:
        raise RecallError(f"issue {issue.slug} was never sent: nothing to recall")
    for name in names:
        if not capabilities(name).recall:
            raise RecallError(f"issue {issue.slug} was sent through {name}, which cannot recall a message once it is sent")
    if names != [transport.name]:
        raise RecallError(f"issue {issue.slug} was sent through {', '.join(names)} but delivery.transport is {transport.name}: "
                          "recall it through the transport that sent it")
    return transport.name


def plan_recall(engine: Engine, issue: Issue, *, transport: Transport, action: str, now: datetime) -> RecallPlan:
    """What recalling (`cancel`) or pausing (`pause`) the issue's send at `now` would do;
    `RecallError` naming the issue and the reason when it cannot be done. Nothing is
    written and the provider is not asked."""
    if action not in (CANCEL, PAUSE):
        raise RecallError(f"issue {issue.slug}: {action!r} is not a recall; use cancel or pause")
    with engine.connect() as conn:
        name = _sent_by(conn, issue, transport)
        can = capabilities(name)
        if action == PAUSE and not can.pause:
            raise RecallError(f"issue {issue.slug}: the {name} transport cannot pause a send; recall it instead")
        waiting = ledger.batches_not_accepted(conn, issue.id)
        if waiting:
            raise RecallError(f"issue {issue.slug} has {waiting} batch(es) not yet accepted (planned, in flight or failed): "
                              "finish its send first (`newsletter send`), then recall it")
        pending = pending_recall(conn, issue.id)
        if pending is not None:
            stoppable, due, _ = ledger.recall_counts(conn, issue.id, pending.cutoff)
            return RecallPlan(issue, pending.action, name, pending.provider_batch_id, pending.cutoff, stoppable, due,
                              can.recall_margin, pending.id)
        paused = _row(conn, issue.id, DONE, UNDONE)
        if action == PAUSE and paused is not None and paused.action == PAUSE and paused.state == DONE:
            raise RecallError(f"issue {issue.slug} is paused already: `newsletter resume {issue.slug}` or "
                              f"`newsletter recall {issue.slug}` to cancel it")
        stopped = ledger.recalled_count(conn, issue.id)
        if stopped:
            raise RecallError(f"issue {issue.slug} was recalled already ({stopped} deliveries): reopen the draft, correct it, "
                              "approve it and send it to reach those readers")
        batch_id = store.provider_batch_id(conn, issue.id) or ""
        if not batch_id:
            raise RecallError(f"issue {issue.slug} was sent without a {name} batch id, so it cannot be recalled")
        cutoff = now + can.recall_margin
        stoppable, due, last = ledger.recall_counts(conn, issue.id, cutoff)
    if not stoppable:
        when = f" (the last at {last:%Y-%m-%d %H:%M} UTC)" if last else ""
        raise RecallError(f"issue {issue.slug}: all {due} deliveries are already due or delivered{when}; nothing left to "
                          + ("recall" if action == CANCEL else "pause"))
    return RecallPlan(issue, action, name, batch_id, cutoff, stoppable, due, can.recall_margin)


def recall_issue(engine: Engine, plan: RecallPlan, *, transport: Transport, now: datetime) -> RecallReport:
    """Carry out `plan` (from `plan_recall`): write the intent, ask the transport, mark the
    ledger. `RecallRefusedError` (naming the issue and the provider's reason) leaves the
    ledger as it was."""
    issue = plan.issue
    if plan.pending is not None:
        row_id = plan.pending
    else:
        with engine.begin() as conn:
            row_id = conn.execute(insert(recalls).values(
                issue_id=issue.id, provider_batch_id=plan.provider_batch_id, transport=plan.transport, action=plan.action,
                state=ASKED, cutoff=plan.cutoff, asked_at=now,
            ).returning(recalls.c.id)).scalar_one()
    target = RecallTarget(issue.slug, plan.provider_batch_id, plan.cutoff)
    try:
        held_before = recalling(transport).recall(target, plan.action)
    except RecallRefusedError as exc:
        with engine.begin() as conn:
            conn.execute(delete(recalls).where(recalls.c.id == row_id))
        verb = "recalled" if plan.action == CANCEL else "paused"
        raise RecallRefusedError(f"issue {issue.slug} was not {verb}: {exc}") from None
    # Asked again after a crash, and the provider did not have it yet: it stops only what
    # is due after the margin from now.
    cutoff = plan.cutoff if held_before or plan.pending is None else max(plan.cutoff, now + plan.margin)
    with engine.begin() as conn:
        recalled, due = _finish(conn, issue, row_id, plan.action, cutoff, now=now)
    log.info("issue %s: %s, %d deliveries stopped, %d already due", issue.slug, plan.action, recalled, due)
    return RecallReport(issue.slug, plan.action, recalled, due, settled_earlier=plan.pending is not None)


def _finish(conn: Connection, issue: Issue, row_id: int, action: str, cutoff: datetime, *, now: datetime) -> tuple[int, int]:
    """The ledger's side of a recall the provider took, in the caller's transaction."""
    stoppable, due, _ = ledger.recall_counts(conn, issue.id, cutoff)
    if action == CANCEL:
        ledger.mark_recalled(conn, issue.id, cutoff)
        # The corrected issue is rendered anew (`store.retire_segments`) and sent with a
        # new batch id, once approved again.
        store.retire_segments(conn, issue.id, f"recalled-{row_id}")
        store.reopen_recalled(conn, issue.id)
        # A pause the cancel replaced is over.
        conn.execute(update(recalls).where(recalls.c.issue_id == issue.id, recalls.c.action == PAUSE, recalls.c.state == DONE)
                     .values(state=UNDONE))
    conn.execute(update(recalls).where(recalls.c.id == row_id).values(
        state=DONE, cutoff=cutoff, recalled=stoppable, due=due, finished_at=now))
    return stoppable, due


def settle_recall(engine: Engine, issue: Issue, *, transport: Transport, now: datetime) -> RecallReport | None:
    """Finish the issue's interrupted recall, if it has one (`send` calls this first)."""
    with engine.connect() as conn:
        if pending_recall(conn, issue.id) is None:
            return None
    return recall_issue(engine, plan_recall(engine, issue, transport=transport, action=CANCEL, now=now), transport=transport,
                        now=now)


def resume_issue(engine: Engine, issue: Issue, *, transport: Transport, now: datetime) -> RecallReport:
    """Undo the issue's pause: the held copies are delivered (at once when already due)."""
    with engine.connect() as conn:
        name = _sent_by(conn, issue, transport)
        paused = _row(conn, issue.id, DONE, UNDONE)
        if paused is None or paused.action != PAUSE or paused.state != DONE:
            raise RecallError(f"issue {issue.slug} is not paused: nothing to resume")
    recalling(transport).resume(RecallTarget(issue.slug, paused.provider_batch_id, paused.cutoff))
    with engine.begin() as conn:
        conn.execute(update(recalls).where(recalls.c.id == paused.id).values(state=UNDONE))
        conn.execute(insert(recalls).values(
            issue_id=issue.id, provider_batch_id=paused.provider_batch_id, transport=name, action=RESUME, state=DONE,
            cutoff=paused.cutoff, recalled=0, due=0, asked_at=now, finished_at=now,
        ))
    return RecallReport(issue.slug, RESUME, paused.recalled, paused.due)
