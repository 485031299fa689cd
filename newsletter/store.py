"""Queries about articles, feeds, issues and segments, on a connection the caller gives.

Owns: reading and writing `articles`, `feed_state`, `issues`, `issue_articles`,
`segments` (the drafts' edits included: `drafts.py` writes its own `draft_choices` only). The send ledger (`batches`, `deliveries`) is queried in `ledger.py`.
Imports `models`, `tables`. Callers own the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from .models import Article, FeedItem, Issue, IssueStatus, RenderedMessage, SectionBlock, Segment, Sponsor
from .tables import articles, draft_choices, feed_state, issue_articles, issues, segments, sponsors


@dataclass(frozen=True)
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _article(row: Any) -> Article:
    return Article(
        id=row.id,
        guid=row.guid,
        url=row.url,
        title=row.title,
        author=row.author,
        published_at=row.published_at,
        categories=tuple(c for c in row.categories.split("\n") if c),
        summary=row.summary,
        image_url=row.image_url,
        source=row.source,
        image_width=row.image_width,
        image_height=row.image_height,
        image_small=bool(row.image_small),
        category_ancestors=_ancestors(row.category_ancestors),
    )


def _ancestors(stored: str) -> tuple[tuple[str, ...], ...]:
    """The stored JSON of categories' ancestors, or () for anything else."""
    try:
        value = json.loads(stored) if stored else []
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(tuple(str(n) for n in names) if isinstance(names, list) else () for names in value)


def upsert_articles(conn: Connection, items: Iterable[FeedItem], *, source: str, now: datetime) -> UpsertCounts:
    """Store new items and refresh changed ones, matching by guid, then by canonical URL.

    An item without a date keeps the date it was first seen. An article already in an
    issue keeps its date, so a changed feed cannot move it into another issue's window.
    """
    new = updated = unchanged = 0
    for item in items:
        row = conn.execute(select(articles).where(articles.c.guid == item.guid)).first()
        if row is None:
            row = conn.execute(select(articles).where(articles.c.url == item.url)).first()
        values: dict[str, Any] = {
            "title": item.title,
            "author": item.author,
            "categories": "\n".join(item.categories),
            "summary": item.summary,
            "image_url": item.image_url,
            "image_width": item.image_width,
            "image_height": item.image_height,
            "image_small": item.image_small,
            "category_ancestors": json.dumps([list(a) for a in item.category_ancestors], ensure_ascii=False)
            if item.category_ancestors else "",
        }
        if row is None:
            conn.execute(
                insert(articles).values(
                    guid=item.guid,
                    url=item.url,
                    published_at=item.published_at or now,
                    source=source,
                    first_seen_at=now,
                    updated_at=now,
                    **values,
                )
            )
            new += 1
            continue
        if item.published_at is not None and article_issue(conn, row.id) is None:
            values["published_at"] = item.published_at
        if item.url != row.url and conn.execute(select(articles.c.id).where(articles.c.url == item.url)).first() is None:
            values["url"] = item.url
        if all(getattr(row, key) == value for key, value in values.items()):
            unchanged += 1
            continue
        conn.execute(update(articles).where(articles.c.id == row.id).values(updated_at=now, **values))
        updated += 1
    return UpsertCounts(new, updated, unchanged)


def feed_validators(conn: Connection, url: str) -> tuple[str, str]:
    """The ETag and Last-Modified remembered for a feed URL."""
    row = conn.execute(select(feed_state.c.etag, feed_state.c.last_modified).where(feed_state.c.url == url)).first()
    return (row.etag, row.last_modified) if row else ("", "")


def record_fetch(
    conn: Connection, url: str, *, status: str, error: str, etag: str, last_modified: str, now: datetime
) -> None:
    """Remember how the last fetch of a feed went."""
    values = {"etag": etag, "last_modified": last_modified, "last_fetched_at": now, "last_status": status, "last_error": error}
    changed = conn.execute(update(feed_state).where(feed_state.c.url == url).values(**values)).rowcount
    if not changed:
        conn.execute(insert(feed_state).values(url=url, **values))


@dataclass(frozen=True)
class SourceState:
    """How the last fetch of one source went, as `record_fetch` remembered it. `cursor` is
    the stored Last-Modified of a feed, or where the next WordPress ingest starts."""

    key: str
    last_fetched_at: datetime | None
    status: str
    error: str
    etag: str
    cursor: str


def source_states(conn: Connection, keys: Iterable[str]) -> dict[str, SourceState]:
    """The remembered state of each of these sources (feed URL, posts endpoint or folder URI)
    that has been fetched at least once."""
    wanted = list(keys)
    rows = conn.execute(select(feed_state).where(feed_state.c.url.in_(wanted))).all() if wanted else []
    return {
        row.url: SourceState(row.url, row.last_fetched_at, row.last_status, row.last_error, row.etag, row.last_modified)
        for row in rows
    }


@dataclass(frozen=True)
class SourceCounts:
    articles: int
    newest: datetime | None


def article_counts(conn: Connection) -> dict[str, SourceCounts]:
    """Source name → how many stored articles it gave first, and the newest one's date."""
    rows = conn.execute(
        select(articles.c.source, func.count(), func.max(articles.c.published_at)).group_by(articles.c.source)
    ).all()
    return {row[0]: SourceCounts(int(row[1]), row[2]) for row in rows}


def category_counts(conn: Connection) -> dict[tuple[str, str, tuple[str, ...]], int]:
    """(source, category, its ancestors) → how many stored articles carry that category."""
    found: dict[tuple[str, str, tuple[str, ...]], int] = {}
    rows = conn.execute(select(articles.c.source, articles.c.categories, articles.c.category_ancestors)).all()
    for source, categories, stored in rows:
        names = [c for c in categories.split("\n") if c]
        ancestors = _ancestors(stored)
        for index, name in enumerate(names):
            key = (source, name, ancestors[index] if index < len(ancestors) else ())
            found[key] = found.get(key, 0) + 1
    return found


def articles_between(conn: Connection, start: datetime, end: datetime) -> list[Article]:
    """Articles published in [start, end) that no issue has taken yet."""
    taken = select(issue_articles.c.article_id)
    rows = conn.execute(
        select(articles)
        .where(articles.c.published_at >= start, articles.c.published_at < end, articles.c.id.not_in(taken))
        .order_by(articles.c.published_at.desc(), articles.c.id.desc())
    ).all()
    return [_article(row) for row in rows]


def article_issue(conn: Connection, article_id: int) -> int | None:
    """The id of the issue that has taken the article, if any."""
    found: int | None = conn.execute(
        select(issue_articles.c.issue_id).where(issue_articles.c.article_id == article_id)
    ).scalar()
    return found


def article_id_by_url(conn: Connection, url: str) -> int | None:
    """The id of the stored article with this link, if any."""
    found: int | None = conn.execute(select(articles.c.id).where(articles.c.url == url)).scalar()
    return found


def add_article(conn: Connection, *, guid: str, url: str, title: str, summary: str, image_url: str, source: str,
                now: datetime) -> int:
    """Store one article written by hand (no author, no categories, published `now`); its id."""
    return int(conn.execute(insert(articles).values(
        guid=guid, url=url, title=title, author="", published_at=now, categories="", summary=summary,
        image_url=image_url, source=source, first_seen_at=now, updated_at=now,
    )).inserted_primary_key[0])  # type: ignore[index]


def count_articles(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(articles)).scalar_one())


def _issue(row: Any) -> Issue:
    return Issue(
        id=row.id,
        slug=row.slug,
        subject=row.subject,
        preheader=row.preheader,
        window_start=row.window_start,
        window_end=row.window_end,
        created_at=row.created_at,
        status=IssueStatus(row.status),
        sent_at=row.sent_at,
        intro=row.intro,
        provider_batch_id=row.provider_batch_id,
    )


def latest_issue(conn: Connection) -> Issue | None:
    """The most recently built issue."""
    row = conn.execute(select(issues).order_by(issues.c.window_end.desc(), issues.c.id.desc()).limit(1)).first()
    return _issue(row) if row else None


def latest_sent_issue(conn: Connection) -> Issue | None:
    """The newest issue that went out to the readers (sent, or being sent)."""
    row = conn.execute(
        select(issues).where(issues.c.status.in_([IssueStatus.SENDING.value, IssueStatus.SENT.value]))
        .order_by(issues.c.window_end.desc(), issues.c.id.desc()).limit(1)
    ).first()
    return _issue(row) if row else None


def find_issue(conn: Connection, ref: str | int) -> Issue | None:
    """The issue with this slug or id."""
    clause = issues.c.id == int(ref) if str(ref).isdigit() else issues.c.slug == str(ref)
    row = conn.execute(select(issues).where(clause)).first()
    return _issue(row) if row else None


def list_issues(conn: Connection) -> list[Issue]:
    rows = conn.execute(select(issues).order_by(issues.c.window_end.desc(), issues.c.id.desc())).all()
    return [_issue(row) for row in rows]


def issue_number(conn: Connection, issue_id: int) -> int:
    """The issue's number, counted from the first issue built (1)."""
    return int(conn.execute(select(func.count()).select_from(issues).where(issues.c.id <= issue_id)).scalar_one())


def lead_article_id(conn: Connection, issue_id: int) -> int | None:
    """The editors' lead story: the first pinned article of the issue in its order."""
    return conn.execute(
        select(issue_articles.c.article_id)
        .join(draft_choices, (draft_choices.c.issue_id == issue_articles.c.issue_id)
              & (draft_choices.c.article_id == issue_articles.c.article_id))
        .where(issue_articles.c.issue_id == issue_id, draft_choices.c.pinned.is_(True))
        .order_by(issue_articles.c.position).limit(1)
    ).scalar()


def find_sponsor(conn: Connection, issue_id: int) -> Sponsor | None:
    row = conn.execute(select(sponsors).where(sponsors.c.issue_id == issue_id)).first()
    return Sponsor(row.label, row.text, row.url, row.image_url, row.after_section) if row else None


def save_sponsor(conn: Connection, issue_id: int, sponsor: Sponsor | None, *, now: datetime) -> None:
    """Set the issue's sponsor (None: remove it)."""
    conn.execute(sponsors.delete().where(sponsors.c.issue_id == issue_id))
    if sponsor is not None:
        conn.execute(insert(sponsors).values(
            issue_id=issue_id, label=sponsor.label, text=sponsor.text, url=sponsor.url, image_url=sponsor.image_url,
            after_section=sponsor.after, updated_at=now,
        ))


def issue_slugs(conn: Connection) -> set[str]:
    return set(conn.execute(select(issues.c.slug)).scalars())


def create_issue(
    conn: Connection,
    *,
    slug: str,
    window_start: datetime,
    window_end: datetime,
    blocks: Sequence[SectionBlock],
    now: datetime,
    subject: str = "",
    preheader: str = "",
) -> Issue:
    """Store a new draft issue with its articles, section by section."""
    issue_id = conn.execute(
        insert(issues).values(
            slug=slug,
            subject=subject,
            preheader=preheader,
            window_start=window_start,
            window_end=window_end,
            created_at=now,
            status=IssueStatus.DRAFT.value,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    _insert_issue_articles(conn, [
        {"issue_id": issue_id, "article_id": article.id, "section": block.slug, "position": position}
        for block in blocks
        for position, article in enumerate(block.articles)
    ])
    issue = find_issue(conn, issue_id)
    assert issue is not None
    return issue


def _insert_issue_articles(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(issue_articles), rows)


def place_articles(conn: Connection, issue_id: int, placed: Sequence[tuple[int, str]]) -> None:
    """Make these (article id, section) the issue's articles, in this order."""
    conn.execute(delete(issue_articles).where(issue_articles.c.issue_id == issue_id))
    _insert_issue_articles(conn, [
        {"issue_id": issue_id, "article_id": article_id, "section": section, "position": position}
        for position, (article_id, section) in enumerate(placed)
    ])


def issue_article_rows(conn: Connection, issue_id: int) -> list[tuple[Any, ...]]:
    """(id, title, summary, url, image url, section, position) of the issue's articles, in
    order: what a change to the issue's content changes."""
    rows = conn.execute(
        select(articles.c.id, articles.c.title, articles.c.summary, articles.c.url, articles.c.image_url,
               issue_articles.c.section, issue_articles.c.position)
        .join(issue_articles, issue_articles.c.article_id == articles.c.id)
        .where(issue_articles.c.issue_id == issue_id).order_by(issue_articles.c.position)
    ).all()
    return [tuple(r) for r in rows]


def edit_issue(conn: Connection, issue_id: int, *, subject: str | None = None, preheader: str | None = None,
               intro: str | None = None, window_end: datetime | None = None) -> None:
    """Write the given editors' texts or the end of the issue's window (None: unchanged)."""
    values = {key: value for key, value in
              (("subject", subject), ("preheader", preheader), ("intro", intro), ("window_end", window_end))
              if value is not None}
    if values:
        conn.execute(update(issues).where(issues.c.id == issue_id).values(**values))


def issue_blocks(conn: Connection, issue_id: int, names: dict[str, str]) -> tuple[SectionBlock, ...]:
    """The sections of a stored issue with their articles, in configured section order."""
    rows = conn.execute(
        select(articles, issue_articles.c.section)
        .join(issue_articles, issue_articles.c.article_id == articles.c.id)
        .where(issue_articles.c.issue_id == issue_id)
        .order_by(issue_articles.c.position)
    ).all()
    grouped: dict[str, list[Article]] = {}
    for row in rows:
        grouped.setdefault(row.section, []).append(_article(row))
    order = list(names) + sorted(set(grouped) - set(names))
    return tuple(SectionBlock(slug, names.get(slug, slug), tuple(grouped[slug])) for slug in order if slug in grouped)


def provider_batch_id(conn: Connection, issue_id: int) -> str | None:
    """The provider's id of the issue's send, as stored now."""
    value: str | None = conn.execute(select(issues.c.provider_batch_id).where(issues.c.id == issue_id)).scalar()
    return value


def set_provider_batch_id(conn: Connection, issue_id: int, value: str | None) -> str | None:
    """Store the provider's id of the issue's send unless one is stored already (None
    clears it, for a new send after a recall); the id stored now."""
    if value is None:
        conn.execute(update(issues).where(issues.c.id == issue_id).values(provider_batch_id=None))
        return None
    conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.provider_batch_id.is_(None)).values(provider_batch_id=value))
    return provider_batch_id(conn, issue_id)


def set_issue_status(conn: Connection, issue_id: int, status: IssueStatus, *, now: datetime | None = None) -> None:
    values: dict[str, Any] = {"status": status.value}
    if status is IssueStatus.SENT:
        values["sent_at"] = now
    conn.execute(update(issues).where(issues.c.id == issue_id).values(**values))


def save_segments(conn: Connection, issue_id: int, messages: Mapping[str, RenderedMessage]) -> dict[str, Segment]:
    """Store the rendered messages of new segments of an issue (by section key) in one
    statement. A segment is stored once per issue and section set: the caller holds the
    issue's lock (`ledger.lock_issue`) and has read what is stored, and the unique key
    refuses a second row all the same."""
    if not messages:
        return {}
    rows = [
        {"issue_id": issue_id, "key": key, "subject": m.subject, "preheader": m.preheader, "html": m.html, "text": m.text}
        for key, m in messages.items()
    ]
    ids = conn.execute(insert(segments).returning(segments.c.id, sort_by_parameter_order=True), rows).scalars().all()
    return {key: Segment(segment_id, issue_id, key, message) for (key, message), segment_id in zip(messages.items(), ids, strict=True)}


def _segment(row: Any) -> Segment:
    return Segment(row.id, row.issue_id, row.key, RenderedMessage(row.subject, row.preheader, row.html, row.text))


def issue_segments(conn: Connection, issue_id: int) -> dict[str, Segment]:
    """The stored segments of an issue, by section key."""
    return {row.key: _segment(row) for row in conn.execute(select(segments).where(segments.c.issue_id == issue_id))}


def segments_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Segment]:
    wanted = list(ids)
    if not wanted:
        return {}
    rows = conn.execute(select(segments).where(segments.c.id.in_(wanted))).all()
    return {row.id: _segment(row) for row in rows}


def articles_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Article]:
    """The stored articles with these ids."""
    wanted = list(ids)
    rows = conn.execute(select(articles).where(articles.c.id.in_(wanted))).all() if wanted else []
    return {row.id: _article(row) for row in rows}
