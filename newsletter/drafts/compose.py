"""The draft itself: what it holds, how it is loaded, and how its articles are recomposed
from the selection and the editors' choices; building or refreshing it.

Owns: `Choice`, `Draft`, `DraftArticle`, `DraftBuild`, `load_draft`, `current_draft`,
`build_draft`, `draft_fingerprint`, the `draft_choices` table's queries, and the helpers
the other modules of this package change a draft with (`editable`, `recompose`,
`choices_of`, `save_choice`). Imports `config`, `errors`, `models`, `tables`, `store`,
`sections`, `selection`, `render`, `issues` and `drafts.journal`; the issue's rows (`issues`, `issue_articles`,
`articles`) are written through `store`.

The draft is the newest issue while it is not sent. Its articles are recomposed from the
selection after every change: the editors' choices (`draft_choices`) say which articles
stay out, which stay in whatever the selection says, in which section and at which rank.
An editor's own item is stored as an article whose source is `editor`, so rendering,
sending and the archive need nothing new.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select

from .. import issues, store
from ..config import Settings
from ..errors import IssueError
from ..models import Article, Issue, IssueStatus, SectionBlock, Sponsor
from ..render import IssueContent
from ..sections import assign_section, make_rules
from ..selection import select_articles
from ..tables import draft_choices
from . import journal

EDITOR_SOURCE = "editor"
# Ranks of articles without an editor's position: pinned ones come before the rest.
_PINNED_RANK = 10_000
_FREE_RANK = 20_000


@dataclass(frozen=True)
class Choice:
    pinned: bool = False
    excluded: bool = False
    section: str = ""
    position: int | None = None


@dataclass(frozen=True)
class DraftArticle:
    """An article as it stands in the draft, with the editors' choices about it."""

    article: Article
    section: str
    pinned: bool
    position: int | None
    kept: bool

    @property
    def editor_item(self) -> bool:
        return self.article.source == EDITOR_SOURCE


@dataclass(frozen=True)
class Draft:
    issue: Issue
    blocks: tuple[SectionBlock, ...]
    articles: tuple[DraftArticle, ...]
    excluded: tuple[Article, ...]
    number: int = 0
    sponsor: Sponsor | None = None
    #: How many changes the draft has had: the desk's forms carry it back (`journal`).
    version: int = 0

    @property
    def frozen(self) -> bool:
        return self.issue.status is not IssueStatus.DRAFT

    @property
    def lead_id(self) -> int | None:
        """The lead story: the first pinned article (None: the renderer picks)."""
        return next((a.article.id for a in self.articles if a.pinned), None)

    def content(self) -> IssueContent:
        return IssueContent(slug=self.issue.slug, date=self.issue.window_end, blocks=self.blocks,
                            subject=self.issue.subject, preheader=self.issue.preheader, intro=self.issue.intro,
                            number=self.number, lead_id=self.lead_id, sponsor=self.sponsor)


@dataclass(frozen=True)
class DraftBuild:
    draft: Draft
    created: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def choices_of(conn: Connection, issue_id: int) -> dict[int, Choice]:
    rows = conn.execute(select(draft_choices).where(draft_choices.c.issue_id == issue_id)).all()
    return {r.article_id: Choice(bool(r.pinned), bool(r.excluded), r.section, r.position) for r in rows}


def save_choice(conn: Connection, issue_id: int, article_id: int, choice: Choice, *, now: datetime) -> None:
    conn.execute(delete(draft_choices).where(draft_choices.c.issue_id == issue_id,
                                             draft_choices.c.article_id == article_id))
    conn.execute(insert(draft_choices).values(
        issue_id=issue_id, article_id=article_id, pinned=choice.pinned, excluded=choice.excluded,
        section=choice.section, position=choice.position, updated_at=now,
    ))


def latest_draft(conn: Connection) -> Issue:
    latest = store.latest_issue(conn)
    if latest is None or latest.status is IssueStatus.SENT:
        raise IssueError("there is no draft: run `newsletter draft build` to build the coming issue")
    return latest


def load_draft(conn: Connection, settings: Settings, issue: Issue) -> Draft:
    blocks = store.issue_blocks(conn, issue.id, settings.section_names())
    choices = choices_of(conn, issue.id)
    listed = tuple(
        DraftArticle(a, b.slug, choices.get(a.id, Choice()).pinned, choices.get(a.id, Choice()).position, a.id in choices)
        for b in blocks for a in b.articles
    )
    excluded_ids = [i for i, c in choices.items() if c.excluded]
    excluded = store.articles_by_id(conn, excluded_ids)
    return Draft(issue, blocks, listed, tuple(excluded[i] for i in excluded_ids if i in excluded),
                 store.issue_number(conn, issue.id), store.find_sponsor(conn, issue.id), journal.version_of(conn, issue.id))


def current_draft(engine: Engine, settings: Settings) -> Draft:
    """The draft of the coming issue (approved or not); `IssueError` when there is none."""
    with engine.connect() as conn:
        return load_draft(conn, settings, latest_draft(conn))


def editable(conn: Connection) -> Issue:
    issue = latest_draft(conn)
    if issue.status is IssueStatus.APPROVED:
        raise IssueError(f"issue {issue.slug} is approved and frozen: `newsletter draft reopen` to change it")
    if issue.status is IssueStatus.SENDING:
        raise IssueError(f"issue {issue.slug} is being sent: it can no longer be changed")
    return issue


def recompose(conn: Connection, settings: Settings, issue: Issue, *, end: datetime) -> tuple[list[str], list[str]]:
    """Write the draft's articles anew from the selection and the editors' choices; the
    titles added and removed."""
    names = settings.section_names()
    rules = make_rules((s.slug, s.name, s.categories) for s in settings.sections)
    fallback = settings.selection.fallback_section or None
    limit = settings.selection.per_section_limit
    current = {a.id: (b.slug, a) for b in store.issue_blocks(conn, issue.id, names) for a in b.articles}
    choices = choices_of(conn, issue.id)
    kept_ids = [i for i, c in choices.items() if not c.excluded]
    pool = {a.id: a for a in store.articles_between(conn, issue.window_start, end)}
    pool |= {i: a for i, (_, a) in current.items()}
    pool |= store.articles_by_id(conn, [i for i in kept_ids if i not in pool])
    placed: dict[str, list[tuple[tuple[int, float, int], Article]]] = {slug: [] for slug in names}
    for article_id in kept_ids:
        if article_id not in pool:
            continue
        article, choice = pool[article_id], choices[article_id]
        section = (choice.section or current.get(article_id, ("", None))[0]
                   or assign_section(article.categories, rules, fallback, article.category_ancestors)
                   or next(iter(names)))
        rank = choice.position if choice.position is not None else _PINNED_RANK if choice.pinned else _FREE_RANK
        placed.setdefault(section, []).append(((rank, -article.published_at.timestamp(), article.id), article))
    free = [a for i, a in pool.items() if i not in choices]
    for block in select_articles(free, rules=rules, fallback=fallback, window_start=issue.window_start,
                                 window_end=end, per_section_limit=limit):
        room = max(0, limit - len(placed.get(block.slug, [])))
        for index, article in enumerate(block.articles[:room]):
            placed.setdefault(block.slug, []).append(((_FREE_RANK, float(index), article.id), article))
    rows: list[tuple[int, str]] = []
    for section in [*names, *sorted(set(placed) - set(names))]:
        for _, article in sorted(placed.get(section, []), key=lambda item: item[0]):
            rows.append((article.id, section))
    store.place_articles(conn, issue.id, rows)
    store.edit_issue(conn, issue.id, window_end=end)
    after: set[int] = {article_id for article_id, _ in rows}
    added = [pool[i].title for i in sorted(after - set(current))]
    removed = [a.title for i, (_, a) in sorted(current.items()) if i not in after]
    return added, removed


def build_draft(engine: Engine, settings: Settings, *, now: datetime, force: bool = False,
                origin: str = "cli") -> DraftBuild:
    """Build the draft of the coming issue, or refresh it: its window is extended to `now`
    and new articles come in, while the editors' subject, preheader, intro and choices
    stay. An approved draft is refused (reopen it first). Logged as coming from `origin`."""
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
    if latest is None or latest.status is IssueStatus.SENT:
        built = issues.build_issue(engine, settings, now=now, force=force)
        with engine.begin() as conn:
            count = sum(len(b.articles) for b in built.blocks)
            journal.record(conn, built.issue.id, origin=origin, action="built", detail=f"{count} articles", now=now)
            draft = load_draft(conn, settings, built.issue)
        titles = tuple(a.article.title for a in draft.articles)
        return DraftBuild(draft, True, titles, (), built.warnings)
    with engine.begin() as conn:
        issue = editable(conn)
        added, removed = recompose(conn, settings, issue, end=max(now, issue.window_end))
        journal.record(conn, issue.id, origin=origin, action="refreshed",
                       detail=f"{len(added)} added, {len(removed)} removed", now=now)
        draft = load_draft(conn, settings, store.find_issue(conn, issue.id) or issue)
    return DraftBuild(draft, False, tuple(added), tuple(removed))


def draft_fingerprint(engine: Engine) -> str:
    """Changes whenever the draft or its articles change (the preview reloads then)."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
        if latest is None:
            return ""
        digest.update(repr(latest).encode())
        digest.update(repr(store.issue_article_rows(conn, latest.id)).encode())
        digest.update(repr(sorted(choices_of(conn, latest.id).items())).encode())
        digest.update(repr(store.find_sponsor(conn, latest.id)).encode())
        digest.update(f"{journal.version_of(conn, latest.id)}:{journal.last_change(conn, latest.id)}".encode())
    return digest.hexdigest()

