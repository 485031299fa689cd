"""Real WordPress sites as they are, played by real local servers: RSS feeds written the
way WordPress 6 and Yoast write them (with and without Yoast's "appeared first on" line,
in English, German and Korean, `[&hellip;]` excerpt markers, `media:thumbnail` only,
`content:encoded` with sized images) and a REST API with `media_details` sizes and a
nested category tree (paged, broken, disabled). Each case checks the stored articles,
the ingest report, the sections of a built issue and the rendered email."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from alembic import command
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from newsletter import db, issues
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.demo import prepare_demo
from newsletter.models import Article
from tests.conftest import NOW
from tests.servers import LocalServer, Request, Route
from tests.newsletter.sources.test_wordpress import run as ingest
from tests.newsletter.sources.test_wordpress import stored as stored_by_url

DAY = timedelta(days=1)
SITE = "https://pharma.example.com"
UPLOADS = f"{SITE}/wp-content/uploads/2026/11"
JSON = {"content-type": "application/json; charset=UTF-8"}
RSS = {"content-type": "application/rss+xml; charset=UTF-8"}

#: Yoast's closing line in three of the languages a site may be set to: the same
#: structure (a paragraph linking the post, then the site), other words.
YOAST = {
    "en": 'The post <a rel="nofollow" href="{link}">{title}</a> appeared first on <a rel="nofollow" href="{site}">{name}</a>.',
    "de": 'Der Beitrag <a rel="nofollow" href="{link}">{title}</a> erschien zuerst auf <a rel="nofollow" href="{site}">{name}</a>.',
    "ko": '<a rel="nofollow" href="{link}">{title}</a> 글이 <a rel="nofollow" href="{site}">{name}</a>에 처음 등장했습니다.',
}


def wp_item(
    number: int,
    title: str,
    *,
    excerpt: str,
    categories: tuple[str, ...] = ("Manufacturing",),
    yoast: str | None = "en",
    content: str = "",
    media: str = "",
    published: datetime = NOW - DAY,
) -> str:
    """One `<item>` as WordPress 6's feed-rss2.php writes it, Yoast's line appended to
    the description and the content when `yoast` names a language."""
    link = f"{SITE}/2026/11/post-{number}/"
    tail = f"\n<p>{YOAST[yoast].format(link=link, title=title, site=SITE + '/', name='Pharma News')}</p>\n" if yoast else ""
    cats = "".join(f"\n\t\t<category><![CDATA[{c}]]></category>" for c in categories)
    encoded = f"\n\t\t<content:encoded><![CDATA[{content}{tail}]]></content:encoded>" if content else ""
    return f"""
	<item>
		<title>{title}</title>
		<link>{link}</link>
		<comments>{link}#respond</comments>
		<dc:creator><![CDATA[Anna Keller]]></dc:creator>
		<pubDate>{published.strftime("%a, %d %b %Y %H:%M:%S +0000")}</pubDate>{cats}
		<guid isPermaLink="false">{SITE}/?p={number}</guid>
		<description><![CDATA[{excerpt}{tail}]]></description>{encoded}{media}
	</item>"""


def wp_feed(items: list[str], *, language: str = "en-GB") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
	xmlns:content="http://purl.org/rss/1.0/modules/content/"
	xmlns:dc="http://purl.org/dc/elements/1.1/"
	xmlns:atom="http://www.w3.org/2005/Atom"
	xmlns:media="http://search.yahoo.com/mrss/">
<channel>
	<title>Pharma News</title>
	<atom:link href="{SITE}/feed/" rel="self" type="application/rss+xml" />
	<link>{SITE}</link>
	<description>News for the pharmaceutical industry</description>
	<lastBuildDate>Sun, 22 Nov 2026 10:00:00 +0000</lastBuildDate>
	<language>{language}</language>
	<generator>https://wordpress.org/?v=6.7.1</generator>{"".join(items)}
</channel>
</rss>
""".encode()


def stored(engine: Engine) -> dict[str, Article]:
    """The stored articles by title."""
    return {a.title: a for a in stored_by_url(engine).values()}


@pytest.fixture
def feed_settings(make_settings: Callable[..., Settings], server: LocalServer) -> Callable[[bytes], Settings]:
    def make(body: bytes) -> Settings:
        server.routes["/feed/"] = Route(200, body, RSS)
        return make_settings(feeds=[{"name": "Pharma News", "url": server.url + "/feed/"}])

    return make


def test_yoast_lines_and_excerpt_markers_leave_every_summary(
    engine: Engine, feed_settings: Callable[[bytes], Settings]
) -> None:
    body = wp_feed([
        wp_item(1, "Biologics plant expands", excerpt="Novo adds two lines in Kalundborg, doubling the fill capacity [&hellip;]"),
        wp_item(2, "Trial results are in", excerpt="<p>The study met its primary endpoint. [&#8230;]</p>", yoast=None),
        wp_item(3, "Serialisation deadline", excerpt="Track-and-trace rules take effect [...]"),
        # The marker inside a sentence is the author's text, not WordPress's.
        wp_item(4, "Quoted remarks", excerpt="<p>He said the plan [&hellip;] would cost more than expected.</p>"),
        # Only Yoast's line: the summary comes from the content's first paragraph.
        wp_item(5, "Only boilerplate", excerpt="",
                content='<figure><img src="x.jpg" alt=""></figure><p>The first real paragraph.</p><p>The second.</p>'),
    ])
    [report] = ingest(engine, feed_settings(body))
    found = stored(engine)
    assert found["Biologics plant expands"].summary == "Novo adds two lines in Kalundborg, doubling the fill capacity…"
    assert found["Trial results are in"].summary == "The study met its primary endpoint."
    assert found["Serialisation deadline"].summary == "Track-and-trace rules take effect…"
    assert found["Quoted remarks"].summary == "He said the plan […] would cost more than expected."
    assert found["Only boilerplate"].summary == "The first real paragraph."
    for article in found.values():
        assert "appeared first" not in article.summary and "Pharma News" not in article.summary
    # Items 1, 2, 3 and 5 were cleaned (4 has nothing to take out but Yoast's line).
    assert (report.status, report.cleaned) == ("fetched", 5)


@pytest.mark.parametrize(
    ("language", "yoast"), [("de-DE", "de"), ("ko-KR", "ko")]
)
def test_the_plugin_line_goes_in_other_languages_too(
    engine: Engine, feed_settings: Callable[[bytes], Settings], language: str, yoast: str
) -> None:
    body = wp_feed([
        wp_item(1, "Neues Werk in Basel", excerpt="<p>Roche investiert 500 Millionen [&hellip;]</p>", yoast=yoast),
        wp_item(2, "바이오 공장 증설", excerpt="<p>삼성바이오로직스가 5공장을 착공했다 [&hellip;]</p>", yoast=yoast),
    ], language=language)
    [report] = ingest(engine, feed_settings(body))
    found = stored(engine)
    assert found["Neues Werk in Basel"].summary == "Roche investiert 500 Millionen…"
    assert found["바이오 공장 증설"].summary == "삼성바이오로직스가 5공장을 착공했다…"
    assert report.cleaned == 2


def test_a_feed_that_flattened_the_line_to_text_is_cleaned_by_title_and_site_name(
    engine: Engine, feed_settings: Callable[[bytes], Settings]
) -> None:
    body = wp_feed([
        wp_item(1, "Flat text", excerpt="Lonza opens a new site. Der Beitrag Flat text erschien zuerst auf Pharma News.",
                yoast=None),
        wp_item(2, "바이오 공장 증설", excerpt="삼성이 착공했다. 바이오 공장 증설 글이 Pharma News에 처음 등장했습니다.", yoast=None),
        # A title too short to tell apart from the text's own words leaves the text alone.
        wp_item(3, "AI", excerpt="New AI tools, as reported in Pharma News.", yoast=None),
    ])
    [report] = ingest(engine, feed_settings(body))
    found = stored(engine)
    assert found["Flat text"].summary == "Lonza opens a new site."
    assert found["바이오 공장 증설"].summary == "삼성이 착공했다."
    assert found["AI"].summary == "New AI tools, as reported in Pharma News."
    assert report.cleaned == 2


def test_a_long_summary_is_cut_once_between_words(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    words = "Manufacturers are investing in continuous processing lines " * 12
    server.routes["/feed/"] = Route(200, wp_feed([wp_item(1, "Long", excerpt=f"<p>{words}[&hellip;]</p>")]), RSS)
    settings = make_settings(feeds=[{"name": "Pharma News", "url": server.url + "/feed/"}], ingest={"summary_chars": 100})
    ingest(engine, settings)
    summary = stored(engine)["Long"].summary
    assert len(summary) <= 100 and summary.endswith("…") and summary.count("…") == 1
    assert summary[:-1].split()[-1] in words.split() and not summary.endswith(" …")


def test_images_keep_their_size_and_a_small_one_is_no_hero(
    engine: Engine, feed_settings: Callable[[bytes], Settings]
) -> None:
    thumb = f'\n\t\t<media:thumbnail url="{UPLOADS}/vial-150x150.jpg" width="150" height="150" />'
    sizes = "".join(
        f'\n\t\t<media:content url="{UPLOADS}/plant{suffix}.jpg" medium="image" width="{w}" height="{h}" />'
        for suffix, w, h in (("-300x200", 300, 200), ("-1024x683", 1024, 683), ("-scaled", 2560, 1707))
    )
    content_img = f'<p><img src="{UPLOADS}/lab-768x512.jpg" alt="" /></p><p>Text.</p>'
    body = wp_feed([
        wp_item(1, "Thumbnail only", excerpt="One.", media=thumb),
        wp_item(2, "Three sizes", excerpt="Two.", media=sizes),
        wp_item(3, "Size in the file name", excerpt="Three.", content=content_img),
        wp_item(4, "Broken sizes", excerpt="Four.", media=(
            f'\n\t\t<media:content url="{UPLOADS}/a.jpg" medium="image" width="0" height="-5" />'
        )),
        wp_item(5, "Absurd size", excerpt="Five.", media=(
            f'\n\t\t<media:content url="{UPLOADS}/b.jpg" medium="image" width="100000" height="100000" />'
        )),
    ])
    [report] = ingest(engine, feed_settings(body))
    found = stored(engine)
    small = found["Thumbnail only"]
    assert (small.image_url, small.image_width, small.image_height, small.image_small) == (
        f"{UPLOADS}/vial-150x150.jpg", 150, 150, True)
    assert not small.image_hero
    # The widest size up to twice the 552-pixel slot: never the 2560-pixel original.
    three = found["Three sizes"]
    assert (three.image_url, three.image_width, three.image_height, three.image_hero) == (
        f"{UPLOADS}/plant-1024x683.jpg", 1024, 683, True)
    assert (found["Size in the file name"].image_width, found["Size in the file name"].image_height) == (768, 512)
    for title in ("Broken sizes", "Absurd size"):
        unknown = found[title]
        assert unknown.image_url and (unknown.image_width, unknown.image_height, unknown.image_small) == (None, None, False)
    assert report.small_images == 1


def test_a_small_image_is_not_stretched_in_the_email(
    engine: Engine, feed_settings: Callable[[bytes], Settings]
) -> None:
    thumb = f'<media:thumbnail url="{UPLOADS}/vial-150x150.jpg" width="150" height="150" />'
    settings = feed_settings(wp_feed([wp_item(1, "Thumbnail only", excerpt="One.", media=thumb)]))
    ingest(engine, settings)
    built = issues.build_issue(engine, settings, now=NOW)
    html = issues.render_issue(engine, settings, built.issue, public=True).html
    tag = html[html.index(f"{UPLOADS}/vial-150x150.jpg") - 200:]
    tag = tag[tag.rindex("<img"):]
    tag = tag[: tag.index(">")]
    assert 'width="150"' in tag and "max-width:150px" in tag.replace(" ", "") and 'width="552"' not in tag


def test_the_image_slot_is_configurable(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    sizes = "".join(
        f'<media:content url="{UPLOADS}/plant-{w}x{h}.jpg" medium="image" width="{w}" height="{h}" />'
        for w, h in ((300, 200), (768, 512), (1024, 683))
    )
    server.routes["/feed/"] = Route(200, wp_feed([wp_item(1, "Sizes", excerpt="One.", media=sizes)]), RSS)
    settings = make_settings(feeds=[{"name": "Pharma News", "url": server.url + "/feed/"}],
                             images={"hero_width": 300, "min_hero_width": 800})
    [report] = ingest(engine, settings)
    article = stored(engine)["Sizes"]
    assert (article.image_width, article.image_small) == (300, True) and report.small_images == 1


# The REST API ------------------------------------------------------------------------

#: A category tree as an editor grows it: sections configured on parents only.
TREE = [
    {"id": 2, "name": "Drug Development", "parent": 0},
    {"id": 5, "name": "Clinical Trials", "parent": 2},
    {"id": 6, "name": "Research &amp; Development", "parent": 2},
    {"id": 9, "name": "Gene Therapy", "parent": 2},  # added by the editors last week
    {"id": 12, "name": "Cell Therapy", "parent": 6},  # a grandchild
    {"id": 20, "name": "Manufacturing", "parent": 0},
    {"id": 21, "name": "Continuous Processing", "parent": 20},
    {"id": 30, "name": "Uncategorized", "parent": 0},
]


def media(number: int, *, sizes: dict[str, tuple[int, int]], full: tuple[Any, Any]) -> dict[str, Any]:
    """A featured image as `_embed` gives it, with `media_details` and its sizes."""
    base = f"{UPLOADS}/image-{number}"
    return {
        "id": 900 + number, "media_type": "image", "mime_type": "image/jpeg", "source_url": f"{base}.jpg",
        "media_details": {
            "width": full[0], "height": full[1], "file": f"2026/11/image-{number}.jpg",
            "sizes": {name: {"file": f"image-{number}-{w}x{h}.jpg", "width": w, "height": h, "mime_type": "image/jpeg",
                             "source_url": f"{base}-{w}x{h}.jpg"} for name, (w, h) in sizes.items()}
            | {"full": {"file": f"image-{number}.jpg", "width": full[0], "height": full[1], "mime_type": "image/jpeg",
                        "source_url": f"{base}.jpg"}},
        },
    }


def rest_post(number: int, title: str, categories: list[int], *, excerpt: str = "<p>Summary [&hellip;]</p>\n",
              content: str = "<p>Body.</p>", image: dict[str, Any] | None = None) -> dict[str, Any]:
    names = {c["id"]: c["name"] for c in TREE}
    embedded: dict[str, Any] = {
        "author": [{"id": 1, "name": "Jane Reporter"}],
        "wp:term": [[{"id": c, "name": names.get(c, f"cat-{c}"), "taxonomy": "category"} for c in categories], []],
    }
    if image:
        embedded["wp:featuredmedia"] = [image]
    return {
        "id": number, "guid": {"rendered": f"{SITE}/?p={number}"}, "link": f"{SITE}/2026/11/post-{number}/",
        "date_gmt": (NOW - DAY).strftime("%Y-%m-%dT%H:%M:%S"), "title": {"rendered": title},
        "excerpt": {"rendered": excerpt, "protected": False}, "content": {"rendered": content, "protected": False},
        "categories": categories, "featured_media": image["id"] if image else 0, "_links": {}, "_embedded": embedded,
    }


class RestSite:
    """`/wp-json/wp/v2/posts` and `/categories` as WordPress 6 answers them: categories in
    pages of `per_page` (X-WP-TotalPages), or a 404 `rest_no_route` when disabled."""

    def __init__(self, server: LocalServer, posts: list[dict[str, Any]], *, tree: list[dict[str, Any]] | None = None,
                 category_page: int = 3) -> None:
        self.posts, self.tree, self.category_page = posts, TREE if tree is None else tree, category_page
        self.server = server
        self.disabled = False
        server.routes["/wp-json/wp/v2/posts"] = self._posts
        server.routes["/wp-json/wp/v2/categories"] = self._categories

    def _posts(self, request: Request) -> Route:
        page = int(parse_qs(request.query).get("page", ["1"])[0])
        chunk = self.posts[(page - 1) * 2: page * 2]
        pages = max(1, -(-len(self.posts) // 2))
        if page > pages:
            return Route(400, b'{"code":"rest_post_invalid_page_number"}', JSON)
        return Route(200, json.dumps(chunk).encode(), {**JSON, "X-WP-TotalPages": str(pages)})

    def _categories(self, request: Request) -> Route:
        if self.disabled:
            body = {"code": "rest_no_route", "message": "No route was found matching the URL and request method.",
                    "data": {"status": 404}}
            return Route(404, json.dumps(body).encode(), JSON)
        page = int(parse_qs(request.query).get("page", ["1"])[0])
        size = self.category_page
        pages = max(1, -(-len(self.tree) // size))
        return Route(200, json.dumps(self.tree[(page - 1) * size: page * size]).encode(),
                     {**JSON, "X-WP-Total": str(len(self.tree)), "X-WP-TotalPages": str(pages)})

    def category_requests(self) -> list[str]:
        return [parse_qs(r.query)["page"][0] for r in self.server.requests if r.path.endswith("/categories")]


PARENT_SECTIONS = [
    {"name": "Drug Development", "slug": "drug-development", "categories": ["Drug Development"]},
    {"name": "Manufacturing", "slug": "manufacturing", "categories": ["Manufacturing"]},
    {"name": "Clinical", "slug": "clinical", "categories": ["Clinical Trials"]},
    {"name": "News", "slug": "news", "categories": []},
]


@pytest.fixture
def rest_settings(make_settings: Callable[..., Settings], server: LocalServer) -> Settings:
    return make_settings(wordpress=[{"name": "Pharma site", "url": server.url}], sections=PARENT_SECTIONS,
                         ingest={"retries": 0})


def sections_of(engine: Engine, settings: Settings) -> dict[str, str]:
    built = issues.build_issue(engine, settings, now=NOW)
    return {a.title: block.slug for block in built.blocks for a in block.articles}


def test_a_new_child_category_lands_in_its_parents_section(
    engine: Engine, rest_settings: Settings, server: LocalServer
) -> None:
    site = RestSite(server, [
        rest_post(1, "Gene therapy approval", [9]),
        rest_post(2, "CAR-T manufacturing", [12]),
        rest_post(3, "Continuous lines", [21]),
        rest_post(4, "Phase III readout", [5]),
        rest_post(5, "Odds and ends", [30]),
    ])
    [report] = ingest(engine, rest_settings)
    assert (report.status, report.warnings) == ("fetched", ())
    found = stored(engine)
    assert found["CAR-T manufacturing"].categories == ("Cell Therapy",)
    assert found["CAR-T manufacturing"].category_ancestors == (("Research & Development", "Drug Development"),)
    # The whole tree (three pages of three) was read once for the three pages of posts.
    assert site.category_requests() == ["1", "2", "3"]
    assert sections_of(engine, rest_settings) == {
        "Gene therapy approval": "drug-development",
        "CAR-T manufacturing": "drug-development",
        "Continuous lines": "manufacturing",
        # A section naming the child itself wins over its parent's section.
        "Phase III readout": "clinical",
        "Odds and ends": "news",
    }


def test_a_broken_tree_is_cut_and_reported_once(
    engine: Engine, rest_settings: Settings, server: LocalServer
) -> None:
    broken = [
        {"id": 40, "name": "Orphan", "parent": 404},
        {"id": 41, "name": "Loop A", "parent": 42},
        {"id": 42, "name": "Loop B", "parent": 41},
        {"id": 43, "name": "Under the loop", "parent": 41},
        {"id": 2, "name": "Drug Development", "parent": 0},
    ]
    RestSite(server, [
        rest_post(1, "Orphaned", [40]), rest_post(2, "Looped", [43]), rest_post(3, "Looped again", [42]),
    ], tree=broken)
    [report] = ingest(engine, rest_settings)
    assert report.status == "fetched" and report.new == 3
    assert report.warnings == (
        "category 'Orphan' names parent 404, which the site does not list; it is treated as a top-level category",
        "categories 'Loop A' and 'Loop B' are each other's ancestors; the loop is cut where it closes",
    )
    found = stored(engine)
    assert found["Looped"].category_ancestors == (("Loop A", "Loop B"),)
    assert set(sections_of(engine, rest_settings).values()) == {"news"}


def test_a_disabled_categories_endpoint_falls_back_to_names_reported_once(
    engine: Engine, rest_settings: Settings, server: LocalServer
) -> None:
    site = RestSite(server, [rest_post(n, f"Post {n}", [5 if n % 2 else 9]) for n in range(1, 6)])
    site.disabled = True
    [report] = ingest(engine, rest_settings)
    assert report.status == "fetched" and report.new == 5
    assert report.warnings == (
        "categories endpoint unavailable (HTTP 404: No route was found matching the URL and request method.); "
        "sections follow the posts' category names only, not their parents",
    )
    assert site.category_requests() == ["1"]
    placed = sections_of(engine, rest_settings)
    assert placed["Post 1"] == "clinical" and placed["Post 2"] == "news"


def test_rest_images_choose_among_media_details_sizes_and_never_upscale(
    engine: Engine, rest_settings: Settings, server: LocalServer
) -> None:
    wp_sizes = {"thumbnail": (150, 150), "medium": (300, 200), "medium_large": (768, 512), "large": (1024, 683)}
    RestSite(server, [
        rest_post(1, "Large original", [20], image=media(1, sizes=wp_sizes, full=(2400, 1600))),
        rest_post(2, "Small original", [20], image=media(2, sizes={"thumbnail": (150, 150)}, full=(320, 240))),
        rest_post(3, "Absurd details", [20], image=media(3, sizes={}, full=(100000, 0))),
        # No excerpt (a plugin emptied it): the summary is the content's first paragraph.
        rest_post(4, "No excerpt", [20], excerpt="", content=(
            "<script>document.write('tracking')</script><style>p { color: red }</style>"
            "<p>From the content.</p><p>More.</p>")),
    ])
    [report] = ingest(engine, rest_settings)
    found = stored(engine)
    large = found["Large original"]
    assert (large.image_url, large.image_width, large.image_height, large.image_small) == (
        f"{UPLOADS}/image-1-1024x683.jpg", 1024, 683, False)
    small = found["Small original"]
    assert (small.image_url, small.image_width, small.image_small) == (f"{UPLOADS}/image-2.jpg", 320, True)
    absurd = found["Absurd details"]
    assert absurd.image_url == f"{UPLOADS}/image-3.jpg" and (absurd.image_width, absurd.image_small) == (None, False)
    assert found["No excerpt"].summary == "From the content."
    assert found["Large original"].summary == "Summary…"
    # An empty excerpt filled from the content is not counted as cleaned: nothing was taken out.
    assert (report.small_images, report.cleaned) == (1, 3)


def test_sources_lists_categories_with_their_sections_and_the_fallback(
    engine: Engine, rest_settings: Settings, server: LocalServer, make_settings: Callable[..., Settings]
) -> None:
    RestSite(server, [rest_post(1, "Gene therapy approval", [9]), rest_post(2, "Odds and ends", [30])])
    ingest(engine, rest_settings)
    config = str(rest_settings.base_dir / "newsletter.toml")
    result = CliRunner().invoke(app, ["--config", config, "sources", "--categories", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {r["category"]: r for r in json.loads(result.output)}
    assert rows["Gene Therapy"]["section"] == "drug-development" and rows["Gene Therapy"]["ancestors"] == ["Drug Development"]
    assert (rows["Uncategorized"]["section"], rows["Uncategorized"]["fallback"]) == ("news", True)
    result = CliRunner().invoke(app, ["--config", config, "sources", "--categories"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Drug Development (fallback)" not in result.output and "News (fallback)" in result.output
    assert "1 category falls to the fallback section" in result.output


def test_ingest_prints_cleaned_summaries_and_small_images(
    engine: Engine, feed_settings: Callable[[bytes], Settings]
) -> None:
    thumb = f'<media:thumbnail url="{UPLOADS}/vial-150x150.jpg" width="150" height="150" />'
    settings = feed_settings(wp_feed([wp_item(1, "One", excerpt="Text [&hellip;]", media=thumb),
                                      wp_item(2, "Two", excerpt="Text.")]))
    config = str(settings.base_dir / "newsletter.toml")
    result = CliRunner().invoke(app, ["--config", config, "ingest", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["cleaned"], row["small_images"]) == (2, 1)
    result = CliRunner().invoke(app, ["--config", config, "ingest"], env={"COLUMNS": "200"})
    assert "cleaned" in result.output and "small images" in result.output


def test_articles_stored_before_migration_0008_read_as_unknown_sizes_and_gain_them_on_ingest(
    database_url: str, feed_settings: Callable[[bytes], Settings]
) -> None:
    eng = db.open_engine(database_url)
    try:
        command.upgrade(db._alembic_config(eng), "0007")
        with eng.begin() as conn:
            conn.execute(text(
                "INSERT INTO articles (guid, url, title, author, published_at, categories, summary, image_url, source, "
                "first_seen_at, updated_at) VALUES (:guid, :url, 'Thumbnail only', '', :now, 'Manufacturing', 'Old.', "
                ":image, 'Pharma News', :now, :now)"),
                {"guid": f"{SITE}/?p=1", "url": f"{SITE}/2026/11/post-1/", "image": f"{UPLOADS}/vial-150x150.jpg",
                 "now": NOW - DAY})
        assert db.upgrade(eng)
        before = stored(eng)["Thumbnail only"]
        assert (before.image_width, before.image_height, before.image_small, before.category_ancestors) == (None, None, False, ())
        thumb = f'<media:thumbnail url="{UPLOADS}/vial-150x150.jpg" width="150" height="150" />'
        [report] = ingest(eng, feed_settings(wp_feed([wp_item(1, "Thumbnail only", excerpt="New.", media=thumb)])))
        assert (report.new, report.updated) == (0, 1)
        after = stored(eng)["Thumbnail only"]
        assert (after.image_width, after.image_height, after.image_small, after.summary) == (150, 150, True, "New.")
    finally:
        eng.dispose()


def test_continue_reading_links_of_themes_leave_the_summary(
    engine: Engine, rest_settings: Settings, server: LocalServer
) -> None:
    link = f"{SITE}/2026/11/post-{{n}}/"
    RestSite(server, [
        # Twenty Seventeen: the link ends the excerpt's paragraph, after "&hellip;".
        rest_post(1, "Inline link", [20], excerpt=(
            f'<p>Capacity grows at three sites &hellip; <a href="{link.format(n=1)}" class="more-link">Continue reading'
            '<span class="screen-reader-text"> &#8220;Inline link&#8221;</span></a></p>\n')),
        # A theme set to German: the link is a paragraph of its own.
        rest_post(2, "Eigener Absatz", [20], excerpt=(
            f'<p>Das Werk in Basel wird erweitert.</p>\n<p class="link-more"><a href="{link.format(n=2)}" '
            'class="more-link">Weiterlesen<span class="screen-reader-text"> „Eigener Absatz“</span></a></p>\n')),
        # A link to another page at the end of a sentence is the author's, and stays.
        rest_post(3, "Other link", [20], excerpt=f'<p>See the <a href="{SITE}/guidance/">FDA guidance</a></p>'),
    ])
    [report] = ingest(engine, rest_settings)
    found = stored(engine)
    assert found["Inline link"].summary == "Capacity grows at three sites…"
    assert found["Eigener Absatz"].summary == "Das Werk in Basel wird erweitert."
    assert found["Other link"].summary == "See the FDA guidance"
    assert report.cleaned == 2


def test_the_demo_feed_shows_the_habits_handled(tmp_path: Path) -> None:
    settings = load_settings(prepare_demo(tmp_path / "demo", now=NOW), environ={})
    eng = db.open_engine(settings.database_url)
    try:
        db.upgrade(eng)
        [report] = ingest(eng, settings)
        found = stored(eng)
    finally:
        eng.dispose()
    assert (report.items, report.cleaned, report.small_images) == (38, 38, 1)
    assert not [a.title for a in found.values() if "appeared first" in a.summary or "[…]" in a.summary]
    only_line = found["Continuous manufacturing line for oral solids gets FDA nod"]
    assert only_line.summary.startswith("The end-to-end line replaces six batch steps")
    campus = found["Biotech campus in Cambridge adds 250,000 sq ft of lab space"]
    assert (campus.image_width, campus.image_small) == (150, True)
