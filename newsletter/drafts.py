"""The editors' drafts: build or refresh the coming issue keeping the editors' changes,
change it, check it, approve it, reopen it, send a test of it.

Owns: `Draft`, `DraftArticle`, `DraftBuild`, `current_draft`, `build_draft`, `set_subject`,
`set_preheader`, `set_intro`, `set_sponsor`, `pin`, `exclude`, `move`, `add_item`, `check_draft`,
`approve`, `reopen`, `send_test`, `sample_message`, `draft_fingerprint`, and the `draft_choices` table's
queries. Imports `config`, `errors`, `models`, `tables`, `store`, `sections`, `selection`,
`render`, `preflight`, `links` (for the substitution values), `transports`, `sending.ledger`
(whether a send started) and `issues` (the use cases it builds on). The issue's rows
(`issues`, `issue_articles`, `articles`) are written through `store`.

The draft is the newest issue while it is not sent. Its articles are recomposed from the
selection after every change: the editors' choices (`draft_choices`) say which articles
stay out, which stay in whatever the selection says, in which section and at which rank.
An editor's own item is stored as an article whose source is `editor`, so rendering,
sending and the archive need nothing new.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import nh3
from sqlalchemy import Connection, Engine, delete, insert, select

import subscribers as people

from . import issues, links, store
from .config import Settings
from .errors import EditError, IssueError
from .models import Article, Batch, Issue, IssueStatus, RenderedMessage, SectionBlock, Sponsor
from .netguard import NetworkPolicy
from .preflight import LinkChecker, Preflight, require_passing, run_preflight, sponsor_problems
from .render import IssueContent
from .sections import assign_section, make_rules
from .selection import select_articles
from .sending.ledger import send_started, was_recalled
from .tables import draft_choices
from .transports import Transport, personalize

EDITOR_SOURCE = "editor"
TEST_PREFIX = "[TEST] "
_URL = re.compile(r"^https?://[^\s/]+[^\s]*$")
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


def _choices(conn: Connection, issue_id: int) -> dict[int, Choice]:
    rows = conn.execute(select(draft_choices).where(draft_choices.c.issue_id == issue_id)).all()
    return {r.article_id: Choice(bool(r.pinned), bool(r.excluded), r.section, r.position) for r in rows}


def _save_choice(conn: Connection, issue_id: int, article_id: int, choice: Choice, *, now: datetime) -> None:
    conn.execute(delete(draft_choices).where(draft_choices.c.issue_id == issue_id,
                                             draft_choices.c.article_id == article_id))
    conn.execute(insert(draft_choices).values(
        issue_id=issue_id, article_id=article_id, pinned=choice.pinned, excluded=choice.excluded,
        section=choice.section, position=choice.position, updated_at=now,
    ))


def _latest(conn: Connection) -> Issue:
    latest = store.latest_issue(conn)
    if latest is None or latest.status is IssueStatus.SENT:
        raise IssueError("there is no draft: run `newsletter draft build` to build the coming issue")
    return latest


def load_draft(conn: Connection, settings: Settings, issue: Issue) -> Draft:
    blocks = store.issue_blocks(conn, issue.id, settings.section_names())
    choices = _choices(conn, issue.id)
    listed = tuple(
        DraftArticle(a, b.slug, choices.get(a.id, Choice()).pinned, choices.get(a.id, Choice()).position, a.id in choices)
        for b in blocks for a in b.articles
    )
    excluded_ids = [i for i, c in choices.items() if c.excluded]
    excluded = store.articles_by_id(conn, excluded_ids)
    return Draft(issue, blocks, listed, tuple(excluded[i] for i in excluded_ids if i in excluded),
                 store.issue_number(conn, issue.id), store.find_sponsor(conn, issue.id))


def current_draft(engine: Engine, settings: Settings) -> Draft:
    """The draft of the coming issue (approved or not); `IssueError` when there is none."""
    with engine.connect() as conn:
        return load_draft(conn, settings, _latest(conn))


def _editable(conn: Connection) -> Issue:
    issue = _latest(conn)
    if issue.status is IssueStatus.APPROVED:
        raise IssueError(f"issue {issue.slug} is approved and frozen: `newsletter draft reopen` to change it")
    if issue.status is IssueStatus.SENDING:
        raise IssueError(f"issue {issue.slug} is being sent: it can no longer be changed")
    return issue


def _recompose(conn: Connection, settings: Settings, issue: Issue, *, end: datetime) -> tuple[list[str], list[str]]:
    """Write the draft's articles anew from the selection and the editors' choices; the
    titles added and removed."""
    names = settings.section_names()
    rules = make_rules((s.slug, s.name, s.categories) for s in settings.sections)
    fallback = settings.selection.fallback_section or None
    limit = settings.selection.per_section_limit
    current = {a.id: (b.slug, a) for b in store.issue_blocks(conn, issue.id, names) for a in b.articles}
    choices = _choices(conn, issue.id)
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


def build_draft(engine: Engine, settings: Settings, *, now: datetime, force: bool = False) -> DraftBuild:
    """Build the draft of the coming issue, or refresh it: its window is extended to `now`
    and new articles come in, while the editors' subject, preheader, intro and choices
    stay. An approved draft is refused (reopen it first)."""
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
    if latest is None or latest.status is IssueStatus.SENT:
        built = issues.build_issue(engine, settings, now=now, force=force)
        with engine.connect() as conn:
            draft = load_draft(conn, settings, built.issue)
        titles = tuple(a.article.title for a in draft.articles)
        return DraftBuild(draft, True, titles, (), built.warnings)
    with engine.begin() as conn:
        issue = _editable(conn)
        added, removed = _recompose(conn, settings, issue, end=max(now, issue.window_end))
        draft = load_draft(conn, settings, store.find_issue(conn, issue.id) or issue)
    return DraftBuild(draft, False, tuple(added), tuple(removed))


def _one_line(value: str, what: str, *, limit: int) -> str:
    text = " ".join(value.split())
    if len(text) > limit:
        raise EditError(f"{what}: {len(text)} characters, at most {limit} are allowed")
    return text


def _update_issue(engine: Engine, *, subject: str | None = None, preheader: str | None = None,
                  intro: str | None = None) -> Issue:
    with engine.begin() as conn:
        issue = _editable(conn)
        store.edit_issue(conn, issue.id, subject=subject, preheader=preheader, intro=intro)
        found = store.find_issue(conn, issue.id)
    assert found is not None
    return found


def set_subject(engine: Engine, subject: str) -> Issue:
    """Set the subject line; empty gives back the default (site name and first headline)."""
    return _update_issue(engine, subject=_one_line(subject, "subject", limit=300))


def set_preheader(engine: Engine, preheader: str) -> Issue:
    """Set the preheader, the line inboxes show after the subject; empty gives the default."""
    return _update_issue(engine, preheader=_one_line(preheader, "preheader", limit=300))


def set_intro(engine: Engine, markdown: str) -> Issue:
    """Set the introduction, in Markdown (rendered and sanitized when the issue is)."""
    if len(markdown) > 10_000:
        raise EditError(f"intro: {len(markdown):,} characters, at most 10,000 are allowed")
    return _update_issue(engine, intro=markdown.strip())


def _article_in_play(conn: Connection, issue: Issue, article_id: int) -> Article:
    found = store.articles_by_id(conn, [article_id]).get(article_id)
    if found is None:
        raise EditError(f"article {article_id}: no such article (see `newsletter draft show`)")
    taken = store.article_issue(conn, article_id)
    if taken is not None and taken != issue.id:
        raise EditError(f"article {article_id}: already in another issue")
    return found


def _change(engine: Engine, settings: Settings, article_id: int, edit: Callable[[Choice], Choice], *,
            now: datetime) -> Draft:
    with engine.begin() as conn:
        issue = _editable(conn)
        _article_in_play(conn, issue, article_id)
        choice = edit(_choices(conn, issue.id).get(article_id, Choice()))
        _save_choice(conn, issue.id, article_id, choice, now=now)
        _recompose(conn, settings, issue, end=issue.window_end)
        return load_draft(conn, settings, issue)


def pin(engine: Engine, settings: Settings, article_id: int, *, on: bool = True, now: datetime) -> Draft:
    """Keep an article in the draft, before the unpinned ones of its section, whatever the
    selection says; `on=False` unpins it (it stays in while the selection keeps it)."""
    return _change(engine, settings, article_id, lambda c: Choice(on, False, c.section, c.position), now=now)


def exclude(engine: Engine, settings: Settings, article_id: int, *, on: bool = True, now: datetime) -> Draft:
    """Keep an article out of the draft; `on=False` brings it back in."""
    return _change(engine, settings, article_id,
                   lambda c: Choice(False, True) if on else Choice(c.pinned, False, c.section, c.position), now=now)


def move(engine: Engine, settings: Settings, article_id: int, *, section: str | None = None,
         position: int | None = None, now: datetime) -> Draft:
    """Put an article in another section and/or at a rank (1 = first) in its section."""
    if section is not None and section not in settings.section_names():
        raise EditError(f"section {section!r}: no such section (known: {', '.join(settings.section_names())})")
    if position is not None and not 1 <= position <= 1000:
        raise EditError(f"position {position}: expected a rank from 1 (first) to 1000")
    return _change(engine, settings, article_id, lambda c: Choice(
        c.pinned, False, section if section is not None else c.section,
        position if position is not None else c.position), now=now)


def add_item(engine: Engine, settings: Settings, *, title: str, link: str, section: str, summary: str = "",
             image_url: str = "", now: datetime) -> Draft:
    """Add an editor's own item (not on the site) to a section of the draft. Title and
    summary are kept as plain text; links must be http(s)."""
    clean_title = _one_line(nh3.clean(title, tags=set()), "title", limit=300)
    if not clean_title:
        raise EditError("title: an item needs a title")
    if not _URL.match(link.strip()):
        raise EditError(f"link {link!r}: expected an http:// or https:// URL")
    if image_url and not _URL.match(image_url.strip()):
        raise EditError(f"image {image_url!r}: expected an http:// or https:// URL of an image")
    if section not in settings.section_names():
        raise EditError(f"section {section!r}: no such section (known: {', '.join(settings.section_names())})")
    clean_summary = _one_line(nh3.clean(summary, tags=set()), "summary", limit=2000)
    with engine.begin() as conn:
        issue = _editable(conn)
        existing = store.article_id_by_url(conn, link.strip())
        if existing is not None:
            raise EditError(f"link {link.strip()}: already the link of article {existing}; pin that article instead")
        article_id = store.add_article(
            conn, guid=f"editor:{issue.slug}:{uuid.uuid4().hex[:12]}", url=link.strip(), title=clean_title,
            summary=clean_summary, image_url=image_url.strip(), source=EDITOR_SOURCE, now=now,
        )
        _save_choice(conn, issue.id, article_id, Choice(pinned=True, section=section), now=now)
        _recompose(conn, settings, issue, end=issue.window_end)
        return load_draft(conn, settings, issue)


def set_sponsor(engine: Engine, settings: Settings, sponsor: Sponsor | None, *, now: datetime) -> Draft:
    """Put a sponsor's slot in the draft (None removes it). Label and text are kept as
    plain text; the link must be http(s), the image https, `after` a configured section
    (empty: after the first section). `EditError` names the option that is wrong."""
    if sponsor is not None:
        sponsor = Sponsor(
            label=_one_line(nh3.clean(sponsor.label, tags=set()), "--label", limit=200),
            text=_one_line(nh3.clean(sponsor.text, tags=set()), "--text", limit=2000),
            url=sponsor.url.strip(), image_url=sponsor.image_url.strip(), after=sponsor.after.strip(),
        )
        problems = sponsor_problems(sponsor)
        if problems:
            raise EditError("; ".join(f"--{key}: {problem}" for key, problem in problems))
        if sponsor.after and sponsor.after not in settings.section_names():
            raise EditError(f"--after: no section {sponsor.after!r} (known: {', '.join(settings.section_names())})")
    with engine.begin() as conn:
        issue = _editable(conn)
        store.save_sponsor(conn, issue.id, sponsor, now=now)
        return load_draft(conn, settings, issue)


def sample_message(message: RenderedMessage, settings: Settings) -> RenderedMessage:
    """The message with its substitution tags filled as for an editor named Editor."""
    values = links.substitutions("preview", "Editor", base_url=settings.site.base_url)
    return RenderedMessage(personalize(message.subject, values), personalize(message.preheader, values),
                           personalize(message.html, values), personalize(message.text, values))


def link_checker(settings: Settings, *, ttl: float = 0.0) -> LinkChecker:
    return LinkChecker(
        timeout=settings.preview.link_timeout, user_agent=settings.ingest.user_agent,
        policy=NetworkPolicy.from_cidrs(settings.ingest.allow_networks), ttl=ttl,
    )


def check_draft(engine: Engine, settings: Settings, *, links: LinkChecker | None = None) -> tuple[Draft, Preflight]:
    """The draft and its preflight; article links are asked when `links` is given."""
    draft = current_draft(engine, settings)
    report = run_preflight(engine, settings, draft.issue.id, draft.content(),
                           renderer=issues.make_renderer(settings), links=links)
    return draft, report


def approve(engine: Engine, settings: Settings, *, links: LinkChecker | None = None) -> tuple[Issue, Preflight]:
    """Freeze the draft for sending once its preflight finds no error; `IssueError`
    listing the errors otherwise. The warnings are returned to be shown."""
    draft, report = check_draft(engine, settings, links=links)
    if draft.issue.status is not IssueStatus.DRAFT:
        raise IssueError(f"issue {draft.issue.slug} is {draft.issue.status.value}, not a draft")
    require_passing(report, draft.issue.slug)
    with engine.begin() as conn:
        # Only the draft that was checked is approved, not one changed since.
        if _editable(conn).id != draft.issue.id:
            raise IssueError("the draft changed while it was checked; check it again")
        store.set_issue_status(conn, draft.issue.id, IssueStatus.APPROVED)
        approved = store.find_issue(conn, draft.issue.id)
    assert approved is not None
    return approved, report


def reopen(engine: Engine) -> Issue:
    """Unfreeze an approved draft so that editors can change it again."""
    with engine.begin() as conn:
        issue = _latest(conn)
        if issue.status is not IssueStatus.APPROVED:
            raise IssueError(f"issue {issue.slug} is {issue.status.value}, not approved: nothing to reopen")
        # An approved issue whose send has started stays approved until it is sent:
        # some subscribers may have it already. A recalled one may be corrected for the
        # readers whose copy was stopped (`newsletter recall`).
        if send_started(conn, issue.id) and not was_recalled(conn, issue.id):
            raise IssueError(f"issue {issue.slug} is being sent: it can no longer be reopened")
        store.set_issue_status(conn, issue.id, IssueStatus.DRAFT)
        found = store.find_issue(conn, issue.id)
    assert found is not None
    return found


def draft_fingerprint(engine: Engine) -> str:
    """Changes whenever the draft or its articles change (the preview reloads then)."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
        if latest is None:
            return ""
        digest.update(repr(latest).encode())
        digest.update(repr(store.issue_article_rows(conn, latest.id)).encode())
        digest.update(repr(sorted(_choices(conn, latest.id).items())).encode())
        digest.update(repr(store.find_sponsor(conn, latest.id)).encode())
    return digest.hexdigest()


def send_test(engine: Engine, settings: Settings, *, transport: Transport, sections: tuple[str, ...] | None = None,
              to: tuple[str, ...] = (), clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[str, ...]:
    """Send the draft, as the subscribers of `sections` see it, to the editors' addresses
    (`preview.test_recipients`, or `to`) with "[TEST]" before the subject. Nothing is
    written to the send ledger: a test never counts as the issue's delivery."""
    draft = current_draft(engine, settings)
    message = issues.render_issue(engine, settings, draft.issue, sections=sections)
    return send_to_editors(engine, settings, message, transport=transport, folder=f"{draft.issue.slug}-test",
                           issue_id=draft.issue.id, to=to, clock=clock)


def send_to_editors(engine: Engine, settings: Settings, message: RenderedMessage, *, transport: Transport, folder: str,
                    issue_id: int, to: tuple[str, ...] = (),
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[str, ...]:
    """Send a rendered email (a draft, the welcome) as a test to the editors' addresses
    (`preview.test_recipients`, or `to`), "[TEST]" before its subject, with the headers a
    reader's copy has; the outbox files it under `folder`. Returns the addresses."""
    recipients = to or tuple(settings.preview.test_recipients)
    if not recipients:
        raise EditError("no test recipients: set preview.test_recipients or give --to")
    message = type(message)(TEST_PREFIX + message.subject, message.preheader, message.html, message.text)
    base, mailto = settings.site.base_url, settings.unsubscribe_mailto
    # The one gate: a test never goes to an address that bounced or complained.
    with engine.connect() as conn:
        for number, address in enumerate(recipients, start=1):
            try:
                normalized = people.normalize_email(address)
            except people.InvalidEmailError:
                raise EditError(f"test address #{number} is not a valid email address") from None
            if people.standing(conn, normalized) is people.Standing.SUPPRESSED:
                raise EditError(f"test address #{number} is on the suppression list (it bounced or complained); "
                                "a test is not sent to it")
    # A batch id of its own per test, so the outbox never takes one test for another.
    batch_id = int(clock().timestamp() * 1000)
    batch = Batch(
        id=batch_id, issue_id=issue_id, issue_slug=folder, segment_id=0, message=message,
        recipients=tuple(
            links.recipient(number, address, "test", "Editor", base_url=base, mailto=mailto)
            for number, address in enumerate(recipients, start=1)
        ),
        sender_name=settings.sender.name, sender_address=settings.sender.address, reply_to=settings.sender.reply_to,
        categories=("test",),
        # The headers a reader's copy has, so the test shows them.
        list_id=links.list_id(settings.site.name, settings.sender.address),
    )
    outcome = transport.send(batch)
    if outcome.kind.value != "accepted":
        raise IssueError(f"the test send failed: {outcome.error or outcome.status_code}")
    return recipients
