"""`newsletter stats`: what happened to an issue after it left, and to the welcome emails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .. import issues, store
from .common import JsonOpt, _print_json, app, console, database, err, handled, hours_json, hours_table, settings


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


def _welcome_line(counts: dict[str, int]) -> str:
    retry = f" ({counts['to_retry']:,} to be tried again)" if counts["failed"] else ""
    skipped = f", {counts['skipped']:,} skipped (the reader left first)" if counts["skipped"] else ""
    return (f"Welcome emails: {counts['sent']:,} sent, {counts['failed']:,} failed{retry}, "
            f"{counts['pending'] + counts['sending']:,} pending{skipped}.")


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
    unsubscribes and opens, with rates; and how many welcome emails were sent, failed
    or wait. Opens are a soft figure: privacy proxies inflate them, so clicks lead."""
    from .. import stats, welcome
    from ..errors import IssueError
    from ..models import IssueStatus

    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        welcomes = welcome.welcome_counts(conn)
        if issue:
            found_issue = store.find_issue(conn, issue)
            if found_issue is None:
                raise IssueError(f"no issue {issue!r} (see `newsletter issues`)")
        else:
            sent = [i for i in store.list_issues(conn) if i.status in (IssueStatus.SENDING, IssueStatus.SENT)]
            if not sent:
                if any(welcomes.values()):
                    console.print(_welcome_line(welcomes), highlight=False)
                raise IssueError("no issue has been sent yet, so there are no statistics")
            found_issue = sent[0]
        found = stats.issue_stats(conn, found_issue, section_names=cfg.section_names())
        hours = stats.hourly_activity(conn, found_issue) if chart else []
        due = issues.deliveries_by_hour(conn, found_issue.id)
    if chart:
        from ..charts import draw_activity

        draw_activity(chart, hours, title=f"{cfg.site.name} {found.issue}: first clicks and opens per hour")
    if as_json:
        _print_json({**_stats_dict(found), "welcomes": welcomes, "by_hour": hours_json(due)})
    else:
        console.print(_stats_table(found))
        if due:
            console.print(hours_table(due, cfg.site.zone, title="Deliveries by hour (local-time delivery)"))
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
        console.print(_welcome_line(welcomes), highlight=False)
    if chart:
        (err if as_json else console).print(f"Wrote {chart}", highlight=False)
