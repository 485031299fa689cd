"""The archive's pages in the web app: the list of issues, each issue's web version (the
"View in browser" link of every email), and the Atom feeds, with ETag and Last-Modified.

Owns: the archive endpoints. Imports `archive`, `issues` and this package's `views`.
The same `ArchivePages` build the static export, so both always agree.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import issues
from ..archive import ArchivePages, Page
from .errors import WebError
from .views import web

CACHE = "public, max-age=300"


class NotFoundError(WebError):
    status = 404
    title = "Not found"


def _pages(request: Request) -> ArchivePages:
    state = request.app.state
    if not hasattr(state, "archive_pages"):
        state.archive_pages = issues.archive_pages(web(request).settings)
    pages: ArchivePages = state.archive_pages
    return pages


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


async def archive_redirect(request: Request) -> Response:
    return RedirectResponse("/archive/", status_code=308)


async def archive_index(request: Request) -> Response:
    pages = _pages(request)

    def build(conn: Connection) -> Page | None:
        return pages.index(conn, 1)

    return _answer(request, await web(request).transaction(build))


async def archive_page(request: Request) -> Response:
    number = request.path_params["number"]
    pages = _pages(request)

    def build(conn: Connection) -> Page | None:
        return pages.index(conn, number) if number > 1 else None

    if number == 1:
        return RedirectResponse("/archive/", status_code=308)
    return _answer(request, await web(request).transaction(build))


async def archive_issue(request: Request) -> Response:
    slug = request.path_params["slug"]
    pages = _pages(request)

    def build(conn: Connection) -> Page | None:
        return pages.issue(conn, slug)

    return _answer(request, await web(request).transaction(build))


async def archive_feed(request: Request) -> Response:
    section = request.path_params.get("section")
    pages = _pages(request)

    def build(conn: Connection) -> Page | None:
        return pages.feed(conn, section)

    return _answer(request, await web(request).transaction(build))
