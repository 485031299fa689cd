"""Sections and selection: pure rules, then the build use case on a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from newsletter import issues, store
from newsletter.config import Settings, default_sections
from newsletter.errors import EmptyIssueError
from newsletter.models import Article, FeedItem
from newsletter.sections import assign_section, make_rules
from newsletter.selection import issue_slug, issue_window, select_articles
from newsletter.tables import issue_articles
from tests.conftest import NOW

RULES = make_rules((s.slug, s.name, s.categories) for s in default_sections())
LONDON = ZoneInfo("Europe/London")
DAY = timedelta(days=1)


def article(n: int, categories: tuple[str, ...], published: datetime) -> Article:
    return Article(n, f"g{n}", f"https://p.example.com/{n}", f"Title {n}", "", published, categories, "", "", "feed")


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (("FDA Approvals",), "drug-development"),
        (("clinical trials",), "drug-development"),
        (("Research &amp; Development",), "drug-development"),
        (("  Facilities   &   Operation ",), "facilities"),
        (("Supply Chain", "Manufacturing"), "manufacturing"),  # two mapped categories: first configured section wins
        (("Events & Conferences", "Insights"), "insights"),
        (("Company News",), "news"),
        ((), "news"),
    ],
)
def test_each_article_lands_in_exactly_one_section(categories: tuple[str, ...], expected: str) -> None:
    assert assign_section(categories, RULES, "news") == expected


def test_without_a_fallback_unmatched_articles_are_left_out() -> None:
    assert assign_section(("Company News",), RULES, None) is None


def test_the_first_window_is_seven_days_of_wall_clock_time_across_dst() -> None:
    # The clocks went back in London on 25 October 2026: the week is 169 hours long.
    now = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
    start, end = issue_window(now=now, previous_end=None, zone=LONDON, first_days=7)
    assert start == datetime(2026, 10, 21, 8, 0, tzinfo=UTC)  # 09:00 BST
    assert end == now and end - start == timedelta(hours=169)


def test_later_windows_start_where_the_previous_ended() -> None:
    previous = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
    assert issue_window(now=NOW, previous_end=previous, zone=LONDON, first_days=7) == (previous, NOW)


def test_slugs_follow_the_iso_week_in_the_configured_zone() -> None:
    sunday_night_utc = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert issue_slug(sunday_night_utc, LONDON) == "2026-w47"
    assert issue_slug(sunday_night_utc, ZoneInfo("Asia/Seoul")) == "2026-w48"  # already Monday there
    assert issue_slug(datetime(2027, 1, 1, 12, tzinfo=UTC), LONDON) == "2026-w53"
    assert issue_slug(NOW, LONDON, {"2026-w48", "2026-w48-2"}) == "2026-w48-3"


def test_selection_limits_orders_and_respects_the_window() -> None:
    start, end = NOW - 7 * DAY, NOW
    found = [article(n, ("Manufacturing",), NOW - timedelta(hours=n)) for n in range(1, 9)]
    found += [
        article(20, ("Insights",), start),  # on the start: in
        article(21, ("Insights",), end),  # on the end: out (next issue)
        article(22, ("Insights",), start - timedelta(seconds=1)),
        article(23, ("Events",), NOW - DAY),
    ]
    blocks = select_articles(found, rules=RULES, fallback="news", window_start=start, window_end=end,
                             per_section_limit=5, taken=frozenset({23}))
    assert [(b.slug, [a.id for a in b.articles]) for b in blocks] == [("manufacturing", [1, 2, 3, 4, 5]), ("insights", [20])]


def feed_item(n: int, categories: tuple[str, ...], published: datetime) -> FeedItem:
    return FeedItem(f"g{n}", f"https://p.example.com/{n}", f"Title {n}", "", published, categories, "Summary", "")


def test_build_uses_consecutive_windows_and_never_reuses_an_article(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with engine.begin() as conn:
        store.upsert_articles(conn, [feed_item(1, ("Insights",), NOW - DAY), feed_item(2, ("Events",), NOW - 2 * DAY)], source="t", now=NOW)
    first = issues.build_issue(engine, settings, now=NOW)
    assert [a.id for b in first.blocks for a in b.articles] == [1, 2]
    assert first.issue.window_start == datetime(2026, 11, 16, 9, 0, tzinfo=UTC)

    with pytest.raises(EmptyIssueError, match="no new articles between 2026-11-23 09:00 and 2026-11-24 09:00 .Europe/London.; no issue built"):
        issues.build_issue(engine, settings, now=NOW + DAY)

    later = NOW + 3 * DAY
    with engine.begin() as conn:
        store.upsert_articles(conn, [feed_item(3, ("Insights",), NOW + DAY)], source="t", now=later)
        # A feed that re-dates an article already sent cannot move it into the next issue.
        store.upsert_articles(conn, [feed_item(1, ("Insights",), NOW + 2 * DAY)], source="t", now=later)
    second = issues.build_issue(engine, settings, now=later)
    assert second.issue.window_start == NOW and second.issue.slug == "2026-w48-2"
    assert [a.id for b in second.blocks for a in b.articles] == [3]

    with engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(insert(issue_articles).values(issue_id=second.issue.id, article_id=1, section="insights", position=9))


def test_force_builds_from_older_unused_articles(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with engine.begin() as conn:
        store.upsert_articles(conn, [feed_item(1, ("Insights",), NOW - 30 * DAY)], source="t", now=NOW)
    with pytest.raises(EmptyIssueError, match="use --force"):
        issues.build_issue(engine, settings, now=NOW)
    forced = issues.build_issue(engine, settings, now=NOW, force=True)
    assert forced.widened and [a.id for b in forced.blocks for a in b.articles] == [1]
    assert forced.issue.window_start == NOW - 30 * DAY
