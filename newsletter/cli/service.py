"""`newsletter db upgrade`, `demo`, `archive export`, `serve`, `embed`, `schedule`, `preview`: running the newsletter."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import subscribers as people

from .. import db, drafts, issues, store
from ..archive import export_archive
from ..demo import demo_subscribers, prepare_demo
from ..errors import (
    EmptyIssueError,
    NewsletterError,
    StorageError,
)
from ..config import Settings
from ..models import Issue, IssueStatus
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
    handled,
    listing,
    print_table,
    settings,
    state,
)
from .issues import _send
from .sources import _feed_table, _run_ingest

db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@handled
def db_upgrade() -> None:
    """Create the database or apply pending migrations."""
    cfg = settings()
    engine = db.open_engine(cfg.database_url)
    applied = db.upgrade(engine)
    console.print(f"Database schema {'upgraded to' if applied else 'already at'} revision {db.head_revision()}.")




#: The demo's sent issue covers the week up to this long ago; the articles since wait in
#: the draft of the next issue, so `newsletter preview` opens on something to edit.
DEMO_DRAFT_WINDOW = timedelta(hours=48)


@dataclass
class _DemoRun:
    sent: Issue | None = None
    built: issues.BuildResult | None = None
    report: SendReport | None = None
    draft: drafts.Draft | None = None


def _demo_issues(engine: Any, cfg: Settings, now: datetime, *, quiet: bool) -> _DemoRun:
    """The first run: build and send the issue of the week that ended `DEMO_DRAFT_WINDOW`
    ago, then build the draft of the next one from the articles since. A rerun sends
    nothing new (it resumes the sent issue's send, which finds everyone served) and keeps
    the draft with the editors' changes."""
    run = _DemoRun()
    with engine.connect() as conn:
        known = store.list_issues(conn)
    sent = [i for i in known if i.status is not IssueStatus.DRAFT and i.status is not IssueStatus.APPROVED]
    if sent:
        run.sent = max(sent, key=lambda i: i.id)
    elif not known:
        try:
            run.built = issues.build_issue(engine, cfg, now=now - DEMO_DRAFT_WINDOW)
            run.sent = run.built.issue
        except EmptyIssueError as exc:
            if not quiet:
                console.print(f"[cyan]No new issue:[/cyan] {exc}.")
    if run.sent is not None:
        try:
            run.report = _send(engine, cfg, run.sent.slug, quiet=quiet)
        except StorageError:
            raise
        except NewsletterError as exc:
            if not quiet:
                console.print(f"[cyan]Nothing sent:[/cyan] {exc}.")
        with engine.connect() as conn:
            run.sent = store.find_issue(conn, run.sent.id)
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
    try:
        if latest is not None and latest.status in (IssueStatus.DRAFT, IssueStatus.APPROVED):
            run.draft = drafts.current_draft(engine, cfg)
        elif run.sent is not None:
            run.draft = drafts.build_draft(engine, cfg, now=now).draft
    except EmptyIssueError:
        pass
    return run


def _demo_hints(cfg: Settings, config_path: Path, run: _DemoRun, web_file: Path | None) -> list[str]:
    """The next steps, each a command that works as printed when pasted in this folder."""
    cfg_arg = f"--config {config_path}"
    hints: list[str] = []
    sent = run.sent
    if capabilities(cfg.delivery.transport).writes_files:
        hints.append(f"Outbox (one .eml per recipient): [bold]{cfg.outbox_dir}[/bold]")
    else:
        ledger = f"newsletter {cfg_arg} send --status {sent.slug}" if sent else f"newsletter {cfg_arg} issues"
        hints.append(f"Delivered through SendGrid at {cfg.sendgrid.api_host}; the ledger: [bold]{ledger}[/bold]")
    if sent is not None and web_file is not None:
        hints.append(f"Web version: [bold]{web_file}[/bold] (served at {cfg.site.base_url}/archive/{sent.slug} by the web app)")
        hints.append(f"Render a segment: [bold]newsletter {cfg_arg} render {sent.slug} --sections drug-development,events --out preview.html[/bold]")
    if run.draft is not None:
        hints.append(f"Next issue's draft ({counted(len(run.draft.articles), 'article')}): [bold]newsletter {cfg_arg} draft show[/bold]")
        hints.append(f"Edit it in a browser: [bold]newsletter {cfg_arg} preview[/bold] (opens on {_local_url(cfg.preview.host, cfg.preview.port)})")
    hints.append(f"See the section each category lands in: [bold]newsletter {cfg_arg} sources --categories[/bold]")
    hints.append(f"Follow the links in the emails: [bold]newsletter {cfg_arg} serve[/bold] (listens on {cfg.site.base_url})")
    hints.append(f"Run it again: nothing is sent twice. Inspect: [bold]newsletter {cfg_arg} issues[/bold]")
    return hints


def _local_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/"


@app.command()
@handled
def demo(
    folder: Annotated[Path, typer.Option("--folder", help="Where the demo keeps its config, database and outbox.")] = Path("newsletter-demo"),
    subscriber_count: Annotated[int, typer.Option("--subscribers", min=1, max=200_000, help="How many sample subscribers.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole weekly pipeline on sample data: ingest, subscribers, build, send to
    the outbox; then the draft of the next issue from the articles since, to edit."""
    started = time.perf_counter()
    now = _now()
    config_path = prepare_demo(folder, now=now)
    state.config = config_path
    cfg = settings()
    engine = database(cfg)
    reports = _run_ingest(engine, cfg, as_json)
    with engine.begin() as conn:
        created, _ = people.upsert_subscribers(conn, demo_subscribers(list(cfg.section_names()), subscriber_count), now=now)
    run = _demo_issues(engine, cfg, now, quiet=as_json)
    built, report, sent = run.built, run.report, run.sent
    web_file = None
    if sent is not None:
        web_dir = folder / "web"
        web_dir.mkdir(exist_ok=True)
        web_file = web_dir / f"{sent.slug}.html"
        web_file.write_text(issues.render_issue(engine, cfg, sent, public=True).html, encoding="utf-8")
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = {
        "folder": str(folder),
        "issue": sent.slug if sent else None,
        "new_issue": built is not None,
        "sections": {b.name: len(b.articles) for b in built.blocks} if built else {},
        "segments": report.segments if report else {},
        "recipients": report.recipients_sent if report else 0,
        "new_subscribers": created,
        "outbox": str(cfg.outbox_dir),
        "web_version": str(web_file) if web_file else None,
        "draft": {"issue": run.draft.issue.slug, "articles": len(run.draft.articles)} if run.draft else None,
        "elapsed_seconds": round(elapsed, 2),
    }
    if as_json:
        _print_json(summary)
        return
    print_table(_feed_table(reports))
    table = listing(f"Demo issue {summary['issue']}" + ("" if built else " (already built)"), [("what", "text"), ("value", "number")])
    for name, count in summary["sections"].items():
        table.add_row(f"section: {name}", counted(count, "article"))
    sizes = list(summary["segments"].values())
    table.add_row("segments (distinct section choices)", str(len(sizes)))
    table.add_row("recipients sent now", f"{summary['recipients']:,}")
    if sizes:
        table.add_row("HTML bytes per segment", f"{min(sizes):,} – {max(sizes):,}")
    table.add_row("elapsed", f"{elapsed:.2f} s")
    print_table(table)
    # Printed without Rich's line breaks: a command wrapped at the terminal's width by the
    # terminal itself is still one line when copied.
    for hint in _demo_hints(cfg, config_path, run, web_file):
        console.print(hint, soft_wrap=True)


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
    from ..web.server import serve as run_server

    cfg = settings()
    run_server(
        cfg, host=host, port=port, workers=workers, config_path=state.config,
        announce=lambda url: console.print(f"Serving {cfg.site.name} on {url} (public URL {cfg.site.base_url})"),
    )


@app.command()
@handled
def embed(
    sections: Annotated[bool, typer.Option("--sections/--no-sections", help="Let readers choose sections (without: every section).")] = True,
) -> None:
    """Print an HTML subscribe form for your own site (a WordPress "Custom HTML" widget):
    it posts to BASE_URL/subscribe with no JavaScript, and the web app answers with its
    own pages ("check your inbox", or what to correct)."""
    from ..site import embed_form

    cfg = settings()
    typer.echo(embed_form(issues.page_environment(cfg), cfg, sections=sections), nl=False)


@app.command("schedule")
@handled
def schedule_service(
    list_jobs: Annotated[bool, typer.Option("--list", help="Show the jobs and their next fire times, then exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the scheduled service: ingest hourly, build and send the weekly digest, retry
    failed batches. Stops cleanly on SIGTERM or Ctrl-C after the batch in flight."""
    from .. import schedule

    cfg = settings()
    if list_jobs:
        zone = cfg.site.zone
        jobs = schedule.planned_jobs(cfg, now=_now())
        if as_json:
            _print_json([{"id": j.id, "description": j.description, "next": [t.isoformat() for t in j.next_times]} for j in jobs])
            return
        table = listing(f"Scheduled jobs ({cfg.site.timezone})", [("job", "whole"), ("what", "text"), ("next fire times", "whole")])
        for job in jobs:
            table.add_row(job.id, job.description, "\n".join(f"{t.astimezone(zone):%a %Y-%m-%d %H:%M:%S %Z}" for t in job.next_times))
        print_table(table)
        return
    logging.getLogger("newsletter").setLevel(logging.INFO)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.INFO)
    schedule.run_service(cfg, str(state.config or ""))
