"""What the desk's page shows, gathered in one dict for `templates/web/desk/desk.html`, and
the email as its frames show it.

Owns: `build_page`, `render_page`, `render_email`, `chosen_sections`, `DONE`. Imports
`drafts`, `issues`, `schedule`, `preflight` (the limits the counters show), `errors`,
`web.desk.state`, `web.desk.auth`, `web.desk.recall` (the notice of a recall).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ... import drafts, issues, schedule
from ...drafts.edits import INTRO_LIMIT
from ...errors import ConfigError, NewsletterError
from ...models import RenderedMessage
from ...preflight import PREHEADER_SHOWN, SUBJECT_MAX, SUBJECT_SHOWN
from .auth import editor_of
from .recall import recall_notice
from .state import DeskContext

DONE = {
    "pin": "The article is pinned: it leads the issue.", "unpin": "The article is unpinned.",
    "exclude": "The article is excluded.", "include": "The article is back in the draft.",
    "up": "The article is moved up.", "down": "The article is moved down.", "move": "The article is moved.",
    "add": "The item is added to the draft.", "approve": "The issue is approved and frozen for sending.",
    "reopen": "The issue is a draft again.", "test": "The test is sent.",
    "texts": "The subject, preheader and intro are saved.",
    "sponsor": "The sponsor's slot is saved.", "unsponsor": "The sponsor's slot is removed.",
}
TESTERS_COOKIE = "desk_testers"
PAGE_CSP = ("default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src http: https: data:; frame-src 'self'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
EMAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; frame-ancestors 'self'"
_DARK = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)


def chosen_sections(request: Request, available: list[str]) -> tuple[str, ...]:
    """The segment picked on the page: one `s` per ticked section, or `sections` joined."""
    raw = request.query_params.getlist("s") or request.query_params.get("sections", "").split(",")
    chosen = tuple(s for s in available if s in raw)
    return chosen or tuple(available)


def _next_slot(ctx: DeskContext) -> datetime | None:
    try:
        trigger = schedule.digest_trigger(ctx.settings)
    except ConfigError:
        return None
    found = schedule.next_fire_times(trigger, ctx.clock(), 1)
    return found[0].astimezone(ctx.settings.site.zone) if found else None


def _testers(request: Request, ctx: DeskContext) -> str:
    remembered = request.cookies.get(TESTERS_COOKIE, "")
    return remembered or ", ".join(ctx.settings.preview.test_recipients)


def build_page(ctx: DeskContext, request: Request, *, problem: str = "", texts: dict[str, str] | None = None,
               testers: str | None = None, item: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the page shows; runs in a thread (database, render). The link checks are
    started here and never waited for: shown when they are already in, else the page's
    script asks `/links` until they are."""
    version = ctx.version()
    common = {"version": version, "problem": problem, "csrf": ctx.csrf.issue("desk", editor_of(request), 0, now=ctx.now()),
              "login": ctx.sessions is not None, "site": ctx.settings.site, "login_form": False,
              "sent": issues.recall_outlook(ctx.engine, ctx.clock()), "recalled": recall_notice(request.query_params)}
    try:
        draft, report = drafts.check_draft(ctx.engine, ctx.settings, links=None)
    except NewsletterError as exc:
        # No draft (an empty week, or none built yet, as after a send): the page says so and
        # how to make one, as a plain status line, not as an error.
        return {**common, "draft": None, "empty": str(exc), "notice": common["recalled"]}
    available = [b.slug for b in draft.blocks if b.articles]
    chosen = chosen_sections(request, available)
    message = None
    if available:
        message = drafts.sample_message(issues.render_issue(ctx.engine, ctx.settings, draft.issue, sections=chosen),
                                        ctx.settings)
    names = ctx.settings.section_names()
    scheme = "dark" if request.query_params.get("scheme") == "dark" else "light"
    picked = "" if list(chosen) == available else ",".join(chosen)
    issue = draft.issue
    with ctx.engine.connect() as conn:
        log = drafts.entries(conn, issue.id, limit=30)
    return {
        **common, "draft": draft, "report": report, "message": message, "available": available, "chosen": chosen,
        "names": names, "picked": picked, "scheme": scheme,
        "query": urlencode({"sections": ",".join(chosen), "scheme": scheme}),
        "light_href": "/?" + urlencode({"sections": picked} if picked else {}),
        "dark_href": "/?" + urlencode({**({"sections": picked} if picked else {}), "scheme": "dark"}),
        "columns": [(slug, name, [a for a in draft.articles if a.section == slug]) for slug, name in names.items()],
        "editable": not draft.frozen,
        "notice": common["recalled"] or DONE.get(request.query_params.get("done", ""), ""),
        "sender": ctx.settings.sender.name, "size": message.html_bytes if message else 0, "limit": report.limit,
        "texts": texts or {"subject": issue.subject, "preheader": issue.preheader, "intro": issue.intro},
        "limits": {"subject": (SUBJECT_SHOWN, SUBJECT_MAX), "preheader": (PREHEADER_SHOWN, 300), "intro": (0, INTRO_LIMIT)},
        "testers": _testers(request, ctx) if testers is None else testers, "item": item or {},
        "slot": _next_slot(ctx), "auto_send": ctx.settings.schedule.auto_send,
        "audience": drafts.audience(ctx.engine, draft), "log": log,
        # Started now if they are not running yet; shown when they are already in.
        "links": ctx.links.results(draft),
    }


def render_page(ctx: DeskContext, context: dict[str, Any], *, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    html = ctx.pages.get_template("desk/desk.html").render({**context, "nonce": nonce})
    return HTMLResponse(html, status_code=status, headers={
        "content-security-policy": PAGE_CSP.format(nonce=nonce), "x-frame-options": "DENY",
    })


def render_email(ctx: DeskContext, request: Request) -> RenderedMessage:
    """The draft's email for the frames: the picked segment, as a reader with dark mode
    sees it when `scheme=dark` (the dark rules applied outright: a frame cannot be told
    the system's preference), with the texts being typed when they are given (the live
    preview of subject, preheader and intro before they are saved)."""
    draft = drafts.current_draft(ctx.engine, ctx.settings)
    chosen = chosen_sections(request, [b.slug for b in draft.blocks if b.articles])
    issue = draft.issue
    typed = request.query_params
    if any(k in typed for k in ("subject", "preheader", "intro")):
        issue = replace(issue, subject=" ".join(typed.get("subject", issue.subject).split())[:300],
                        preheader=" ".join(typed.get("preheader", issue.preheader).split())[:300],
                        intro=typed.get("intro", issue.intro)[:INTRO_LIMIT])
    message = drafts.sample_message(issues.render_issue(ctx.engine, ctx.settings, issue, sections=chosen), ctx.settings)
    if request.query_params.get("scheme") == "dark":
        message = RenderedMessage(message.subject, message.preheader, _DARK.sub("@media all", message.html), message.text)
    return message


def email_response(message: RenderedMessage) -> Response:
    return HTMLResponse(message.html, headers={"content-security-policy": EMAIL_CSP, "x-frame-options": "SAMEORIGIN"})
