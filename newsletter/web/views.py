"""The endpoints of the web app: subscribe, confirm, the preference center, unsubscribe.

Owns: one function per route (the route table is in `app.py`) and `WebContext`, what
every endpoint needs. Imports `config`, `welcome` (recording a welcome at confirmation),
`web.forms`, `web.limits`, `web.mail`, `web.errors` and what `subscribers` exports.

Endpoints raise errors; `app.py` alone turns them into pages and status codes. Database
work runs in a thread (SQLAlchemy is synchronous) inside one transaction per request.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates
from markupsafe import Markup, escape

import subscribers as people

from .. import welcome
from ..config import Settings
from ..errors import StorageError
from .errors import BadRequestError, RateLimitedError
from .forms import FORM_TYPES, CsrfSigner, FormData, media_type, one, parse_form, parse_json, read_body
from .limits import RateLimiter
from .mail import ConfirmationMailer
from .writer import GroupWriter

T = TypeVar("T")
log = logging.getLogger(__name__)

SUBSCRIBED_TEXT = (
    "Thank you. If this address can receive our newsletter, an email is on its way to it: "
    "follow the link inside to confirm your subscription."
)
DONE_TEXT = {
    "save": "Your sections are saved.",
    "timezone": "Your time zone is saved.",
    "pause": "Your subscription is paused. It starts again by itself on the date shown.",
    "resume": "Your subscription is active again.",
    "unsubscribe": "You are unsubscribed and will receive no more emails from us.",
    "resubscribe": "Welcome back: your subscription is active again.",
}
ONE_CLICK = ("List-Unsubscribe", "One-Click")


@dataclass
class WebContext:
    """What the endpoints share: settings, database, clock, pages, signer, limits, mailer."""

    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]
    pages: Jinja2Templates
    csrf: CsrfSigner
    ip_limiter: RateLimiter
    address_limiter: RateLimiter
    mailer: ConfirmationMailer

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction, in a thread. On SQLite, through the one
        `GroupWriter` of the app: writes that arrive together are committed together."""
        if self.reads_inline:
            return await self._writer.run(work)

        def run() -> T:
            with self.engine.begin() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    @cached_property
    def _writer(self) -> GroupWriter:
        return GroupWriter(self.engine)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work`, which only reads, and return what it returns. On SQLite it runs
        on the event loop itself: a read of a few indexed rows takes tens of microseconds
        and never waits for a lock (WAL), less than the hop to a thread and back (about
        100 µs, and the threads' fight for the GIL put 50 ms on the 99th percentile under
        load). On a server database, which answers over the network, it runs in a thread."""
        def run() -> T:
            with self.engine.connect() as conn:
                return work(conn)

        return run() if self.reads_inline else await run_in_threadpool(run)

    @property
    def reads_inline(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def page(self, request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
        return self.pages.TemplateResponse(request, name, context, status_code=status)

    def known_sections(self) -> list[str]:
        return list(self.settings.section_names())


def web(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


def origin_of(request: Request, form: str) -> people.Origin:
    return people.Origin(
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
        form=form,
    )


def cors_headers(request: Request) -> dict[str, str]:
    """The CORS headers for a request from a configured origin; none for any other."""
    origin = request.headers.get("origin", "")
    if origin and origin in web(request).settings.web.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def _is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def _quality(accept: str, kind: str) -> float:
    """The weight an Accept header gives `kind`: that of its most specific match
    (type/subtype before type/* before */*), 0 when nothing matches."""
    main = kind.split("/", 1)[0]
    best, weight = -1, 0.0
    for item in accept.split(","):
        pattern, *params = [p.strip() for p in item.split(";")]
        pattern = pattern.lower()
        rank = 2 if pattern == kind else 1 if pattern == f"{main}/*" else 0 if pattern == "*/*" else -1
        if rank <= best:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        best, weight = rank, q
    return weight


def wants_json(request: Request) -> bool:
    """Whether to answer in JSON: the client sent JSON, or its Accept header weighs
    JSON above HTML (q-values honoured; no Accept, or */* alone, means a page)."""
    if _is_json(media_type(request)):
        return True
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return False
    json_q = _quality(accept, "application/json")
    return json_q > 0 and json_q > _quality(accept, "text/html")


def _limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.hit(key)
    if wait:
        minutes = max(1, round(wait / 60))
        raise RateLimitedError(
            f"Too many requests. Please try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
            retry_after=wait,
        )


def _address_key(email: str) -> str:
    # The limiter keeps a hash, so no address sits in memory longer than the request.
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def subscribe_form(request: Request) -> Response:
    ctx = web(request)
    return ctx.page(request, "subscribe.html", {"sections": ctx.settings.section_names(), "chosen": None})


async def subscribe_preflight(request: Request) -> Response:
    headers = cors_headers(request)
    if not headers:
        return Response(status_code=403)
    headers |= {
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }
    return Response(status_code=204, headers=headers)


def _subscribe_fields(request: Request, body: bytes) -> tuple[str, str, list[str], bool, str | None]:
    """(email, name, sections, is_bot, time zone or None) from a form or a JSON object."""
    if media_type(request) == "application/json":
        data = parse_json(body)
        email, name, sections = data.get("email", ""), data.get("name", ""), data.get("sections", [])
        zone = data.get("timezone") or ""
        if not isinstance(email, str) or not isinstance(name, str):
            raise BadRequestError("\"email\" and \"name\" must be strings.")
        if not isinstance(zone, str):
            raise BadRequestError("\"timezone\" must be a string such as \"Europe/London\".")
        if not isinstance(sections, list) or not all(isinstance(s, str) for s in sections):
            raise BadRequestError("\"sections\" must be a list of section names such as [\"news\"].")
        bot = False
    else:
        fields = parse_form(request, body, accept=(*FORM_TYPES, "application/json"))
        email, name, sections = one(fields, "email", limit=400), one(fields, "name", limit=400), fields.get("sections", [])
        zone = one(fields, "timezone", limit=100)
        # A field people never see: only scripts that fill in every box fill it in.
        bot = bool(one(fields, "website"))
    if len(email) > 400 or len(name) > 400:
        raise BadRequestError("The email address or name is too long.")
    if len(sections) > 50 or any(len(s) > 100 for s in sections):
        raise BadRequestError("Too many sections, or a section name that is too long.")
    return email.strip(), name, sections, bot, _checked_zone(zone)


def _checked_zone(value: str) -> str | None:
    """The IANA name given in the `timezone` field, None for none; a 400 naming the field
    for a name that is not a time zone."""
    if not value.strip():
        return None
    try:
        return people.check_timezone(value[:100])
    except people.InvalidTimezoneError as exc:
        raise BadRequestError(f"\"timezone\": {exc}.") from None


async def subscribe(request: Request) -> Response:
    """Validate the request, answer, and only then look the address up and write: every
    answer is the same, and costs the same, whoever the address belongs to (new, pending,
    subscribed, unsubscribed, suppressed or erased). What depends on the address's
    standing runs after the response (`_subscribe_after`)."""
    ctx = web(request)
    origin = origin_of(request, "subscribe-form")
    _limit(ctx.ip_limiter, f"ip:{origin.ip}")
    body = await read_body(request, limit=ctx.settings.web.max_body_bytes)
    email, name, sections, bot, zone = _subscribe_fields(request, body)
    request.state.form_values = {"email": email, "name": name, "sections": sections}
    if not email:
        raise people.InvalidEmailError("Please enter your email address.")
    address, display, chosen = people.check_subscription(
        email=email, name=name, sections=sections, known_sections=ctx.known_sections()
    )
    task = None
    if not bot:
        _limit(ctx.address_limiter, _address_key(address))
        task = BackgroundTask(_subscribe_after, ctx, address, display, chosen, origin, zone)
    if wants_json(request):
        return JSONResponse(
            {"ok": True, "message": SUBSCRIBED_TEXT}, status_code=202, headers=cors_headers(request), background=task
        )
    response = ctx.page(request, "subscribed.html", {"message": SUBSCRIBED_TEXT})
    response.background = task
    return response


async def _subscribe_after(
    ctx: WebContext, address: str, name: str, sections: tuple[str, ...], origin: people.Origin, zone: str | None
) -> None:
    """The part of a subscribe that depends on who the address is: after the answer.
    A failure is logged without the address; the visitor has had their answer."""
    mails: list[people.ConfirmationMail] = []
    try:
        await ctx.transaction(
            lambda conn: people.request_subscription(
                conn,
                email=address,
                name=name,
                sections=sections,
                known_sections=ctx.known_sections(),
                origin=origin,
                now=ctx.clock(),
                send=mails.append,
                timezone=zone,
            )
        )
    except StorageError as exc:
        # One line naming the database and the problem; the traceback at DEBUG.
        log.error("a subscription request could not be stored: %s", exc)
        log.debug("database error", exc_info=exc)
        return
    except Exception:
        log.exception("a subscription request could not be stored")
        return
    await run_in_threadpool(ctx.mailer.send, mails)


async def confirm(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]
    max_age = timedelta(days=ctx.settings.web.confirm_days)
    origin = origin_of(request, "confirm-link")

    welcomes: list[int] = []

    def work(conn: Connection) -> tuple[str, people.Subscriber, str]:
        try:
            result, subscriber = people.confirm_subscription(
                conn, token, now=ctx.clock(), max_age=max_age, origin=origin
            )
        except people.ConfirmationExpiredError:
            # Not a failure to report but a state to offer a way out of: a new link.
            subscriber = people.subscriber_by_token(conn, token)
            version = people.consent_version(conn, subscriber.id)
            return "expired", subscriber, ctx.csrf.issue("resend", token, version, now=_ts(ctx))
        if result is people.ConfirmResult.CONFIRMED and ctx.settings.welcome.enabled:
            # Recorded with the confirmation, so that a crash before the email leaves it
            # for the retry job; sent after the answer, so that it never delays or undoes it.
            queued = welcome.queue_welcome(conn, subscriber.id, now=ctx.clock())
            welcomes.extend([queued] if queued is not None else [])
        return result.value, subscriber, ""

    outcome, subscriber, csrf = await ctx.transaction(work)
    if outcome == "expired":
        return ctx.page(request, "expired.html", {"token": token, "csrf": csrf}, status=410)
    response = ctx.page(request, "confirmed.html", {"already": outcome == "already-confirmed", "token": subscriber.token})
    if welcomes:
        response.background = BackgroundTask(ctx.mailer.welcome, ctx.engine, welcomes)
    return response


async def confirm_resend(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]
    fields = parse_form(request, await read_body(request, limit=ctx.settings.web.max_body_bytes))
    mails: list[people.ConfirmationMail] = []

    def work(conn: Connection) -> None:
        subscriber = people.subscriber_by_token(conn, token)
        ctx.csrf.verify(one(fields, "csrf"), "resend", token, people.consent_version(conn, subscriber.id), now=_ts(ctx))
        _limit(ctx.address_limiter, _address_key(subscriber.email))
        people.resend_confirmation(conn, token, now=ctx.clock(), origin=origin_of(request, "resend"), send=mails.append)

    await ctx.transaction(work)
    response = ctx.page(request, "subscribed.html", {"message": SUBSCRIBED_TEXT})
    response.background = BackgroundTask(ctx.mailer.send, mails)
    return response


def _ts(ctx: WebContext) -> int:
    return int(ctx.clock().timestamp())


@functools.cache
def _all_timezone_options() -> str:
    return "".join(f"<option>{escape(name)}</option>" for name in people.timezone_names())


@functools.lru_cache(maxsize=64)
def timezone_options(selected: str) -> Markup:
    """The `<option>` of every IANA zone, `selected` marked so: written once and marked by
    one replacement, since 600 options through the template cost about a millisecond a
    page, more than all the rest of the preference page."""
    option = f"<option>{escape(selected)}</option>"
    return Markup(_all_timezone_options().replace(option, option.replace("<option>", "<option selected>"), 1))


def _preferences_context(ctx: WebContext, subscriber: people.Subscriber, version: int) -> dict[str, Any]:
    paused_until = ""
    if subscriber.paused_until:
        local = subscriber.paused_until.astimezone(ctx.settings.site.zone)
        paused_until = f"{local.day} {local:%B %Y}"
    return {
        "subscriber": subscriber,
        "status": subscriber.status.value,
        "sections": ctx.settings.section_names(),
        "chosen": set(subscriber.sections),
        "paused_until": paused_until,
        "pause_choices": people.PAUSE_CHOICES,
        "timezone_options": timezone_options(subscriber.timezone or ctx.settings.site.timezone),
        "problem": "",
        "csrf": ctx.csrf.issue("preferences", subscriber.token, version, now=_ts(ctx)),
    }


async def preferences(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]

    subscriber, version = await ctx.read(lambda conn: people.subscriber_for_form(conn, token))
    if people.pause_has_ended(subscriber, now=ctx.clock()):
        # Rarely, a write first: the pause is over, so the page shows them active.
        def work(conn: Connection) -> tuple[people.Subscriber, int]:
            return people.load_preferences(conn, token, now=ctx.clock()), people.consent_version(conn, subscriber.id)

        subscriber, version = await ctx.transaction(work)
    context = _preferences_context(ctx, subscriber, version)
    context["done"] = DONE_TEXT.get(request.query_params.get("done", ""), "")
    return ctx.page(request, "preferences.html", context)


def _apply(ctx: WebContext, conn: Connection, token: str, fields: FormData, origin: people.Origin) -> str:
    action = one(fields, "action", limit=20)
    now = ctx.clock()
    if action == "save":
        people.choose_sections(
            conn, token, fields.get("sections", []), known_sections=ctx.known_sections(), origin=origin, now=now
        )
    elif action == "timezone":
        people.choose_timezone(conn, token, one(fields, "timezone", limit=100), now=now)
    elif action == "pause":
        days = one(fields, "pause_days", limit=4)
        if not days.isdigit():
            raise BadRequestError("Choose how long to pause for.")
        people.pause(conn, token, days=int(days), origin=origin, now=now)
    elif action == "resume":
        people.resume(conn, token, origin=origin, now=now)
    elif action == "unsubscribe":
        people.unsubscribe(conn, token, origin=origin, now=now)
    elif action == "resubscribe":
        people.resubscribe(conn, token, origin=origin, now=now)
    else:
        raise BadRequestError("Unknown action: use one of the buttons on the page.")
    return action


async def preferences_post(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]
    fields = parse_form(request, await read_body(request, limit=ctx.settings.web.max_body_bytes))
    origin = origin_of(request, "preferences")
    if one(fields, "action", limit=20) == "timezone":
        try:
            people.check_timezone(one(fields, "timezone", limit=100))
        except people.InvalidTimezoneError as exc:
            # Not a broken request but a choice to make again: the page, with why.
            subscriber, version = await ctx.read(lambda conn: people.subscriber_for_form(conn, token))
            context = _preferences_context(ctx, subscriber, version) | {"done": ""}
            context["problem"] = f"Your time zone was not saved: {exc}."
            return ctx.page(request, "preferences.html", context, status=400)

    def work(conn: Connection) -> str:
        subscriber = people.load_preferences(conn, token, now=ctx.clock())
        version = people.consent_version(conn, subscriber.id)
        ctx.csrf.verify(one(fields, "csrf"), "preferences", token, version, now=_ts(ctx))
        return _apply(ctx, conn, token, fields, origin)

    action = await ctx.transaction(work)
    # Post/redirect/get: reloading the page shows it again instead of sending the form twice.
    return RedirectResponse(f"/preferences/{token}?done={action}", status_code=303)


async def unsubscribe_page(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]
    subscriber = await ctx.read(lambda conn: people.subscriber_by_token(conn, token))
    gone = subscriber.status in (people.Status.UNSUBSCRIBED, people.Status.BOUNCED, people.Status.COMPLAINED)
    return ctx.page(request, "unsubscribe.html", {"token": token, "done": gone, "just_now": False})


async def unsubscribe_one_click(request: Request) -> Response:
    """RFC 8058: a POST whose body is `List-Unsubscribe=One-Click` unsubscribes at once,
    without cookie or CSRF token, and answers 200 (no redirect); sending it again is
    harmless. The page's own button sends the very same body."""
    ctx = web(request)
    token = request.path_params["token"]
    fields = parse_form(request, await read_body(request, limit=ctx.settings.web.max_body_bytes))
    if fields.get(ONE_CLICK[0]) != [ONE_CLICK[1]]:
        raise BadRequestError("To unsubscribe, send List-Unsubscribe=One-Click.")
    origin = origin_of(request, "one-click")
    await ctx.transaction(lambda conn: people.unsubscribe(conn, token, origin=origin, now=ctx.clock()))
    return ctx.page(request, "unsubscribe.html", {"token": token, "done": True, "just_now": True})
