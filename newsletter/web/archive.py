"""The archive's pages in the web app: the landing page at `/` (the newest issue's
contents), the list of issues, each issue's web version (the "View in browser" link of
every email), and the Atom feeds, with ETag and Last-Modified.

Owns: the archive endpoints and `PageCache`. Imports `archive`, `issues` and this
package's `views`. The same `ArchivePages` build the static export, so both always agree.

The archive is the same for every visitor, so each page is built once and kept. At most
once a second (`CHECK_SECONDS`) a request asks the database for the archive's generation
(`archive_generation`, one indexed query), and a page built for an older generation is
built again: a new issue in the archive, published by this process or by `newsletter
send` elsewhere, is served within a second. Article titles and links are read from the
articles, which a later ingest may correct: a kept page is also built again after
`CACHE_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from datetime import datetime
from email.utils import parsedate_to_datetime

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import issues
from ..archive import ArchivePages, Page, archive_generation
from .errors import WebError
from .views import web

CACHE = "public, max-age=300"
#: How long a kept page is served before it is built again even when no issue was added.
CACHE_SECONDS = 60.0
#: How often the archive's generation is asked for.
CHECK_SECONDS = 1.0
#: Pages kept at most; past it the cache starts afresh (unknown addresses are never kept).
CACHE_ENTRIES = 512


class PageCache:
    """Built archive pages by what they show, each with the archive generation it was
    built for and when."""

    def __init__(self, *, seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.pages: dict[Hashable, tuple[tuple[int, datetime | None], float, Page]] = {}
        self.generation: tuple[int, datetime | None] | None = None
        self.checked = 0.0

    def page(self, conn: Connection, key: Hashable, build: Callable[[Connection], Page | None]) -> Page | None:
        """The page for `key`, built by `build` unless a fresh one for the archive as it
        was at the last check (at most `CHECK_SECONDS` ago) is kept."""
        now = self.clock()
        if self.generation is None or now - self.checked >= CHECK_SECONDS:
            self.generation, self.checked = archive_generation(conn), now
        kept = self._kept(key, now)
        if kept is not None:
            return kept
        page = build(conn)
        if page is not None:
            if len(self.pages) >= CACHE_ENTRIES:
                self.pages.clear()
            self.pages[key] = (self.generation, now, page)
        return page

    def fresh(self, key: Hashable) -> Page | None:
        """The page kept for `key` when neither it nor the last check is out of date:
        then no connection is needed at all."""
        now = self.clock()
        return self._kept(key, now) if now - self.checked < CHECK_SECONDS else None

    def _kept(self, key: Hashable, now: float) -> Page | None:
        """The page kept for `key` if built for the last generation seen, not too long ago."""
        kept = self.pages.get(key)
        if kept is not None and kept[0] == self.generation and now - kept[1] < self.seconds:
            return kept[2]
        return None


class NotFoundError(WebError):
    status = 404
    title = "Not found"


def _pages(request: Request) -> ArchivePages:
    state = request.app.state
    if not hasattr(state, "archive_pages"):
        state.archive_pages = issues.archive_pages(web(request).settings)
        state.archive_cache = PageCache(clock=state.monotonic)
    pages: ArchivePages = state.archive_pages
    return pages


async def _cached(request: Request, key: Hashable, build: Callable[[Connection], Page | None]) -> Response:
    """The answer for the page `key`: kept, or built (a read of the database)."""
    _pages(request)
    cache: PageCache = request.app.state.archive_cache
    kept = cache.fresh(key)
    if kept is not None:
        return _answer(request, kept)
    return _answer(request, await web(request).read(lambda conn: cache.page(conn, key, build)))


def _not_modified(request: Request, page: Page) -> bool:
    match = request.headers.get("if-none-match")
    if match is not None:
        return page.etag in [tag.strip() for tag in match.split(",")] or match.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since and page.last_modified is not None:
        try:
            return page.last_modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _answer(request: Request, page: Page | None) -> Response:
    if page is None:
        raise NotFoundError("There is no such page in the newsletter archive.")
    headers = {"etag": page.etag, "cache-control": CACHE}
    if page.last_modified is not None:
        headers["last-modified"] = page.last_modified_header
    if _not_modified(request, page):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=page.media_type, headers=headers)


async def home(request: Request) -> Response:
    """The landing page, kept with the archive's pages: a newly published issue shows on
    it within a second (the archive's generation changes)."""
    pages = _pages(request)
    return await _cached(request, ("home",), pages.home)


async def archive_redirect(request: Request) -> Response:
    return RedirectResponse("/archive/", status_code=308)


async def archive_index(request: Request) -> Response:
    pages = _pages(request)
    return await _cached(request, ("index", 1), lambda conn: pages.index(conn, 1))


async def archive_page(request: Request) -> Response:
    number = request.path_params["number"]
    pages = _pages(request)
    if number == 1:
        return RedirectResponse("/archive/", status_code=308)
    return await _cached(request, ("index", number), lambda conn: pages.index(conn, number))


async def archive_issue(request: Request) -> Response:
    slug = request.path_params["slug"]
    pages = _pages(request)
    return await _cached(request, ("issue", slug), lambda conn: pages.issue(conn, slug))


async def archive_feed(request: Request) -> Response:
    section = request.path_params.get("section")
    pages = _pages(request)
    return await _cached(request, ("feed", section), lambda conn: pages.feed(conn, section))
