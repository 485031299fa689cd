"""Sending an issue: plan its batches, then claim, send, retry and record each one.

Owns: `send_issue`, `SendOptions`, `SendReport`, `SendProgress`, `substitutions_for`.
Imports `ledger`, `store`, `models`, `errors`, `transports` and what `subscribers` exports.

Exactly once: all batches are planned and committed before the first one is sent. A batch
is marked in flight (committed) before its request and accepted (committed, with its
recipients marked sent) after, so a run that is killed leaves every batch planned (to
send), accepted (never sent again) or in flight (outcome unknown). With an idempotent
transport such as the outbox an in-flight batch is sent again; otherwise it is reported as
unknown and resent only when asked (`resend_unknown`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine

from subscribers import parse_sections_key

from . import ledger, store
from .errors import TransportAuthError
from .models import Batch, BatchStatus, Issue, IssueStatus, OutcomeKind, Recipient, RenderedMessage
from .render import TAGS
from .transports import Transport

log = logging.getLogger(__name__)


class SendProgress(Protocol):
    def start(self, total_batches: int, total_recipients: int) -> None: ...

    def advance(self, batches: int, recipients: int) -> None: ...


@dataclass(frozen=True)
class SendOptions:
    base_url: str
    unsubscribe_mailto: str
    sender_name: str
    sender_address: str
    reply_to: str = ""
    batch_size: int = 1000
    max_attempts: int = 5
    retry_failed: bool = False
    resend_unknown: bool = False
    sandbox: bool = False
    categories: tuple[str, ...] = ()


@dataclass
class SendReport:
    """What a run of `send_issue` did; `segments` maps a section key to its HTML bytes."""

    issue: str
    segments: dict[str, int] = field(default_factory=dict)
    planned_recipients: int = 0
    unsegmented: int = 0
    batches_sent: int = 0
    recipients_sent: int = 0
    recipients_skipped: int = 0
    failed_batches: list[tuple[int, str]] = field(default_factory=list)
    unknown_batches: list[int] = field(default_factory=list)
    complete: bool = False
    elapsed: float = 0.0


def substitutions_for(token: str, name: str, *, base_url: str) -> dict[str, str]:
    """The values of a recipient's substitution tags. Names lose `%` so that no value
    can itself look like a tag."""
    first = name.replace("%", "").split()[0] if name.strip() else ""
    return {
        TAGS["greeting"]: f"Hello {first}," if first else "Hello,",
        TAGS["first_name"]: first,
        TAGS["preferences_url"]: f"{base_url}/preferences/{token}",
        TAGS["unsubscribe_url"]: f"{base_url}/unsubscribe/{token}",
    }


def _plan(
    engine: Engine,
    issue: Issue,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available: set[str],
    options: SendOptions,
    transport: str,
    report: SendReport,
    now: datetime,
) -> None:
    """Render each new segment once and plan batches for everyone not yet planned."""
    by_raw_key: dict[str, int | None] = {}
    with engine.begin() as conn:
        for raw in ledger.unplanned_section_keys(conn, issue.id):
            chosen = tuple(s for s in parse_sections_key(raw) if s in available)
            if not chosen:
                by_raw_key[raw] = None
                continue
            key = ",".join(chosen)
            segment = store.get_segment(conn, issue.id, key)
            if segment is None:
                segment = store.save_segment(conn, issue.id, key, render(chosen))
            by_raw_key[raw] = segment.id
            report.segments[key] = segment.message.html_bytes

        def segment_for(raw: str) -> int | None:
            # A subscriber who joined between the two queries above has a new key; they
            # wait for the next run rather than holding this transaction for a render.
            return by_raw_key.get(raw)

        counts = ledger.plan_batches(
            conn, issue.id, segment_for=segment_for, batch_size=options.batch_size, transport=transport, now=now
        )
        if issue.status is IssueStatus.DRAFT:
            store.set_issue_status(conn, issue.id, IssueStatus.SENDING)
    report.planned_recipients = counts.recipients
    report.unsegmented = counts.unsegmented
    log.info("issue %s planned: %d batches, %d recipients", issue.slug, counts.batches, counts.recipients)


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return max(0.0, retry_after)
    return min(60.0, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)


def send_issue(
    engine: Engine,
    issue: Issue,
    *,
    transport: Transport,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available_sections: set[str],
    options: SendOptions,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    progress: SendProgress | None = None,
) -> SendReport:
    """Plan and send `issue` to every mailable subscriber who does not have it yet.

    Failed batches are recorded, not raised; `TransportAuthError` stops the run at once
    (the batch it hit goes back to planned, since the provider refused it).
    """
    started = time.perf_counter()
    report = SendReport(issue=issue.slug)
    _plan(engine, issue, render, available_sections, options, transport.name, report, clock())

    claimable = [BatchStatus.PLANNED]
    with engine.begin() as conn:
        in_flight = ledger.batches_in(conn, issue.id, BatchStatus.IN_FLIGHT)
        if transport.idempotent or options.resend_unknown:
            for batch in in_flight:
                ledger.release_batch(conn, batch.id, now=clock())
        else:
            report.unknown_batches = [b.id for b in in_flight]
        if options.retry_failed:
            claimable.append(BatchStatus.FAILED)
        todo = ledger.batches_in(conn, issue.id, *claimable)
        segments = store.segments_by_id(conn, {b.segment_id for b in todo})
    if progress:
        progress.start(len(todo), sum(b.recipients for b in todo))

    while True:
        with engine.begin() as conn:
            row = ledger.claim_batch(conn, issue.id, tuple(claimable), now=clock())
            if row is None:
                break
            keep, drop = ledger.batch_recipients(conn, row.id)
            ledger.skip_deliveries(conn, drop)
            if row.segment_id not in segments:
                segments.update(store.segments_by_id(conn, [row.segment_id]))
        report.recipients_skipped += len(drop)
        batch = Batch(
            id=row.id,
            issue_id=issue.id,
            issue_slug=issue.slug,
            segment_id=row.segment_id,
            message=segments[row.segment_id].message,
            recipients=tuple(
                Recipient(
                    subscriber_id=r.subscriber_id,
                    email=r.email,
                    substitutions=substitutions_for(r.token, r.name, base_url=options.base_url),
                    unsubscribe_url=f"{options.base_url}/unsubscribe/{r.token}",
                    unsubscribe_mailto=f"mailto:{options.unsubscribe_mailto}?subject=unsubscribe-{r.token}",
                )
                for r in keep
            ),
            sender_name=options.sender_name,
            sender_address=options.sender_address,
            reply_to=options.reply_to,
            categories=options.categories,
            sandbox=options.sandbox,
        )
        _deliver(engine, batch, transport, options, report, clock, sleep)
        if progress:
            progress.advance(1, row.recipients)

    with engine.begin() as conn:
        summary = ledger.ledger_summary(conn, issue.id)
        done = summary[BatchStatus.ACCEPTED.value] == sum(summary[s.value] for s in BatchStatus)
        if done and summary[BatchStatus.ACCEPTED.value] > 0:
            store.set_issue_status(conn, issue.id, IssueStatus.SENT, now=issue.sent_at or clock())
        report.complete = done
    report.elapsed = time.perf_counter() - started
    return report


def _deliver(
    engine: Engine,
    batch: Batch,
    transport: Transport,
    options: SendOptions,
    report: SendReport,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> None:
    """Send one claimed batch, retrying what may be retried, and record the outcome."""
    if not batch.recipients:
        with engine.begin() as conn:
            ledger.mark_accepted(conn, batch.id, message_id="", status_code=0, now=clock())
        return
    attempt = 0
    while True:
        attempt += 1
        try:
            outcome = transport.send(batch)
        except TransportAuthError:
            with engine.begin() as conn:
                ledger.release_batch(conn, batch.id, now=clock())
            raise
        if outcome.kind is OutcomeKind.RETRYABLE and attempt < options.max_attempts:
            delay = _backoff(attempt, outcome.retry_after)
            log.warning("batch %d: %s; retrying in %.1fs", batch.id, outcome.error or outcome.status_code, delay)
            sleep(delay)
            continue
        break
    with engine.begin() as conn:
        if outcome.kind is OutcomeKind.ACCEPTED:
            ledger.mark_accepted(conn, batch.id, message_id=outcome.message_id, status_code=outcome.status_code, now=clock())
            report.batches_sent += 1
            report.recipients_sent += len(batch.recipients)
        else:
            ledger.mark_failed(conn, batch.id, status_code=outcome.status_code, error=outcome.error, now=clock())
            report.failed_batches.append((batch.id, outcome.error or f"status {outcome.status_code}"))
            log.error("batch %d of issue %s failed: %s", batch.id, batch.issue_slug, outcome.error)
