"""The public archive: stored web versions, index pages, Atom feeds read back with
feedparser, the static export, and that nothing personal ever reaches any of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import feedparser
from sqlalchemy import Connection, Engine, select, update
from typer.testing import CliRunner

import subscribers as people
from newsletter import issues, store
from newsletter.archive import PAGE_SIZE, Page, export_archive
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.models import FeedItem
from newsletter.tables import articles
from subscribers import subscribers as subscribers_table
from tests.conftest import NOW

DAY = timedelta(days=1)


def send_weeks(engine: Engine, settings: Settings, weeks: int) -> list[str]:
    """Build and send one issue a week for `weeks` weeks; returns the slugs."""
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [
            people.NewSubscriber("anna.secret@example.com", ("insights", "events"), name="Annabelle Zwicky"),
            people.NewSubscriber("ben.private@example.com", ("drug-development",), name="Benedikt Quorn"),
        ], now=NOW)
    slugs = []
    for week in range(weeks):
        now = NOW + week * 7 * DAY
        with engine.begin() as conn:
            store.upsert_articles(conn, [
                FeedItem(f"i{week}", f"https://p.example.com/insight-{week}?a=1&b=2", f"Insight <{week}> & more", "", now - DAY, ("Insights",), "S", ""),
                FeedItem(f"d{week}", f"https://p.example.com/drug-{week}", f"Drug news {week}", "", now - 2 * DAY, ("FDA Approvals",), "S", ""),
            ], source="t", now=now)
        built = issues.build_issue(engine, settings, now=now)
        issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda now=now: now)
        slugs.append(built.issue.slug)
    return slugs


def send_later_issue(engine: Engine, settings: Settings) -> str:
    """Send, a week after `send_weeks`' first issue, one with the story "A later story"; its slug."""
    with engine.begin() as conn:
        store.upsert_articles(conn, [
            FeedItem("late", "https://p.example.com/late", "A later story", "", NOW + 6 * DAY, ("Insights",), "S", ""),
        ], source="t", now=NOW + 7 * DAY)
    built = issues.build_issue(engine, settings, now=NOW + 7 * DAY)
    issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: NOW + 7 * DAY)
    return built.issue.slug


def test_each_sent_issue_gets_a_public_page_and_feed_entries(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    slugs = send_weeks(engine, settings, 2)
    assert slugs == ["2026-w48", "2026-w49"]
    pages = issues.archive_pages(settings)
    with engine.connect() as conn:
        page = pages.issue(conn, "2026-w48")
        index = pages.index(conn)
        feed = pages.feed(conn)
        insights = pages.feed(conn, "insights")
        assert pages.feed(conn, "sports") is None and pages.issue(conn, "2020-w01") is None and pages.index(conn, 2) is None
    assert page is not None and index is not None and feed is not None and insights is not None
    html = page.body.decode()
    assert "Drug news 0" in html and "Insight &lt;0&gt; &amp; more" in html  # every section, escaped
    assert "https://news.example.com/subscribe" in html and "/unsubscribe/" not in html and "/preferences/" not in html
    assert page.etag.startswith('"') and page.last_modified_header.endswith("GMT")

    listing = index.body.decode()
    assert listing.index("2026-w49") < listing.index("2026-w48")  # newest first
    assert 'action="https://news.example.com/subscribe"' in listing and 'name="email"' in listing

    parsed = feedparser.parse(feed.body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.link for e in parsed.entries] == ["https://news.example.com/archive/2026-w49", "https://news.example.com/archive/2026-w48"]
    assert "Insight &lt;1&gt; &amp; more" in parsed.entries[0].content[0].value
    assert 'href="https://p.example.com/insight-1?a=1&amp;b=2"' in parsed.entries[0].content[0].value
    by_section = feedparser.parse(insights.body)
    assert by_section.feed.title == "Pharma Weekly newsletter: Insights"
    assert all("Drug news" not in e.content[0].value for e in by_section.entries)


def test_the_index_is_paginated(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    from newsletter.archive import save_archived
    from newsletter.models import RenderedMessage

    with engine.begin() as conn:
        for n in range(PAGE_SIZE + 3):
            issue = store.create_issue(conn, slug=f"2025-w{n:02d}", window_start=NOW - (n + 1) * DAY, window_end=NOW - n * DAY, blocks=[], now=NOW)
            save_archived(conn, issue_id=issue.id, slug=issue.slug, message=RenderedMessage(f"Subject {n}", "", "<p>x</p>", "x"), sections=(), now=NOW - n * DAY)
    pages = issues.archive_pages(settings)
    with engine.connect() as conn:
        first, second = pages.index(conn, 1), pages.index(conn, 2)
    assert first is not None and second is not None
    assert "Subject 0" in first.body.decode() and "Subject 22" not in first.body.decode()
    assert "Subject 22" in second.body.decode() and 'href="../../2025-w22"' in second.body.decode()
    assert 'rel="next"' in first.body.decode() and 'rel="prev"' in second.body.decode()


def test_export_writes_pages_and_feeds_then_only_what_changed(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    send_weeks(engine, settings, 1)
    out = tmp_path / "site"
    pages = issues.archive_pages(settings)
    with engine.connect() as conn:
        first = export_archive(conn, pages, out)
    assert {"index.html", "2026-w48/index.html", "feed.xml", "insights/feed.xml", "events/feed.xml"} <= set(first.written)
    with engine.connect() as conn:
        again = export_archive(conn, pages, out)
    assert again.written == () and set(again.unchanged) == set(first.written)

    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("n", "https://p.example.com/n", "Next week", "", NOW + 6 * DAY, ("Events",), "", "")], source="t", now=NOW + 7 * DAY)
    built = issues.build_issue(engine, settings, now=NOW + 7 * DAY)
    issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: NOW + 7 * DAY)
    with engine.connect() as conn:
        third = export_archive(conn, pages, out)
    assert set(third.written) == {"index.html", "2026-w49/index.html", "feed.xml", "events/feed.xml"}
    assert feedparser.parse((out / "events" / "feed.xml").read_bytes()).entries[0].title.startswith("Pharma Weekly: Next week")


def test_the_export_command(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    send_weeks(engine, settings, 1)
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "archive", "export", str(out), "--url", "https://www.example.com/newsletter/"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "2026-w48/index.html" in result.output
    feed = feedparser.parse((out / "feed.xml").read_bytes())
    assert feed.entries[0].link == "https://www.example.com/newsletter/2026-w48"


def test_nothing_personal_reaches_any_page_feed_or_file(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    send_weeks(engine, settings, 2)
    out = tmp_path / "site"
    pages = issues.archive_pages(settings)
    with engine.connect() as conn:
        export_archive(conn, pages, out)
        outputs = [page.body for _, page in pages.all_pages(conn)]
        secrets = [value for row in conn.execute(select(subscribers_table.c.token, subscribers_table.c.email, subscribers_table.c.name))
                   for value in row]
    outputs += [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert len(secrets) == 6 and len(outputs) > 10
    for body in outputs:
        text = body.decode()
        for secret in secrets:
            assert secret not in text
            assert secret.split("@")[0] not in text


def test_the_web_app_serves_the_archive_with_caching_headers(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    from newsletter.web import create_app
    from tests.newsletter.web.test_web import Client

    settings = make_settings(security={"secret_key": "archive-test-secret-0123456789"})
    send_weeks(engine, settings, 2)
    client = Client(create_app(settings, engine=engine), base_url="https://news.example.com")

    assert client.get("/archive").headers["location"] == "/archive/"
    index = client.get("/archive/")
    assert index.status_code == 200 and "newsletter archive" in index.text
    assert index.headers["cache-control"] == "public, max-age=300" and index.headers["etag"]
    assert index.text.index('href="2026-w49"') < index.text.index('href="2026-w48"')

    page = client.get("/archive/2026-w48")
    assert page.status_code == 200 and "Drug news 0" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/archive/2026-w48", headers={"if-none-match": page.headers["etag"]}).status_code == 304
    assert client.get("/archive/2026-w48", headers={"if-modified-since": page.headers["last-modified"]}).status_code == 304
    assert client.get("/archive/2026-w48", headers={"if-none-match": '"stale"'}).status_code == 200

    feed = client.get("/archive/feed.xml")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert [e.link for e in feedparser.parse(feed.content).entries] == [
        "https://news.example.com/archive/2026-w49", "https://news.example.com/archive/2026-w48",
    ]
    section = client.get("/archive/insights/feed.xml")
    assert feedparser.parse(section.content).feed.title.endswith("Insights")

    for missing in ("/archive/2001-w01", "/archive/sports/feed.xml", "/archive/page/9/"):
        response = client.get(missing)
        assert response.status_code == 404 and "Traceback" not in response.text


def test_archive_pages_are_kept_and_a_new_issue_shows_at_once(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    """The web app builds each archive page once; an issue sent by another process (here
    straight through the database) is served from the next check of the archive on (at
    most a second later), and a corrected article title once the kept page is older than
    `CACHE_SECONDS`."""
    from newsletter.web import create_app
    from newsletter.web.archive import CHECK_SECONDS, PageCache
    from tests.newsletter.web.test_web import Client

    settings = make_settings(security={"secret_key": "archive-test-secret-0123456789"})
    send_weeks(engine, settings, 1)
    seconds = [0.0]
    client = Client(create_app(settings, engine=engine, monotonic=lambda: seconds[0]), base_url="https://news.example.com")
    first = client.get("/archive/")
    assert 'href="2026-w48"' in first.text and 'href="2026-w49"' not in first.text
    assert client.get("/archive/").content == first.content

    # Another process sends next week's issue.
    send_later_issue(engine, settings)
    # Within the second after the last check the kept page is served; then the new one.
    assert client.get("/archive/").content == first.content
    seconds[0] += CHECK_SECONDS
    second = client.get("/archive/")
    assert 'href="2026-w49"' in second.text and second.headers["etag"] != first.headers["etag"]
    assert "A later story" in client.get("/archive/feed.xml").text

    # A kept page is built again after its time, so a corrected title shows then.
    clock = [0.0]
    cache = PageCache(seconds=60, clock=lambda: clock[0])
    pages = issues.archive_pages(settings)
    builds: list[int] = []

    def build(conn: Connection) -> Page | None:
        builds.append(1)
        return pages.index(conn, 1)

    with engine.connect() as conn:
        kept = cache.page(conn, "index", build)
        assert cache.page(conn, "index", build) is kept and len(builds) == 1
        conn.execute(update(articles).where(articles.c.guid == "late").values(title="A later story, corrected"))
        conn.commit()
        clock[0] = 30.0
        assert cache.page(conn, "index", build) is kept and cache.fresh("index") is kept
        clock[0] = 61.0
        assert cache.fresh("index") is None
        fresh = cache.page(conn, "index", build)
        assert fresh is not None and "A later story, corrected" in fresh.body.decode() and len(builds) == 2
        # Unknown pages are never kept, so made-up addresses cannot fill the memory.
        assert cache.page(conn, ("issue", "1999-w01"), lambda c: pages.issue(c, "1999-w01")) is None
        assert ("issue", "1999-w01") not in cache.pages
