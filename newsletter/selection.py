"""Which articles make an issue, and the time window it covers. Pure functions, no I/O.

Owns: `issue_window`, `issue_slug`, `select_articles`. Imports `models` and `sections`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .models import Article, SectionBlock
from .sections import SectionRule, assign_section


def issue_window(
    *, now: datetime, previous_end: datetime | None, zone: ZoneInfo, first_days: int
) -> tuple[datetime, datetime]:
    """(start, end) in UTC. The window ends now and starts where the previous issue's
    ended; the first issue covers `first_days` days of wall-clock time in `zone` (so a
    DST change inside the week neither adds nor loses an hour)."""
    end = now.astimezone(UTC)
    if previous_end is not None:
        return previous_end.astimezone(UTC), end
    local = now.astimezone(zone)
    naive_start = local.replace(tzinfo=None) - timedelta(days=first_days)
    return naive_start.replace(tzinfo=zone).astimezone(UTC), end


def issue_slug(now: datetime, zone: ZoneInfo, taken: Iterable[str] = ()) -> str:
    """A readable slug from the ISO week of `now` in `zone`, such as `2026-w48`; a second
    issue in the same week gets `-2`, then `-3`."""
    year, week, _ = now.astimezone(zone).isocalendar()
    base = f"{year}-w{week:02d}"
    used = set(taken)
    slug, n = base, 1
    while slug in used:
        n += 1
        slug = f"{base}-{n}"
    return slug


def select_articles(
    articles: Iterable[Article],
    *,
    rules: Sequence[SectionRule],
    fallback: str | None,
    window_start: datetime,
    window_end: datetime,
    per_section_limit: int,
    taken: frozenset[int] = frozenset(),
) -> list[SectionBlock]:
    """The sections of an issue, in configured order, each with its newest articles
    published inside [start, end), at most `per_section_limit`, none already `taken` by
    an earlier issue. Sections without articles are left out."""
    names = {rule.slug: rule.name for rule in rules}
    chosen: dict[str, list[Article]] = {}
    for article in articles:
        if article.id in taken or not (window_start <= article.published_at < window_end):
            continue
        slug = assign_section(article.categories, rules, fallback, article.category_ancestors)
        if slug is None:
            continue
        chosen.setdefault(slug, []).append(article)
    blocks = []
    order = [rule.slug for rule in rules] + ([fallback] if fallback and fallback not in names else [])
    for slug in order:
        found = sorted(chosen.get(slug, []), key=lambda a: (a.published_at, a.id), reverse=True)
        if found:
            blocks.append(SectionBlock(slug, names.get(slug, slug), tuple(found[:per_section_limit])))
    return blocks
