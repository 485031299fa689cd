"""The desk's Recall, Pause and Resume: the latest issue sent, while copies of it are not
yet due, is shown in a bar above the draft with those buttons; each calls the same use
case as `newsletter recall` and `newsletter resume`, and is written to the issue's draft
log as coming from the desk.

Owns: `RECALLS`, `recall_send`, `recall_notice`. Imports `issues`, `drafts.journal`, `text`,
`web.errors`, `web.desk.state`.
"""

from __future__ import annotations

from starlette.datastructures import QueryParams

from ... import issues
from ...drafts.journal import record
from ...text import counted
from ..errors import BadRequestError
from .state import DeskContext

#: The form's action → the use case's action.
RECALLS = {"recall": "cancel", "pause": "pause", "resume": "resume"}


def recall_send(ctx: DeskContext, action: str, ref: str) -> issues.RecallReport:
    """Recall (cancel), pause or resume the send of the issue named `ref`; `RecallError`
    (a `NewsletterError`) with the reason when it cannot be done, the ledger unchanged."""
    if not ref.strip():
        raise BadRequestError("The form names no issue: open the page again.")
    issue = issues.find_issue(ctx.engine, ref.strip())
    now = ctx.clock()
    transport = issues.make_transport(ctx.settings)
    try:
        if RECALLS[action] == "resume":
            report = issues.resume_issue(ctx.engine, issue, transport=transport, now=now)
        else:
            plan = issues.plan_recall(ctx.engine, issue, transport=transport, action=RECALLS[action], now=now)
            report = issues.recall_issue(ctx.engine, plan, transport=transport, now=now)
    finally:
        transport.close()
    copies = counted(report.recalled, "delivery", "deliveries")
    detail = {"cancel": f"{copies} stopped, {report.due:,} already due or delivered",
              "pause": f"{copies} held, {report.due:,} already due or delivered",
              "resume": f"{copies} released"}[report.action]
    with ctx.engine.begin() as conn:
        record(conn, issue.id, origin="desk", action={"cancel": "recalled", "pause": "paused", "resume": "resumed"}[report.action],
               detail=detail, now=now, step=report.action == "cancel")
    return report


def recall_notice(query: QueryParams) -> str:
    """The outcome of a recall, pause or resume, from the query the desk redirected to."""
    action, slug, n, due = (query.get(k, "") for k in ("done", "issue", "n", "due"))
    if action not in RECALLS or not n.isdigit() or not due.isdigit() or not slug or len(slug) > 100:
        return ""
    copies = counted(int(n), "delivery", "deliveries")
    if action == "recall":
        return (f"Recalled {copies} of issue {slug}; {int(due):,} already due or delivered could not be stopped. "
                f"Reopen the draft, correct it, approve it and send it: it reaches the {int(n):,} recalled readers.")
    if action == "pause":
        return f"Paused {copies} of issue {slug} ({int(due):,} already due or delivered): Resume releases them, Recall cancels them."
    return f"Resumed issue {slug}: {copies} held are delivered (at once when already due)."
