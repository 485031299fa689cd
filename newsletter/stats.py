"""What happened to an issue after it left: per issue and per section, with rates.

Owns: `IssueStats`, `Figures`, `SectionFigures`, `LinkClicks`, `issue_stats`,
`hourly_activity`. Imports `models`, `tables`, `sending.ledger`. Reads the aggregates that
`events.py` keeps (`recipient_activity`, `link_clicks`) and the send ledger, never the raw
events but for one indexed count, so the answer takes the same time with five or five
million events stored, and stays after the raw events are pruned.

Definitions: recipients are those the issue was sent to (`ledger.recipients_sent_by_segment`);
delivered, bounced, complaints, opens, clicks and unsubscribes count recipients (each
once) with such an event; `clicks` counts every click. Rates are of the recipients
(delivered, bounced) or of the delivered (the rest). Opens are a soft figure: privacy
proxies (Apple Mail) open every message, so clicks lead. A section's figures count the
recipients whose email had that section; its clicks are clicks on that section's
articles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, false, func, select

from .sending import ledger
from .models import Issue
from .tables import articles, deliveries, delivery_events, issue_articles, link_clicks, recipient_activity, segments


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True)
class Figures:
    recipients: int = 0
    delivered: int = 0
    bounced: int = 0
    complaints: int = 0
    unique_opens: int = 0
    unique_clicks: int = 0
    clicks: int = 0
    unsubscribes: int = 0

    def rates(self) -> dict[str, float | None]:
        """Each figure as a share: of the recipients for delivered and bounced, of the
        delivered for the rest; None when there is nothing to divide by."""
        base = self.delivered
        return {
            "delivered": _rate(self.delivered, self.recipients),
            "bounced": _rate(self.bounced, self.recipients),
            "complaints": _rate(self.complaints, base),
            "unique_clicks": _rate(self.unique_clicks, base),
            "unique_opens": _rate(self.unique_opens, base),
            "unsubscribes": _rate(self.unsubscribes, base),
        }

    def plus(self, other: Figures) -> Figures:
        values = [a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)]
        return Figures(**dict(zip(_FIELDS, values, strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(int(getattr(self, name)) for name in _FIELDS)


_FIELDS = ("recipients", "delivered", "bounced", "complaints", "unique_opens", "unique_clicks", "clicks", "unsubscribes")


@dataclass(frozen=True)
class LinkClicks:
    """Clicks on one link of the issue; `section` and `title` are empty for a link that is
    not one of the issue's articles (the web version, preferences)."""

    url: str
    title: str
    section: str
    clicks: int
    unique: int


@dataclass(frozen=True)
class SectionFigures:
    slug: str
    name: str
    figures: Figures


@dataclass(frozen=True)
class IssueStats:
    issue: str
    subject: str
    sent_at: datetime | None
    total: Figures
    sections: list[SectionFigures] = field(default_factory=list)
    links: list[LinkClicks] = field(default_factory=list)
    #: Raw events for this issue (still kept) that name no recipient of it.
    unknown_events: int = 0


def _activity_by_segment(conn: Connection, issue_id: int) -> dict[int, Figures]:
    sent = ledger.recipients_sent_by_segment(conn, issue_id)
    a = recipient_activity.c
    rows = conn.execute(
        select(
            deliveries.c.segment_id, func.count(a.delivered_at), func.count(a.bounced_at), func.count(a.complained_at),
            func.count(a.opened_at), func.count(a.clicked_at), func.coalesce(func.sum(a.clicks), 0), func.count(a.unsubscribed_at),
        )
        .join(deliveries, and_(deliveries.c.issue_id == a.issue_id, deliveries.c.subscriber_id == a.subscriber_id))
        .where(a.issue_id == issue_id)
        .group_by(deliveries.c.segment_id)
    ).all()
    found = {
        segment: Figures(int(sent.get(segment, 0)), int(d), int(b), int(c), int(o), int(uc), int(k), int(u))
        for segment, d, b, c, o, uc, k, u in rows
    }
    for segment, count in sent.items():
        found.setdefault(segment, Figures(recipients=int(count)))
    return found


def _links(conn: Connection, issue_id: int) -> list[LinkClicks]:
    placed = {
        row.url: (row.title, row.section)
        for row in conn.execute(
            select(articles.c.url, articles.c.title, issue_articles.c.section)
            .join(issue_articles, issue_articles.c.article_id == articles.c.id)
            .where(issue_articles.c.issue_id == issue_id)
        )
    }
    rows = conn.execute(
        select(link_clicks.c.url, func.sum(link_clicks.c.clicks), func.count())
        .where(link_clicks.c.issue_id == issue_id)
        .group_by(link_clicks.c.url)
    ).all()
    links = [LinkClicks(url, *placed.get(url, ("", "")), int(clicks), int(unique)) for url, clicks, unique in rows]
    return sorted(links, key=lambda link: (-link.clicks, -link.unique, link.url))


def _section_clicks(conn: Connection, issue_id: int) -> dict[str, tuple[int, int]]:
    """Section → (unique clickers, clicks) on that section's articles."""
    rows = conn.execute(
        select(issue_articles.c.section, func.count(func.distinct(link_clicks.c.subscriber_id)), func.sum(link_clicks.c.clicks))
        .select_from(link_clicks)
        .join(articles, articles.c.url == link_clicks.c.url)
        .join(issue_articles, and_(issue_articles.c.article_id == articles.c.id, issue_articles.c.issue_id == link_clicks.c.issue_id))
        .where(link_clicks.c.issue_id == issue_id)
        .group_by(issue_articles.c.section)
    ).all()
    return {section: (int(unique), int(clicks or 0)) for section, unique, clicks in rows}


def issue_stats(conn: Connection, issue: Issue, *, section_names: dict[str, str]) -> IssueStats:
    """The figures of `issue`, in total and for each section it had (in configured order)."""
    by_segment = _activity_by_segment(conn, issue.id)
    keys = dict(conn.execute(select(segments.c.id, segments.c.key).where(segments.c.issue_id == issue.id)).all())
    total = Figures()
    per_section: dict[str, Figures] = {}
    for segment_id, figures in by_segment.items():
        total = total.plus(figures)
        for slug in str(keys.get(segment_id, "")).split(","):
            if slug:
                # Clicks are counted per section from the links below, not per segment.
                people = replace(figures, unique_clicks=0, clicks=0)
                per_section[slug] = per_section.get(slug, Figures()).plus(people)
    clicks = _section_clicks(conn, issue.id)
    ordered = [slug for slug in section_names if slug in per_section] + sorted(set(per_section) - set(section_names))
    sections = []
    for slug in ordered:
        f = per_section[slug]
        unique, count = clicks.get(slug, (0, 0))
        sections.append(SectionFigures(slug, section_names.get(slug, slug), replace(f, unique_clicks=unique, clicks=count)))
    unknown = conn.execute(
        select(func.count()).select_from(delivery_events)
        .where(delivery_events.c.issue_id == issue.id, delivery_events.c.known == false())
    ).scalar_one()
    return IssueStats(issue.slug, issue.subject, issue.sent_at, total, sections, _links(conn, issue.id), int(unknown))


@dataclass(frozen=True)
class Hour:
    """Recipients who first opened and first clicked in one hour after the send."""

    hour: int
    opens: int
    clicks: int


def hourly_activity(conn: Connection, issue: Issue, *, hours: int = 72) -> list[Hour]:
    """First opens and first clicks per hour after the issue was sent (or its first
    delivery), for `hours` hours; later ones fall in the last hour."""
    a = recipient_activity.c
    rows: Any = conn.execute(select(a.opened_at, a.clicked_at).where(a.issue_id == issue.id)).all()
    start = issue.sent_at or min((t for row in rows for t in row if t is not None), default=None)
    opens = [0] * hours
    clicks = [0] * hours
    if start is not None:
        for opened, clicked in rows:
            for moment, counts in ((opened, opens), (clicked, clicks)):
                if moment is not None:
                    index = int((moment - start) / timedelta(hours=1))
                    counts[min(max(index, 0), hours - 1)] += 1
    return [Hour(h, opens[h], clicks[h]) for h in range(hours)]
