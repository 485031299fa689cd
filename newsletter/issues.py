"""The use cases of an issue: build it from the selection, render it, send it.

Owns: `open_database`, `make_renderer`, `make_theme`, `issue_content`, `build_issue`, `send_pending`, `ledger_status`,
`render_issue`, `remind_editors` (the scheduler's mail to the editors); hands on `make_transport` (from `transports`), `SendFlags` and
the recall's use cases (`plan_recall`, `recall_issue`, `resume_issue`, `recall_outlook`, from `sending`), so that the CLI, the scheduler and
the web app find every use case here.
Imports everything below it (`config`, `db`, `store`, `preflight`, `selection`, `render`,
`archive`, `transports`, `sending`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import jinja2
from sqlalchemy import Connection, Engine

import subscribers as people

from . import db, preflight, sending, store
from .archive import ArchivePages, save_archived
from .site import page_globals
from .config import Settings
from .errors import ConfigError, EmptyIssueError, IssueError, NothingToSendError
from .models import Batch, Issue, IssueStatus, Outcome, Recipient, RenderedMessage, SectionBlock
from .render import IssueContent, Renderer, builtin_templates
from .sections import make_rules
from .theme import Theme, build_theme
from .selection import issue_slug, issue_window, select_articles
from .sending import SendFlags as SendFlags
from .sending import SendProgress, SendReport
from .sending import ledger
from .sending.ledger import BatchDetail, batch_details, ledger_summary
from .sending import recall
from .sending.recall import RecallOutlook as RecallOutlook
from .sending.recall import RecallPlan as RecallPlan
from .sending.recall import RecallReport as RecallReport
from .sending.recall import plan_recall as plan_recall
from .sending.recall import recall_issue as recall_issue
from .sending.recall import recall_outlook as recall_outlook
from .sending.recall import resume_issue as resume_issue
from .transports import Transport, capabilities
from .transports import make_transport as make_transport

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)


def open_database(settings: Settings) -> Engine:
    """The configured database with its schema brought up to date."""
    engine = db.open_engine(settings.database_url)
    db.upgrade(engine)
    return engine


def make_renderer(settings: Settings, *, remember: bool = False) -> Renderer:
    """The configured renderer; `remember` keeps its renders (see `Renderer`)."""
    folder = settings.path(settings.templates.folder) if settings.templates.folder else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"templates.folder: {folder} is not a folder")
    return Renderer(
        site_name=settings.site.name,
        base_url=settings.site.base_url,
        postal_address=settings.site.postal_address,
        zone=settings.site.zone,
        template_folder=folder,
        remember=remember,
        theme=make_theme(settings),
        utm=settings.links.utm,
    )


def make_theme(settings: Settings) -> Theme:
    """The theme of `[theme]`, for the emails and the pages alike."""
    return build_theme(**settings.theme.model_dump())


@dataclass(frozen=True)
class BuildResult:
    issue: Issue
    blocks: tuple[SectionBlock, ...]
    full_bytes: int
    warnings: tuple[str, ...]
    widened: bool = False


def issue_content(conn: Connection, issue: Issue, blocks: tuple[SectionBlock, ...]) -> IssueContent:
    """What a render needs of a stored issue: its articles, the editors' texts, its
    number, lead story and sponsor."""
    return IssueContent(
        slug=issue.slug, date=issue.window_end, blocks=blocks, subject=issue.subject, preheader=issue.preheader,
        intro=issue.intro, number=store.issue_number(conn, issue.id), lead_id=store.lead_article_id(conn, issue.id),
        sponsor=store.find_sponsor(conn, issue.id),
    )


def build_issue(engine: Engine, settings: Settings, *, now: datetime, force: bool = False) -> BuildResult:
    """Select the articles of the window that starts where the last issue ended and store
    them as a new draft issue, rendered once in full to check it.

    An empty window raises `EmptyIssueError`; with `force`, the newest articles no issue
    has taken yet are used instead, whenever they were published.
    """
    rules = make_rules((s.slug, s.name, s.categories) for s in settings.sections)
    fallback = settings.selection.fallback_section or None
    renderer = make_renderer(settings)
    with engine.begin() as conn:
        previous = store.latest_issue(conn)
        start, end = issue_window(
            now=now,
            previous_end=previous.window_end if previous else None,
            zone=settings.site.zone,
            first_days=settings.selection.first_window_days,
        )
        if end <= start:
            raise EmptyIssueError(f"the last issue's window ends at {start:%Y-%m-%d %H:%M} UTC, after now")
        limit = settings.selection.per_section_limit

        def pick(window_start: datetime) -> list[SectionBlock]:
            candidates = store.articles_between(conn, window_start, end)
            return select_articles(
                candidates, rules=rules, fallback=fallback, window_start=window_start,
                window_end=end, per_section_limit=limit,
            )

        blocks = pick(start)
        widened = False
        if not blocks and force:
            blocks, widened = pick(FAR_PAST), True
        if not blocks:
            local = settings.site.zone
            raise EmptyIssueError(
                f"no new articles between {start.astimezone(local):%Y-%m-%d %H:%M} and "
                f"{end.astimezone(local):%Y-%m-%d %H:%M} ({settings.site.timezone}); no issue built"
                + ("" if force else " (use --force to build from older articles no issue has used)")
            )
        if widened:
            start = min(a.published_at for b in blocks for a in b.articles)
        issue = store.create_issue(
            conn,
            slug=issue_slug(now, settings.site.zone, store.issue_slugs(conn)),
            window_start=start,
            window_end=end,
            blocks=blocks,
            now=now,
        )
        # Rendering inside the transaction means a template error leaves no issue behind.
        message = renderer.render(issue_content(conn, issue, tuple(blocks)))
    warnings = []
    if message.html_bytes > settings.delivery.warn_bytes:
        warnings.append(
            f"the full issue's HTML is {message.html_bytes:,} bytes, over {settings.delivery.warn_bytes:,}: "
            "Gmail clips messages at about 102 KB"
        )
    return BuildResult(issue, tuple(blocks), message.html_bytes, tuple(warnings), widened)


def find_issue(engine: Engine, ref: str | None) -> Issue:
    """The issue named by slug or id; without a name, the newest issue not yet sent."""
    with engine.connect() as conn:
        if ref:
            issue = store.find_issue(conn, ref)
            if issue is None:
                raise IssueError(f"no issue {ref!r} (see `newsletter issues`)")
            return issue
        latest = store.latest_issue(conn)
    if latest is None:
        raise NothingToSendError("nothing to send: no issue has been built yet (run `newsletter build`)")
    if latest.status is IssueStatus.SENT:
        raise NothingToSendError(f"nothing to send: the latest issue {latest.slug} was sent on {latest.sent_at:%Y-%m-%d %H:%M} UTC")
    return latest


def render_issue(
    engine: Engine, settings: Settings, issue: Issue, *, sections: tuple[str, ...] | None = None, public: bool = False
) -> RenderedMessage:
    """The issue as the subscribers of `sections` see it (None: every section), or its
    public web version."""
    with engine.connect() as conn:
        content = issue_content(conn, issue, store.issue_blocks(conn, issue.id, settings.section_names()))
    return make_renderer(settings).render(content, sections=sections, public=public)


def send_pending(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    *,
    transport: Transport,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: SendProgress | None = None,
    flags: SendFlags = SendFlags(),
    sleep: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    after_planning: Callable[[], None] | None = None,
) -> SendReport:
    """Send the issue to every mailable subscriber who does not have it yet, in three
    steps: the preflight (before a first send only; links are not asked, as an
    unreachable link is only a warning), the public web version (which then exists before
    the first email links to it), then `sending.send_issue`. A failing preflight leaves
    nothing behind. `sleep` waits between retries; `after_planning` is `send_issue`'s
    seam between planning and sending."""
    settled = recall.settle_recall(engine, issue, transport=transport, now=clock())
    if settled is not None and settled.action == "pause":
        raise IssueError(f"issue {issue.slug}: an interrupted pause was finished now ({settled.recalled} deliveries held); "
                         f"nothing was sent. `newsletter resume {issue.slug}` releases them")
    if settled is not None:
        raise IssueError(
            f"issue {issue.slug}: an interrupted recall was finished now ({settled.recalled} deliveries recalled, "
            f"{settled.due} already due or delivered); nothing was sent. Reopen the draft, correct it, approve it, "
            "then send again to reach the recalled readers"
        )
    first_send = issue.status in (IssueStatus.DRAFT, IssueStatus.APPROVED)
    with engine.connect() as conn:
        blocks = store.issue_blocks(conn, issue.id, settings.section_names())
        content = issue_content(conn, issue, blocks)
        helpers = _helpers(conn, settings, issue, transport, flags, first_send=first_send)
    try:
        # One renderer for the preflight, the web version and the planning: each segment
        # is rendered (and each template compiled) once.
        renderer = make_renderer(settings, remember=True)
        if first_send:
            report = preflight.run_preflight(engine, settings, issue.id, content, renderer=renderer)
            preflight.require_passing(report, issue.slug)
        with engine.begin() as conn:
            _save_web_version(conn, issue, content, renderer, now=clock())
        return sending.send_issue(
            engine,
            issue,
            transport=transport,
            render=lambda sections: renderer.render(content, sections=sections),
            available_sections={b.slug for b in blocks},
            options=sending.send_options(settings, issue, transport, flags, stop),
            clock=clock,
            sleep=sleep,
            progress=progress,
            helpers=helpers,
            after_planning=after_planning,
        )
    finally:
        if helpers is not None:
            helpers.close()


def _helpers(conn: Connection, settings: Settings, issue: Issue, transport: Transport, flags: SendFlags, *,
             first_send: bool) -> sending.Helpers | None:
    """The helper processes of a send, for a transport worth sending from several. For a
    first send to enough readers for 16 batches per process (the active subscribers'
    batches, an upper bound) they are started now, before the preflight and the planning,
    so that they are ready when the batches are; otherwise, if any, once the batches are
    planned."""
    if not capabilities(transport.name).helper_processes:
        return None
    expected = people.count_with_status(conn, people.Status.ACTIVE) // settings.delivery.batch_size if first_send else 0
    return sending.Helpers(settings, issue.id, flags, expected_batches=expected)


def remind_editors(settings: Settings, slug: str, *, now: datetime) -> Outcome | None:
    """Email `schedule.editors` that the draft `slug` waits for approval (through the
    configured transport); the transport's outcome, or None when no editor is configured."""
    editors = settings.schedule.editors
    if not editors:
        return None
    text = (
        f"The {settings.site.name} issue {slug} is built and waits for approval; the scheduled send skipped it.\n"
        f"Review it with `newsletter render {slug}` and approve it to send.\n"
    )
    message = RenderedMessage(subject=f"[{settings.site.name}] Issue {slug} awaits approval", preheader="", html=f"<pre>{text}</pre>", text=text)
    batch = Batch(
        id=int(now.timestamp()), issue_id=0, issue_slug="reminders", segment_id=0, message=message,
        recipients=tuple(Recipient(0, e, {}, settings.site.base_url, f"mailto:{settings.sender.address}") for e in editors),
        sender_name=settings.sender.name, sender_address=settings.sender.address, reply_to=settings.sender.reply_to,
    )
    transport = make_transport(settings)
    try:
        return transport.send(batch)
    finally:
        transport.close()


@dataclass(frozen=True)
class LedgerStatus:
    """The send ledger of one issue: counts by state and every batch."""

    counts: dict[str, int]
    batches: list[BatchDetail]
    #: Local-time delivery: recipients by UTC hour due and state ("sent", "recalled",
    #: "planned", …), the hours in order; empty when the issue was delivered at once.
    hours: dict[datetime, dict[str, int]]


def ledger_status(engine: Engine, issue: Issue) -> LedgerStatus:
    with engine.connect() as conn:
        return LedgerStatus(ledger_summary(conn, issue.id), batch_details(conn, issue.id), deliveries_by_hour(conn, issue.id))


def deliveries_by_hour(conn: Connection, issue_id: int) -> dict[datetime, dict[str, int]]:
    """The issue's deliveries by the UTC hour they are due in, and state."""
    hours: dict[datetime, dict[str, int]] = {}
    for at, state, count in ledger.deliveries_by_hour(conn, issue_id):
        hour = hours.setdefault(at.replace(minute=0, second=0, microsecond=0), {})
        hour[state] = hour.get(state, 0) + count
    return hours


def page_environment(settings: Settings, *, auto_reload: bool = True) -> jinja2.Environment:
    """The one Jinja2 environment of the pages and feeds (the web app's, the archive's,
    the preview's): the user's `templates.folder`/web first, then the built-in
    `templates/web`; every value escaped (pages are HTML, feeds XML), an undefined name an
    error. Every page sees `site.page_globals` (the site, the emails' theme, which the
    pages wear too). Raises `ConfigError` when `templates.folder` is not a folder.
    `auto_reload=False` (the subscribers' web app): a template is not looked up on disk
    again on each request to see whether it changed (a stat per template per request);
    a restart picks up a change. The desk keeps it on, for its live reload."""
    folders: list[str] = []
    if settings.templates.folder:
        folder = settings.path(settings.templates.folder)
        if not folder.is_dir():
            raise ConfigError(f"templates.folder: {folder} is not a folder")
        folders.append(str(folder / "web"))
    folders.append(str(builtin_templates() / "web"))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folders), autoescape=True, undefined=jinja2.StrictUndefined,
                             auto_reload=auto_reload)
    env.globals |= page_globals(settings, make_theme(settings))
    return env


def archive_pages(settings: Settings, *, archive_url: str = "") -> ArchivePages:
    """The archive's pages and feeds; `archive_url` overrides where feeds say it lives."""
    return ArchivePages(
        page_environment(settings),
        site_name=settings.site.name,
        base_url=settings.site.base_url,
        section_names=settings.section_names(),
        zone=settings.site.zone,
        archive_url=archive_url,
    )


def _save_web_version(conn: Connection, issue: Issue, content: IssueContent, renderer: Renderer, *,
                      now: datetime) -> bool:
    """Store the public web version of an issue (all sections, no personal links), once.
    Called when its send starts, so that "View in browser" works from the first email."""
    message = renderer.render(content, public=True)
    # A recalled issue is sent again corrected: so is its web version.
    return save_archived(conn, issue_id=issue.id, slug=issue.slug, message=message,
                         sections=tuple(b.slug for b in content.blocks), now=now, older_than=recall.recalled_at(conn, issue.id))
