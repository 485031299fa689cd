"""The ingest use case: fetch every configured feed and store its articles.

Owns: `ingest_feeds`, `FeedReport`. Imports `config`, `store`, `sources.feeds`.
One feed failing never stops the others, and nothing stored is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from . import store
from .config import Settings
from .sources.feeds import fetch_feed


@dataclass(frozen=True)
class FeedReport:
    """How one feed went: fetched, not_modified or failed, with counts and reasons."""

    name: str
    url: str
    status: str
    new: int = 0
    updated: int = 0
    items: int = 0
    error: str = ""
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def make_client(settings: Settings) -> httpx.Client:
    """The HTTP client every source uses: timeouts, redirects, our User-Agent."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.ingest.timeout),
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": settings.ingest.user_agent, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"},
    )


def ingest_feeds(
    engine: Engine,
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_feed: Callable[[FeedReport], None] | None = None,
) -> list[FeedReport]:
    """Fetch each configured feed in turn and upsert its articles; one report per feed."""
    own_client = client is None
    http = client or make_client(settings)
    reports: list[FeedReport] = []
    try:
        for feed in settings.feeds:
            with engine.connect() as conn:
                etag, modified = store.feed_validators(conn, feed.url)
            result = fetch_feed(
                http,
                feed.url,
                etag=etag,
                last_modified=modified,
                max_bytes=settings.ingest.max_bytes,
                summary_chars=settings.ingest.summary_chars,
            )
            now = clock()
            with engine.begin() as conn:
                counts = store.upsert_articles(conn, result.items, source=feed.name, now=now)
                store.record_fetch(
                    conn, feed.url, status=result.status, error=result.error,
                    etag=result.etag, last_modified=result.last_modified, now=now,
                )
            report = FeedReport(
                name=feed.name, url=feed.url, status=result.status, new=counts.new, updated=counts.updated,
                items=len(result.items), error=result.error, skipped=result.skipped, warnings=result.warnings,
            )
            reports.append(report)
            if on_feed:
                on_feed(report)
    finally:
        if own_client:
            http.close()
    return reports
