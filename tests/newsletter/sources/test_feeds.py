"""Feed ingestion against a real local HTTP server: good feeds, bad feeds, and every kind
of hostile or broken item the issue names. Each case checks what is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from newsletter import store
from newsletter.config import Settings
from newsletter.ingest import FeedReport, ingest_feeds
from newsletter.models import Article
from newsletter.tables import articles, feed_state
from tests.conftest import NOW
from tests.helpers import Item, rss
from tests.servers import LocalServer, Request, Route

DAY = timedelta(days=1)
RSS = {"content-type": "application/rss+xml; charset=utf-8"}


def stored(engine: Engine) -> dict[str, Article]:
    with engine.connect() as conn:
        return {a.guid: a for a in store.articles_between(conn, NOW - 400 * DAY, NOW + DAY)}


def run(engine: Engine, settings: Settings) -> list[FeedReport]:
    return ingest_feeds(engine, settings, clock=lambda: NOW)


@pytest.fixture
def one_feed(make_settings: Callable[..., Settings], server: LocalServer) -> Settings:
    return make_settings(feeds=[{"name": "Pharma", "url": f"{server.url}/feed.xml"}], ingest={"timeout": 2, "max_bytes": 2_000_000})


def test_hostile_markup_never_survives(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    items = [
        Item("<script>alert(1)</script>Breakthrough <b>therapy</b>", "https://pharma.example.com/x1", NOW - DAY,
             ["Clinical Trials"], guid="x1", raw_title=False,
             description='<p onclick="steal()">Safe <a href="javascript:alert(2)">text</a><img src=x onerror=alert(3)></p><script>evil()</script><iframe src="https://evil.example.com"></iframe><p>Broken <b>tag'),
        Item("Clean title", "javascript:alert(4)", NOW - DAY, ["Manufacturing"], guid="x2"),
        Item("Entities &amp; CDATA: R&amp;D &#8211; &quot;quoted&quot;", "https://pharma.example.com/x3", NOW - DAY,
             ["Research &amp; Development"], guid="x3", raw_title=True, description="<![CDATA[ignored]]>Caf&eacute; costs &lt;5&gt;"),
    ]
    server.routes["/feed.xml"] = Route(body=rss(items), headers=RSS)
    [report] = run(engine, one_feed)
    assert report.status == "fetched"
    found = stored(engine)
    x1 = found["x1"]
    assert x1.title == "Breakthrough therapy"
    assert "<" not in x1.summary and "alert" not in x1.summary and "evil" not in x1.summary
    assert x1.summary.startswith("Safe text")
    assert "x2" not in found and any("not an http(s) URL" in s for s in report.skipped)
    assert found["x3"].title == 'Entities & CDATA: R&D – "quoted"'
    assert found["x3"].categories == ("Research & Development",)


def test_non_ascii_titles_and_images(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    items = [
        Item("한국 바이오 공장 확장 — Café ☕ 🚀", "https://pharma.example.com/k1", NOW - DAY, ["Manufacturing"], guid="k1",
             extra='<media:content url="https://img.example.com/k1.jpg" medium="image"/>'),
        Item("Enclosure image", "https://pharma.example.com/k2", NOW - DAY, [], guid="k2",
             extra='<enclosure url="https://img.example.com/k2.png" type="image/png" length="1"/>'),
        Item("Thumbnail image", "https://pharma.example.com/k3", NOW - DAY, [], guid="k3",
             extra='<media:thumbnail url="https://img.example.com/k3.jpg"/>'),
        Item("Inline image", "https://pharma.example.com/k4", NOW - DAY, [], guid="k4",
             description='<p>Text <img src="https://img.example.com/k4.jpg" alt=""></p>'),
        Item("No image at all", "https://pharma.example.com/k5", NOW - DAY, [], guid="k5",
             description='<img src="javascript:alert(1)">'),
    ]
    server.routes["/feed.xml"] = Route(body=rss(items), headers=RSS)
    run(engine, one_feed)
    found = stored(engine)
    assert found["k1"].title == "한국 바이오 공장 확장 — Café ☕ 🚀"
    assert [found[k].image_url for k in ("k1", "k2", "k3", "k4", "k5")] == [
        "https://img.example.com/k1.jpg", "https://img.example.com/k2.png", "https://img.example.com/k3.jpg",
        "https://img.example.com/k4.jpg", "",
    ]


def test_duplicates_missing_dates_and_links(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    items = [
        Item("First copy", "https://pharma.example.com/d1", NOW - DAY, [], guid="dup"),
        Item("Second copy, same guid", "https://pharma.example.com/d2", NOW - DAY, [], guid="dup"),
        Item("Same link, other guid", "https://pharma.example.com/d1#comments", NOW - DAY, [], guid="dup-b"),
        Item("No date", "https://pharma.example.com/nodate", None, [], guid="nodate"),
        Item("No link, guid is a URL", None, NOW - DAY, [], guid="https://pharma.example.com/from-guid"),
        Item("No link, no usable guid", None, NOW - DAY, [], guid="tag:pharma,2026:1"),
        Item("Tracking params", "https://Pharma.Example.com/t?utm_source=rss&id=3", NOW - DAY, [], guid="t"),
    ]
    server.routes["/feed.xml"] = Route(body=rss(items), headers=RSS)
    [report] = run(engine, one_feed)
    found = stored(engine)
    assert set(found) == {"dup", "nodate", "https://pharma.example.com/from-guid", "t"}
    assert found["dup"].title == "First copy"
    assert found["nodate"].published_at == NOW  # the time it was first seen
    assert found["t"].url == "https://pharma.example.com/t?id=3"
    assert len(report.skipped) == 3
    assert any("has no link" in s for s in report.skipped)
    assert sum("repeats an earlier item" in s for s in report.skipped) == 2


def test_summary_is_cut_on_a_word_boundary(engine: Engine, make_settings: Callable[..., Settings], server: LocalServer) -> None:
    settings = make_settings(feeds=[{"name": "P", "url": f"{server.url}/feed.xml"}], ingest={"summary_chars": 60})
    words = "pharmaceutical " * 20
    server.routes["/feed.xml"] = Route(body=rss([Item("Long", "https://p.example.com/l", NOW - DAY, [], guid="l", description=words)]), headers=RSS)
    run(engine, settings)
    summary = stored(engine)["l"].summary
    assert len(summary) <= 60 and summary.endswith("pharmaceutical…")


@pytest.mark.parametrize(
    ("route", "why"),
    [
        (Route(body=b"<rss><channel><item><title>Broken", headers=RSS), "not an RSS or Atom feed"),
        (Route(body=b"<!DOCTYPE html><html><body><p>Welcome</p></body></html>", headers={"content-type": "text/html"}), "HTML page"),
        (Route(status=404, body=b"gone"), "HTTP 404"),
        (Route(status=500, body=b"oops"), "HTTP 500"),
        (Route(body=b"", headers=RSS), "empty"),
        (Route(body=b"x" * 50_000_000, headers=RSS), "limit"),
        (Route(body=rss([]), headers=RSS, delay=3.0), "timed out"),
    ],
    ids=["malformed-xml", "html-page", "404", "500", "empty-body", "too-large", "timeout"],
)
def test_a_bad_feed_is_reported_and_others_still_ingested(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, route: Route, why: str
) -> None:
    settings = make_settings(
        feeds=[{"name": "Bad", "url": f"{server.url}/bad.xml"}, {"name": "Good", "url": f"{server.url}/good.xml"}],
        ingest={"timeout": 1, "max_bytes": 2_000_000},
    )
    server.routes["/good.xml"] = Route(body=rss([Item("Good one", "https://p.example.com/g", NOW - DAY, [], guid="g")]), headers=RSS)
    server.routes["/bad.xml"] = Route(body=rss([Item("Earlier", "https://p.example.com/e", NOW - DAY, [], guid="e")]), headers=RSS)
    run(engine, settings)  # the bad feed was fine once: what it gave must survive
    server.routes["/bad.xml"] = route
    bad, good = run(engine, settings)
    assert bad.status == "failed" and why in bad.error
    assert good.status == "fetched"
    assert {"g", "e"} <= set(stored(engine))
    with engine.connect() as conn:
        assert conn.execute(select(feed_state.c.last_status).where(feed_state.c.url == f"{server.url}/bad.xml")).scalar_one() == "failed"


def test_an_empty_feed_is_fine(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    server.routes["/feed.xml"] = Route(body=rss([]), headers=RSS)
    [report] = run(engine, one_feed)
    assert (report.status, report.items, report.error) == ("fetched", 0, "")


def test_conditional_get_and_redirects(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    body = rss([Item("Cached", "https://p.example.com/c", NOW - DAY, [], guid="c")])

    def feed(request: Request) -> Route:
        if request.headers.get("if-none-match") == '"v1"':
            return Route(status=304)
        return Route(body=body, headers={**RSS, "etag": '"v1"', "last-modified": "Mon, 23 Nov 2026 08:00:00 GMT"})

    server.routes["/feed.xml"] = Route(status=301, headers={"location": "/real.xml"})
    server.routes["/real.xml"] = feed
    first = run(engine, one_feed)
    second = run(engine, one_feed)
    assert (first[0].status, first[0].new) == ("fetched", 1)
    assert second[0].status == "not_modified"
    assert server.requests[-1].headers["if-modified-since"] == "Mon, 23 Nov 2026 08:00:00 GMT"


def test_an_item_changed_upstream_is_updated_not_duplicated(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    server.routes["/feed.xml"] = Route(body=rss([Item("Old title", "https://p.example.com/u", NOW - DAY, [], guid="u")]), headers=RSS)
    run(engine, one_feed)
    server.routes["/feed.xml"] = Route(body=rss([Item("New title", "https://p.example.com/u", NOW - DAY, [], guid="u")]), headers=RSS)
    [report] = run(engine, one_feed)
    assert (report.new, report.updated) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(select(articles.c.title)).scalars().all() == ["New title"]


def test_atom_feeds(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title><id>urn:a</id><updated>2026-11-22T10:00:00Z</updated>
<entry><title type="html">Atom &lt;em&gt;entry&lt;/em&gt;</title><id>urn:a:1</id><link href="https://p.example.com/atom1"/>
<updated>2026-11-22T10:00:00Z</updated><category term="Supply Chain"/><summary type="html">&lt;p&gt;Summary&lt;/p&gt;</summary></entry></feed>"""
    server.routes["/feed.xml"] = Route(body=atom, headers={"content-type": "application/atom+xml"})
    run(engine, one_feed)
    entry = stored(engine)["urn:a:1"]
    assert (entry.title, entry.summary, entry.categories) == ("Atom entry", "Summary", ("Supply Chain",))


def test_a_partly_malformed_feed_keeps_what_it_can_and_says_so(engine: Engine, one_feed: Settings, server: LocalServer) -> None:
    body = rss([Item("Readable", "https://p.example.com/r", NOW - DAY, [], guid="r")]).replace(b"</channel></rss>", b"<item><title>cut off")
    server.routes["/feed.xml"] = Route(body=body, headers=RSS)
    [report] = run(engine, one_feed)
    assert report.status == "fetched" and "r" in stored(engine)
    assert report.warnings and "malformed XML" in report.warnings[0]
