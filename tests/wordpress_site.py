"""A WordPress site played by a `LocalServer`: posts as `/wp/v2/posts?_embed` gives them,
served a page at a time with WordPress's headers. Shared by the WordPress, sources and
network-guard tests and by `bench/bench_weekly.py`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from tests.conftest import NOW
from tests.servers import LocalServer, Request, Route

DAY = timedelta(days=1)
JSON = {"content-type": "application/json; charset=UTF-8"}
POSTS = "/wp-json/wp/v2/posts"


def post(
    number: int,
    title: str,
    *,
    categories: list[str] = (),  # type: ignore[assignment]
    image: str | None = None,
    published: datetime = NOW - DAY,
    excerpt: str = "<p>Summary of the post. [&hellip;]</p>",
    base: str = "https://pharma.example.com",
    embed_terms: bool = True,
) -> dict[str, Any]:
    """One post as `/wp/v2/posts?_embed` gives it (only the fields we ask for)."""
    terms = [{"id": 10 + i, "name": name, "taxonomy": "category"} for i, name in enumerate(categories)]
    embedded: dict[str, Any] = {"author": [{"id": 1, "name": "Jane Reporter"}]}
    if embed_terms:
        embedded["wp:term"] = [terms, [{"id": 99, "name": "a-tag", "taxonomy": "post_tag"}]]
    if image:
        embedded["wp:featuredmedia"] = [{"id": 500 + number, "source_url": image}]
    return {
        "id": number,
        "guid": {"rendered": f"{base}/?p={number}"},
        "link": f"{base}/{number}/",
        "date_gmt": published.strftime("%Y-%m-%dT%H:%M:%S"),
        "title": {"rendered": title},
        "excerpt": {"rendered": excerpt, "protected": False},
        "categories": [t["id"] for t in terms],
        "featured_media": 500 + number if image else 0,
        "_links": {},
        "_embedded": embedded,
    }


class WordPressSite:
    """Routes for a WordPress site on a `LocalServer`: `pages` of posts, served by `page=`.

    `total_pages` is what X-WP-TotalPages says (default: the number of pages); a page
    number past the pages answers 400 like WordPress; `failures` maps a page number to a
    list of statuses answered before the page itself (one per request).
    """

    def __init__(self, server: LocalServer, pages: list[list[dict[str, Any]]], *, total_pages: int | None = None) -> None:
        self.server = server
        self.pages = pages
        self.total_pages = total_pages if total_pages is not None else len(pages)
        self.failures: dict[int, list[int]] = {}
        self.categories = {10: "FDA Approvals", 11: "Manufacturing", 12: "Supply Chain"}
        server.routes[POSTS] = self._posts
        server.routes["/wp-json/wp/v2/categories"] = self._categories

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self, path: str = POSTS) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(r.query).items()} for r in self.server.requests if r.path == path]

    def _posts(self, request: Request) -> Route:
        page = int(parse_qs(request.query).get("page", ["1"])[0])
        pending = self.failures.get(page)
        if pending:
            return Route(pending.pop(0), json.dumps({"code": "internal_server_error", "message": "Oops"}).encode(), JSON)
        if page > len(self.pages):
            error = {"code": "rest_post_invalid_page_number", "message": "The page number requested is larger than the number of pages available.", "data": {"status": 400}}
            return Route(400, json.dumps(error).encode(), JSON)
        total = sum(len(p) for p in self.pages)
        headers = {**JSON, "X-WP-Total": str(total), "X-WP-TotalPages": str(self.total_pages)}
        return Route(200, json.dumps(self.pages[page - 1]).encode(), headers)

    def _categories(self, request: Request) -> Route:
        # The whole list in one page, as `?per_page=100` gives it for a small site.
        body = [{"id": i, "name": name, "parent": 0} for i, name in sorted(self.categories.items())]
        return Route(200, json.dumps(body).encode(), {**JSON, "X-WP-Total": str(len(body)), "X-WP-TotalPages": "1"})


def three_pages() -> list[list[dict[str, Any]]]:
    return [
        [
            post(1, "Pfizer&#8217;s &amp; BioNTech&#8217;s new <em>plant</em>", categories=["Manufacturing"],
                 image="https://pharma.example.com/wp-content/uploads/plant.jpg"),
            post(2, "Red Sea delays API shipments", categories=["Supply Chain", "Manufacturing", "Insights"]),
        ],
        [post(3, "FDA approves oral GLP-1", categories=["FDA Approvals"], image="https://img.example.com/glp1.jpg",
              published=NOW - 2 * DAY)],
        [private_image(post(4, "Events &#8211; CPHI &quot;Milan&quot; highlights", categories=["Events &amp; Conferences"],
                            published=NOW - 3 * DAY, excerpt="<p>Three days <strong>in</strong> Milan.</p>"))],
    ]


def private_image(data: dict[str, Any]) -> dict[str, Any]:
    """A post whose featured image is private: WordPress embeds an error in its place."""
    data["featured_media"] = 77
    data["_embedded"]["wp:featuredmedia"] = [{"code": "rest_forbidden", "message": "Sorry, you are not allowed to do that.", "data": {"status": 401}}]
    return data
