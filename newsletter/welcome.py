"""The welcome email: recorded when a subscription is confirmed, sent once through the
configured transport, tried again by the scheduler until it goes.

Owns: `WelcomeStatus`, `MAX_ATTEMPTS`, `STALE_CLAIM`, `queue_welcome`, `send_welcomes`,
`WelcomeReport`, `welcome_counts`, `welcome_message`, `send_test`. Imports `issues` (the
renderer and an issue's content), `drafts` (a test to the editors), `store`, `tables`,
`links`, `models`, `errors`, `config`, `transports` (the protocol) and what
`subscribers` exports.

Once, never again: `queue_welcome` writes the reader's row in the transaction that
confirms them, and `welcomes.subscriber_id` is unique, so a re-confirmation (a reader
who left and came back through the form) finds the row and nothing more is sent. The web
app sends the welcome after its answer (a background task); a failure is recorded in the
row and never raised, so the confirmation stands whatever becomes of the email. The
scheduler's retry job sends every row still pending, or failed fewer than
`MAX_ATTEMPTS` times.

A row is claimed before it is sent (pending or failed → sending, attempts + 1, in one
UPDATE whose row count says who won), so the web app and the retry job never both send
it; a claim older than `STALE_CLAIM` (a process that died mid-send) may be taken again.

What it carries: the latest issue that went out, as the reader's segment of it (their
sections only), rendered by `Renderer.render_welcome` in `email/welcome.*.j2`; before the
first issue, a short note. It goes as a batch of one through the transport's ordinary
path, so it has a digest's per-recipient values and headers (one-click List-Unsubscribe,
List-Id); the outbox files it under `welcome/`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

import subscribers as people

from . import drafts, issues, links, store
from .config import Settings
from .errors import NewsletterError
from .models import Batch, OutcomeKind, RenderedMessage
from .render import IssueContent, Renderer
from .tables import welcomes
from .transports import Transport

log = logging.getLogger(__name__)


class WelcomeStatus(StrEnum):
    PENDING = "pending"  # recorded at confirmation, not tried yet
    SENDING = "sending"  # claimed by a process that is sending it now
    SENT = "sent"  # the transport accepted it
    FAILED = "failed"  # tried and failed; tried again while attempts < MAX_ATTEMPTS
    SKIPPED = "skipped"  # the reader left (or was suppressed) before it went


#: Tries before a welcome is given up (the retry job runs every `schedule.retry_minutes`).
MAX_ATTEMPTS = 5
#: A claim this old belongs to a process that died while sending; the row is due again.
STALE_CLAIM = timedelta(minutes=15)
#: The outbox files welcomes under this name instead of an issue slug.
WELCOME_FOLDER = "welcome"


@dataclass(frozen=True)
class WelcomeReport:
    """What one `send_welcomes` run did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0


def queue_welcome(conn: Connection, subscriber_id: int, *, now: datetime) -> int | None:
    """Record that `subscriber_id`, just confirmed, is to be welcomed, in the caller's
    transaction. Returns the row's id, or None when they have a row already (welcomed
    before, or being welcomed), or when this is not their first confirmation (a reader
    who confirmed before the welcome existed, or while it was switched off): never twice,
    never for a re-confirmation."""
    if conn.execute(select(welcomes.c.id).where(welcomes.c.subscriber_id == subscriber_id)).first() is not None:
        return None
    confirmations = [c for c in people.consent_history(conn, subscriber_id) if c.action is people.ConsentAction.CONFIRMED]
    if len(confirmations) > 1:
        return None
    result = conn.execute(
        insert(welcomes).values(
            subscriber_id=subscriber_id, status=WelcomeStatus.PENDING.value, attempts=0, error="", created_at=now
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _due(now: datetime) -> ColumnElement[bool]:
    """The rows a send may claim: pending, failed with tries left, or a stale claim."""
    return or_(
        welcomes.c.status == WelcomeStatus.PENDING.value,
        and_(welcomes.c.status == WelcomeStatus.FAILED.value, welcomes.c.attempts < MAX_ATTEMPTS),
        and_(welcomes.c.status == WelcomeStatus.SENDING.value, welcomes.c.claimed_at < now - STALE_CLAIM),
    )


def _claim(engine: Engine, welcome_id: int, *, now: datetime) -> int | None:
    """Take the row for this process; its subscriber id, or None when another has it."""
    with engine.begin() as conn:
        claimed = conn.execute(
            update(welcomes)
            .where(welcomes.c.id == welcome_id, _due(now))
            .values(status=WelcomeStatus.SENDING.value, attempts=welcomes.c.attempts + 1, claimed_at=now)
        )
        if claimed.rowcount != 1:
            return None
        return int(conn.execute(select(welcomes.c.subscriber_id).where(welcomes.c.id == welcome_id)).scalar_one())


def _record(engine: Engine, welcome_id: int, status: WelcomeStatus, *, now: datetime, error: str = "",
            issue_id: int | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(welcomes).where(welcomes.c.id == welcome_id).values(
                status=status.value, error=error[:2000], issue_id=issue_id,
                sent_at=now if status is WelcomeStatus.SENT else None,
            )
        )


def latest_content(conn: Connection, settings: Settings) -> IssueContent | None:
    """What a welcome carries: the newest issue that went out, or None before the first."""
    issue = store.latest_sent_issue(conn)
    if issue is None:
        return None
    return issues.issue_content(conn, issue, store.issue_blocks(conn, issue.id, settings.section_names()))


def welcome_message(renderer: Renderer, settings: Settings, content: IssueContent | None,
                    sections: Sequence[str]) -> RenderedMessage:
    """The welcome of a reader of `sections`: `content` as their segment, or the note."""
    names = settings.section_names()
    return renderer.render_welcome(
        content, sections=sections, section_names=[names[s] for s in names if s in sections],
        subject=settings.welcome.subject_for(settings.site.name),
    )


def _batch(settings: Settings, welcome_id: int, message: RenderedMessage, subscriber: people.Subscriber) -> Batch:
    """A batch of one: the welcome, with the per-recipient values and headers of a digest."""
    base, sender = settings.site.base_url, settings.sender
    return Batch(
        id=welcome_id, issue_id=0, issue_slug=WELCOME_FOLDER, segment_id=welcome_id, message=message,
        recipients=(links.recipient(subscriber.id, subscriber.email, subscriber.token, subscriber.name, base_url=base,
                                    mailto=settings.unsubscribe_mailto),),
        sender_name=sender.name, sender_address=sender.address, reply_to=sender.reply_to,
        categories=(settings.site.name[:255], WELCOME_FOLDER),
        list_id=links.list_id(settings.site.name, sender.address),
    )


def send_welcomes(
    engine: Engine,
    settings: Settings,
    *,
    transport: Transport,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ids: Iterable[int] | None = None,
    limit: int = 1000,
) -> WelcomeReport:
    """Send the welcomes that are due (only those of `ids`, when given; at most `limit`),
    each claimed first, and record each outcome in its row: sent, failed (with why; tried
    again later), or skipped for a reader who is no longer active or is suppressed.
    Never raises for one welcome; the whole run reads the latest issue once and renders
    once per set of sections."""
    now = clock()
    query = select(welcomes.c.id).where(_due(now)).order_by(welcomes.c.id).limit(limit)
    if ids is not None:
        query = query.where(welcomes.c.id.in_(list(ids)))
    with engine.connect() as conn:
        due = list(conn.execute(query).scalars())
    if not due:
        return WelcomeReport()
    with engine.connect() as conn:
        content = latest_content(conn, settings)
        issue = store.latest_sent_issue(conn)
    renderer = issues.make_renderer(settings)
    rendered: dict[tuple[str, ...], RenderedMessage] = {}
    sent = failed = skipped = 0
    for welcome_id in due:
        subscriber_id = _claim(engine, welcome_id, now=now)
        if subscriber_id is None:
            continue
        with engine.connect() as conn:
            subscriber = people.subscriber_by_id(conn, subscriber_id)
            suppressed = people.is_suppressed(conn, subscriber.email)
        if subscriber.status is not people.Status.ACTIVE or suppressed:
            why = "suppressed" if suppressed else subscriber.status.value
            _record(engine, welcome_id, WelcomeStatus.SKIPPED, now=clock(), error=f"not sent: the reader is {why}")
            skipped += 1
            continue
        try:
            message = rendered.get(subscriber.sections)
            if message is None:
                message = rendered[subscriber.sections] = welcome_message(renderer, settings, content, subscriber.sections)
            outcome = transport.send(_batch(settings, welcome_id, message, subscriber))
            error = "" if outcome.kind is OutcomeKind.ACCEPTED else (
                outcome.error or f"{outcome.kind.value} (status {outcome.status_code})")
            # An SMTP relay may take the message and refuse its one recipient.
            error = error or (f"refused: {outcome.refused[0][1]}" if outcome.refused else "")
        except NewsletterError as exc:
            error = str(exc) or type(exc).__name__
        carried = None
        if issue is not None and content is not None and any(
            b.articles for b in content.blocks if b.slug in subscriber.sections
        ):
            carried = issue.id
        if error:
            _record(engine, welcome_id, WelcomeStatus.FAILED, now=clock(), error=error, issue_id=carried)
            # Why is kept in the row (`newsletter stats`); a provider's answer may quote
            # the address, which no log line carries.
            log.warning("welcome %s to subscriber %s failed; tried again later", welcome_id, subscriber.id)
            failed += 1
        else:
            _record(engine, welcome_id, WelcomeStatus.SENT, now=clock(), issue_id=carried)
            log.info("welcome %s sent to subscriber %s", welcome_id, subscriber.id)
            sent += 1
    return WelcomeReport(sent=sent, failed=failed, skipped=skipped)


def welcome_counts(conn: Connection) -> dict[str, int]:
    """How many welcomes stand in each status (every status, zeros included), and how many
    of the failed ones will still be tried again ("to_retry")."""
    counts = {s.value: 0 for s in WelcomeStatus}
    counts.update({status: n for status, n in conn.execute(
        select(welcomes.c.status, func.count()).group_by(welcomes.c.status)
    ).all()})
    counts["to_retry"] = int(conn.execute(
        select(func.count()).select_from(welcomes).where(
            welcomes.c.status == WelcomeStatus.FAILED.value, welcomes.c.attempts < MAX_ATTEMPTS
        )
    ).scalar_one())
    return counts


def send_test(engine: Engine, settings: Settings, *, transport: Transport, sections: Sequence[str] | None = None,
              to: tuple[str, ...] = (), clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[str, ...]:
    """Send the welcome a new reader of `sections` (None: every section) would get now to
    the editors' test addresses, "[TEST]" before the subject. Nothing is recorded."""
    chosen = tuple(settings.section_names()) if sections is None else tuple(sections)
    with engine.connect() as conn:
        content = latest_content(conn, settings)
    message = welcome_message(issues.make_renderer(settings), settings, content, chosen)
    return drafts.send_to_editors(engine, settings, message, transport=transport, folder=f"{WELCOME_FOLDER}-test",
                                  issue_id=0, to=to, clock=clock)
