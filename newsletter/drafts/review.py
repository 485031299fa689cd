"""Checking a draft and letting it go: the preflight, approval and reopening, a test send,
and the sample values the desk shows the email with.

Owns: `Audience`, `audience`, `sample_message`, `link_checker`, `check_draft`, `approve`, `reopen`,
`send_test`, `send_to_editors`, `TEST_PREFIX`. Imports `config`, `errors`, `models`, `store`,
`links`, `netguard`, `preflight`, `sending.planning` (who a send would reach),
`sending.ledger` (whether a send started), `transports`, `issues`, `drafts.compose` and
`drafts.journal`; `subscribers` for the address checks of a test.

Approval, reopening and each test send are logged in the draft log like the edits are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

import subscribers as people

from .. import issues, links, store
from ..config import Settings
from ..errors import EditError, IssueError
from ..models import Batch, Issue, IssueStatus, RenderedMessage
from ..netguard import NetworkPolicy
from ..sending import planning
from ..sending.ledger import send_started, was_recalled
from ..preflight import LinkChecker, Preflight, require_passing, run_preflight
from ..transports import Transport, personalize
from . import journal
from .compose import Draft, current_draft, editable, latest_draft

TEST_PREFIX = "[TEST] "


def sample_message(message: RenderedMessage, settings: Settings) -> RenderedMessage:
    """The message with its substitution tags filled as for an editor named Editor."""
    values = links.substitutions("preview", "Editor", base_url=settings.site.base_url)
    return RenderedMessage(personalize(message.subject, values), personalize(message.preheader, values),
                           personalize(message.html, values), personalize(message.text, values))


def link_checker(settings: Settings, *, ttl: float = 0.0) -> LinkChecker:
    return LinkChecker(
        timeout=settings.preview.link_timeout, user_agent=settings.ingest.user_agent,
        policy=NetworkPolicy.from_cidrs(settings.ingest.allow_networks), ttl=ttl,
    )


def check_draft(engine: Engine, settings: Settings, *, links: LinkChecker | None = None) -> tuple[Draft, Preflight]:
    """The draft and its preflight; article links are asked when `links` is given."""
    draft = current_draft(engine, settings)
    report = run_preflight(engine, settings, draft.issue.id, draft.content(),
                           renderer=issues.make_renderer(settings), links=links)
    return draft, report


def approve(engine: Engine, settings: Settings, *, links: LinkChecker | None = None, origin: str = "cli",
            expect: int | None = None, now: datetime | None = None) -> tuple[Issue, Preflight]:
    """Freeze the draft for sending once its preflight finds no error; `IssueError`
    listing the errors otherwise. The warnings are returned to be shown. With `expect`,
    only the draft at that version is approved (`ConflictError` otherwise)."""
    draft, report = check_draft(engine, settings, links=links)
    if draft.issue.status is not IssueStatus.DRAFT:
        raise IssueError(f"issue {draft.issue.slug} is {draft.issue.status.value}, not a draft")
    require_passing(report, draft.issue.slug)
    with engine.begin() as conn:
        # Only the draft that was checked is approved, not one changed since.
        if editable(conn).id != draft.issue.id:
            raise IssueError("the draft changed while it was checked; check it again")
        journal.record(conn, draft.issue.id, origin=origin, action="approved",
                       detail=f"{len(report.warnings)} warnings" if report.warnings else "", now=now or datetime.now(UTC),
                       expect=draft.version if expect is None else expect)
        store.set_issue_status(conn, draft.issue.id, IssueStatus.APPROVED)
        approved = store.find_issue(conn, draft.issue.id)
    assert approved is not None
    return approved, report


def reopen(engine: Engine, *, origin: str = "cli", expect: int | None = None, now: datetime | None = None) -> Issue:
    """Unfreeze an approved draft so that editors can change it again."""
    with engine.begin() as conn:
        issue = latest_draft(conn)
        if issue.status is not IssueStatus.APPROVED:
            raise IssueError(f"issue {issue.slug} is {issue.status.value}, not approved: nothing to reopen")
        # An approved issue whose send has started stays approved until it is sent:
        # some subscribers may have it already. A recalled one may be corrected for the
        # readers whose copy was stopped (`newsletter recall`).
        if send_started(conn, issue.id) and not was_recalled(conn, issue.id):
            raise IssueError(f"issue {issue.slug} is being sent: it can no longer be reopened")
        journal.record(conn, issue.id, origin=origin, action="reopened", now=now or datetime.now(UTC), expect=expect)
        store.set_issue_status(conn, issue.id, IssueStatus.DRAFT)
        found = store.find_issue(conn, issue.id)
    assert found is not None
    return found


def send_test(engine: Engine, settings: Settings, *, transport: Transport, sections: tuple[str, ...] | None = None,
              to: tuple[str, ...] = (), clock: Callable[[], datetime] = lambda: datetime.now(UTC),
              origin: str = "cli") -> tuple[str, ...]:
    """Send the draft, as the subscribers of `sections` see it, to the editors' addresses
    (`preview.test_recipients`, or `to`) with "[TEST]" before the subject. Nothing is
    written to the send ledger: a test never counts as the issue's delivery. The draft
    log notes it, from `origin`."""
    draft = current_draft(engine, settings)
    message = issues.render_issue(engine, settings, draft.issue, sections=sections)
    recipients = send_to_editors(engine, settings, message, transport=transport, folder=f"{draft.issue.slug}-test",
                                 issue_id=draft.issue.id, to=to, clock=clock)
    with engine.begin() as conn:
        segment = ", ".join(sections) if sections else "all sections"
        journal.record(conn, draft.issue.id, origin=origin, action="test sent",
                       detail=f"to {len(recipients)} address{'es' if len(recipients) != 1 else ''} ({segment})",
                       now=clock(), step=False)
    return recipients


def send_to_editors(engine: Engine, settings: Settings, message: RenderedMessage, *, transport: Transport, folder: str,
                    issue_id: int, to: tuple[str, ...] = (),
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[str, ...]:
    """Send a rendered email (a draft, the welcome) as a test to the editors' addresses
    (`preview.test_recipients`, or `to`), "[TEST]" before its subject, with the headers a
    reader's copy has; the outbox files it under `folder`. Returns the addresses."""
    recipients = to or tuple(settings.preview.test_recipients)
    if not recipients:
        raise EditError("no test recipients: set preview.test_recipients or give --to")
    message = type(message)(TEST_PREFIX + message.subject, message.preheader, message.html, message.text)
    base, mailto = settings.site.base_url, settings.unsubscribe_mailto
    # The one gate: a test never goes to an address that bounced or complained.
    with engine.connect() as conn:
        for number, address in enumerate(recipients, start=1):
            try:
                normalized = people.normalize_email(address)
            except people.InvalidEmailError:
                raise EditError(f"test address #{number} is not a valid email address") from None
            if people.standing(conn, normalized) is people.Standing.SUPPRESSED:
                raise EditError(f"test address #{number} is on the suppression list (it bounced or complained); "
                                "a test is not sent to it")
    # A batch id of its own per test, so the outbox never takes one test for another.
    batch_id = int(clock().timestamp() * 1000)
    batch = Batch(
        id=batch_id, issue_id=issue_id, issue_slug=folder, segment_id=0, message=message,
        recipients=tuple(
            links.recipient(number, address, "test", "Editor", base_url=base, mailto=mailto)
            for number, address in enumerate(recipients, start=1)
        ),
        sender_name=settings.sender.name, sender_address=settings.sender.address, reply_to=settings.sender.reply_to,
        categories=("test",),
        # The headers a reader's copy has, so the test shows them.
        list_id=links.list_id(settings.site.name, settings.sender.address),
    )
    outcome = transport.send(batch)
    if outcome.kind.value != "accepted":
        raise IssueError(f"the test send failed: {outcome.error or outcome.status_code}")
    return recipients


@dataclass(frozen=True)
class Audience:
    """Who would get the draft if it went out now: `total` readers, and how many of them
    chose each of its sections (a reader who chose several counts in each)."""

    total: int
    per_section: dict[str, int]


def audience(engine: Engine, draft: Draft) -> Audience:
    """The readers the draft goes to: mailable subscribers not yet planned for it whose
    chosen sections include one of the draft's (as planning counts them)."""
    available = {b.slug for b in draft.blocks if b.articles}
    with engine.connect() as conn:
        choices = planning.unplanned_choices(conn, draft.issue.id)
    total, per_section = 0, dict.fromkeys(sorted(available), 0)
    for raw, count in choices.items():
        chosen = [s for s in people.parse_sections_key(raw) if s in available]
        if chosen:
            total += count
        for slug in chosen:
            per_section[slug] += count
    return Audience(total, per_section)
