"""WordPress sites through their REST API, played by a real local HTTP server that answers
like WordPress: pages with X-WP-TotalPages, `_embed`ded images and terms, a 400 past the
last page, a 500, and a site without the API. Each case checks the stored articles."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from newsletter import issues, store
from newsletter.config import Settings
from newsletter.ingest import SourceReport, ingest_sources
from newsletter.models import Article
from newsletter.tables import feed_state
from tests.conftest import NOW
from tests.helpers import Item, rss
from tests.servers import LocalServer, Route
from tests.wordpress_site import JSON, POSTS, WordPressSite, post, three_pages

DAY = timedelta(days=1)


def stored(engine: Engine) -> dict[str, Article]:
    with engine.connect() as conn:
        return {a.url: a for a in store.articles_between(conn, NOW - 400 * DAY, NOW + 30 * DAY)}


def run(engine: Engine, settings: Settings, *, now: datetime = NOW) -> list[SourceReport]:
    return ingest_sources(engine, settings, clock=lambda: now)


@pytest.fixture
def site_settings(make_settings: Callable[..., Settings], server: LocalServer) -> Settings:
    return make_settings(
        wordpress=[{"name": "Trade site", "url": server.url + "/"}],
        ingest={"timeout": 2, "retries": 2, "retry_backoff": 0},
    )



def test_posts_on_several_pages_become_articles(engine: Engine, site_settings: Settings, server: LocalServer) -> None:
    site = WordPressSite(server, three_pages())
    [report] = run(engine, site_settings)
    assert (report.kind, report.status, report.items, report.new, report.error) == ("wordpress", "fetched", 4, 4, "")

    found = stored(engine)
    plant = found["https://pharma.example.com/1/"]
    assert plant.title == "Pfizer’s & BioNTech’s new plant"
    assert plant.image_url == "https://pharma.example.com/wp-content/uploads/plant.jpg"
    assert plant.summary == "Summary of the post."
    assert plant.author == "Jane Reporter" and plant.source == "Trade site"
    assert plant.guid == "https://pharma.example.com/?p=1"
    assert plant.published_at == NOW - DAY
    # A post in several categories keeps all of them (and no tags), in the site's order.
    assert found["https://pharma.example.com/2/"].categories == ("Supply Chain", "Manufacturing", "Insights")
    # A post without featured media has no image.
    assert found["https://pharma.example.com/2/"].image_url == ""
    cphi = found["https://pharma.example.com/4/"]
    assert cphi.title == 'Events – CPHI "Milan" highlights'
    assert cphi.categories == ("Events & Conferences",) and cphi.summary == "Three days in Milan."
    assert cphi.image_url == ""

    asked = site.requests()
    assert [r["page"] for r in asked] == ["1", "2", "3"]
    first = asked[0]
    assert first["per_page"] == "100" and "wp:featuredmedia" in first["_embed"] and "wp:term" in first["_embed"]
    assert set(first["_fields"].split(",")) >= {"link", "title", "excerpt", "_embedded", "_links"}
    # The first ingest asks for the last `first_days` (30) days.
    assert first["after"] == (NOW - 30 * DAY).strftime("%Y-%m-%dT%H:%M:%S")


def test_the_next_ingest_asks_only_for_posts_since_the_last(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    site = WordPressSite(server, three_pages())
    run(engine, site_settings)
    later = NOW + 7 * DAY
    site.pages = [[post(5, "A new week", published=later - DAY)]]
    [report] = run(engine, site_settings, now=later)
    assert (report.status, report.new) == ("fetched", 1)
    # After the start of the last ingest, less the 24 hours of overlap.
    assert site.requests()[-1]["after"] == (NOW - DAY).strftime("%Y-%m-%dT%H:%M:%S")
    assert len(stored(engine)) == 5


def test_a_400_past_the_last_page_ends_paging_quietly(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    # The site said three pages, but a post was unpublished while we paged: page 3 is gone.
    site = WordPressSite(server, three_pages()[:2], total_pages=3)
    [report] = run(engine, site_settings)
    assert (report.status, report.new, report.error) == ("fetched", 3, "")
    assert [r["page"] for r in site.requests()] == ["1", "2", "3"]


def test_without_a_page_count_paging_stops_at_a_short_page(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    server.routes[POSTS] = Route(200, json.dumps([post(1, "Only one")]).encode(), JSON)
    [report] = run(engine, site_settings)
    assert (report.status, report.new) == ("fetched", 1)
    assert len([r for r in server.requests if r.path == POSTS]) == 1


def test_a_passing_500_is_tried_again(engine: Engine, site_settings: Settings, server: LocalServer) -> None:
    site = WordPressSite(server, three_pages())
    site.failures = {1: [500], 2: [503, 502]}
    [report] = run(engine, site_settings)
    assert (report.status, report.new) == ("fetched", 4)
    assert [r["page"] for r in site.requests()] == ["1", "1", "2", "2", "2", "3"]


def test_a_lasting_500_fails_the_site_and_keeps_what_was_stored(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    settings = make_settings(
        wordpress=[{"name": "Trade site", "url": server.url}],
        ingest={"timeout": 2, "retries": 1, "retry_backoff": 0},
    )
    site = WordPressSite(server, three_pages())
    run(engine, settings)
    with engine.connect() as conn:
        cursor = conn.execute(select(feed_state.c.last_modified)).scalar_one()

    site.pages[0].append(post(6, "Posted on page one"))
    site.failures = {2: [500, 500]}
    [report] = run(engine, settings, now=NOW + DAY)
    assert report.status == "failed"
    assert report.error == "page 2: HTTP 500 Internal Server Error (tried 2 times)"
    # The pages read before the failure are stored, nothing earlier is lost, and the next
    # ingest starts where the last complete one did.
    found = stored(engine)
    assert len(found) == 5 and "https://pharma.example.com/6/" in found
    with engine.connect() as conn:
        row = conn.execute(select(feed_state)).one()
    assert (row.last_status, row.last_modified) == ("failed", cursor)

    site.failures = {1: [500, 500]}
    [report] = run(engine, settings, now=NOW + 2 * DAY)
    assert (report.status, report.error) == ("failed", "HTTP 500 Internal Server Error (tried 2 times)")
    assert len(stored(engine)) == 5


def test_a_site_without_the_rest_api_is_reported_clearly(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    server.routes[POSTS] = Route(404, b"<!doctype html><h1>Page not found</h1>", {"content-type": "text/html"})
    [report] = run(engine, site_settings)
    assert report.status == "failed"
    assert report.error == (
        f"no WordPress REST API at {server.url}/wp-json/ (HTTP 404); "
        "check the url, or read the site's RSS feed with [[feeds]]"
    )

    # A site that answers every path with its home page.
    server.routes[POSTS] = Route(200, b"<!doctype html><h1>Welcome</h1>", {"content-type": "text/html"})
    [report] = run(engine, site_settings)
    assert report.status == "failed" and report.error.startswith(f"no WordPress REST API at {server.url}/wp-json/")
    assert "something other than a list of posts" in report.error


def test_a_refused_api_and_a_silent_server_are_reported(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    settings = make_settings(
        wordpress=[{"name": "Trade site", "url": server.url}],
        ingest={"timeout": 0.3, "retries": 1, "retry_backoff": 0},
    )
    refusal = {"code": "rest_cannot_access", "message": "Only authenticated users can access the REST API."}
    server.routes[POSTS] = Route(401, json.dumps(refusal).encode(), JSON)
    [report] = run(engine, settings)
    assert report.error == "the REST API refused access (HTTP 401): Only authenticated users can access the REST API."

    server.routes[POSTS] = Route(200, b"[]", JSON, delay=1.0)
    [report] = run(engine, settings)
    assert (report.status, report.error) == ("failed", "timed out (tried 2 times)")


def test_category_names_are_read_once_per_ingest_when_not_embedded(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    pages = [
        [post(1, "One", categories=["FDA Approvals", "Manufacturing"], embed_terms=False)],
        [post(2, "Two", categories=["FDA Approvals"], embed_terms=False)],
    ]
    site = WordPressSite(server, pages)
    run(engine, site_settings)
    found = stored(engine)
    assert found["https://pharma.example.com/1/"].categories == ("FDA Approvals", "Manufacturing")
    assert found["https://pharma.example.com/2/"].categories == ("FDA Approvals",)
    # The category list is read once for both pages of posts, all its pages at once.
    assert [r["page"] for r in site.requests("/wp-json/wp/v2/categories")] == ["1"]


def test_posts_and_feed_items_of_the_same_article_are_stored_once(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    base = server.url
    WordPressSite(server, [[post(1, "FDA approves oral GLP-1", categories=["FDA Approvals"], base=base,
                                 image="https://img.example.com/glp1.jpg")]])
    # The site's RSS feed lists the same post with a tracking parameter and another guid.
    item = Item("FDA approves oral GLP-1", f"{base}/1/?utm_source=rss#more", NOW - DAY, ["FDA Approvals"], guid="feed-guid-1")
    server.routes["/feed/"] = Route(body=rss([item]), headers={"content-type": "application/rss+xml"})
    settings = make_settings(
        feeds=[{"name": "Trade feed", "url": f"{base}/feed/"}],
        wordpress=[{"name": "Trade site", "url": base}],
        ingest={"retry_backoff": 0},
    )
    feed, site = run(engine, settings)
    assert (feed.new, site.new, site.updated) == (1, 0, 1)
    [article] = stored(engine).values()
    assert article.url == f"{base}/1/" and article.source == "Trade feed"
    # The richer REST API data (the featured image) is what is kept.
    assert article.image_url == "https://img.example.com/glp1.jpg"


def test_posts_without_a_link_or_title_are_left_out_with_a_reason(
    engine: Engine, site_settings: Settings, server: LocalServer
) -> None:
    bad_link = {**post(7, "No link"), "link": "javascript:alert(1)"}
    no_title = post(8, "  ")
    twice = post(1, "Repeated")
    WordPressSite(server, [[post(1, "Kept"), bad_link, no_title, twice, "not a post"]])  # type: ignore[list-item]
    [report] = run(engine, site_settings)
    assert (report.status, report.new) == ("fetched", 1)
    assert report.skipped == (
        "post 7 ('No link'): left out because its link is not an http(s) URL",
        "post 8: left out because it has no title",
        "post 1 ('Repeated'): left out because it repeats an earlier post's guid or link",
        "a post that is not a JSON object: left out",
    )


def test_posts_reach_their_sections_and_the_email(engine: Engine, site_settings: Settings, server: LocalServer) -> None:
    WordPressSite(server, three_pages())
    run(engine, site_settings)
    built = issues.build_issue(engine, site_settings, now=NOW)
    # The post in Supply Chain, Manufacturing and Insights lands in the first section, in
    # configured order, that lists one of them.
    assert [(b.slug, [a.title for a in b.articles]) for b in built.blocks] == [
        ("drug-development", ["FDA approves oral GLP-1"]),
        # Both published at the same time: the later stored comes first.
        ("manufacturing", ["Red Sea delays API shipments", "Pfizer’s & BioNTech’s new plant"]),
        ("events", ['Events – CPHI "Milan" highlights']),
    ]
    message = issues.render_issue(engine, site_settings, built.issue, public=True)
    assert "https://img.example.com/glp1.jpg" in message.html
    assert "Pfizer’s &amp; BioNTech’s new plant" in message.html and "&amp;#8217;" not in message.html
