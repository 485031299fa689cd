"""The web app: one factory, one route table, one place that maps errors to pages.

Owns: `create_app`, `ROUTES`, `error_response`. Sits on top: may import anything.

Every page answers with security headers: no framing, no referrer (the personal links
carry the subscriber's token), no caching, and a content security policy that allows no
script at all. The access log names the route, never the token in the path.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import subscribers as people

from .. import issues
from ..config import Settings
from ..errors import ConfigError, StorageError
from ..site import privacy_html
from ..transports import Transport
from . import archive, views, webhooks
from .errors import LinkNotValidError, RateLimitedError, WebError
from .forms import CsrfSigner
from .limits import Counters, RateLimiter
from .mail import ConfirmationMailer

log = logging.getLogger("newsletter.web")

ROUTES = [
    Route("/", archive.home, methods=["GET", "HEAD"]),
    Route("/privacy", views.privacy, methods=["GET", "HEAD"]),
    Route("/healthz", views.health, methods=["GET"]),
    Route("/subscribe", views.subscribe_form, methods=["GET"]),
    Route("/subscribe", views.subscribe, methods=["POST"]),
    Route("/subscribe", views.subscribe_preflight, methods=["OPTIONS"]),
    Route("/confirm/{token}", views.confirm, methods=["GET"]),
    Route("/confirm/{token}", views.confirm_resend, methods=["POST"]),
    Route("/preferences/{token}", views.preferences, methods=["GET"]),
    Route("/preferences/{token}", views.preferences_post, methods=["POST"]),
    Route("/unsubscribe/{token}", views.unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", views.unsubscribe_one_click, methods=["POST"]),
    Route("/archive", archive.archive_redirect, methods=["GET", "HEAD"]),
    Route("/archive/", archive.archive_index, methods=["GET", "HEAD"]),
    Route("/archive/feed.xml", archive.archive_feed, methods=["GET", "HEAD"]),
    Route("/archive/page/{number:int}/", archive.archive_page, methods=["GET", "HEAD"]),
    Route("/archive/{section}/feed.xml", archive.archive_feed, methods=["GET", "HEAD"]),
    Route("/archive/{slug}", archive.archive_issue, methods=["GET", "HEAD"]),
    Route("/archive/{slug}/", archive.archive_issue, methods=["GET", "HEAD"]),
    Route("/webhooks/sendgrid", webhooks.sendgrid_events, methods=["POST"]),
]

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
_TOKEN_PATH = re.compile(r"^/(confirm|preferences|unsubscribe)/[^/?]*")


def redact(path: str) -> str:
    """The path with a link token replaced, fit for a log line."""
    return _TOKEN_PATH.sub(r"/\1/<token>", path)


class Guard:
    """ASGI middleware: security headers on every answer and an access log without tokens."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %s %.1f ms", scope["method"], redact(scope["path"]), status or 500,
                (time.perf_counter() - started) * 1000,
            )


def error_response(request: Request, exc: Exception) -> Response:
    """The one place where an exception becomes an answer: a page for people, JSON for
    scripts, the status code that says what went wrong, and never a traceback."""
    status, title, message = 500, "Something went wrong", "Please try again later."
    headers: dict[str, str] = {}
    not_found = isinstance(exc, HTTPException) and exc.status_code == 404
    if isinstance(exc, (LinkNotValidError, people.UnknownSubscriberError)) or (
        not_found and _TOKEN_PATH.match(request.url.path)
    ):
        # Nothing more: the page must not help anyone guess tokens.
        if wants_json_error(request):
            return JSONResponse({"error": "This link is not valid."}, status_code=404)
        return views.web(request).page(request, "invalid.html", {}, status=404)
    if isinstance(exc, WebError):
        status, title, message = exc.status, exc.title, exc.message
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, people.InvalidEmailError):
        status, title = 422, "Please check your email address"
        message = "That does not look like a valid email address. " + _reason(str(exc))
    elif isinstance(exc, people.InvalidNameError):
        status, title = 422, "Please check your name"
        message = f"The name cannot be used: {exc}."
    elif isinstance(exc, people.InvalidSectionError):
        status, title, message = 400, "Unknown section", f"{exc}."
    elif isinstance(exc, people.NotAllowedError):
        status, title, message = 409, "This cannot be done", str(exc)
    elif isinstance(exc, StorageError):
        # One line in the log naming the database and the problem; the traceback only at
        # DEBUG (its statement parameters are hidden by the engine).
        status, title = 503, "Temporarily unavailable"
        message = "This cannot be done right now. Please try again in a few minutes."
        headers["Retry-After"] = "60"
        log.error("%s %s: %s", request.method, redact(request.url.path), exc)
        log.debug("database error", exc_info=exc)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        title = "Page not found" if status == 404 else "This request is not allowed here"
        message = "There is no page at this address." if status == 404 else "Use the page's own buttons or links."
        headers.update(exc.headers or {})
    else:
        log.error("unexpected error on %s %s", request.method, redact(request.url.path), exc_info=exc)
    if request.url.path == "/subscribe":
        headers.update(views.cors_headers(request))
    if wants_json_error(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    context: dict[str, Any] = {"title": title, "message": message}
    if request.url.path == "/subscribe" and request.method == "POST":
        values = getattr(request.state, "form_values", {})
        context |= {"error": message, "values": values, "chosen": set(values.get("sections", [])) or None}
        context["sections"] = views.web(request).settings.section_names()
        response = views.web(request).page(request, "subscribe.html", context, status=status)
    else:
        response = views.web(request).page(request, "error.html", context, status=status)
    response.headers.update(headers)
    return response


def wants_json_error(request: Request) -> bool:
    return views.wants_json(request)


def _reason(text: str) -> str:
    # email-validator's explanation follows "is not a valid email address: ".
    reason = text.partition("is not a valid email address: ")[2].strip()
    return reason if len(reason) < 300 else ""


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    monotonic: Callable[[], float] = time.monotonic,
    transport: Callable[[], Transport] | None = None,
) -> Starlette:
    """The web app for `settings`. `engine` defaults to the configured database (its
    schema brought up to date); `clock`, `monotonic` (when to try a failed rate-limit
    storage again, when archive pages are out of date) and `transport` (a factory) can be given so tests need no patching.
    Rate limits count in `web.rate_limit_storage` (Redis) or in memory, on the wall clock
    (the `limits` library's own).

    Raises `ConfigError` when no secret key is configured: forms cannot be signed without.
    """
    secret = settings.security.secret_key
    if secret is None or len(secret.get_secret_value()) < 16:
        raise ConfigError(
            "security.secret_key: the web app needs a secret of at least 16 characters to sign its forms; "
            "set NEWSLETTER_SECRET_KEY (for example to the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    verifier = webhooks.event_verifier(settings)
    web = settings.web
    # Keys carry the site's address, so two newsletters can share one Redis.
    try:
        counters = Counters(web.rate_limit_storage, namespace=settings.site.base_url, timer=monotonic)
    except ValueError as exc:
        raise ConfigError(f"web.rate_limit_storage: {exc}") from None
    context = views.WebContext(
        settings=settings,
        engine=engine or issues.open_database(settings),
        clock=clock,
        pages=Jinja2Templates(env=issues.page_environment(settings, auto_reload=False)),
        csrf=CsrfSigner(secret.get_secret_value(), max_age=web.form_minutes * 60),
        ip_limiter=RateLimiter(
            limit=web.subscribe_per_ip, window=web.rate_window_seconds, name="subscribe-ip", counters=counters
        ),
        address_limiter=RateLimiter(
            limit=web.subscribe_per_address, window=web.rate_window_seconds, name="subscribe-address", counters=counters
        ),
        mailer=ConfirmationMailer(settings, transport=transport),
        privacy=privacy_html(settings),
    )
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Guard)],
        exception_handlers={
            WebError: error_response,
            people.SubscriberError: error_response,
            # Here, not only under Exception: Starlette raises what reaches that handler
            # again after answering, into the server's log as a traceback.
            StorageError: error_response,
            HTTPException: error_response,
            Exception: error_response,
        },
    )
    app.state.web = context
    app.state.monotonic = monotonic
    app.state.event_verifier = verifier
    return app
