"""The email provider's Event Webhook: `POST /webhooks/sendgrid`.

Owns: the webhook endpoint and `event_verifier`, which `app.create_app` calls so that a
missing or wrong verification key stops the app at start-up. Imports `config`, `events`,
`transports` (what the configured transport can do) and `transports.sendgrid` (the
signature and the event format) and this package's `views`,
`forms` and `errors`.

In order: the body is read up to `sendgrid.webhook_max_bytes` (413 beyond); the signature
over the timestamp and the raw bytes of the body is checked (401 without one, 403 when
wrong, older than `sendgrid.webhook_max_age_seconds` or as far in the future); only then
is the body read as JSON (415 for another content type, 400 for a body that is not UTF-8,
not JSON, nested too deeply or not a list of events); then every
event is taken in within one transaction (see `events.ingest_events`). Nothing is stored
before all of that passed. The answer counts what happened, without addresses.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import Settings
from ..errors import ConfigError
from ..events import IngestReport, ingest_events
from ..models import DeliveryEvent
from ..transports import capabilities
from ..transports.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureProblem, WebhookVerifier, read_events
from .errors import BadRequestError, SignatureError, UnauthorizedError, UnsupportedMediaError, WebError
from .forms import load_json, media_type, read_body
from .views import web

log = logging.getLogger("newsletter.web.webhooks")


class RetryLaterError(WebError):
    status = 503
    title = "Try again later"


class WebhookOffError(WebError):
    status = 404
    title = "Not found"


#: What a request with a signature that does not hold is told (403).
REFUSALS = {
    SignatureProblem.INVALID: "The signature does not match the body.",
    SignatureProblem.STALE: "The request is older than the replay window.",
    SignatureProblem.FUTURE: "The request's timestamp is in the future, beyond the replay window.",
}


def event_verifier(settings: Settings) -> WebhookVerifier | None:
    """The verifier of the configured public key, or None when requests are taken
    unchecked: only when `sendgrid.verify` is false, said in the log as a warning.

    Raises `ConfigError` when the key is not a P-256 public key, and when it is missing
    while mail goes through SendGrid. With the outbox transport and no key the endpoint
    is off (404): there is no SendGrid to report anything."""
    config = settings.sendgrid
    if not config.verify:
        log.warning("sendgrid.verify is false: Event Webhook requests are accepted WITHOUT checking their signature")
        return None
    if not config.webhook_public_key and not capabilities(settings.delivery.transport).event_webhook:
        return None
    if not config.webhook_public_key:
        raise ConfigError(
            "sendgrid.webhook_public_key: the Event Webhook needs SendGrid's verification key to check signatures; "
            "set NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY to the key shown under Mail Settings → Signed Event Webhook "
            "(or, for a test setup only, sendgrid.verify = false)"
        )
    try:
        return WebhookVerifier(config.webhook_public_key, max_age=config.webhook_max_age_seconds)
    except ValueError as exc:
        raise ConfigError(f"sendgrid.webhook_public_key: {exc}; copy the key exactly as SendGrid shows it") from None


def _events(body: bytes, received_at: Any) -> list[DeliveryEvent]:
    data = load_json(body)
    try:
        return read_events(data, received_at=received_at)
    except ValueError as exc:
        raise BadRequestError(f"The body is not a list of events: {exc}.") from None


async def sendgrid_events(request: Request) -> Response:
    ctx = web(request)
    config = ctx.settings.sendgrid
    verifier: WebhookVerifier | None = request.app.state.event_verifier
    if verifier is None and config.verify:
        raise WebhookOffError("The Event Webhook is off: set sendgrid.webhook_public_key to turn it on.")
    body = await read_body(request, limit=config.webhook_max_bytes)
    now = ctx.clock()
    if verifier is not None:
        problem = verifier.problem(
            body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER), now=now.timestamp()
        )
        if problem is SignatureProblem.MISSING:
            log.warning("event webhook request without a signature refused")
            raise UnauthorizedError("Event Webhook requests must be signed.")
        if problem is not None:
            log.warning("event webhook request refused: signature %s", problem.value)
            raise SignatureError(REFUSALS[problem])
    if media_type(request) != "application/json":
        raise UnsupportedMediaError("Send the events as application/json.")
    events = await run_in_threadpool(_events, body, now)
    try:
        report: IngestReport = await ctx.transaction(lambda conn: ingest_events(conn, events, source="sendgrid", now=now))
    except IntegrityError:
        # Another delivery of the same events won the race (PostgreSQL): nothing of this
        # one was kept, and SendGrid sends it again after a 5xx. The error's text would
        # carry event details, so it is not logged.
        log.warning("event webhook: %d events arrived twice at once; refused for a retry", len(events))
        raise RetryLaterError("The same events are being taken in right now; send them again later.") from None
    log.info(
        "event webhook: %d events, %d new, %d already seen, %d unknown, %d people changed, %d batches confirmed",
        report.received, report.stored, report.duplicates, report.unknown, report.people_changed,
        len(report.batches_confirmed),
    )
    return JSONResponse({
        "received": report.received, "stored": report.stored, "duplicates": report.duplicates,
        "unknown": report.unknown, "people_changed": report.people_changed,
    })
