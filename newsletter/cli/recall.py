"""`newsletter recall` and `newsletter resume`: stop, hold or release an issue's copies
that are not yet due (SendGrid's scheduled sends; the outbox's `recalled/`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import issues
from ..text import counted
from .common import JsonOpt, _now, _print_json, app, console, database, handled, settings


def _cannot(plan: issues.RecallPlan) -> str:
    """Why the copies due so far cannot be stopped, with the transport's margin if it has one."""
    minutes = int(plan.margin.total_seconds() // 60)
    return "already due or delivered" + (f", or due within {counted(minutes, 'minute')}" if minutes else "")


@app.command()
@handled
def recall(
    issue: Annotated[str, typer.Argument(help="Issue slug (2026-w48) or id.")],
    pause: Annotated[bool, typer.Option("--pause", help="Hold the copies not yet due instead of cancelling them; `newsletter resume` releases them.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recall an issue: stop every copy not yet due (delivery at each reader's local time).

    The recalled deliveries are marked in the ledger and the issue is approved again:
    reopen the draft, correct it, approve it and `newsletter send` reaches exactly the
    recalled readers. Copies already delivered, or due within the provider's margin
    (SendGrid: 10 minutes), cannot be stopped. Exit status 1 when the issue cannot be
    recalled (never sent, nothing left to stop, a transport that cannot recall, the
    provider refused); nothing in the ledger changes then.
    """
    cfg = settings()
    engine = database(cfg)
    found = issues.find_issue(engine, issue)
    transport = issues.make_transport(cfg)
    try:
        plan = issues.plan_recall(engine, found, transport=transport, action="pause" if pause else "cancel", now=_now())
        verb = "pause" if plan.action == "pause" else "cancel"
        if not as_json:
            if plan.pending is not None:
                console.print(f"An earlier recall of issue {found.slug} was interrupted; finishing it.", highlight=False)
            console.print(
                f"Issue {found.slug}: {counted(plan.due, 'delivery', 'deliveries')} {_cannot(plan)}: they cannot be stopped.",
                highlight=False)
            console.print(f"Asking {plan.transport} to {verb} {counted(plan.stoppable, 'delivery', 'deliveries')} due after "
                          f"{plan.cutoff:%Y-%m-%d %H:%M} UTC…", highlight=False)
        report = issues.recall_issue(engine, plan, transport=transport, now=_now())
    finally:
        transport.close()
    _say(report, as_json=as_json)


@app.command()
@handled
def resume(
    issue: Annotated[str, typer.Argument(help="Issue slug (2026-w48) or id.")],
    as_json: JsonOpt = False,
) -> None:
    """Release a paused issue (`newsletter recall --pause`): the held copies are delivered,
    at once when already due."""
    cfg = settings()
    engine = database(cfg)
    found = issues.find_issue(engine, issue)
    transport = issues.make_transport(cfg)
    try:
        report = issues.resume_issue(engine, found, transport=transport, now=_now())
    finally:
        transport.close()
    _say(report, as_json=as_json)


def _say(report: issues.RecallReport, *, as_json: bool) -> None:
    if as_json:
        data: dict[str, Any] = dict(report.__dict__)
        _print_json(data)
        return
    copies = counted(report.recalled, "delivery", "deliveries")
    if report.action == "cancel":
        console.print(f"Recalled {copies} of issue {report.issue}; {counted(report.due, 'delivery', 'deliveries')} "
                      "already due or delivered could not be stopped.", highlight=False)
        console.print(f"Next: `newsletter draft reopen`, correct the draft, `newsletter draft approve`, then `newsletter send` "
                      f"reaches the {report.recalled:,} recalled readers.", highlight=False)
    elif report.action == "pause":
        console.print(f"Paused {copies} of issue {report.issue} ({report.due:,} already due or delivered). "
                      f"`newsletter resume {report.issue}` releases them; `newsletter recall {report.issue}` cancels them.",
                      highlight=False)
    else:
        console.print(f"Resumed issue {report.issue}: {copies} held are delivered (at once when already due).", highlight=False)
