"""The use cases of an issue: build it from the selection, render it, send it.

Owns: `open_database`, `make_renderer`, `make_theme`, `issue_content`, `build_issue`, `send_pending`, `ledger_status`,
`render_issue`; hands on `make_transport` and `SendFlags` from `delivery`, so that the CLI,
the scheduler and the web app find every use case here. Imports everything below it
(`config`, `db`, `store`, `ledger`, `preflight`, `selection`, `render`, `dispatch`,
`delivery`, `workers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import jinja2
from sqlalchemy import Connection, Engine

from . import db, ledger, preflight, store
from .archive import ArchivePages, save_archived
from .config import Settings
from .delivery import SendFlags as SendFlags
from .delivery import make_transport as make_transport
from .delivery import send_as_helper, send_options
from .dispatch import SendProgress, SendReport, StartHelpers, helper_count, send_issue
from .errors import ConfigError, EmptyIssueError, IssueError, NothingToSendError
from .ledger import BatchDetail
from .models import Issue, IssueStatus, RenderedMessage, SectionBlock
from .render import IssueContent, Renderer, builtin_templates
from .sections import make_rules
from .theme import Theme, build_theme
from .selection import issue_slug, issue_window, select_articles
from .transports import Transport
from .workers import HelperPool

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
) -> SendReport:
    """Send the issue to every mailable subscriber who does not have it yet (see
    `dispatch.send_issue`); `sleep` waits between retries."""
    with engine.connect() as conn:
        blocks = store.issue_blocks(conn, issue.id, settings.section_names())
        content = issue_content(conn, issue, blocks)
        pool = _prestart_helpers(conn, settings, issue, transport, flags)
    try:
        return _send(engine, settings, issue, content, pool, transport=transport, clock=clock, progress=progress, flags=flags,
                     sleep=sleep, stop=stop)
    finally:
        if pool is not None and not pool.opened:
            pool.cancel()


def _prestart_helpers(conn: Connection, settings: Settings, issue: Issue, transport: Transport, flags: SendFlags) -> HelperPool | None:
    """Helper processes started before the preflight and the planning, so that they are
    ready when the batches are (a new process takes about half a second to import what
    it runs): for a first send through SendGrid to enough readers for 16 batches per
    process (the active subscribers' batches, an upper bound). Otherwise helpers, if any,
    are started once the batches are planned."""
    if transport.name != "sendgrid" or issue.status not in (IssueStatus.DRAFT, IssueStatus.APPROVED):
        return None
    helpers = helper_count(settings.delivery.processes, ledger.active_subscribers(conn) // settings.delivery.batch_size)
    return HelperPool(helpers, send_as_helper, (settings, issue.id, flags)) if helpers else None


def _send(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    content: IssueContent,
    pool: HelperPool | None,
    *,
    transport: Transport,
    clock: Callable[[], datetime],
    progress: SendProgress | None,
    flags: SendFlags,
    sleep: Callable[[float], None] | None,
    stop: threading.Event | None,
) -> SendReport:
    # One renderer for the preflight, the web version and the planning: each segment is
    # rendered (and each template compiled) once.
    renderer = make_renderer(settings, remember=True)
    first_send = issue.status in (IssueStatus.DRAFT, IssueStatus.APPROVED)

    def before_planning(conn: Connection, choices: list[str]) -> None:
        """In the planning's transaction, with the choices it is about to plan (read once
        for both): the preflight, before a send starts (not on a resumed one; links are
        not asked, as an unreachable link is only a warning), and the public web version,
        which then exists before the first email links to it. A failing preflight leaves
        nothing behind."""
        if first_send:
            report = preflight.run_preflight(engine, settings, issue.id, content, renderer=renderer, choices=choices)
            preflight.require_passing(report, issue.slug)
        _save_web_version(conn, issue, content, renderer, now=clock())

    options = send_options(settings, issue, transport, flags, stop)
    start_helpers: StartHelpers | None = None
    if transport.name == "sendgrid":
        def start_helpers(count: int, advance: Callable[[int, int], None], must_stop: Callable[[], bool],
                          refused: Callable[[], None]) -> HelperPool:
            ready = pool if pool is not None else HelperPool(count, send_as_helper, (settings, issue.id, flags))
            return ready.open(count, on_advance=advance, stop_when=must_stop, on_auth_error=refused)
    return send_issue(
        engine,
        issue,
        transport=transport,
        render=lambda sections: renderer.render(content, sections=sections),
        available_sections={b.slug for b in content.blocks},
        options=options,
        clock=clock,
        sleep=sleep,
        progress=progress,
        start_helpers=start_helpers,
        before_planning=before_planning,
    )


@dataclass(frozen=True)
class LedgerStatus:
    """The send ledger of one issue: counts by state and every batch."""

    counts: dict[str, int]
    batches: list[BatchDetail]


def ledger_status(engine: Engine, issue: Issue) -> LedgerStatus:
    with engine.connect() as conn:
        return LedgerStatus(ledger.ledger_summary(conn, issue.id), ledger.batch_details(conn, issue.id))


def page_environment(settings: Settings) -> jinja2.Environment:
    """Jinja2 for the web pages and feeds: the user's `templates.folder`/web first, then
    the built-in `templates/web`."""
    folders = []
    if settings.templates.folder:
        folders.append(str(settings.path(settings.templates.folder) / "web"))
    folders.append(str(builtin_templates() / "web"))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml")),
        undefined=jinja2.StrictUndefined,
    )
    # The archive's pages wear the emails' theme.
    env.globals["theme"] = make_theme(settings)
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
    return save_archived(conn, issue_id=issue.id, slug=issue.slug, message=message,
                         sections=tuple(b.slug for b in content.blocks), now=now)
