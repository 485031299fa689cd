"""The editors' local preview of the draft (`newsletter preview`): one factory, one route
table, one place that turns errors into pages.

Owns: `create_preview_app`, `PREVIEW_ROUTES`, `serve_preview`. Sits on top: imports
`config`, `drafts`, `issues`, `welcome`, `preflight`, `render`, `web.forms` (body reading,
CSRF tokens).

Security: it listens on 127.0.0.1 and answers only requests addressed to a loopback host
name (no DNS rebinding), unless `preview.password` is set, which then guards every request
with HTTP Basic. Every form carries a signed token (a secret drawn when the app starts).
The email is shown in sandboxed frames, so nothing in it can run; the page's own script
(live reload over server-sent events) runs by a per-response nonce.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import uvicorn
import watchfiles
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import drafts, issues, welcome
from ..config import Settings
from ..errors import ConfigError, NewsletterError
from ..models import RenderedMessage, Sponsor
from ..preflight import LinkChecker
from ..render import builtin_templates
from .errors import BadRequestError, FormExpiredError, WebError
from .forms import CsrfSigner, one, parse_form, read_body

log = logging.getLogger("newsletter.preview")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
DONE = {
    "pin": "The article is pinned.", "unpin": "The article is unpinned.", "exclude": "The article is excluded.",
    "include": "The article is back in the draft.", "approve": "The issue is approved and frozen for sending.",
    "reopen": "The issue is a draft again.", "test": "The test is sent to the editors.",
    "texts": "The subject, preheader and intro are saved.",
    "sponsor": "The sponsor's slot is saved.", "unsponsor": "The sponsor's slot is removed.",
}
PAGE_CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src http: https: data:; "
            "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
EMAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; frame-ancestors 'self'"


@dataclass
class PreviewContext:
    settings: Settings
    engine: Engine
    pages: jinja2.Environment
    csrf: CsrfSigner
    links: LinkChecker
    watch: tuple[Path, ...]
    clock: Callable[[], datetime]

    def version(self) -> str:
        """Changes when the draft or a template file changes: the page reloads then."""
        digest = hashlib.sha256(drafts.draft_fingerprint(self.engine).encode())
        for folder in self.watch:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return digest.hexdigest()[:16]


def _context(request: Request) -> PreviewContext:
    context: PreviewContext = request.app.state.preview
    return context


def _sections(request: Request, available: list[str]) -> tuple[str, ...]:
    # The picker sends one `s` per ticked section; links carry them joined in `sections`.
    raw = request.query_params.getlist("s") or request.query_params.get("sections", "").split(",")
    chosen = tuple(s for s in available if s in raw)
    return chosen or tuple(available)


def _nonce() -> str:
    return secrets.token_urlsafe(16)


def _page(ctx: PreviewContext, context: dict[str, Any], *, status: int = 200) -> Response:
    nonce = _nonce()
    html = ctx.pages.get_template("preview.html").render({**context, "nonce": nonce, "site": ctx.settings.site})
    return HTMLResponse(html, status_code=status, headers={
        "content-security-policy": PAGE_CSP.format(nonce=nonce), "x-frame-options": "DENY",
    })


def _build_page(ctx: PreviewContext, request: Request, *, problem: str = "") -> dict[str, Any]:
    """Everything the page shows; runs in a thread (database, render, link checks)."""
    version = ctx.version()
    try:
        draft, report = drafts.check_draft(ctx.engine, ctx.settings, links=ctx.links)
    except NewsletterError as exc:
        # No draft (an empty week, or none built yet): the page says so and how to make one.
        return {"draft": None, "problem": problem or str(exc), "version": version, "notice": ""}
    available = [b.slug for b in draft.blocks]
    chosen = _sections(request, available)
    message = None
    if available:
        message = drafts.sample_message(issues.render_issue(ctx.engine, ctx.settings, draft.issue, sections=chosen), ctx.settings)
    now = int(ctx.clock().timestamp())
    query = urlencode({"sections": ",".join(chosen)})
    return {
        "draft": draft, "report": report, "message": message, "available": available, "chosen": chosen,
        "names": ctx.settings.section_names(), "query": query, "version": version,
        # Forms carry the segment back only when one was picked, so that an article
        # brought back into a section the segment lacked shows again.
        "picked": "" if list(chosen) == available else ",".join(chosen),
        "csrf": ctx.csrf.issue("preview", "editor", 0, now=now), "problem": problem,
        "notice": DONE.get(request.query_params.get("done", ""), ""),
        "sender": ctx.settings.sender.name, "limit": report.limit,
        "size": message.html_bytes if message else 0, "testers": ctx.settings.preview.test_recipients,
    }


async def page(request: Request) -> Response:
    ctx = _context(request)
    return _page(ctx, await run_in_threadpool(_build_page, ctx, request))


async def email(request: Request) -> Response:
    """One part of the draft's email, for the frames: `kind` html (default) or text."""
    ctx = _context(request)

    def render() -> RenderedMessage:
        draft = drafts.current_draft(ctx.engine, ctx.settings)
        chosen = _sections(request, [b.slug for b in draft.blocks])
        return drafts.sample_message(issues.render_issue(ctx.engine, ctx.settings, draft.issue, sections=chosen), ctx.settings)

    return _email_response(request, await run_in_threadpool(render))


async def welcome_email(request: Request) -> Response:
    """The welcome email a reader who joins now with the chosen sections would get (the
    latest issue sent, in their sections, or the note before the first); `kind` html
    (default) or text. Needs no draft."""
    ctx = _context(request)

    def render() -> RenderedMessage:
        chosen = _sections(request, list(ctx.settings.section_names()))
        with ctx.engine.connect() as conn:
            content = welcome.latest_content(conn, ctx.settings)
        message = welcome.welcome_message(issues.make_renderer(ctx.settings), ctx.settings, content, chosen)
        return drafts.sample_message(message, ctx.settings)

    return _email_response(request, await run_in_threadpool(render))


def _email_response(request: Request, message: RenderedMessage) -> Response:
    if request.query_params.get("kind") == "text":
        return PlainTextResponse(message.text)
    return HTMLResponse(message.html, headers={"content-security-policy": EMAIL_CSP, "x-frame-options": "SAMEORIGIN"})


async def events(request: Request) -> Response:
    """Server-sent events: `reload` once the draft or a template differs from the
    version the page was rendered from (`?since=`)."""
    ctx = _context(request)
    since = request.query_params.get("since", "")

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        stop = asyncio.Event()
        try:
            async for _ in watchfiles.awatch(*ctx.watch, stop_event=stop, debounce=100, step=50,
                                             rust_timeout=1000, yield_on_timeout=True):
                if await request.is_disconnected():
                    return
                if await run_in_threadpool(ctx.version) != since:
                    yield "event: reload\ndata: changed\n\n"
                    return
                yield ": still here\n\n"
        finally:
            stop.set()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})


def _act(ctx: PreviewContext, action: str, article: str, sections: tuple[str, ...] | None,
         fields: dict[str, list[str]]) -> None:
    settings, engine, now = ctx.settings, ctx.engine, ctx.clock()
    if action == "texts":
        drafts.set_subject(engine, one(fields, "subject", limit=1000))
        drafts.set_preheader(engine, one(fields, "preheader", limit=1000))
        drafts.set_intro(engine, one(fields, "intro", limit=20_000))
    elif action in ("sponsor", "unsponsor"):
        sponsor = None if action == "unsponsor" else Sponsor(
            label=one(fields, "label", limit=1000), text=one(fields, "text", limit=4000), url=one(fields, "url", limit=2000),
            image_url=one(fields, "image", limit=2000), after=one(fields, "after", limit=100))
        drafts.set_sponsor(engine, settings, sponsor, now=now)
    elif action in ("pin", "unpin", "exclude", "include"):
        if not article.isdigit():
            raise BadRequestError("Choose an article.")
        change = drafts.pin if action in ("pin", "unpin") else drafts.exclude
        change(engine, settings, int(article), on=action in ("pin", "exclude"), now=now)
    elif action == "approve":
        drafts.approve(engine, settings, links=ctx.links)
    elif action == "reopen":
        drafts.reopen(engine)
    elif action == "test":
        transport = issues.make_transport(settings)
        try:
            drafts.send_test(engine, settings, transport=transport, sections=sections, clock=ctx.clock)
        finally:
            transport.close()
    else:
        raise BadRequestError(f"Unknown action {action[:40]!r}.")


async def act(request: Request) -> Response:
    """Save the texts or the sponsor, pin, unpin, exclude, include, approve, reopen or send a test; then
    back to the page."""
    ctx = _context(request)
    fields = parse_form(request, await read_body(request, limit=65_536))
    ctx.csrf.verify(one(fields, "csrf"), "preview", "editor", 0, now=int(ctx.clock().timestamp()))
    action, sections = one(fields, "action", limit=20), one(fields, "sections", limit=2000)
    chosen = tuple(s for s in sections.split(",") if s) or None
    try:
        await run_in_threadpool(_act, ctx, action, one(fields, "article", limit=20), chosen, fields)
    except NewsletterError as exc:
        context = await run_in_threadpool(_build_page, ctx, request, problem=str(exc))
        return _page(ctx, context, status=409)
    query = urlencode({"sections": sections, "done": action})
    return RedirectResponse(f"/?{query}", status_code=303)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


PREVIEW_ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/email", email, methods=["GET"]),
    Route("/welcome", welcome_email, methods=["GET"]),
    Route("/events", events, methods=["GET"]),
    Route("/draft", act, methods=["POST"]),
    Route("/healthz", health, methods=["GET"]),
]


def _error_page(request: Request, exc: Exception) -> Response:
    """The one place where an exception becomes an answer, never with a traceback."""
    if isinstance(exc, WebError):
        status, message = exc.status, exc.message
    elif isinstance(exc, NewsletterError):
        status, message = 409, str(exc)
    else:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        status, message = 500, "Something went wrong; the terminal running `newsletter preview` says what."
    return PlainTextResponse(message, status_code=status)


class _Guard:
    """ASGI middleware: the password (when set) and the loopback host check."""

    def __init__(self, app: Any, *, password: str, allowed_hosts: set[str]) -> None:
        self.app = app
        self.password = password
        self.allowed_hosts = allowed_hosts

    def _refusal(self, headers: dict[bytes, bytes]) -> Response | None:
        if self.password:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, encoded = given.partition(" ")
            try:
                secret = base64.b64decode(encoded).decode("utf-8").partition(":")[2] if scheme.lower() == "basic" else ""
            except (ValueError, UnicodeDecodeError):
                secret = ""
            if not hmac.compare_digest(secret.encode(), self.password.encode()):
                return PlainTextResponse("The preview needs its password.", status_code=401,
                                         headers={"www-authenticate": 'Basic realm="newsletter preview"'})
            return None
        host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].lower()
        if host not in self.allowed_hosts:
            return PlainTextResponse("The preview answers only on localhost.", status_code=421)
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(dict(scope.get("headers", [])))
            if refusal is not None:
                await refusal(scope, receive, send)
                return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"referrer-policy", b"no-referrer"),
                                      (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, with_headers)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_preview_app(
    settings: Settings, *, host: str = "127.0.0.1", engine: Engine | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Any:
    """The preview app. Raises `ConfigError` when `host` is not a loopback address and no
    `preview.password` is set."""
    password = settings.preview.password.get_secret_value() if settings.preview.password else ""
    if not is_loopback(host) and len(password) < 12:
        raise ConfigError(f"preview: listening on {host} needs preview.password (12 characters or more; set "
                          "NEWSLETTER_PREVIEW__PASSWORD); without it the preview listens on 127.0.0.1 only")
    folders = [builtin_templates()]
    if settings.templates.folder:
        folders.insert(0, settings.path(settings.templates.folder))
    pages = issues.page_environment(settings)
    context = PreviewContext(
        settings=settings, engine=engine or issues.open_database(settings), pages=pages,
        csrf=CsrfSigner(secrets.token_urlsafe(32), max_age=12 * 3600),
        links=drafts.link_checker(settings, ttl=300), watch=tuple(f for f in folders if f.is_dir()), clock=clock,
    )
    app = Starlette(routes=PREVIEW_ROUTES, exception_handlers={
        Exception: _error_page, WebError: _error_page, NewsletterError: _error_page, FormExpiredError: _error_page,
    })
    app.state.preview = context
    return _Guard(app, password=password, allowed_hosts=LOOPBACK_NAMES | {host.lower()})


def serve_preview(settings: Settings, *, host: str | None = None, port: int | None = None,
                  on_start: Callable[[str], None] = lambda url: None) -> None:
    """Serve the preview until interrupted."""
    host = host or settings.preview.host
    port = port or settings.preview.port
    app = create_preview_app(settings, host=host)
    on_start(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/")
    started = time.monotonic()
    uvicorn.run(app, host=host, port=port, access_log=False, server_header=False, log_level="warning",
                timeout_graceful_shutdown=1)
    log.info("preview stopped after %.0f s", time.monotonic() - started)
