"""The ingest use case: fetch every configured source and store its articles.

Owns: `ingest_sources` (and its older name `ingest_feeds`), `SourceReport` (also
`FeedReport`), `configured_sources`, `source_statuses`, `category_placements`,
`section_categories`, `make_client`. Imports `config`, `netguard`, `store`, `sections` and
`sources`.

Sources are read in configuration order: `[[feeds]]`, then `[[wordpress]]`, then
`[[folders]]`. One source failing never stops the others, and nothing stored is removed.
Each source's last fetch is remembered in `feed_state` under its key: the feed URL, the
WordPress posts endpoint, or the folder's `file://` URI. For a WordPress site that row's
`last_modified` holds the start of the last successful ingest, the cursor for `after=`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from . import netguard, store
from .config import Settings
from .sections import assign_section, fold, make_rules
from .sources.feeds import FetchResult, fetch_feed
from .sources.folder import read_folder
from .sources.images import settle_image
from .sources.wordpress import fetch_wordpress, posts_endpoint


@dataclass(frozen=True)
class SourceReport:
    """How one source went: fetched, not_modified or failed, with counts and reasons."""

    name: str
    url: str
    status: str
    new: int = 0
    updated: int = 0
    items: int = 0
    error: str = ""
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    kind: str = "feed"
    #: Summaries that had boilerplate, a "Continue reading" link or the excerpt marker
    #: taken out, or were taken from the content.
    cleaned: int = 0
    #: Images known to be narrower than `images.min_hero_width`: thumbnails, not heroes.
    small_images: int = 0


# The name the report had when feeds were the only source.
FeedReport = SourceReport


@dataclass(frozen=True)
class ConfiguredSource:
    """One configured source: its kind, name, where it is (for people) and its state key."""

    kind: str
    name: str
    location: str
    key: str


def configured_sources(settings: Settings) -> list[ConfiguredSource]:
    """Every configured source, in the order they are ingested."""
    return (
        [ConfiguredSource("feed", f.name, f.url, f.url) for f in settings.feeds]
        + [ConfiguredSource("wordpress", w.name, w.url, posts_endpoint(w.url)) for w in settings.wordpress]
        + [
            ConfiguredSource("folder", f.name, str(settings.path(f.path)), settings.path(f.path).as_uri())
            for f in settings.folders
        ]
    )


def section_categories(settings: Settings) -> dict[str, tuple[str, ...] | None]:
    """How an item's explicit `section` reaches section assignment: the folded slug and
    heading of each section → the categories an item gets to land there.

    That is the first of the section's categories that no earlier section lists too
    (sections claim articles in configured order); no category at all for the fallback
    section when it has none of its own; None when no category can reach the section.
    """
    claimed: set[str] = set()
    result: dict[str, tuple[str, ...] | None] = {}
    for section in settings.sections:
        own = [c for c in section.categories if fold(c) not in claimed]
        claimed.update(fold(c) for c in section.categories)
        value: tuple[str, ...] | None = (own[0],) if own else None
        if value is None and section.slug == settings.selection.fallback_section:
            value = ()
        result[fold(section.slug)] = value
        result.setdefault(fold(section.name), value)
    return result


def make_client(settings: Settings) -> httpx.Client:
    """The HTTP client every source uses: the network guard (public addresses and
    `[ingest] allow_networks` only), timeouts, redirects, our User-Agent."""
    return netguard.make_client(
        netguard.NetworkPolicy.from_cidrs(settings.ingest.allow_networks),
        timeout=settings.ingest.timeout,
        headers={"User-Agent": settings.ingest.user_agent, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"},
    )


def _cursor(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _fetch(
    source: ConfiguredSource, state: store.SourceState | None, settings: Settings, http: httpx.Client, started: datetime
) -> FetchResult:
    ingest = settings.ingest
    if source.kind == "feed":
        return fetch_feed(
            http, source.location, etag=state.etag if state else "", last_modified=state.cursor if state else "",
            max_bytes=ingest.max_bytes, summary_chars=ingest.summary_chars,
        )
    if source.kind == "wordpress":
        site = next(w for w in settings.wordpress if w.name == source.name)
        previous = _cursor(state.cursor) if state else None
        after = previous - timedelta(hours=site.overlap_hours) if previous else started - timedelta(days=site.first_days)
        result = fetch_wordpress(
            http, site.url, after=after, max_bytes=ingest.max_bytes, summary_chars=ingest.summary_chars,
            retries=ingest.retries, backoff=ingest.retry_backoff,
        )
        # The cursor moves only when every page was read.
        cursor = started.isoformat() if result.status == "fetched" else (state.cursor if state else "")
        return FetchResult(result.status, result.items, result.skipped, "", cursor, result.error, result.warnings)
    return read_folder(
        settings.path(next(f for f in settings.folders if f.name == source.name).path),
        sections=section_categories(settings), zone=settings.site.zone, summary_chars=ingest.summary_chars,
    )


def ingest_sources(
    engine: Engine,
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_source: Callable[[SourceReport], None] | None = None,
) -> list[SourceReport]:
    """Read each configured source in turn and upsert its articles; one report per source."""
    own_client = client is None
    http = client or make_client(settings)
    reports: list[SourceReport] = []
    try:
        for source in configured_sources(settings):
            with engine.connect() as conn:
                state = store.source_states(conn, [source.key]).get(source.key)
            # The deadline bounds the whole source: every page, retry, redirect and read.
            with netguard.deadline(settings.ingest.deadline):
                result = _fetch(source, state, settings, http, clock())
            items = [
                settle_image(item, slot=settings.images.hero_width, min_hero=settings.images.min_hero_width)
                for item in result.items
            ]
            now = clock()
            with engine.begin() as conn:
                counts = store.upsert_articles(conn, items, source=source.name, now=now)
                store.record_fetch(
                    conn, source.key, status=result.status, error=result.error,
                    etag=result.etag, last_modified=result.last_modified, now=now,
                )
            report = SourceReport(
                name=source.name, url=source.location, status=result.status, new=counts.new, updated=counts.updated,
                items=len(result.items), error=result.error, skipped=result.skipped, warnings=result.warnings,
                kind=source.kind, cleaned=sum(i.summary_cleaned for i in items),
                small_images=sum(i.image_small for i in items),
            )
            reports.append(report)
            if on_source:
                on_source(report)
    finally:
        if own_client:
            http.close()
    return reports


@dataclass(frozen=True)
class SourceStatus:
    """A configured source as `newsletter sources` shows it: its last fetch and its articles."""

    kind: str
    name: str
    location: str
    last_fetched_at: datetime | None
    status: str
    error: str
    articles: int
    newest: datetime | None


def source_statuses(engine: Engine, settings: Settings) -> list[SourceStatus]:
    """Every configured source with how its last fetch went ("never" before the first)
    and how many stored articles it brought, in ingest order."""
    sources = configured_sources(settings)
    with engine.connect() as conn:
        states = store.source_states(conn, [s.key for s in sources])
        counts = store.article_counts(conn)
    found = []
    for source in sources:
        state = states.get(source.key)
        count = counts.get(source.name, store.SourceCounts(0, None))
        found.append(
            SourceStatus(
                kind=source.kind, name=source.name, location=source.location,
                last_fetched_at=state.last_fetched_at if state else None,
                status=state.status if state else "never", error=state.error if state else "",
                articles=count.articles, newest=count.newest,
            )
        )
    return found


@dataclass(frozen=True)
class CategoryPlacement:
    """A category seen on a source's stored articles and the section it leads to."""

    source: str
    category: str
    #: Its parents nearest first, when the source knows the tree (WordPress).
    ancestors: tuple[str, ...]
    #: The section's slug, or "" when the article would be left out.
    section: str
    #: No section lists the category or an ancestor: it falls to the fallback section.
    fallback: bool
    articles: int


def category_placements(engine: Engine, settings: Settings) -> list[CategoryPlacement]:
    """Every category on stored articles, by source and name, with the section an article
    in that category alone lands in: what an editor checks after adding a category."""
    rules = make_rules((s.slug, s.name, s.categories) for s in settings.sections)
    fallback = settings.selection.fallback_section
    with engine.connect() as conn:
        counts = store.category_counts(conn)
    found = []
    for (source, category, ancestors), articles in sorted(counts.items(), key=lambda kv: (kv[0][0], fold(kv[0][1]))):
        slug = assign_section([category], rules, None, [ancestors])
        found.append(CategoryPlacement(source, category, ancestors, slug or fallback or "", slug is None, articles))
    return found


# The name the use case had when feeds were the only source; it reads every source.
ingest_feeds = ingest_sources
