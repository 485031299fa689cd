"""The desk's one form endpoint (`POST /draft`): every change an editor makes on the page,
each through the same function of `drafts` the `draft` commands call, logged as coming
from the desk and checked against the version the page was drawn from.

Owns: `act`, `ACTIONS`. Imports `drafts`, `issues`, `models`, `errors`, `subscribers`
(address checks), `web.forms`, `web.errors`, `web.desk.*`.

A change refused by the draft (an approved draft, an unknown section, a bad link) comes
back as the page with the reason on top and the editor's entries kept in the forms: 409
when the draft's state refuses it (approved, or changed by someone else first), 400 when
the value given is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

import subscribers as people

from ... import drafts, issues
from ...errors import ConflictError, EditError, NewsletterError
from ...models import Sponsor
from ..errors import BadRequestError
from ..forms import FormData, one, parse_form, read_body
from .auth import editor_of
from .page import TESTERS_COOKIE, build_page, render_page
from .recall import RECALLS, recall_send
from .state import DeskContext, context_of

MAX_TESTERS = 10
_SPLIT = re.compile(r"[,;\s]+")


def _article(fields: FormData) -> int:
    value = one(fields, "article", limit=20)
    if not value.isdigit():
        raise BadRequestError("Choose an article: the form has no article number.")
    return int(value)


def _version(fields: FormData) -> int:
    value = one(fields, "version", limit=20)
    if not value.isdigit():
        raise BadRequestError("The form has no draft version: open the page again.")
    return int(value)


def parse_testers(text: str) -> tuple[str, ...]:
    """The addresses typed for a test send, each checked; `EditError` names the first that
    is not an address."""
    found = tuple(a for a in _SPLIT.split(text.strip()) if a)
    if not found:
        raise EditError("test addresses: type one or more email addresses, separated by commas")
    if len(found) > MAX_TESTERS:
        raise EditError(f"test addresses: {len(found)} given, at most {MAX_TESTERS}")
    for address in found:
        try:
            people.normalize_email(address)
        except people.InvalidEmailError:
            raise EditError(f"test address {address[:100]!r} is not an email address") from None
    return found


def _rank(ctx: DeskContext, article_id: int) -> int:
    draft = drafts.current_draft(ctx.engine, ctx.settings)
    here = next((a for a in draft.articles if a.article.id == article_id), None)
    if here is None:
        raise EditError(f"article {article_id}: not in the draft (excluded, or no such article)")
    return [a.article.id for a in draft.articles if a.section == here.section].index(article_id) + 1


def _edit(ctx: DeskContext, action: str, fields: FormData, sections: tuple[str, ...] | None) -> str:
    """Make the change; returns the addresses a test went to ("" for other actions)."""
    settings, engine, now = ctx.settings, ctx.engine, ctx.clock()
    stamp: dict[str, Any] = {"origin": "desk", "now": now}
    if action == "test":
        testers = parse_testers(one(fields, "to", limit=2000))
        transport = issues.make_transport(settings)
        try:
            drafts.send_test(engine, settings, transport=transport, sections=sections, to=testers, clock=ctx.clock,
                             origin="desk")
        finally:
            transport.close()
        return ", ".join(testers)
    stamp["expect"] = _version(fields)
    simple: dict[str, Callable[[], object]] = {
        "texts": lambda: drafts.set_texts(engine, subject=one(fields, "subject", limit=1000),
                                          preheader=one(fields, "preheader", limit=1000),
                                          intro=one(fields, "intro", limit=20_000), **stamp),
        "pin": lambda: drafts.pin(engine, settings, _article(fields), on=True, **stamp),
        "unpin": lambda: drafts.pin(engine, settings, _article(fields), on=False, **stamp),
        "exclude": lambda: drafts.exclude(engine, settings, _article(fields), on=True, **stamp),
        "include": lambda: drafts.exclude(engine, settings, _article(fields), on=False, **stamp),
        "up": lambda: drafts.move(engine, settings, _article(fields),
                                  position=max(1, _rank(ctx, _article(fields)) - 1), **stamp),
        "down": lambda: drafts.move(engine, settings, _article(fields), position=_rank(ctx, _article(fields)) + 1,
                                    **stamp),
        "move": lambda: drafts.move(engine, settings, _article(fields), section=one(fields, "section", limit=100),
                                    position=_position(fields), **stamp),
        "add": lambda: drafts.add_item(engine, settings, title=one(fields, "title", limit=1000),
                                       link=one(fields, "link", limit=2000), section=one(fields, "section", limit=100),
                                       summary=one(fields, "summary", limit=4000), image_url=one(fields, "image", limit=2000),
                                       **stamp),
        "sponsor": lambda: drafts.set_sponsor(engine, settings, Sponsor(
            label=one(fields, "label", limit=1000), text=one(fields, "text", limit=4000), url=one(fields, "url", limit=2000),
            image_url=one(fields, "image", limit=2000), after=one(fields, "after", limit=100)), **stamp),
        "unsponsor": lambda: drafts.set_sponsor(engine, settings, None, **stamp),
        "approve": lambda: drafts.approve(engine, settings, links=ctx.links.checker, **stamp),
        "reopen": lambda: drafts.reopen(engine, **stamp),
    }
    if action not in simple:
        raise BadRequestError(f"Unknown action {action[:40]!r}.")
    simple[action]()
    return ""


def _position(fields: FormData) -> int | None:
    value = one(fields, "position", limit=10).strip()
    if not value:
        return None
    if not value.isdigit():
        raise EditError(f"position {value!r}: expected a rank from 1 (first) to 1000")
    return int(value)


async def act(request: Request) -> Response:
    """Make one change of the draft, then back to the page (303); or the page again with
    the reason when the change is refused."""
    ctx = context_of(request)
    fields = parse_form(request, await read_body(request, limit=65_536))
    ctx.csrf.verify(one(fields, "csrf"), "desk", editor_of(request), 0, now=ctx.now())
    action, picked, scheme = one(fields, "action", limit=20), one(fields, "sections", limit=2000), one(fields, "scheme", limit=10)
    chosen = tuple(s for s in picked.split(",") if s) or None
    if action in RECALLS:
        try:
            report = await run_in_threadpool(recall_send, ctx, action, one(fields, "issue", limit=100))
        except NewsletterError as exc:
            return await _refused(ctx, request, action, fields, exc)
        query = urlencode({"done": action, "issue": report.issue, "n": report.recalled, "due": report.due})
        return RedirectResponse(f"/?{query}#top", status_code=303)
    try:
        sent_to = await run_in_threadpool(_edit, ctx, action, fields, chosen)
    except NewsletterError as exc:
        return await _refused(ctx, request, action, fields, exc)
    query = urlencode({k: v for k, v in (("sections", picked), ("scheme", scheme if scheme == "dark" else ""),
                                         ("done", action)) if v})
    answer = RedirectResponse(f"/?{query}#{'texts' if action == 'texts' else 'top'}", status_code=303)
    if sent_to:
        answer.set_cookie(TESTERS_COOKIE, sent_to, max_age=365 * 86400, httponly=True, samesite="strict")
    return answer


async def _refused(ctx: DeskContext, request: Request, action: str, fields: FormData, exc: NewsletterError) -> Response:
    status = 400 if isinstance(exc, EditError) and not isinstance(exc, ConflictError) else 409
    problem = f"Not done: {exc}."
    texts = None
    if action == "texts":
        texts = {k: one(fields, k, limit=20_000) for k in ("subject", "preheader", "intro")}
        if isinstance(exc, ConflictError):
            problem += " Your text is kept in the form below; save again to replace the other change with it."
    testers = one(fields, "to", limit=2000) if action == "test" else None
    keys = {"add": ("title", "link", "section", "summary", "image"), "sponsor": ("label", "text", "url", "image", "after")}
    item = {"form": action, **{k: one(fields, k, limit=4000) for k in keys[action]}} if action in keys else None
    context = await run_in_threadpool(build_page, ctx, request, problem=problem, texts=texts, testers=testers, item=item)
    return render_page(ctx, context, status=status)
