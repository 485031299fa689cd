"""The SendGrid transport: one v3 Mail Send request per batch, with the `sendgrid` package.

Owns: `SendGridTransport`, `mail_body_json`. Its requests go over `connections.KeptConnections`;
the Event Webhook's signature and events are `webhook`'s. Imports `models`, `errors` and the
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
    5xx, timeout, connection  retryable (bounded backoff in `sending`)
    400, 413, other 4xx       permanent, with SendGrid's error messages
    401, 403                  `TransportAuthError`: nothing more can be sent
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from ...links import list_unsubscribe
from ...models import ALL_TAGS, Batch, Outcome, OutcomeKind
from .. import RecallTarget
from .connections import KeptConnections
from .scheduled import ScheduledSends, errors_of, key_refused

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
    if batch.send_at:
        _schedule(people, batch)
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
    if batch.provider_batch_id:
        # Every request of the issue's send names its batch, so the send can be recalled.
        shared["batch_id"] = batch.provider_batch_id
    return '{"personalizations":[' + ",".join(people) + "]," + json.dumps(shared)[1:]


def _schedule(people: list[str], batch: Batch) -> None:
    """Give each personalization its recipient's `send_at` (a Unix time), in place: the
    recipients of `people` are the batch's, in order, but for repeated addresses."""
    seen: set[str] = set()
    index = 0
    for r in batch.recipients:
        folded = r.email.lower()
        if folded in seen:
            continue
        seen.add(folded)
        when = batch.send_at.get(r.subscriber_id)
        if when is not None:
            people[index] = people[index][:-1] + f',"send_at":{int(when.timestamp())}}}'
        index += 1


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


class SendGridTransport:
    """Sends each batch as one Mail Send request through `SendGridAPIClient`.

    Thread-safe: each sending thread has its own connection (`KeptConnections`), so
    `sending` may have several batches in flight at once.
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
        self._scheduled = ScheduledSends(client, api_host)

    # Recall (the registry's `Recalling`): see `scheduled`.

    def open_send(self) -> str:
        return self._scheduled.create_batch_id()

    def recall(self, target: RecallTarget, action: str) -> bool:
        return self._scheduled.hold(target.provider_batch_id, action)

    def resume(self, target: RecallTarget) -> None:
        self._scheduled.release(target.provider_batch_id)

    def send(self, batch: Batch) -> Outcome:
        try:
            if self._plain is None:
                response = self._endpoint.post(request_body=_Body(mail_body_json(batch, asm_group_id=self.asm_group_id)))
            else:
                response = self._plain.send(mail_body(batch, asm_group_id=self.asm_group_id))
        except (http_errors.UnauthorizedError, http_errors.ForbiddenError) as exc:
            raise key_refused(self.api_host, exc) from None
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
        error = f"{status}: {errors_of(exc.body)}"
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
