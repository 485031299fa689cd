"""`newsletter build`, `send`, `issues`, `render`: the issue's way from articles to readers."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .. import issues, store
from ..config import Settings
from ..errors import (
    ConfigError,
    NewsletterError,
)
from ..models import BatchStatus
from ..sending import SendReport
from ..text import counted
from ..transports import capabilities
from .common import (
    JsonOpt,
    _now,
    _print_json,
    app,
    console,
    database,
    err,
    handled,
    hours_json,
    hours_table,
    settings,
)


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
            "by_hour": hours_json(status.hours),
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
        if counts["recipients_recalled"]:
            table.add_row("recalled (stopped before they were due)", "", f"{counts['recipients_recalled']:,}")
        console.print(table)
        if status.hours:
            console.print(hours_table(status.hours, cfg.site.zone))
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
    for zone in report.unknown_zones:
        err.print(f"[yellow]warning:[/yellow] time zone {zone!r} of some subscribers is not an IANA name: they get the issue at "
                  f"{cfg.delivery.local_time} in {cfg.site.timezone} (site.timezone)", highlight=False)
    for zone in report.clamped_zones:
        err.print(f"[yellow]warning:[/yellow] the next {cfg.delivery.local_time} in {zone} is more than 72 hours away: "
                  "those readers get the issue 72 hours after the send started", highlight=False)
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


