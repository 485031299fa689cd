"""Readers in four zones, an issue for them, and a send at a chosen time: what the
local-time delivery and recall tests share.

The pharma list of issue 20: London, Boston, Basel and Seoul. Their zones are set in the
subscribers table directly (the preference page and the imports that set them are
another part's). The feed is `tests.test_sendgrid.feed`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

import subscribers as people
from newsletter import issues
from newsletter.config import Settings
from newsletter.ingest import ingest_feeds
from newsletter.models import Issue
from newsletter.sending import SendReport
from newsletter.tables import batches, deliveries, recalls

#: Sunday evening, 18:00 in London: the digest runs the evening before Monday's 08:00.
SUNDAY_EVENING = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
ZONES = {"london": "Europe/London", "boston": "America/New_York", "basel": "Europe/Zurich", "seoul": "Asia/Seoul"}
#: Each zone's Monday 08:00 (Seoul's is Sunday 23:00 UTC), in UTC.
EIGHT_AM = {
    "london": datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    "boston": datetime(2026, 11, 23, 13, 0, tzinfo=UTC),
    "basel": datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
    "seoul": datetime(2026, 11, 22, 23, 0, tzinfo=UTC),
}
SECTIONS = ("drug-development", "manufacturing", "events")


def add_zoned_readers(engine: Engine, per_zone: int = 2) -> dict[str, str]:
    """`per_zone` readers in each of the four zones; their addresses, each to its city."""
    city_of: dict[str, str] = {}
    with engine.begin() as conn:
        for city, zone in ZONES.items():
            emails = [f"{city}{n}@example.com" for n in range(per_zone)]
            # Half of each city's readers chose one section only: two segments per zone.
            people.upsert_subscribers(
                conn,
                [people.NewSubscriber(e, SECTIONS if n % 2 == 0 else SECTIONS[:1], name=f"{city.title()} {n}")
                 for n, e in enumerate(emails)],
                now=SUNDAY_EVENING,
            )
            conn.execute(update(people.subscribers).where(people.subscribers.c.email.in_(emails)).values(timezone=zone))
            city_of.update({e: city for e in emails})
    return city_of


def build_issue(engine: Engine, settings: Settings, *, now: datetime = SUNDAY_EVENING) -> Issue:
    ingest_feeds(engine, settings, clock=lambda: now)
    return issues.build_issue(engine, settings, now=now).issue


def send_at(engine: Engine, settings: Settings, issue: Issue, when: datetime) -> SendReport:
    """`newsletter send` of the issue as it would run at `when`."""
    with engine.connect() as conn:
        current = issues.store.find_issue(conn, issue.id)
    assert current is not None
    transport = issues.make_transport(settings)
    try:
        return issues.send_pending(engine, settings, current, transport=transport, clock=lambda: when, sleep=lambda s: None)
    finally:
        transport.close()


def delivery_states(engine: Engine, issue: Issue) -> dict[str, tuple[str, datetime | None]]:
    """Each reader's delivery of the issue: (status, send_at), by address."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(people.subscribers.c.email, deliveries.c.status, deliveries.c.send_at)
            .join(deliveries, deliveries.c.subscriber_id == people.subscribers.c.id)
            .where(deliveries.c.issue_id == issue.id)
        ).all()
    return {email: (status, at) for email, status, at in rows}


def ledger_snapshot(engine: Engine, issue: Issue) -> tuple[Any, ...]:
    """Everything a refused recall must leave as it was: deliveries, batches, recalls, the issue."""
    with engine.connect() as conn:
        return (
            sorted(tuple(r) for r in conn.execute(select(deliveries.c.subscriber_id, deliveries.c.status, deliveries.c.batch_id)
                                                  .where(deliveries.c.issue_id == issue.id))),
            sorted(tuple(r) for r in conn.execute(select(batches.c.id, batches.c.status, batches.c.recalled)
                                                  .where(batches.c.issue_id == issue.id))),
            conn.execute(select(recalls.c.id).where(recalls.c.issue_id == issue.id)).all(),
            issues.store.find_issue(conn, issue.id),
        )


def correct_and_approve(engine: Engine, settings: Settings, subject: str) -> Issue:
    """What an editor does after a recall: reopen, correct the subject, approve."""
    from newsletter import drafts

    drafts.reopen(engine)
    drafts.set_subject(engine, subject)
    approved, _ = drafts.approve(engine, settings)
    return approved


Make = Callable[..., Settings]
