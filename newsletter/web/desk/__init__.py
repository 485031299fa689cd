"""The editor's desk (`newsletter preview`): the draft's email first, its articles by section
beside it, the texts, the preflight, approval and test sends, the draft log. One factory,
one route table, one place that turns errors into answers.

Owns: `create_desk_app`, `serve_desk`, `DESK_ROUTES`. Sits on top: imports `config`,
`drafts`, `issues`, `welcome` (the welcome email's preview), `errors`, `web.errors`, `web.forms` and this package's modules:
- `auth`: the password, sessions, CSRF subjects, the loopback rule (`Guard`);
- `state`: the running desk's context, background link checks, the page's version;
- `page`: what the page shows, and the email for its frames;
- `actions`: `POST /draft`, every change made on the page.

The email is shown in sandboxed frames, so nothing in it can run; the page's own script
(`desk.js`: drag and drop, live preview of the texts, the counters, the link results, and
polling `/version` to stay in step with the command line) is served by the desk itself.
Every action also works without it, as plain forms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ... import drafts, issues, welcome
from ...config import Settings
from ...errors import ConfigError, NewsletterError
from ...models import RenderedMessage
from ...render import builtin_templates
from ..errors import FormExpiredError, RateLimitedError, WebError
from ..forms import one, parse_form, read_body
from ..limits import Counters
from .actions import act
from .auth import COOKIE, LOOPBACK_NAMES, Guard, editor_of, is_loopback, verify_password
from .page import build_page, chosen_sections, email_response, render_email, render_page
from .state import context_of, desk_context

log = logging.getLogger("newsletter.desk")
ASSETS = {"/desk.js": "application/javascript", "/desk.css": "text/css"}


async def page(request: Request) -> Response:
    ctx = context_of(request)
    return render_page(ctx, await run_in_threadpool(build_page, ctx, request))


async def email(request: Request) -> Response:
    """The draft's email for the frames (`?sections=`, `?scheme=dark`, typed texts), or its
    text part with `kind=text`."""
    ctx = context_of(request)
    message = await run_in_threadpool(render_email, ctx, request)
    if request.query_params.get("kind") == "text":
        return PlainTextResponse(message.text)
    return email_response(message)


async def welcome_email(request: Request) -> Response:
    """The welcome email a reader who joins now with the chosen sections would get (the
    latest issue sent, in their sections, or the note before the first); `kind` html
    (default) or text. Needs no draft."""
    ctx = context_of(request)

    def render() -> RenderedMessage:
        chosen = chosen_sections(request, list(ctx.settings.section_names()))
        with ctx.engine.connect() as conn:
            content = welcome.latest_content(conn, ctx.settings)
        message = welcome.welcome_message(issues.make_renderer(ctx.settings), ctx.settings, content, chosen)
        return drafts.sample_message(message, ctx.settings)

    message = await run_in_threadpool(render)
    if request.query_params.get("kind") == "text":
        return PlainTextResponse(message.text)
    return email_response(message)


def _state(ctx: Any) -> dict[str, Any]:
    try:
        draft, entries = drafts.draft_log(ctx.engine, ctx.settings, limit=1)
    except NewsletterError:
        return {"version": ctx.version(), "draft": None}
    last = entries[0].describe() if entries else ""
    return {"version": ctx.version(), "draft": draft.version, "status": draft.issue.status.value, "last": last}


async def version(request: Request) -> Response:
    """What the page polls: its `version` changes whenever the draft or a template does."""
    ctx = context_of(request)
    return JSONResponse(await run_in_threadpool(_state, ctx))


async def links(request: Request) -> Response:
    """The link checks of the draft as it stands: `done` false while they run."""
    ctx = context_of(request)

    def results() -> dict[str, Any]:
        found = ctx.links.results(drafts.current_draft(ctx.engine, ctx.settings))
        return {"done": found is not None, "warnings": [f.message for f in found or []]}

    return JSONResponse(await run_in_threadpool(results))


async def asset(request: Request) -> Response:
    ctx = context_of(request)
    name = request.url.path.lstrip("/")
    folders = [f / "web" / "desk" for f in ctx.watch] + [builtin_templates() / "web" / "desk"]
    path = next(p for p in (f / name for f in folders) if p.is_file())
    return FileResponse(path, media_type=ASSETS[request.url.path])


def _login_page(request: Request, *, problem: str = "", status: int = 200) -> Response:
    ctx = context_of(request)
    token = ctx.csrf.issue("login", "anonymous", 0, now=ctx.now())
    return render_page(ctx, {"login_form": True, "csrf": token, "problem": problem, "site": ctx.settings.site,
                             "draft": None, "version": "", "login": True, "notice": ""}, status=status)


async def login(request: Request) -> Response:
    """The login form, and the password checked (rate-limited per client address)."""
    ctx = context_of(request)
    if request.method == "GET":
        return _login_page(request)
    fields = parse_form(request, await read_body(request, limit=8192))
    ctx.csrf.verify(one(fields, "csrf"), "login", "anonymous", 0, now=ctx.now())
    client = request.client.host if request.client else "unknown"
    wait = ctx.logins.hit(client)
    if wait:
        raise RateLimitedError(f"Too many login attempts from your address: try again in {wait} s.", retry_after=wait)
    given = one(fields, "password", limit=1000)
    # Argon2 takes tens of milliseconds on purpose: not on the event loop.
    if ctx.sessions is None or not await run_in_threadpool(verify_password, ctx.settings.preview.password_hash, given):
        log.warning("desk login refused (wrong password)")
        return _login_page(request, problem="Wrong password.", status=401)
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(COOKIE, ctx.sessions.issue(now=ctx.now()), max_age=ctx.sessions.max_age, httponly=True,
                      samesite="strict", secure=request.url.scheme == "https")
    return answer


async def logout(request: Request) -> Response:
    ctx = context_of(request)
    fields = parse_form(request, await read_body(request, limit=8192))
    ctx.csrf.verify(one(fields, "csrf"), "desk", editor_of(request), 0, now=ctx.now())
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE)
    return answer


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


DESK_ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/email", email, methods=["GET"]),
    Route("/welcome", welcome_email, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/links", links, methods=["GET"]),
    Route("/draft", act, methods=["POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/healthz", health, methods=["GET"]),
    *(Route(path, asset, methods=["GET"]) for path in ASSETS),
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
    headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, RateLimitedError) and exc.retry_after else {}
    return PlainTextResponse(message, status_code=status, headers=headers)


def create_desk_app(
    settings: Settings, *, host: str = "127.0.0.1", engine: Engine | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC), counters: Counters | None = None,
) -> Any:
    """The desk app. Raises `ConfigError` when `host` is not a loopback address and no
    `preview.password_hash` is set."""
    if not is_loopback(host) and not settings.preview.password_hash:
        raise ConfigError(f"preview: listening on {host} needs preview.password_hash (set it with `newsletter "
                          "preview set-password`); without it the desk listens on 127.0.0.1 only")
    context = desk_context(settings, engine=engine, clock=clock, counters=counters)
    app = Starlette(routes=DESK_ROUTES, exception_handlers={
        Exception: _error_page, WebError: _error_page, NewsletterError: _error_page, FormExpiredError: _error_page,
    })
    app.state.desk = context
    return Guard(app, sessions=context.sessions, allowed_hosts=LOOPBACK_NAMES | {host.lower()}, clock=clock)


def serve_desk(settings: Settings, *, host: str | None = None, port: int | None = None,
               on_start: Callable[[str], None] = lambda url: None) -> None:
    """Serve the desk until interrupted."""
    host = host or settings.preview.host
    port = port or settings.preview.port
    app = create_desk_app(settings, host=host)
    on_start(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/")
    started = time.monotonic()
    uvicorn.run(app, host=host, port=port, access_log=False, server_header=False, log_level="warning",
                timeout_graceful_shutdown=1)
    log.info("desk stopped after %.0f s", time.monotonic() - started)


__all__ = ["DESK_ROUTES", "create_desk_app", "serve_desk"]
