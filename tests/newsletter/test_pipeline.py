"""The weekly pipeline end to end on a real database, a real local feed server and the
outbox: ingest → select → render once per segment → deliver, and never twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, update

import subscribers as people
from newsletter import issues, store
from newsletter.sending import SendOptions, send_issue
from newsletter.models import RenderedMessage
from newsletter.render import IssueContent
from newsletter.config import Settings
from newsletter.ingest import ingest_feeds
from newsletter.tables import deliveries, segments
from tests.conftest import NOW
from tests.helpers import Item, outbox_messages, parts, rss
from tests.servers import LocalServer, Route

SECTIONS = ["drug-development", "manufacturing", "supply-chain", "facilities", "insights", "events", "news"]


def feed_items() -> list[Item]:
    day = timedelta(days=1)
    return [
        Item("FDA approves oral GLP-1", "https://pharma.example.com/a1", NOW - 1 * day, ["FDA Approvals"], guid="a1",
             description='<p>Weight loss <b>13.6%</b>.</p><img src="https://img.example.com/a1.jpg">'),
        Item("CDMO doubles capacity", "https://pharma.example.com/a2", NOW - 2 * day, ["Manufacturing"], guid="a2",
             description="<p>Four bioreactors.</p>"),
        Item("Red Sea delays API shipments", "https://pharma.example.com/a3", NOW - 3 * day, ["Supply Chain", "Manufacturing"], guid="a3"),
        Item("CPHI highlights", "https://pharma.example.com/a4", NOW - 4 * day, ["Events & Conferences"], guid="a4"),
        Item("Company appoints CSO", "https://pharma.example.com/a5", NOW - 5 * day, ["Company News"], guid="a5"),
        Item("Old news from last month", "https://pharma.example.com/old", NOW - 30 * day, ["Insights"], guid="old"),
    ]


def add_people(engine: Engine, choices: list[tuple[str, ...]]) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn,
            [people.NewSubscriber(f"reader{n}@example.com", sections, name=f"Reader{n} Test") for n, sections in enumerate(choices)],
            now=NOW,
        )


def test_pipeline_renders_once_per_segment_and_never_sends_twice(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/feed.xml"] = Route(body=rss(feed_items()), headers={"content-type": "application/rss+xml"})
    settings = make_settings(feeds=[{"name": "Pharma", "url": f"{server.url}/feed.xml"}])
    reports = ingest_feeds(engine, settings, clock=lambda: NOW)
    assert [(r.status, r.new) for r in reports] == [("fetched", 6)]

    choices = [("drug-development",), ("drug-development",), ("manufacturing", "events"), tuple(SECTIONS), ("insights",)]
    add_people(engine, choices)
    built = issues.build_issue(engine, settings, now=NOW)
    assert built.issue.slug == "2026-w48"
    assert [(b.slug, [a.title for a in b.articles]) for b in built.blocks] == [
        ("drug-development", ["FDA approves oral GLP-1"]),
        ("manufacturing", ["CDMO doubles capacity", "Red Sea delays API shipments"]),
        ("events", ["CPHI highlights"]),
        ("news", ["Company appoints CSO"]),
    ]

    transport = issues.make_transport(settings)
    report = issues.send_pending(engine, settings, built.issue, transport=transport, clock=lambda: NOW)
    # Three distinct choices have articles this week; "insights" alone has none.
    assert sorted(report.segments) == ["drug-development", "drug-development,events,manufacturing,news", "events,manufacturing"]
    assert report.recipients_sent == 4 and report.unsegmented == 1 and report.complete
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(segments)).scalar_one() == 3
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 4

    messages = outbox_messages(settings.outbox_dir)
    assert sorted(m["To"] for m in messages) == [f"reader{n}@example.com" for n in range(4)]
    by_to = {m["To"]: m for m in messages}
    text, html = parts(by_to["reader2@example.com"])
    assert "CDMO doubles capacity" in html and "CPHI highlights" in html
    assert "FDA approves oral GLP-1" not in html and "FDA approves" not in text
    with engine.connect() as conn:
        token = people.get_subscriber(conn, "reader2@example.com").token
    assert f"https://news.example.com/unsubscribe/{token}" in html
    assert f"https://news.example.com/preferences/{token}" in text
    assert "Hello Reader2," in html and "%%" not in html + text
    assert by_to["reader2@example.com"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<https://news.example.com/unsubscribe/{token}>" in by_to["reader2@example.com"]["List-Unsubscribe"]
    assert "<mailto:" in by_to["reader2@example.com"]["List-Unsubscribe"]
    assert by_to["reader2@example.com"]["List-Id"] == "Pharma Weekly <pharma-weekly.example.com>"

    # A second send of the same issue sends nothing; a newcomer gets it, once.
    again = issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: NOW)
    assert again.recipients_sent == 0
    add_people(engine, choices + [("events",)])
    late = issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: NOW)
    assert late.recipients_sent == 1
    counts = Counter(m["To"] for m in outbox_messages(settings.outbox_dir))
    assert set(counts.values()) == {1} and len(counts) == 5


def test_a_write_by_another_connection_while_planning_waits_instead_of_failing_the_send(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    """The web app may commit (an unsubscribe) while a send plans. On SQLite planning takes
    the database's write lock first, so what it counts and what it writes are one
    snapshot and the other write waits; either way the send goes through and the reader
    who left does not get the issue."""
    server.routes["/feed.xml"] = Route(body=rss(feed_items()), headers={"content-type": "application/rss+xml"})
    settings = make_settings(feeds=[{"name": "Pharma", "url": f"{server.url}/feed.xml"}])
    ingest_feeds(engine, settings, clock=lambda: NOW)
    add_people(engine, [("drug-development",), ("manufacturing",), ("drug-development", "manufacturing")])
    issue = issues.build_issue(engine, settings, now=NOW).issue
    renderer = issues.make_renderer(settings)
    with engine.connect() as conn:
        blocks = store.issue_blocks(conn, issue.id, settings.section_names())
    content = IssueContent(issue.slug, issue.window_end, blocks)
    meanwhile: list[threading.Thread] = []

    def render(sections: tuple[str, ...]) -> RenderedMessage:
        if not meanwhile:  # the first render happens inside the planning transaction
            def unsubscribe() -> None:
                with engine.begin() as other:
                    other.execute(update(people.subscribers).where(people.subscribers.c.email == "reader2@example.com")
                                  .values(status="unsubscribed"))
            meanwhile.append(threading.Thread(target=unsubscribe))
            meanwhile[0].start()
            meanwhile[0].join(timeout=0.5)  # it commits now unless planning holds the lock
        return renderer.render(content, sections=sections)

    def after_planning() -> None:
        """Once planned (and the lock let go), the unsubscribe goes in before any batch."""
        meanwhile[0].join(timeout=30)

    report = send_issue(
        engine, issue, transport=issues.make_transport(settings), render=render, available_sections={b.slug for b in blocks},
        options=SendOptions(base_url="https://news.example.com", unsubscribe_mailto="u@example.com", sender_name="P",
                            sender_address="news@example.com"),
        clock=lambda: NOW, after_planning=after_planning,
    )
    assert not meanwhile[0].is_alive()
    assert report.complete and report.recipients_sent == 2
    if engine.dialect.name == "sqlite":
        # The unsubscribe waited for the planning: all three were planned, and it left
        # one out at send time.
        assert report.planned_recipients == 3 and report.recipients_skipped == 1
    else:
        # PostgreSQL locks rows, not the database: the unsubscribe went in at once.
        assert report.planned_recipients == 2 and report.recipients_skipped == 0
