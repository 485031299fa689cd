"""The public archive of sent issues: stored web versions, index pages, Atom feeds and a
static export.

Owns: the `archive` table's queries, `ArchivePages` (every page and feed as bytes, shared
by the web app and the export), `export_archive`. Imports `models`, `tables`, `errors`.

What is stored is the public render of each issue (all sections, no personal links), made
when the issue's send starts, so the "View in browser" link of the first email already
works. Nothing personal is ever stored here: the render has no substitution tags, and a
test scans every page, feed and exported file for every subscriber's token and address.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from .models import RenderedMessage
from .tables import archive, articles, issue_articles

PAGE_SIZE = 20


@dataclass(frozen=True)
class ArchivedArticle:
    title: str
    url: str
    summary: str
    section: str


@dataclass(frozen=True)
class ArchivedIssue:
    issue_id: int
    slug: str
    subject: str
    preheader: str
    published_at: datetime
    sections: tuple[str, ...]
    html: str
    text: str


def save_archived(
    conn: Connection, *, issue_id: int, slug: str, message: RenderedMessage, sections: tuple[str, ...], now: datetime,
    older_than: datetime | None = None,
) -> bool:
    """Store the public version of an issue once; True when it was stored now. Several
    workers starting one send together may race here: the primary key lets one win, and
    the others' inserts are rolled back to a savepoint. A stored version published before
    `older_than` (the issue was recalled since, to be sent again corrected) gives way."""
    if older_than is not None:
        conn.execute(delete(archive).where(archive.c.issue_id == issue_id, archive.c.published_at < older_than))
    if conn.execute(select(archive.c.issue_id).where(archive.c.issue_id == issue_id)).first():
        return False
    try:
        with conn.begin_nested():
            conn.execute(
                insert(archive).values(
                    issue_id=issue_id, slug=slug, subject=message.subject, preheader=message.preheader,
                    published_at=now, sections=",".join(sections), html=message.html, text=message.text,
                )
            )
    except IntegrityError:
        return False
    return True


def _archived(row: Any) -> ArchivedIssue:
    return ArchivedIssue(
        row.issue_id, row.slug, row.subject, row.preheader, row.published_at,
        tuple(s for s in row.sections.split(",") if s), row.html, row.text,
    )


def get_archived(conn: Connection, slug: str) -> ArchivedIssue | None:
    row = conn.execute(select(archive).where(archive.c.slug == slug)).first()
    return _archived(row) if row else None


def list_archived(conn: Connection, *, section: str | None = None, offset: int = 0, limit: int | None = None) -> list[ArchivedIssue]:
    """Archived issues, newest first; only those with `section` when one is given."""
    query = select(archive).order_by(archive.c.published_at.desc(), archive.c.issue_id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    found = [_archived(row) for row in conn.execute(query)]
    return [a for a in found if section is None or section in a.sections]


def archive_generation(conn: Connection) -> tuple[int, datetime | None]:
    """What changes whenever an issue joins the archive (it is only ever added to): the
    number of archived issues and the newest one's date. One indexed query, so a cache of
    the archive's pages can check it on every request."""
    row = conn.execute(select(func.count(), func.max(archive.c.published_at)).select_from(archive)).one()
    return int(row[0]), row[1]


def count_archived(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(archive)).scalar_one())


def archived_articles(conn: Connection, issue_ids: list[int]) -> dict[int, list[ArchivedArticle]]:
    """The articles of each archived issue, in the order they appear in it."""
    rows = conn.execute(
        select(issue_articles.c.issue_id, issue_articles.c.section, articles.c.title, articles.c.url, articles.c.summary)
        .join(articles, articles.c.id == issue_articles.c.article_id)
        .where(issue_articles.c.issue_id.in_(issue_ids))
        .order_by(issue_articles.c.issue_id, issue_articles.c.position)
    ).all()
    found: dict[int, list[ArchivedArticle]] = {i: [] for i in issue_ids}
    for row in rows:
        found[row.issue_id].append(ArchivedArticle(row.title, row.url, row.summary, row.section))
    return found


@dataclass(frozen=True)
class Page:
    """One page or feed of the archive, ready to serve or write."""

    body: bytes
    media_type: str
    last_modified: datetime | None

    @cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    @property
    def last_modified_header(self) -> str:
        return format_datetime(self.last_modified, usegmt=True) if self.last_modified else ""


class ArchivePages:
    """Builds the archive's pages and feeds from the database with the page templates."""

    def __init__(
        self,
        env: jinja2.Environment,
        *,
        site_name: str,
        base_url: str,
        section_names: dict[str, str],
        zone: Any,
        archive_url: str = "",
    ) -> None:
        self.env = env
        self.site_name = site_name
        self.base_url = base_url
        # Absolute address of the archive, for feeds (readers need absolute links); pages
        # link relatively so that the static export works wherever it is hosted.
        self.archive_url = archive_url or f"{base_url}/archive"
        self.section_names = section_names
        self.zone = zone

    def _context(self, **values: Any) -> dict[str, Any]:
        return {
            "site_name": self.site_name, "base_url": self.base_url, "archive_url": self.archive_url,
            "sections": self.section_names, "zone": self.zone, **values,
        }

    def pages(self, conn: Connection) -> int:
        return max(1, math.ceil(count_archived(conn) / PAGE_SIZE))

    def index(self, conn: Connection, page: int = 1) -> Page | None:
        """Page `page` of the list of issues, newest first; None past the last page."""
        total = self.pages(conn)
        if page < 1 or page > total:
            return None
        issues = list_archived(conn, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        body = self.env.get_template("archive_index.html").render(
            self._context(
                issues=issues, page=page, pages=total, root="" if page == 1 else "../../",
                articles=archived_articles(conn, [i.issue_id for i in issues]),
            )
        )
        newest = issues[0].published_at if issues else None
        return Page(body.encode("utf-8"), "text/html; charset=utf-8", newest)

    def issue(self, conn: Connection, slug: str) -> Page | None:
        """The web version of one issue."""
        found = get_archived(conn, slug)
        if found is None:
            return None
        return Page(found.html.encode("utf-8"), "text/html; charset=utf-8", found.published_at)

    def feed(self, conn: Connection, section: str | None = None) -> Page | None:
        """The Atom feed of all issues, or of the issues with `section`; None for an
        unknown section."""
        if section is not None and section not in self.section_names:
            return None
        issues = list_archived(conn, section=section, limit=None)[:PAGE_SIZE]
        found = archived_articles(conn, [i.issue_id for i in issues])
        # The entry content is HTML carried as text: escaped here for HTML, and once more
        # by the template for XML.
        contents = {
            issue_id: "<ul>" + "".join(
                f'<li><a href="{html.escape(a.url)}">{html.escape(a.title)}</a></li>'
                for a in items if section is None or a.section == section
            ) + "</ul>"
            for issue_id, items in found.items()
        }
        body = self.env.get_template("archive_feed.xml").render(
            self._context(
                issues=issues, section=section, contents=contents,
                updated=issues[0].published_at if issues else None,
            )
        )
        return Page(body.encode("utf-8"), "application/atom+xml; charset=utf-8", issues[0].published_at if issues else None)

    def all_pages(self, conn: Connection) -> Iterator[tuple[str, Page]]:
        """Every page and feed with the relative path a static host serves it from."""
        for n in range(1, self.pages(conn) + 1):
            page = self.index(conn, n)
            assert page is not None
            yield ("index.html" if n == 1 else f"page/{n}/index.html"), page
        for issue in list_archived(conn):
            page = self.issue(conn, issue.slug)
            assert page is not None
            yield f"{issue.slug}/index.html", page
        feed = self.feed(conn)
        assert feed is not None
        yield "feed.xml", feed
        for section in self.section_names:
            page = self.feed(conn, section)
            assert page is not None
            yield f"{section}/feed.xml", page


@dataclass(frozen=True)
class ExportReport:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]


def export_archive(conn: Connection, pages: ArchivePages, folder: Path) -> ExportReport:
    """Write every page and feed under `folder`, touching only files whose bytes changed,
    so a static host's sync uploads only what is new."""
    written: list[str] = []
    unchanged: list[str] = []
    for relative, page in pages.all_pages(conn):
        target = folder / relative
        if target.is_file() and target.read_bytes() == page.body:
            unchanged.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(page.body)
        temporary.replace(target)
        written.append(relative)
    return ExportReport(tuple(written), tuple(unchanged))
