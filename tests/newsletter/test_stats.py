"""`newsletter/stats.py`: an issue's figures read from the aggregates the webhook keeps and
the send ledger. An issue is sent through the SendGrid stand-in to four readers (two of
drug development, two of manufacturing: two segments), the provider's events are posted
signed to the web app, and the figures are read with `issue_stats` and `hourly_activity`."""

from __future__ import annotations

from dataclasses import replace

from newsletter import stats, store
from newsletter.models import Issue
from newsletter.stats import Figures, Hour, LinkClicks
from tests.conftest import NOW
from tests.newsletter.test_events import Hook, hook  # noqa: F401  (the fixture)

HOUR = 3600
A1 = "https://pharma.example.com/a1"  # the drug-development article
A2 = "https://pharma.example.com/a2"  # the manufacturing article


def sent(hook: Hook) -> Issue:  # noqa: F811
    """The issue as stored after its send (with `sent_at`)."""
    with hook.engine.connect() as conn:
        found = store.find_issue(conn, hook.issue.id)
    assert found is not None and found.sent_at == NOW
    return found


def figures(hook: Hook) -> stats.IssueStats:  # noqa: F811
    with hook.engine.connect() as conn:
        return stats.issue_stats(conn, sent(hook), section_names=hook.settings.section_names())


def test_rates_are_of_the_recipients_or_of_the_delivered_and_none_without_a_base() -> None:
    f = Figures(recipients=8, delivered=4, bounced=2, complaints=1, unique_opens=3, unique_clicks=2, clicks=5, unsubscribes=1)
    assert f.rates() == {
        "delivered": 0.5, "bounced": 0.25, "complaints": 0.25, "unique_clicks": 0.5, "unique_opens": 0.75,
        "unsubscribes": 0.25,
    }
    assert Figures(recipients=3).rates() == {
        "delivered": 0.0, "bounced": 0.0, "complaints": None, "unique_clicks": None, "unique_opens": None,
        "unsubscribes": None,
    }
    assert set(Figures().rates().values()) == {None}
    assert f.plus(Figures(recipients=1, clicks=2)).as_tuple() == (9, 4, 2, 1, 3, 2, 7, 1)


def test_before_any_event_the_figures_are_the_recipients_of_each_section(hook: Hook) -> None:  # noqa: F811
    found = figures(hook)
    assert (found.issue, found.sent_at, found.unknown_events) == (hook.issue.slug, NOW, 0)
    assert found.total == Figures(recipients=4)
    assert [(s.slug, s.name, s.figures) for s in found.sections] == [
        ("drug-development", "Drug Development", Figures(recipients=2)),
        ("manufacturing", "Manufacturing", Figures(recipients=2)),
    ]
    assert found.links == []


def test_each_reader_counts_once_and_clicks_count_per_section_and_per_link(hook: Hook) -> None:  # noqa: F811
    events = (
        hook.events("delivered")
        + hook.events("open", "reader0@example.com", "reader2@example.com")
        # An open seen twice is one reader who opened.
        + hook.events("open", "reader0@example.com")
        + hook.events("click", "reader0@example.com", url=A1)
        + hook.events("click", "reader0@example.com", url=A1)
        + hook.events("click", "reader1@example.com", url=A1)
        + hook.events("click", "reader2@example.com", url=A2)
        + hook.events("click", "reader2@example.com", url="https://news.example.com/archive/2026-w48")
        + hook.events("unsubscribe", "reader3@example.com")
    )
    assert hook.post(events).status_code == 200

    found = figures(hook)
    assert found.total == Figures(recipients=4, delivered=4, bounced=0, complaints=0, unique_opens=2, unique_clicks=3,
                                  clicks=5, unsubscribes=1)
    assert found.total.rates()["unique_clicks"] == 0.75
    by_slug = {s.slug: s.figures for s in found.sections}
    # A section's clicks are the clicks on its own articles, not on the web version.
    assert by_slug["drug-development"] == Figures(recipients=2, delivered=2, unique_opens=1, unique_clicks=2, clicks=3)
    assert by_slug["manufacturing"] == Figures(recipients=2, delivered=2, unique_opens=1, unique_clicks=1, clicks=1,
                                               unsubscribes=1)
    assert found.links == [
        LinkClicks(A1, "FDA approves oral GLP-1", "drug-development", 3, 2),
        # Equal counts go by address; a link that is not an article has no title or section.
        LinkClicks("https://news.example.com/archive/2026-w48", "", "", 1, 1),
        LinkClicks(A2, "CDMO doubles capacity", "manufacturing", 1, 1),
    ]


def test_first_opens_and_clicks_fall_in_their_hour_after_the_send(hook: Hook) -> None:  # noqa: F811
    start = NOW.timestamp()
    hook.post(
        hook.events("open", "reader0@example.com", timestamp=int(start + 10 * 60))
        + hook.events("open", "reader1@example.com", timestamp=int(start + HOUR + 5))
        # Only the first open counts; a later one moves nothing.
        + hook.events("open", "reader1@example.com", timestamp=int(start + 2 * HOUR + 5))
        + hook.events("click", "reader1@example.com", url=A1, timestamp=int(start + 2 * HOUR + 60))
        # Later than the hours asked for: in the last one.
        + hook.events("open", "reader2@example.com", timestamp=int(start + 10 * HOUR))
    )
    with hook.engine.connect() as conn:
        hours = stats.hourly_activity(conn, sent(hook), hours=4)
    assert hours == [Hour(0, 1, 0), Hour(1, 1, 0), Hour(2, 0, 1), Hour(3, 1, 0)]
    with hook.engine.connect() as conn:
        assert sum(h.opens for h in stats.hourly_activity(conn, sent(hook))) == 3
        assert len(stats.hourly_activity(conn, sent(hook))) == 72


def test_an_issue_not_sent_starts_its_hours_at_its_first_activity(hook: Hook) -> None:  # noqa: F811
    start = NOW.timestamp() + 5 * HOUR
    hook.post(hook.events("open", "reader0@example.com", timestamp=int(start))
              + hook.events("click", "reader0@example.com", url=A1, timestamp=int(start + HOUR)))
    unsent = replace(sent(hook), sent_at=None)
    with hook.engine.connect() as conn:
        hours = stats.hourly_activity(conn, unsent, hours=3)
    assert hours == [Hour(0, 1, 0), Hour(1, 0, 1), Hour(2, 0, 0)]
