"""The `newsletter` command line (Typer + Rich). Sits on top: may import anything.

Owns: the commands and the one place where errors become messages and exit codes:
1 for a failed run (a bad feed, a failed batch), 2 for wrong configuration or input,
3 for a database that cannot be used now (read-only, locked, full, unreachable) or that
refused a statement. The traceback is printed only with `--debug`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

import subscribers as people

from . import db, issues, store
from .archive import export_archive
from .config import Settings, load_settings
from .demo import demo_subscribers, prepare_demo
from .sending import SendReport
from .transports import capabilities
from .errors import (
    ConfigError,
    DatabaseUnavailableError,
    EmptyIssueError,
    NewsletterError,
    NothingToDoError,
    StorageError,
)
from .text import counted
from .models import BatchStatus
from .ingest import FeedReport, category_placements, configured_sources, ingest_sources, source_statuses

app = typer.Typer(
    help="A weekly email digest for news publishers: feeds in, MJML emails out, each subscriber once.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Add and count subscribers.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(subscribers_app, name="subscribers")

console = Console()
err = Console(stderr=True)
log = logging.getLogger("newsletter.cli")
F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")]


class _State:
    config: Path | None = None
    context: Any = None
    debug: bool = False


state = _State()


def database(cfg: Settings) -> Any:
    """The configured database, migrated, and closed when the command ends."""
    engine = issues.open_database(cfg)
    if state.context is not None:
        state.context.call_on_close(engine.dispose)
    return engine


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="NEWSLETTER_CONFIG", help="Configuration file [default: ./newsletter.toml]."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens to stderr.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an error after its one line (statement parameters stay hidden).")
    ] = False,
) -> None:
    """A weekly email digest for news publishers."""
    state.config = config
    state.context = ctx
    state.debug = debug
    # Rich does not always see COLUMNS when output is not a terminal (under pytest-xdist,
    # for one); scripts that set it get tables as wide as they asked.
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        console.width = err.width = int(columns)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def handled(func: F) -> F:
    """Turn our errors into one clear line on stderr and an exit code (2 input, 3 the
    database, 1 the rest), never a traceback unless --debug asks for it. Nothing to do
    (`NothingToDoError`) is said on stdout, with exit status 0."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NothingToDoError as exc:
            # Not a failure: an idle cron run must not look like one.
            if kwargs.get("as_json"):
                _print_json({"status": "nothing-to-do", "reason": str(exc)})
            else:
                console.print(f"Nothing to do: {escape(str(exc))}", highlight=False, soft_wrap=True)
            return None
        except (ConfigError, people.SubscriberError) as exc:
            _fail(exc, str(exc), 2)
        except DatabaseUnavailableError as exc:
            _fail(exc, str(exc), 3)
        except SQLAlchemyError as exc:
            # A statement the database refused for a reason of its own (a constraint, a
            # schema it does not have). Only the driver's first line: the rest can hold values.
            detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines() or [""]
            _fail(exc, f"the database refused a statement ({type(exc).__name__}: {detail[0]})", 3)
        except NewsletterError as exc:
            _fail(exc, str(exc), 1)

    return wrapper  # type: ignore[return-value]


def _fail(exc: BaseException, message: str, code: int) -> NoReturn:
    """One line on stderr (the traceback before it with --debug), then exit with `code`.
    Engines hide statement parameters, so not even the traceback holds an address."""
    log.debug("command failed with exit status %d: %s", code, type(exc).__name__)
    if state.debug:
        err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False, soft_wrap=True, end="")
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def settings() -> Settings:
    return load_settings(state.config)


def _now() -> datetime:
    return datetime.now(UTC)


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _feed_table(reports: list[FeedReport]) -> Table:
    table = Table(title="Sources")
    numbers = ("items", "new", "updated", "cleaned", "small images", "left out")
    for column in ("source", "type", "status", *numbers, "why"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for r in reports:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}[r.status]
        notes = [*r.warnings, *r.skipped]
        why = r.error or ("; ".join(notes[:3]) + (" …" if len(notes) > 3 else ""))
        table.add_row(
            escape(r.name), r.kind, f"[{colour}]{r.status}[/{colour}]", str(r.items), str(r.new), str(r.updated),
            str(r.cleaned), str(r.small_images), str(len(r.skipped)), escape(why),
        )
    return table


def _print_notes(reports: list[FeedReport]) -> None:
    """Every warning and left-out item the table had to cut short, one line each."""
    for r in reports:
        notes = [*r.warnings, *r.skipped]
        if len(notes) > 3:
            for note in notes:
                console.print(f"{r.name}: {note}", markup=False, highlight=False)


def _run_ingest(engine: Any, cfg: Settings, quiet: bool) -> list[FeedReport]:
    if not configured_sources(cfg):
        # No brackets here: the error line is printed with Rich markup, which would eat "[[feeds]]".
        raise ConfigError(
            "no feeds configured, nor any other source: add a feeds (name, url), wordpress (name, url) "
            "or folders (name, path) array of tables to the configuration (see Sources in the README)"
        )
    with console.status("Reading sources…", spinner="dots") if not quiet else nullcontext():
        return ingest_sources(engine, cfg, clock=_now)


@app.command()
@handled
def ingest(as_json: JsonOpt = False) -> None:
    """Read every configured source (feeds, WordPress sites, folders) and store new and changed articles."""
    cfg = settings()
    engine = database(cfg)
    reports = _run_ingest(engine, cfg, as_json)
    if as_json:
        _print_json([r.__dict__ for r in reports])
    else:
        console.print(_feed_table(reports))
        _print_notes(reports)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


@app.command("sources")
@handled
def list_sources(
    as_json: JsonOpt = False,
    categories: Annotated[
        bool, typer.Option("--categories", help="List the categories seen on stored articles and the section each lands in.")
    ] = False,
) -> None:
    """List the configured sources with their last fetch, its status and their stored articles."""
    cfg = settings()
    engine = database(cfg)
    if categories:
        _list_categories(engine, cfg, as_json)
        return
    found = source_statuses(engine, cfg)
    if as_json:
        _print_json([s.__dict__ for s in found])
        return
    zone = cfg.site.zone
    table = Table(title="Sources")
    for column in ("source", "type", "location", "last fetch", "status", "articles", "newest article", "error"):
        table.add_column(column, justify="right" if column == "articles" else "left")
    for s in found:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}.get(s.status, "yellow")
        table.add_row(
            escape(s.name), s.kind, escape(s.location),
            f"{s.last_fetched_at.astimezone(zone):%Y-%m-%d %H:%M}" if s.last_fetched_at else "",
            f"[{colour}]{s.status}[/{colour}]", f"{s.articles:,}",
            f"{s.newest.astimezone(zone):%Y-%m-%d %H:%M}" if s.newest else "", escape(s.error),
        )
    console.print(table)


def _list_categories(engine: Any, cfg: Settings, as_json: bool) -> None:
    found = category_placements(engine, cfg)
    if as_json:
        _print_json([p.__dict__ for p in found])
        return
    names = cfg.section_names()
    table = Table(title="Categories and their sections")
    for column in ("source", "category", "parents", "section", "articles"):
        table.add_column(column, justify="right" if column == "articles" else "left")
    for p in found:
        section = escape(names.get(p.section, p.section)) if p.section else "left out"
        if p.fallback:
            section = f"[yellow]{section} (fallback)[/yellow]"
        table.add_row(escape(p.source), escape(p.category), escape(" › ".join(p.ancestors)), section, f"{p.articles:,}")
    console.print(table)
    falling = sum(p.fallback for p in found)
    if falling:
        console.print(f"{falling} categor{'y falls' if falling == 1 else 'ies fall'} to the fallback section: "
                      "list them (or a parent) in a section's categories.", markup=False, highlight=False)


def _build_summary(result: issues.BuildResult) -> Table:
    table = Table(title=f"Issue {result.issue.slug}")
    table.add_column("section")
    table.add_column("articles", justify="right")
    for block in result.blocks:
        table.add_row(block.name, str(len(block.articles)))
    return table


@app.command()
@handled
def build(
    force: Annotated[bool, typer.Option("--force", help="Build even when no new article is in the window, from older unused ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the next issue from the articles published since the last one."""
    cfg = settings()
    engine = database(cfg)
    result = issues.build_issue(engine, cfg, now=_now(), force=force)
    if as_json:
        _print_json({
            "issue": result.issue.slug,
            "sections": {b.slug: len(b.articles) for b in result.blocks},
            "html_bytes": result.full_bytes,
            "warnings": list(result.warnings),
        })
        return
    console.print(_build_summary(result))
    console.print(f"Full issue HTML: {result.full_bytes:,} bytes")
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def start(self, total_batches: int, total_recipients: int) -> None:
        self.task = self.progress.add_task("Sending", total=total_recipients or 1, batches=0, total_batches=total_batches)

    def advance(self, batches: int, recipients: int) -> None:
        done = self.progress.tasks[self.task].fields["batches"] + batches
        self.progress.update(self.task, advance=recipients, batches=done)


def _send_table(report: SendReport) -> Table:
    table = Table(title=f"Sent issue {report.issue}")
    table.add_column("what")
    table.add_column("count", justify="right")
    rate = report.recipients_sent / report.elapsed if report.elapsed else 0
    for label, value in (
        ("segments rendered", len(report.segments)),
        ("recipients planned now", report.planned_recipients),
        ("batches sent", report.batches_sent),
        ("  of which by helper processes", f"{report.helper_batches_sent:,} ({report.helpers} helpers)"),
        ("recipients sent", report.recipients_sent),
        ("skipped (unsubscribed or suppressed since planning)", report.recipients_skipped),
        ("refused by the relay (5xx for that address)", report.recipients_refused),
        ("no chosen section in this issue", report.unsegmented),
        ("failed batches (this run)", len(report.failed_batches)),
        ("failed batches (in the ledger)", report.failed_total),
        ("unknown (in flight when a run stopped)", len(report.unknown_batches)),
        ("recipients per second", f"{rate:,.0f}"),
        ("elapsed", f"{report.elapsed:.2f} s"),
    ):
        table.add_row(label, f"{value:,}" if isinstance(value, int) else value)
    return table


def _send(engine: Any, cfg: Settings, ref: str | None, *, quiet: bool, flags: issues.SendFlags | None = None,
          stop: threading.Event | None = None) -> SendReport:
    issue = issues.find_issue(engine, ref)
    transport = issues.make_transport(cfg)
    flags = flags or issues.SendFlags()
    stop = stop or threading.Event()
    # SIGTERM (a service manager stopping the send) and a first Ctrl-C ask the run to
    # stop: nothing more is claimed, and the answers of the batches in flight are
    # recorded before it returns. Raising at whatever point the signal came (as Ctrl-C
    # does by default) could fall between a batch's claim and its request, leaving it in
    # flight with no answer to record. A second Ctrl-C interrupts at once.
    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
        err.print(f"[yellow]stopping: no more batches are claimed; the answers of those in flight are recorded{again}[/yellow]")

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        if quiet:
            return issues.send_pending(engine, cfg, issue, transport=transport, clock=_now, flags=flags, stop=stop)
        columns = (
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("recipients, {task.fields[batches]:,}/{task.fields[total_batches]:,} batches"),
            _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            return issues.send_pending(engine, cfg, issue, transport=transport, clock=_now, progress=_RichProgress(bar),
                                       flags=flags, stop=stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        transport.close()


class _RateColumn(TextColumn):
    """Recipients per second, from Rich's own speed estimate."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "–/s", style="progress.data.speed")


def _report_dict(report: SendReport) -> dict[str, Any]:
    return {**report.__dict__, "failed_batches": [{"batch": b, "error": e} for b, e in report.failed_batches]}


def _status(engine: Any, cfg: Settings, ref: str, *, as_json: bool) -> None:
    """Print the ledger of an issue; exit 1 when a batch failed or its outcome is unknown."""
    found = issues.find_issue(engine, ref)
    status = issues.ledger_status(engine, found)
    if as_json:
        _print_json({
            "issue": found.slug,
            "issue_status": found.status.value,
            "counts": status.counts,
            "batches": [
                {"id": b.id, "segment": b.segment_id, "status": b.status.value, "recipients": b.recipients,
                 "attempts": b.attempts, "status_code": b.status_code, "message_id": b.message_id, "error": b.error,
                 "updated_at": b.updated_at.isoformat()}
                for b in status.batches
            ],
        })
    else:
        counts = status.counts
        table = Table(title=f"Ledger of issue {found.slug} ({found.status.value})")
        table.add_column("state")
        table.add_column("batches", justify="right")
        table.add_column("recipients", justify="right")
        # Recipients by the state of their batch (those skipped at send time apart).
        recipients = {state.value: 0 for state in BatchStatus}
        for b in status.batches:
            recipients[b.status.value] += b.recipients
        recipients[BatchStatus.ACCEPTED.value] = counts["recipients_sent"]
        for state in BatchStatus:
            table.add_row(state.value, f"{counts[state.value]:,}", f"{recipients[state.value]:,}")
        table.add_row("skipped (left the list after planning)", "", f"{counts['recipients_skipped']:,}")
        console.print(table)
        zone = cfg.site.zone
        for b in status.batches:
            if b.status is BatchStatus.FAILED:
                console.print(f"batch {b.id} failed ({b.recipients} recipients, {b.attempts} attempts, {b.updated_at.astimezone(zone):%Y-%m-%d %H:%M}): {b.error}", markup=False, highlight=False)
            elif b.status is BatchStatus.IN_FLIGHT:
                console.print(f"batch {b.id} in flight since {b.updated_at.astimezone(zone):%Y-%m-%d %H:%M} ({b.recipients} recipients): being sent, or its outcome is unknown", markup=False, highlight=False)
    if status.counts["failed"]:
        raise typer.Exit(1)


@app.command()
@handled
def send(
    issue: Annotated[str | None, typer.Argument(help="Issue slug (2026-w48) or id; default: the newest not yet sent.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Send failed batches again.")] = False,
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="Send again batches whose outcome is unknown (in flight when a run stopped).")] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="SendGrid sandbox mode: requests are validated, no email is delivered.")] = False,
    worker: Annotated[bool, typer.Option("--worker", help="Share this issue's batches with other --worker processes (PostgreSQL only).")] = False,
    status: Annotated[str | None, typer.Option("--status", metavar="ISSUE", help="Show the send ledger of ISSUE (slug or id) instead of sending.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send an issue to every subscriber who does not have it yet; resumes an interrupted send.

    Exit status: 0 when every batch of the issue is accepted or still to be sent by another
    worker, or when there is nothing to send, 1 when a batch failed or was left with an unknown outcome, or the run was
    stopped (SIGTERM, Ctrl-C) before the end, 2 for bad input.
    """
    cfg = settings()
    engine = database(cfg)
    if status is not None:
        _status(engine, cfg, status, as_json=as_json)
        return
    flags = issues.SendFlags(retry_failed=retry_failed, resend_unknown=resend_unknown, sandbox=sandbox, worker=worker)
    if sandbox and not capabilities(cfg.delivery.transport).sandbox:
        raise ConfigError("--sandbox is SendGrid's sandbox mode; delivery.transport is not \"sendgrid\"")
    if worker and engine.dialect.name != "postgresql":
        raise ConfigError("--worker needs PostgreSQL (database.url); on SQLite one `newsletter send` process sends")
    stop = threading.Event()
    report = _send(engine, cfg, issue, quiet=as_json, flags=flags, stop=stop)
    if as_json:
        _print_json(_report_dict(report))
    else:
        console.print(_send_table(report))
        for batch_id, error in report.failed_batches:
            err.print(f"[red]batch {batch_id} failed:[/red] {error}", highlight=False)
        if report.failed_total > len(report.failed_batches):
            err.print(f"[red]{counted(report.failed_total, 'batch', 'batches')} of this issue failed; --retry-failed sends them again[/red]")
        if report.unknown_batches:
            err.print(
                f"[yellow]{counted(len(report.unknown_batches), 'batch', 'batches')} with an unknown outcome (in flight when a run stopped): "
                f"{', '.join(map(str, report.unknown_batches[:20]))}; --resend-unknown sends them again[/yellow]"
            )
    stopped_early = stop.is_set() and not report.complete
    if stopped_early:
        err.print("[yellow]stopped before the end: `newsletter send` again sends the rest[/yellow]")
    if report.failed_total or report.unknown_batches or stopped_early:
        raise typer.Exit(1)


@app.command("issues")
@handled
def list_issues(as_json: JsonOpt = False) -> None:
    """List the issues, newest first, with their state and window."""
    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        found = store.list_issues(conn)
    if as_json:
        _print_json([i.__dict__ for i in found])
        return
    table = Table(title="Issues")
    for column in ("issue", "status", "window start", "window end", "sent"):
        table.add_column(column)
    zone = cfg.site.zone
    for i in found:
        sent = f"{i.sent_at.astimezone(zone):%Y-%m-%d %H:%M}" if i.sent_at else ""
        table.add_row(i.slug, i.status.value, f"{i.window_start.astimezone(zone):%Y-%m-%d %H:%M}", f"{i.window_end.astimezone(zone):%Y-%m-%d %H:%M}", sent)
    console.print(table)


@app.command()
@handled
def render(
    issue: Annotated[str | None, typer.Argument(help="Issue slug or id; default: the newest.")] = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section slugs a subscriber chose; default: all.")] = None,
    public: Annotated[bool, typer.Option("--public", help="The public web version (no personal links).")] = False,
    text: Annotated[bool, typer.Option("--text", help="The plain-text part instead of the HTML.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Render an issue as one segment sees it, to look at it in a browser."""
    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        found = store.find_issue(conn, issue) if issue else store.latest_issue(conn)
    if found is None:
        raise NewsletterError(f"no issue {issue!r}" if issue else "no issue has been built yet (run `newsletter build`)")
    chosen = tuple(s.strip() for s in sections.split(",") if s.strip()) if sections else None
    unknown = sorted(set(chosen or ()) - set(cfg.section_names()))
    if unknown:
        raise ConfigError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(cfg.section_names())})")
    message = issues.render_issue(engine, cfg, found, sections=chosen, public=public)
    body = message.text if text else message.html
    if out:
        out.write_text(body, encoding="utf-8")
        console.print(f"Wrote {out} ({len(body.encode()):,} bytes)")
    else:
        typer.echo(body)


@db_app.command("upgrade")
@handled
def db_upgrade() -> None:
    """Create the database or apply pending migrations."""
    cfg = settings()
    engine = db.open_engine(cfg.database_url)
    applied = db.upgrade(engine)
    console.print(f"Database schema {'upgraded to' if applied else 'already at'} revision {db.head_revision()}.")


@subscribers_app.command("add")
@handled
def subscribers_add(
    email: Annotated[str, typer.Argument(help="Email address.")],
    sections: Annotated[str, typer.Option("--sections", help="Comma-separated section slugs; default: all.")] = "",
    name: Annotated[str, typer.Option("--name", help="The subscriber's name.")] = "",
) -> None:
    """Add an active subscriber (consent obtained elsewhere) or update their sections."""
    cfg = settings()
    known = list(cfg.section_names())
    chosen = [s.strip() for s in sections.split(",") if s.strip()] or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ConfigError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(known)})")
    address, display = people.normalize_email(email), people.check_name(name)
    engine = database(cfg)
    with engine.begin() as conn:
        if not people.may_create(conn, address, own_consent=False):
            raise people.NotAllowedError(
                "this address is on the suppression list (it bounced, complained, was suppressed or erased); "
                "it is not added. Only the person can subscribe again, through the subscribe form."
            )
        created, _ = people.upsert_subscribers(
            conn, [people.NewSubscriber(address, tuple(chosen), name=display, source="cli")], now=_now()
        )
    console.print("Added." if created else "Updated.")


@subscribers_app.command("count")
@handled
def subscribers_count(as_json: JsonOpt = False) -> None:
    """Count subscribers by status."""
    engine = database(settings())
    with engine.connect() as conn:
        counts = {k.value: v for k, v in people.count_by_status(conn).items()}
    if as_json:
        _print_json(counts)
        return
    table = Table(title="Subscribers")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in sorted(counts.items()):
        table.add_row(status, f"{count:,}")
    console.print(table)


@app.command()
@handled
def demo(
    folder: Annotated[Path, typer.Option("--folder", help="Where the demo keeps its config, database and outbox.")] = Path("newsletter-demo"),
    subscriber_count: Annotated[int, typer.Option("--subscribers", min=1, max=200_000, help="How many sample subscribers.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole weekly pipeline on sample data: ingest, subscribers, build, send to the outbox."""
    started = time.perf_counter()
    now = _now()
    config_path = prepare_demo(folder, now=now)
    state.config = config_path
    cfg = settings()
    engine = database(cfg)
    reports = _run_ingest(engine, cfg, as_json)
    with engine.begin() as conn:
        created, _ = people.upsert_subscribers(conn, demo_subscribers(list(cfg.section_names()), subscriber_count), now=now)
    built: issues.BuildResult | None = None
    try:
        built = issues.build_issue(engine, cfg, now=now)
    except EmptyIssueError as exc:
        if not as_json:
            console.print(f"[cyan]No new issue:[/cyan] {exc}.")
    try:
        report: SendReport | None = _send(engine, cfg, None, quiet=as_json)
    except StorageError:
        raise
    except NewsletterError as exc:
        report = None
        if not as_json:
            console.print(f"[cyan]Nothing sent:[/cyan] {exc}.")
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
    web_file = None
    if latest is not None:
        web_dir = folder / "web"
        web_dir.mkdir(exist_ok=True)
        web_file = web_dir / f"{latest.slug}.html"
        web_file.write_text(issues.render_issue(engine, cfg, latest, public=True).html, encoding="utf-8")
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = {
        "folder": str(folder),
        "issue": latest.slug if latest else None,
        "new_issue": built is not None,
        "sections": {b.name: len(b.articles) for b in built.blocks} if built else {},
        "segments": report.segments if report else {},
        "recipients": report.recipients_sent if report else 0,
        "new_subscribers": created,
        "outbox": str(cfg.outbox_dir),
        "web_version": str(web_file) if web_file else None,
        "elapsed_seconds": round(elapsed, 2),
    }
    if as_json:
        _print_json(summary)
        return
    console.print(_feed_table(reports))
    table = Table(title=f"Demo issue {summary['issue']}" + ("" if built else " (already built)"))
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, count in summary["sections"].items():
        table.add_row(f"section: {name}", f"{count} article{'' if count == 1 else 's'}")
    sizes = list(summary["segments"].values())
    table.add_row("segments (distinct section choices)", str(len(sizes)))
    table.add_row("recipients sent now", f"{summary['recipients']:,}")
    if sizes:
        table.add_row("HTML bytes per segment", f"{min(sizes):,} – {max(sizes):,}")
    table.add_row("elapsed", f"{elapsed:.2f} s")
    console.print(table)
    cfg_arg = f"--config {config_path}"
    if capabilities(cfg.delivery.transport).writes_files:
        console.print(f"Outbox (one .eml per recipient): [bold]{cfg.outbox_dir}[/bold]")
    else:
        ledger = f"newsletter {cfg_arg} send --status {latest.slug}" if latest else f"newsletter {cfg_arg} issues"
        console.print(f"Delivered through SendGrid at {cfg.sendgrid.api_host}; the ledger: [bold]{ledger}[/bold]")
    if latest:
        console.print(f"Web version: [bold]{web_file}[/bold] (served at {cfg.site.base_url}/archive/{latest.slug} by the web app)")
        console.print(f"Render a segment: [bold]newsletter {cfg_arg} render {latest.slug} --sections drug-development,events --out preview.html[/bold]")
        console.print(f"Preview next week's draft in a browser: [bold]newsletter {cfg_arg} preview[/bold]")
    console.print(f"See the section each category lands in: [bold]newsletter {cfg_arg} sources --categories[/bold]")
    console.print(f"Follow the links in the emails: [bold]newsletter {cfg_arg} serve[/bold] (listens on {cfg.site.base_url})")
    console.print(f"Run it again: nothing is sent twice. Inspect: [bold]newsletter {cfg_arg} issues[/bold]")


archive_app = typer.Typer(help="The public archive of sent issues.", no_args_is_help=True)
app.add_typer(archive_app, name="archive")


@archive_app.command("export")
@handled
def archive_export(
    folder: Annotated[Path, typer.Argument(help="Folder to write the archive's pages and feeds into.")],
    archive_url: Annotated[str, typer.Option("--url", help="Where the export will be hosted, for the feeds' links [default: BASE_URL/archive].")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Write the archive as static files (index pages, one page per issue, Atom feeds);
    a rerun rewrites only files that changed."""
    cfg = settings()
    engine = database(cfg)
    pages = issues.archive_pages(cfg, archive_url=archive_url.rstrip("/"))
    with engine.connect() as conn:
        report = export_archive(conn, pages, folder)
    if as_json:
        _print_json({"written": list(report.written), "unchanged": list(report.unchanged)})
        return
    console.print(f"Wrote {counted(len(report.written), 'file')} to {folder}; {len(report.unchanged):,} unchanged.")
    for name in report.written:
        console.print(f"  {name}", highlight=False)


@app.command()
@handled
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on [default: web.host].")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on [default: web.port].")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes; set web.rate_limit_storage so that they share the rate limits.")] = 1,
) -> None:
    """Run the subscriber web app: subscribe, confirm, preferences, one-click unsubscribe."""
    from .web.server import serve as run_server

    cfg = settings()
    run_server(
        cfg, host=host, port=port, workers=workers, config_path=state.config,
        announce=lambda url: console.print(f"Serving {cfg.site.name} on {url} (public URL {cfg.site.base_url})"),
    )


@app.command("schedule")
@handled
def schedule_service(
    list_jobs: Annotated[bool, typer.Option("--list", help="Show the jobs and their next fire times, then exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the scheduled service: ingest hourly, build and send the weekly digest, retry
    failed batches. Stops cleanly on SIGTERM or Ctrl-C after the batch in flight."""
    from . import schedule

    cfg = settings()
    if list_jobs:
        zone = cfg.site.zone
        jobs = schedule.planned_jobs(cfg, now=_now())
        if as_json:
            _print_json([{"id": j.id, "description": j.description, "next": [t.isoformat() for t in j.next_times]} for j in jobs])
            return
        table = Table(title=f"Scheduled jobs ({cfg.site.timezone})")
        for column in ("job", "what", "next fire times"):
            table.add_column(column)
        for job in jobs:
            table.add_row(job.id, job.description, "\n".join(f"{t.astimezone(zone):%a %Y-%m-%d %H:%M:%S %Z}" for t in job.next_times))
        console.print(table)
        return
    logging.getLogger("newsletter").setLevel(logging.INFO)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.INFO)
    schedule.run_service(cfg, str(state.config or ""))


# Editors: the draft of the coming issue, its preflight and the local preview.
draft_app = typer.Typer(help="The draft of the coming issue: build, change, check, approve.", no_args_is_help=True)
app.add_typer(draft_app, name="draft")
ArticleArg = Annotated[int, typer.Argument(help="Article id, as `newsletter draft show` lists it.")]


def edited(func: F) -> F:
    """`handled`, with a wrong value given by an editor (unknown article or section, a
    value too long) answered as bad input: exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import EditError

        try:
            return func(*args, **kwargs)
        except EditError as exc:
            _fail(exc, str(exc), 2)

    return handled(wrapper)  # type: ignore[return-value]


def _draft_table(draft: Any) -> Table:
    from .drafts import Draft

    assert isinstance(draft, Draft)
    issue = draft.issue
    table = Table(title=f"Draft {issue.slug} ({issue.status.value})")
    for column in ("id", "section", "title", "notes"):
        table.add_column(column, justify="right" if column == "id" else "left")
    names = {b.slug: b.name for b in draft.blocks}
    for item in draft.articles:
        notes = [n for n, on in (("pinned", item.pinned), ("editor's item", item.editor_item),
                                 (f"rank {item.position}", item.position is not None)) if on]
        table.add_row(str(item.article.id), escape(names.get(item.section, item.section)), escape(item.article.title),
                      ", ".join(notes))
    for article in draft.excluded:
        table.add_row(str(article.id), "", escape(article.title), "[yellow]excluded[/yellow]")
    return table


def _draft_dict(draft: Any) -> dict[str, Any]:
    issue = draft.issue
    return {
        "issue": issue.slug, "status": issue.status.value, "subject": issue.subject, "preheader": issue.preheader,
        "intro": issue.intro,
        "articles": [{"id": a.article.id, "section": a.section, "title": a.article.title, "url": a.article.url,
                      "pinned": a.pinned, "position": a.position, "editor_item": a.editor_item} for a in draft.articles],
        "excluded": [{"id": a.id, "title": a.title} for a in draft.excluded],
    }


def _show_draft(draft: Any, as_json: bool) -> None:
    if as_json:
        _print_json(_draft_dict(draft))
        return
    issue = draft.issue
    console.print(_draft_table(draft))
    console.print(f"Subject: {issue.subject or '(default: site name and first headline)'}", markup=False, highlight=False)
    console.print(f"Preheader: {issue.preheader or '(default: the next headlines)'}", markup=False, highlight=False)
    if issue.intro:
        console.print(f"Intro: {issue.intro}", markup=False, highlight=False)


def _print_preflight(report: Any) -> None:
    for size in report.sizes:
        console.print(f"{size.label}: {size.html_bytes:,} of {report.limit:,} bytes", markup=False, highlight=False)
    for finding in report.findings:
        colour = "red" if finding.level == "error" else "yellow"
        err.print(f"[{colour}]{finding.level}:[/{colour}] {escape(f'[{finding.check}]')} {escape(finding.message)}",
                  highlight=False)
    if report.passed:
        console.print(f"Preflight passed with {counted(len(report.warnings), 'warning')}.")


@draft_app.command("build")
@edited
def draft_build(
    force: Annotated[bool, typer.Option("--force", help="With no new article in the window, build from older unused ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the draft of the coming issue, or refresh it with new articles keeping the
    editors' changes (subject, preheader, intro, pinned, excluded and moved articles)."""
    from . import drafts

    cfg = settings()
    result = drafts.build_draft(database(cfg), cfg, now=_now(), force=force)
    if as_json:
        _print_json({**_draft_dict(result.draft), "created": result.created, "added": list(result.added),
                     "removed": list(result.removed), "warnings": list(result.warnings)})
        return
    _show_draft(result.draft, False)
    console.print(f"{'Built' if result.created else 'Refreshed'} draft {result.draft.issue.slug}: "
                  f"{counted(len(result.added), 'article')} added, {len(result.removed):,} removed.", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}")


@draft_app.command("show")
@edited
def draft_show(as_json: JsonOpt = False) -> None:
    """Show the draft: its articles by section with their ids, subject, preheader and intro."""
    from . import drafts

    cfg = settings()
    _show_draft(drafts.current_draft(database(cfg), cfg), as_json)


@draft_app.command("set-subject")
@edited
def draft_set_subject(subject: Annotated[str, typer.Argument(help="The subject line; \"\" for the default.")]) -> None:
    """Set the draft's subject line."""
    from . import drafts

    issue = drafts.set_subject(database(settings()), subject)
    console.print(f"Subject of {issue.slug}: {issue.subject or '(default)'}", markup=False, highlight=False)


@draft_app.command("set-preheader")
@edited
def draft_set_preheader(preheader: Annotated[str, typer.Argument(help="The preheader; \"\" for the default.")]) -> None:
    """Set the draft's preheader, the line an inbox shows after the subject."""
    from . import drafts

    issue = drafts.set_preheader(database(settings()), preheader)
    console.print(f"Preheader of {issue.slug}: {issue.preheader or '(default)'}", markup=False, highlight=False)


@draft_app.command("intro")
@edited
def draft_intro(
    text: Annotated[str | None, typer.Argument(help="The introduction in Markdown; \"\" removes it.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the Markdown from this file.")] = None,
) -> None:
    """Set the draft's introduction, written in Markdown (links, emphasis, lists)."""
    from . import drafts
    from .errors import EditError

    if (text is None) == (file is None):
        raise EditError("intro: give the text or --file, one of them")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EditError(f"--file {file}: cannot be read ({exc})") from None
    issue = drafts.set_intro(database(settings()), text or "")
    console.print(f"Intro of {issue.slug}: {len(issue.intro)} characters.")


@draft_app.command("pin")
@edited
def draft_pin(
    article: ArticleArg,
    undo: Annotated[bool, typer.Option("--undo", help="Unpin the article.")] = False,
) -> None:
    """Keep an article in the draft, first in its section, whatever the selection says."""
    from . import drafts

    cfg = settings()
    drafts.pin(database(cfg), cfg, article, on=not undo, now=_now())
    console.print(f"Article {article} {'unpinned' if undo else 'pinned'}.")


@draft_app.command("exclude")
@edited
def draft_exclude(
    article: ArticleArg,
    undo: Annotated[bool, typer.Option("--undo", help="Bring the article back in.")] = False,
) -> None:
    """Keep an article out of the draft (and out of every refresh of it)."""
    from . import drafts

    cfg = settings()
    drafts.exclude(database(cfg), cfg, article, on=not undo, now=_now())
    console.print(f"Article {article} {'back in' if undo else 'excluded'}.")


@draft_app.command("move")
@edited
def draft_move(
    article: ArticleArg,
    section: Annotated[str | None, typer.Option("--section", help="Slug of the section to move it to.")] = None,
    position: Annotated[int | None, typer.Option("--position", help="Its rank in the section, 1 = first.")] = None,
) -> None:
    """Move an article to another section and/or another place in its section."""
    from . import drafts
    from .errors import EditError

    if section is None and position is None:
        raise EditError("move: give --section, --position or both")
    cfg = settings()
    drafts.move(database(cfg), cfg, article, section=section, position=position, now=_now())
    console.print(f"Article {article} moved.")


@draft_app.command("add-item")
@edited
def draft_add_item(
    title: Annotated[str, typer.Option("--title", help="The item's headline.")],
    link: Annotated[str, typer.Option("--link", help="Where the headline links to (http or https).")],
    section: Annotated[str, typer.Option("--section", help="Slug of the section it goes in.")],
    summary: Annotated[str, typer.Option("--summary", help="A short text under the headline.")] = "",
    image: Annotated[str, typer.Option("--image", help="URL of an image (shown when the item leads its section).")] = "",
) -> None:
    """Add an item that is not on the site (an event, a partner's report) to the draft."""
    from . import drafts

    cfg = settings()
    draft = drafts.add_item(database(cfg), cfg, title=title, link=link, section=section, summary=summary,
                            image_url=image, now=_now())
    added = next(a for a in draft.articles if a.article.url == link.strip())
    console.print(f"Added article {added.article.id} to {section}.")


@draft_app.command("sponsor")
@edited
def draft_sponsor(
    label: Annotated[str, typer.Option("--label", help="The sponsor's name, shown after \"Sponsored\" and linked.")] = "",
    text: Annotated[str, typer.Option("--text", help="A sentence or two about the offer (plain text).")] = "",
    url: Annotated[str, typer.Option("--url", help="Where the sponsor's name links to (http or https).")] = "",
    image: Annotated[str, typer.Option("--image", help="An https:// URL of the sponsor's image (optional).")] = "",
    after: Annotated[str, typer.Option("--after", help="Slug of the section the slot follows; default: the first.")] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Take the sponsor's slot out of the draft.")] = False,
) -> None:
    """Put a sponsor's slot in the draft, shown as "Sponsored" after a section (one per
    issue; a second call replaces it). No tracking pixel is ever added."""
    from . import drafts
    from .models import Sponsor

    cfg = settings()
    sponsor = None if remove else Sponsor(label=label, text=text, url=url, image_url=image, after=after)
    drafts.set_sponsor(database(cfg), cfg, sponsor, now=_now())
    console.print("Sponsor removed." if remove else f"Sponsor {label.strip()} set.", markup=False, highlight=False)


def _checker(cfg: Settings, skip_links: bool) -> Any:
    from . import drafts

    return None if skip_links else drafts.link_checker(cfg)


NoLinks = Annotated[bool, typer.Option("--no-links", help="Do not ask the article links whether they answer.")]


@draft_app.command("check")
@edited
def draft_check(no_links: NoLinks = False, as_json: JsonOpt = False) -> None:
    """Run the preflight on the draft: sizes, images, links, sections, subject and
    preheader, unsubscribe links and headers, leftover template variables.
    Exit status 1 when it finds an error."""
    from . import drafts

    cfg = settings()
    _, report = drafts.check_draft(database(cfg), cfg, links=_checker(cfg, no_links))
    if as_json:
        _print_json({"passed": report.passed, "limit": report.limit,
                     "sizes": [s.__dict__ for s in report.sizes], "findings": [f.__dict__ for f in report.findings]})
    else:
        _print_preflight(report)
    if not report.passed:
        raise typer.Exit(1)


@draft_app.command("approve")
@edited
def draft_approve(no_links: NoLinks = False) -> None:
    """Approve the draft once its preflight finds no error; it is frozen and the scheduled
    send (schedule.auto_send = false) sends it."""
    from . import drafts

    cfg = settings()
    engine = database(cfg)
    _, report = drafts.check_draft(engine, cfg, links=_checker(cfg, no_links))
    _print_preflight(report)
    issue, _ = drafts.approve(engine, cfg, links=None)
    console.print(f"Issue {issue.slug} approved.")


@draft_app.command("reopen")
@edited
def draft_reopen() -> None:
    """Unfreeze the approved draft so that it can be changed again."""
    from . import drafts

    issue = drafts.reopen(database(settings()))
    console.print(f"Issue {issue.slug} reopened as a draft.")


@draft_app.command("test")
@edited
def draft_test(
    to: Annotated[list[str] | None, typer.Option("--to", help="Send to this address instead of preview.test_recipients (repeatable).")] = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section slugs of the segment; default: all.")] = None,
) -> None:
    """Send the draft to the editors with "[TEST]" before its subject, through the
    configured transport. It never counts as the issue's delivery."""
    from . import drafts

    cfg = settings()
    transport = issues.make_transport(cfg)
    try:
        sent = drafts.send_test(database(cfg), cfg, transport=transport, sections=_sections_option(cfg, sections),
                                to=tuple(to or ()), clock=_now)
    finally:
        transport.close()
    console.print(f"Test sent to {', '.join(sent)}.", markup=False, highlight=False)


def _sections_option(cfg: Settings, sections: str | None) -> tuple[str, ...] | None:
    from .errors import EditError

    chosen = tuple(s.strip() for s in sections.split(",") if s.strip()) if sections else None
    unknown = sorted(set(chosen or ()) - set(cfg.section_names()))
    if unknown:
        raise EditError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(cfg.section_names())})")
    return chosen


@draft_app.command("screenshot")
@edited
def draft_screenshot(
    folder: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the PNGs to.")] = Path("."),
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section slugs of the segment; default: all.")] = None,
    dark: Annotated[bool, typer.Option("--dark", help="As a reader with dark mode sees it (<slug>-desktop-dark.png, …).")] = False,
) -> None:
    """Write PNGs of the draft as desktop (600 px) and mobile (375 px) readers see it,
    taken with headless Chromium; --dark as with the system's dark mode on."""
    from . import drafts
    from .netguard import NetworkPolicy
    from .screenshots import take_screenshots

    cfg = settings()
    engine = database(cfg)
    draft = drafts.current_draft(engine, cfg)
    message = issues.render_issue(engine, cfg, draft.issue, sections=_sections_option(cfg, sections))
    shots = take_screenshots(
        drafts.sample_message(message, cfg).html, folder, stem=draft.issue.slug, chromium=cfg.path(cfg.preview.chromium),
        policy=NetworkPolicy.from_cidrs(cfg.ingest.allow_networks), user_agent=cfg.ingest.user_agent, dark=dark,
    )
    for path in shots:
        console.print(f"Wrote {path}", highlight=False)


@app.command()
@handled
def preview(
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on [default: preview.port].")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on [default: preview.host]; not localhost needs preview.password.")] = None,
) -> None:
    """Serve the editors' preview of the draft: desktop and mobile frames, the text part,
    segments, preflight, and pin/exclude/approve buttons; reloads itself on changes."""
    from .web.preview import serve_preview

    cfg = settings()
    serve_preview(cfg, host=host, port=port, on_start=lambda url: console.print(f"Preview of the draft on {url}"))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _stats_dict(found: Any) -> dict[str, Any]:
    def figures(f: Any) -> dict[str, Any]:
        return {**{k: v for k, v in f.__dict__.items()}, "rates": f.rates()}

    return {
        "issue": found.issue, "subject": found.subject, "sent_at": found.sent_at.isoformat() if found.sent_at else None,
        "total": figures(found.total),
        "sections": [{"section": s.slug, "name": s.name, **figures(s.figures)} for s in found.sections],
        "links": [l.__dict__ for l in found.links],
        "unknown_events": found.unknown_events,
        "opens_note": "opens are a soft figure: privacy proxies open messages on the reader's behalf",
    }


def _stats_table(found: Any) -> Table:
    table = Table(title=f"Issue {found.issue}: {escape(found.subject)}" if found.subject else f"Issue {found.issue}")
    table.add_column("")
    for column in ("recipients", "delivered", "bounced", "complaints", "unique clicks", "clicks", "unsubscribes", "opens (soft)"):
        table.add_column(column, justify="right")
    rows = [("all", found.total)] + [(s.name, s.figures) for s in found.sections]
    for label, f in rows:
        r = f.rates()
        table.add_row(
            escape(label), f"{f.recipients:,}", f"{f.delivered:,} ({_pct(r['delivered'])})", f"{f.bounced:,} ({_pct(r['bounced'])})",
            f"{f.complaints:,} ({_pct(r['complaints'])})", f"{f.unique_clicks:,} ({_pct(r['unique_clicks'])})", f"{f.clicks:,}",
            f"{f.unsubscribes:,} ({_pct(r['unsubscribes'])})", f"[dim]{f.unique_opens:,} ({_pct(r['unique_opens'])})[/dim]",
        )
    return table


@app.command("stats")
@handled
def issue_statistics(
    issue: Annotated[str | None, typer.Argument(help="Issue slug or id; default: the newest issue sent (or being sent).")] = None,
    chart: Annotated[Path | None, typer.Option("--chart", metavar="FILE.png", help="Also draw first opens and clicks per hour after the send to this PNG (needs the charts extra).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what happened to an issue after it left, per issue and per section:
    recipients, delivered, bounced, complaints, clicks (unique, per article),
    unsubscribes and opens, with rates. Opens are a soft figure: privacy proxies
    inflate them, so clicks lead."""
    from . import stats
    from .errors import IssueError
    from .models import IssueStatus

    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        if issue:
            found_issue = store.find_issue(conn, issue)
            if found_issue is None:
                raise IssueError(f"no issue {issue!r} (see `newsletter issues`)")
        else:
            sent = [i for i in store.list_issues(conn) if i.status in (IssueStatus.SENDING, IssueStatus.SENT)]
            if not sent:
                raise IssueError("no issue has been sent yet, so there are no statistics")
            found_issue = sent[0]
        found = stats.issue_stats(conn, found_issue, section_names=cfg.section_names())
        hours = stats.hourly_activity(conn, found_issue) if chart else []
    if chart:
        from .charts import draw_activity

        draw_activity(chart, hours, title=f"{cfg.site.name} {found.issue}: first clicks and opens per hour")
    if as_json:
        _print_json(_stats_dict(found))
    else:
        console.print(_stats_table(found))
        links = Table(title="Clicks per article")
        for column in ("article", "section", "clicks", "unique"):
            links.add_column(column, justify="right" if column in ("clicks", "unique") else "left")
        for link in found.links[:20]:
            links.add_row(escape(link.title or link.url), escape(cfg.section_names().get(link.section, link.section)),
                          f"{link.clicks:,}", f"{link.unique:,}")
        if found.links:
            console.print(links)
        console.print("Rates: delivered and bounced of the recipients, the others of the delivered. Opens are a soft "
                      "figure: privacy proxies open messages on readers' behalf. Clicks lead.", highlight=False)
        if found.unknown_events:
            console.print(f"{found.unknown_events:,} stored events for this issue name no recipient of it.", highlight=False)
    if chart:
        (err if as_json else console).print(f"Wrote {chart}", highlight=False)


# The subscriber management commands live in their own module to keep this one short.
from . import cli_subscribers  # noqa: E402

cli_subscribers.register(subscribers_app, cli=sys.modules[__name__])
