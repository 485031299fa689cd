"""The SendGrid transport: one v3 Mail Send request per batch, with the `sendgrid` package.

Owns: `SendGridTransport`, `mail_body_json`, `KeptConnections` (the client's requests
over connections kept open), and for the Event Webhook `WebhookVerifier` (its signature)
and `read_events` (its events in our words). Imports `models`, `errors` and the
`sendgrid` package (with its `python_http_client`); nothing else of ours.

A batch becomes one request: the segment's HTML and text once in `content`, and one
personalization per recipient carrying their substitution values, their own
`List-Unsubscribe` headers and their subscriber id in `custom_args` (the issue and batch
ids are top-level `custom_args`, which SendGrid merges into every personalization, so a
webhook event names all three). The body is written as JSON text by `mail_body_json` and
sent through the client's `mail.send.post` as it is (see `JSON_UTF8`).

What each answer means (the ledger in `dispatch` decides what to do with it):

    202                       accepted, with the X-Message-Id header
    429                       retryable, after X-RateLimit-Reset
    5xx, timeout, connection  retryable (bounded backoff in `dispatch`)
    400, 413, other 4xx       permanent, with SendGrid's error messages
    401, 403                  `TransportAuthError`: nothing more can be sent
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import select
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from python_http_client import exceptions as http_errors
from python_http_client.client import Client as HttpClient
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook

from ..errors import TransportAuthError
from ..links import list_unsubscribe
from ..models import ALL_TAGS, Batch, DeliveryEvent, EventKind, Outcome, OutcomeKind

log = logging.getLogger(__name__)

# The HTTP client under `sendgrid` logs every request body and header at DEBUG level:
# addresses, unsubscribe tokens and the Authorization header with the API key. Our logs
# must never hold those, so its logger is kept at WARNING even under `--verbose`, and a
# filter drops its lines below WARNING should anything set that logger's level again.


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


for _name in ("python_http_client", "python_http_client.client"):
    logging.getLogger(_name).setLevel(logging.WARNING)
    logging.getLogger(_name).addFilter(_warnings_only)

ONE_CLICK = "List-Unsubscribe=One-Click"


def _errors_of(body: bytes) -> str:
    """SendGrid's error messages from a response body, as one line."""
    try:
        data = json.loads(body.decode("utf-8"))
        messages = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message", ""))
            for e in data.get("errors", [])
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError, TypeError):
        messages = []
    if messages:
        return "; ".join(messages)[:2000]
    return body.decode("utf-8", "replace").strip()[:500]


def mail_body_json(batch: Batch, *, asm_group_id: int | None = None) -> str:
    """The Mail Send request body for a batch, as JSON text (see
    `../shared/sendgrid/mail_send.schema.json`).

    Written here rather than by `json.dumps` of dicts: a 1,000-recipient body is about
    670 KB, and building the dicts and encoding them took 6 ms per batch where this takes
    about 2 (every string still goes through the json module's C escaper). The parts
    shared by the whole batch (content, sender, custom_args, …) are one `json.dumps`.

    An address that appears twice (in any case) is sent once: SendGrid rejects a request
    that names an address twice.
    """
    batch_id = str(batch.id)
    seen: set[str] = set()
    people: list[str] = []
    keys: dict[str, str] = {}
    for r in batch.recipients:
        folded = r.email.lower()
        if folded in seen:
            log.warning("batch %s: subscriber %d shares an address with another recipient; sent once", batch_id, r.subscriber_id)
            continue
        seen.add(folded)
        values = r.substitutions
        unsubscribe = _quote(list_unsubscribe(r))
        if len(values) == len(_TAG_KEYS):
            try:
                people.append(
                    _NEWSLETTER_PERSONALIZATION
                    % (_quote(r.email), *map(_quote, map(values.__getitem__, _TAG_KEYS)), unsubscribe, r.subscriber_id)
                )
                continue
            except KeyError:
                pass
        pairs = []
        for tag, value in values.items():
            key = keys.get(tag)
            if key is None:
                key = keys[tag] = _quote(tag) + ":"
            pairs.append(key + _quote(value))
        people.append(_PERSONALIZATION % (_quote(r.email), ",".join(pairs), unsubscribe, r.subscriber_id))
    message = batch.message
    shared: dict[str, Any] = {
        "from": {"email": batch.sender_address, "name": batch.sender_name} if batch.sender_name else {"email": batch.sender_address},
        "subject": message.subject,
        "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}],
        "custom_args": {"issue_id": str(batch.issue_id), "batch_id": batch_id, "issue": batch.issue_slug},
    }
    if batch.reply_to:
        shared["reply_to"] = {"email": batch.reply_to}
    categories = list(dict.fromkeys(c[:255] for c in batch.categories if c))[:10]
    if categories:
        shared["categories"] = categories
    if asm_group_id is not None:
        shared["asm"] = {"group_id": asm_group_id}
    if batch.list_id:
        # Headers shared by every personalization; SendGrid adds each personalization's own.
        shared["headers"] = {"List-Id": batch.list_id}
    if batch.sandbox:
        shared["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return '{"personalizations":[' + ",".join(people) + "]," + json.dumps(shared)[1:]


def mail_body(batch: Batch, *, asm_group_id: int | None = None) -> dict[str, Any]:
    """The request body of `mail_body_json` as a dict, for inspection."""
    body: dict[str, Any] = json.loads(mail_body_json(batch, asm_group_id=asm_group_id))
    return body


#: One recipient's personalization: their address, substitution values, one-click
#: unsubscribe headers (RFC 8058) and subscriber id. `%s` are JSON-encoded strings.
_PERSONALIZATION = (
    '{"to":[{"email":%s}],"substitutions":{%s},'
    '"headers":{"List-Unsubscribe":%s,"List-Unsubscribe-Post":"' + ONE_CLICK + '"},'
    '"custom_args":{"subscriber_id":"%d"}}'
)
#: The tags of a newsletter's recipient (`models.ALL_TAGS`, valued by
#: `links.substitutions`), in the order of `_NEWSLETTER_PERSONALIZATION`.
_TAG_KEYS = tuple(sorted(ALL_TAGS))
#: `_PERSONALIZATION` for a recipient whose substitutions are exactly `_TAG_KEYS`, as
#: every newsletter recipient's are: one format of all values instead of a join of
#: pairs, which halves the time a thousand personalizations take (3.7 ms → 2.0).
_NEWSLETTER_PERSONALIZATION = _PERSONALIZATION.replace(
    "{%s}", "{" + ",".join(json.dumps(tag).replace("%", "%%") + ":%s" for tag in _TAG_KEYS) + "}", 1
)
#: A JSON string literal, as `json.dumps` writes it (ASCII only), by the C escaper.
_quote: Callable[[str], str] = encode_basestring_ascii

#: The Content-Type of the pre-encoded body. The `sendgrid` client encodes the body
#: itself (`json.dumps` again) when the Content-Type is exactly `application/json`, and
#: passes a ready body through otherwise. SendGrid's Mail Send takes the charset
#: parameter (the official C# library always sends it); should an account answer 415,
#: the transport falls back to the plain type and lets the client encode (`_plain`).
JSON_UTF8 = "application/json; charset=utf-8"


class _Payload(bytes):
    """An encoded request body that formats as a short note of its size.

    The `sendgrid` package's HTTP client formats every request body into a DEBUG log
    line before it asks whether DEBUG is on (`'PAYLOAD: {data}'.format(data=...)`): the
    repr of 700 KB, 3 ms of CPU per request, a sixth of what a batch costs. Sent, the
    bytes are the body's own."""

    __slots__ = ()

    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes of JSON>"

    def __repr__(self) -> str:
        return self.__format__("")

    __str__ = __repr__


class _Body(str):
    """A request body as JSON text, which the client encodes into a `_Payload`."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> _Payload:
        return _Payload(str.encode(self, encoding, errors))


def _client(api_key: str, api_host: str, timeout: float) -> SendGridAPIClient:
    client = SendGridAPIClient(api_key=api_key, host=api_host.rstrip("/"))
    # The package's own `send` takes no timeout; its HTTP client applies this one to
    # every request it builds.
    client.client.timeout = timeout
    return client


class KeptConnections:
    """The `sendgrid` client's requests over connections kept open from one request to
    the next: one per sending thread, closed by `close`.

    The client (`python_http_client`) builds a new urllib opener for every request, and
    urllib closes the connection after each answer: every batch paid for a new TCP
    connection and, against SendGrid, a TLS handshake with the certificates loaded
    again: milliseconds of CPU and two round trips to SendGrid before the first byte of
    a 700 KB body. This replaces only the step that opens and reads (the client's
    `_make_request`, kept apart in the package "so we can mock it easily"); the client
    still builds the URL, the headers and the body, and turns an error status into its
    exception with its own `handle_error`, as urllib's opener would.

    A connection the server has closed while it was idle (it reads as ready, at end of
    file) is replaced before a request is written. One that fails or times out during a
    request is closed, never used again: an answer that is late must not be taken for
    the next request's. Behind a proxy (urllib's `*_proxy` environment variables) the
    client keeps its own urllib opener, which goes through the proxy.
    """

    def __init__(self, api_host: str) -> None:
        parts = urllib.parse.urlsplit(api_host)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self._context = ssl.create_default_context() if self.https else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    @staticmethod
    def usable(api_host: str) -> bool:
        """Whether requests to `api_host` may go straight to it (no proxy to go through)."""
        parts = urllib.parse.urlsplit(api_host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return parts.scheme not in urllib.request.getproxies() or bool(urllib.request.proxy_bypass(parts.hostname))

    def install(self, endpoint: HttpClient) -> None:
        """Make `endpoint` (the client of one API path) send through these connections."""

        def make_request(opener: Any, request: urllib.request.Request, timeout: float | None = None) -> urllib.response.addinfourl:
            return self.open(request, timeout or endpoint.timeout)

        endpoint._make_request = make_request

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        """This thread's connection; not connected yet when the last one was closed (it
        connects as the request is written)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _readable(conn.sock):
            conn.close()  # closed by the server while idle: the next request reconnects
        if conn is None:
            if self._context is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._local.conn = conn
        if conn.sock is None:
            with self._lock:
                self._open.add(conn)  # to close, even if `close` has run since it was last used
        conn.timeout = timeout
        return conn

    def open(self, request: urllib.request.Request, timeout: float | None) -> urllib.response.addinfourl:
        """The answer read to its end, as urllib's opener returns it (what the client's
        `Response` reads); an error status raised as the client's exception."""
        conn = self._connection(timeout)
        try:
            conn.request(request.get_method(), request.selector, body=request.data, headers=dict(request.header_items()))
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        if not 200 <= response.status < 300:
            # What urllib's opener raises for such an answer, turned into the client's
            # exception by the client's own function, as its `_make_request` does.
            error = urllib.error.HTTPError(request.full_url, response.status, response.reason, response.headers, io.BytesIO(body))
            raise http_errors.handle_error(error) from None
        return urllib.response.addinfourl(io.BytesIO(body), response.headers, request.full_url, response.status)

    def close(self) -> None:
        with self._lock:
            kept, self._open = self._open, set()
        for conn in kept:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or broke
    the protocol); either way it cannot carry another request."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


class SendGridTransport:
    """Sends each batch as one Mail Send request through `SendGridAPIClient`.

    Thread-safe: each sending thread has its own connection (`KeptConnections`), so
    `dispatch` may have several batches in flight at once.
    """

    name = "sendgrid"
    # SendGrid has no idempotency key: a batch sent twice is delivered twice.
    idempotent = False

    def __init__(
        self,
        *,
        api_key: str,
        api_host: str = "https://api.sendgrid.com",
        asm_group_id: int | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        client = _client(api_key, api_host, timeout)
        # Requests go through the client's `mail.send.post`, which takes a ready body
        # when the Content-Type says so (see `JSON_UTF8`). The headers are set here,
        # once: the client shares one header dict with every request it builds.
        client.client.request_headers["Content-Type"] = JSON_UTF8
        self._client = client
        self._endpoint = client.client.mail.send
        self._connections = KeptConnections(api_host) if KeptConnections.usable(api_host) else None
        if self._connections is not None:
            self._connections.install(self._endpoint)
        #: Set once SendGrid refused the charset parameter (415): from then on the
        #: client encodes each body itself, as `application/json`.
        self._plain: SendGridAPIClient | None = None
        self.asm_group_id = asm_group_id
        self.api_host = api_host
        self.clock = clock

    def send(self, batch: Batch) -> Outcome:
        try:
            if self._plain is None:
                response = self._endpoint.post(request_body=_Body(mail_body_json(batch, asm_group_id=self.asm_group_id)))
            else:
                response = self._plain.send(mail_body(batch, asm_group_id=self.asm_group_id))
        except (http_errors.UnauthorizedError, http_errors.ForbiddenError) as exc:
            raise TransportAuthError(
                f"SendGrid at {self.api_host} refused the API key ({exc.status_code}: {_errors_of(exc.body)}); "
                "check SENDGRID_API_KEY and that the key may send mail"
            ) from None
        except http_errors.HTTPError as exc:
            return self._http_error(batch, exc)
        except (TimeoutError, socket.timeout) as exc:
            return Outcome(OutcomeKind.RETRYABLE, error=f"no answer from SendGrid in time ({exc})")
        except urllib.error.URLError as exc:
            return Outcome(OutcomeKind.RETRYABLE, error=f"cannot reach SendGrid at {self.api_host}: {exc.reason}")
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            return Outcome(OutcomeKind.RETRYABLE, error=f"connection to SendGrid lost: {exc.__class__.__name__} {exc}")
        status = response.status_code
        if status == 202 or 200 <= status < 300:
            return Outcome(OutcomeKind.ACCEPTED, message_id=response.headers.get("X-Message-Id") or "", status_code=status)
        return Outcome(OutcomeKind.PERMANENT, status_code=status, error=f"unexpected answer {status}")

    def _http_error(self, batch: Batch, exc: http_errors.HTTPError) -> Outcome:
        status = int(exc.status_code)
        error = f"{status}: {_errors_of(exc.body)}"
        if status == 415 and self._plain is None:
            # Nothing was taken: send this batch again, and every later one, as plain
            # `application/json` encoded by the client.
            log.warning("SendGrid at %s refused %r (%s); sending as application/json from now on", self.api_host, JSON_UTF8, error)
            self._plain = _client(self._client.api_key, self.api_host, self._client.client.timeout)
            return self.send(batch)
        if status == 429:
            return Outcome(OutcomeKind.RETRYABLE, status_code=status, error=error, retry_after=self._reset_in(exc.headers))
        if status >= 500:
            return Outcome(OutcomeKind.RETRYABLE, status_code=status, error=error)
        return Outcome(OutcomeKind.PERMANENT, status_code=status, error=error)

    def _reset_in(self, headers: Any) -> float | None:
        """Seconds until X-RateLimit-Reset (a Unix time), or None when it is absent."""
        value = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            return max(0.0, float(value) - self.clock()) if value else None
        except ValueError:
            return None

    def close(self) -> None:
        if self._connections is not None:
            self._connections.close()


# The Event Webhook: what SendGrid reports after sending, signed with its private key.

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SignatureProblem(StrEnum):
    """Why a webhook request is refused: no signature at all, or one that does not hold."""

    MISSING = "missing"
    INVALID = "invalid"
    STALE = "stale"
    FUTURE = "future"


class WebhookVerifier:
    """Checks the Signed Event Webhook: ECDSA P-256 over the timestamp header followed by
    the raw body. The key is read by the `sendgrid` package's `EventWebhook`; the check
    itself runs on the bytes received (that helper takes text, which a body that is not
    UTF-8 is not), so a signed body that cannot be used is the caller's 400, not a 403.

    `public_key` is the verification key as SendGrid shows it (base64 DER); `ValueError`
    when it is not a P-256 public key, so a wrong key stops the app at start-up.
    """

    def __init__(self, public_key: str, *, max_age: float) -> None:
        try:
            self._webhook = EventWebhook(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a public key in base64 DER ({exc.__class__.__name__})") from None
        key = self._webhook.public_key
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("not an ECDSA P-256 public key, which is what SendGrid signs with")
        self._key = key
        self.max_age = max_age

    def problem(self, body: bytes, signature: str | None, timestamp: str | None, *, now: float) -> SignatureProblem | None:
        """None when the request is SendGrid's and fresh, else what is wrong with it."""
        if not signature or not timestamp:
            return SignatureProblem.MISSING
        # The signature covers the raw bytes, whatever they are: whether they make a
        # usable body is for the caller to say after this (400, not 403).
        try:
            self._key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode("utf-8") + body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, ValueError, TypeError):
            return SignatureProblem.INVALID
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return SignatureProblem.STALE
        age = now - int(timestamp)
        if age > self.max_age:
            return SignatureProblem.STALE
        if -age > self.max_age:
            return SignatureProblem.FUTURE
        return None


_KINDS: dict[str, EventKind] = {
    "processed": EventKind.PROCESSED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "group_resubscribe": EventKind.RESUBSCRIBED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
}
#: The reasons of a `dropped` event that mean the address itself is dead.
_DEAD_ADDRESS = ("bounced address", "invalid")


def _number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 < value < 2**31 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    return None


def _kind(name: str, item: dict[str, Any]) -> EventKind:
    if name == "bounce":
        # SendGrid reports a block (a refusal that may pass) as a bounce of type "blocked".
        return EventKind.SOFT_BOUNCE if str(item.get("type", "bounce")).lower() == "blocked" else EventKind.BOUNCED
    if name == "dropped":
        reason = str(item.get("reason", "")).strip().lower()
        return EventKind.BOUNCED if reason in _DEAD_ADDRESS else EventKind.SOFT_BOUNCE
    return _KINDS.get(name, EventKind.OTHER)


def read_events(data: Any, *, received_at: datetime) -> list[DeliveryEvent]:
    """The events of one Event Webhook request (a JSON array of objects). `ValueError`
    naming the problem when it is not one. An event without a timestamp counts as
    happening when it arrived; one without `sg_event_id` is keyed by a hash of its
    content, so that its redelivery is recognised too."""
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of events")
    events: list[DeliveryEvent] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"event {index}: expected a JSON object")
        name = str(item.get("event", ""))[:50]
        key = item.get("sg_event_id")
        if not isinstance(key, str) or not key or len(key) > 100:
            digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode("utf-8")).hexdigest()
            key = "sha256:" + digest[:64]
        stamp = item.get("timestamp")
        occurred = received_at
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and 0 < stamp < 10**11:
            occurred = datetime.fromtimestamp(int(stamp), UTC)
        url = item.get("url")
        reason = item.get("reason") or item.get("response") or ""
        events.append(
            DeliveryEvent(
                key=key,
                kind=_kind(name, item),
                provider_event=name,
                occurred_at=occurred,
                issue_id=_number(item.get("issue_id")),
                batch_id=_number(item.get("batch_id")),
                subscriber_id=_number(item.get("subscriber_id")),
                email=str(item.get("email") or "")[:320],
                url=url[:2000] if isinstance(url, str) else "",
                reason=str(reason)[:500],
            )
        )
    return events
