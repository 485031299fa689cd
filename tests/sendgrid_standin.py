"""A stand-in for SendGrid's `POST /v3/mail/send` and its scheduled sends: a real local
HTTP server.

Besides Mail Send it plays `POST /v3/mail/batch` (a batch id), `GET /v3/mail/batch/{id}`,
and `GET/POST/PATCH/DELETE /v3/user/scheduled_sends[/{id}]` with SendGrid's rules: an
unknown batch id is refused (in a cancel and in a Mail Send), a cancel or pause later than
10 minutes before every pending `send_at` of the batch is refused, at most 10 batches are
cancelled or paused at once, and no `send_at` may be more than 72 hours ahead. Time is the
stand-in's `clock` (real time unless a test gives one), and `fates` says what became of
every copy it accepted: delivered, still scheduled, cancelled or paused.

It checks the bearer token, validates every body against
`../shared/sendgrid/mail_send.schema.json` (Draft 2020-12 with a format checker) and the
limits the schema does not carry (listed in `../shared/sendgrid/README.md`), answers 202
with an `X-Message-Id`, and records what it accepted. Tests script misbehaviour with
`answer_next(...)`: a status (429, 500, 400, 401 …), a delay, or a dropped connection.

Run as a program (`python -m tests.sendgrid_standin --key KEY`) it serves in its own
process and prints its URL; the benchmark uses it that way, so the sender and the stand-in
do not share one interpreter.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from collections.abc import Callable

from jsonschema import Draft202012Validator, FormatChecker

from tests.sendgrid_scheduled import ScheduledSends, sendgrid_errors
from tests.servers import LocalServer

__all__ = ["Answer", "MailRequest", "SendGridStandIn", "sendgrid_errors"]

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "sendgrid" / "mail_send.schema.json"
if not SCHEMA_PATH.exists():
    SCHEMA_PATH = Path("/work/shared/sendgrid/mail_send.schema.json")

RESERVED_HEADERS = frozenset(
    h.lower() for h in ("x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type",
                        "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC")
)
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_SUBSTITUTIONS = 150
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
SEND_AT_HORIZON = timedelta(hours=72)
#: A recipient as the `sendgrid` client serialises it (json.dumps), for the quick check.
TO_ADDRESS = re.compile(rb'"to":\s*\[\s*\{\s*"email":\s*"([^"]+)"')


@dataclass
class Answer:
    """One scripted answer: a status with headers and body, after `delay` seconds, or a
    connection dropped once the request has been read. With `accept` the request is
    checked and recorded as SendGrid would take it, before the delay and whatever answer."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    drop: bool = False
    #: Still validate and record the request as accepted (a 202 whose answer is lost).
    accept: bool = False
    #: Answer normally, then close the connection without saying so first (no
    #: `Connection: close`), as a server does with a connection it will not keep.
    hang_up: bool = False


@dataclass
class MailRequest:
    """A request the stand-in received, with its parsed body and the answer it gave."""

    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    message_id: str = ""
    #: The client's port: requests with the same one came over the same connection.
    port: int = 0

    @property
    def recipients(self) -> list[str]:
        return [to["email"] for p in self.body.get("personalizations", []) for to in p.get("to", [])]


class LimitChecker:
    """The checks SendGrid makes that the JSON Schema cannot express; `clock` is the time
    `send_at` is checked against (real time by default)."""

    def __init__(self, now: datetime | None = None, *, clock: Callable[[], datetime] | None = None) -> None:
        self.now = now
        self.clock = clock

    def problems(self, body: dict[str, Any], size: int) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        personalizations = body.get("personalizations", [])
        if not personalizations:
            found.append(("personalizations", "The personalizations field is required and must have at least one personalization."))
        addresses = [
            a["email"].lower()
            for p in personalizations
            for kind in ("to", "cc", "bcc")
            for a in p.get(kind, [])
        ]
        if len(addresses) > MAX_RECIPIENTS:
            found.append(("personalizations", f"The total number of recipients must be no more than {MAX_RECIPIENTS}; got {len(addresses)}."))
        dupes = [a for a, n in Counter(addresses).items() if n > 1]
        if dupes:
            found.append(("personalizations", f"Each email address in the personalization block should be unique; {len(dupes)} repeated."))
        if "reply_to" in body and "reply_to_list" in body:
            found.append(("reply_to", "reply_to and reply_to_list cannot be used together."))
        content = body.get("content")
        if not content and "template_id" not in body:
            found.append(("content", "Unless a valid template_id is provided, the content parameter is required."))
        types = [c.get("type") for c in content or []]
        if "text/plain" in types and "text/html" in types and types.index("text/plain") > types.index("text/html"):
            found.append(("content", "If present, text/plain content must be first, followed by text/html."))
        top_args = body.get("custom_args", {})
        for n, p in enumerate(personalizations):
            subs = p.get("substitutions", {})
            if len(subs) > MAX_SUBSTITUTIONS:
                found.append((f"personalizations.{n}.substitutions", f"At most {MAX_SUBSTITUTIONS} substitutions."))
            if sum(len(k.encode()) + len(str(v).encode()) for k, v in subs.items()) > MAX_SUBSTITUTION_BYTES:
                found.append((f"personalizations.{n}.substitutions", f"Substitutions may not exceed {MAX_SUBSTITUTION_BYTES} bytes."))
            args = {**top_args, **p.get("custom_args", {})}
            if any(not isinstance(v, str) for v in args.values()):
                found.append((f"personalizations.{n}.custom_args", "Custom args values must be strings."))
            if len(json.dumps(args).encode()) > MAX_CUSTOM_ARGS_BYTES:
                found.append((f"personalizations.{n}.custom_args", f"Custom args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes."))
            for name, value in p.get("headers", {}).items():
                if name.lower() in RESERVED_HEADERS:
                    found.append((f"personalizations.{n}.headers", f"The header {name} is reserved."))
                if not isinstance(value, str):
                    found.append((f"personalizations.{n}.headers", "Header values must be strings."))
        for name in body.get("headers", {}):
            if name.lower() in RESERVED_HEADERS:
                found.append(("headers", f"The header {name} is reserved."))
        if size > MAX_MESSAGE_BYTES:
            found.append((None, "The total message size may not exceed 30MB."))
        now = self.now or (self.clock() if self.clock else datetime.now(UTC))
        for where, holder in [("send_at", body), *((f"personalizations.{n}.send_at", p) for n, p in enumerate(personalizations))]:
            send_at = holder.get("send_at")
            if isinstance(send_at, int) and datetime.fromtimestamp(send_at, UTC) > now + SEND_AT_HORIZON:
                found.append((where, "send_at may not be more than 72 hours in the future."))
        return found


class SendGridStandIn(LocalServer):
    """`POST /v3/mail/send` on 127.0.0.1 with a free port, in a thread (a `LocalServer`
    whose handler plays SendGrid).

    `keep_bodies=False` records only addresses and counts (for a million recipients);
    `validate_schema_every` validates one request body in N against the schema and the
    limits (1: all); the others are only checked for their token, the number of recipients
    and repeated addresses, without parsing (what a benchmark can afford).
    """

    def __init__(
        self, api_key: str = "SG.test-key", *, keep_bodies: bool = True, validate_schema_every: int = 1,
        charset_allowed: bool = True, validate_later: bool = False, clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        #: The stand-in's time: `send_at`, the 10-minute rule and `fates` are read against it.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.scheduled = ScheduledSends()
        #: Requests other than Mail Send: (method, path, status).
        self.api_requests: list[tuple[str, str, int]] = []
        #: Set when a cancel or pause is taken; its answer then waits `hold_delay` seconds
        #: (a test kills the client in between: SendGrid took it, the client never heard).
        self.hold_taken = threading.Event()
        self.hold_delay = 0.0
        self.api_key = api_key
        #: Whether `application/json; charset=utf-8` is taken (SendGrid's Mail Send does;
        #: False plays an endpoint that wants exactly `application/json`).
        self.charset_allowed = charset_allowed
        self.keep_bodies = keep_bodies
        self.validate_schema_every = validate_schema_every
        #: Benchmark mode: the sampled bodies are kept and validated by `validate_kept`
        #: when asked (after the run), not while the sender waits for the answer, so
        #: that the stand-in's own validation (~0.4 s per 1,000-recipient body) is not
        #: measured as the sender's speed. Every request is still quick-checked at once.
        self.validate_later = validate_later
        self.kept_for_validation: list[bytes] = []
        self.validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()), format_checker=FormatChecker())
        self.limits = LimitChecker(clock=lambda: self.clock())
        self.mail_requests: list[MailRequest] = []
        self.delivered: Counter[str] = Counter()
        self.accepted_requests = 0
        self.rejected = 0
        self.script: deque[Answer] = deque()
        self.lock = threading.Lock()
        #: Set when a scripted `hang_up` has closed its connection.
        self.hung_up = threading.Event()
        self._counter = itertools.count(1)
        standin = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_POST(self) -> None:
                if self.path.split("?")[0] == "/v3/mail/send":
                    standin._handle(self)
                else:
                    standin._api(self, "POST")

            def do_GET(self) -> None:
                standin._api(self, "GET")

            def do_PATCH(self) -> None:
                standin._api(self, "PATCH")

            def do_DELETE(self) -> None:
                standin._api(self, "DELETE")

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd.RequestHandlerClass = _Handler
        # A client that went away mid-answer (a killed sender) is part of the game.
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    # The batch and scheduled-sends endpoints.

    def _api(self, handler: Any, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?")[0].rstrip("/")
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            status, body = 401, sendgrid_errors((None, "The provided authorization grant is invalid, expired, or revoked"))
        else:
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = None
            with self.lock:
                status, body = self.scheduled.route(method, path, payload, self.clock())
                self.api_requests.append((method, path, status))
            if status == 201 and path == "/v3/user/scheduled_sends":
                self.hold_taken.set()
                time.sleep(self.hold_delay)
        handler._reply(status, body)
    @property
    def batch_ids(self) -> set[str]:
        return self.scheduled.batch_ids

    def fates(self, now: datetime | None = None) -> list[tuple[str, str, str]]:
        """(email, subject, fate) of every copy accepted, in the order accepted: delivered,
        scheduled, cancelled or paused by `now` (the clock's)."""
        with self.lock:
            copies = list(self.scheduled.copies)
        at = now or self.clock()
        return [(c.email, c.subject, self.scheduled.fate(c, at)) for c in copies]

    def answer_next(self, *answers: Answer) -> None:
        """Give these answers to the next requests, in order, then behave normally."""
        with self.lock:
            self.script.extend(answers)

    @property
    def accepted(self) -> list[MailRequest]:
        return [r for r in self.mail_requests if r.status == 202]

    def _handle(self, handler: Any) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            scripted = self.script.popleft() if self.script else None
        if handler.path.split("?")[0] != "/v3/mail/send":
            handler._reply(404, sendgrid_errors((None, f"no route {handler.path}")))
            return
        if scripted and scripted.delay and not scripted.accept:
            time.sleep(scripted.delay)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            handler._reply(401, sendgrid_errors((None, "The provided authorization grant is invalid, expired, or revoked")))
            return
        if not self._json_type(headers.get("content-type", "")):
            self._record(headers, raw, 415)
            handler._reply(415, sendgrid_errors((None, "Content-Type should be application/json.")))
            return
        if scripted and not scripted.accept:
            if scripted.drop:
                self._drop(handler)
            else:
                self._record(headers, raw, scripted.status)
                handler._reply(scripted.status, scripted.body, scripted.headers)
            return
        status, reply, message_id, body, addresses = self._check(raw)
        self._record(headers, raw, status, message_id, body, addresses, port=handler.client_address[1])
        if scripted and scripted.delay:
            # Taken at once, answered late: as SendGrid does when it is slow to reply.
            time.sleep(scripted.delay)
        if scripted and scripted.drop:
            self._drop(handler)
            return
        handler._reply(status, reply, {"X-Message-Id": message_id} if message_id else {})
        if scripted and scripted.hang_up:
            self._drop(handler)
            self.hung_up.set()

    def _json_type(self, value: str) -> bool:
        media, _, parameter = (part.strip().lower() for part in value.partition(";"))
        if media != "application/json":
            return False
        return not parameter or (self.charset_allowed and parameter.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"'))

    def _drop(self, handler: Any) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _check(self, raw: bytes) -> tuple[int, bytes, str, dict[str, Any] | None, list[str]]:
        """(status, reply, message id, parsed body or None when not parsed, addresses)."""
        n = next(self._counter)
        if (n - 1) % self.validate_schema_every:
            return self._check_quickly(raw)
        if self.validate_later:
            with self.lock:
                self.kept_for_validation.append(raw)
            return self._check_quickly(raw)
        return self._check_fully(raw)

    def validate_kept(self) -> tuple[int, int]:
        """Validate the bodies kept in benchmark mode: (how many, how many invalid)."""
        with self.lock:
            kept, self.kept_for_validation = self.kept_for_validation, []
        invalid = sum(1 for raw in kept if self._check_fully(raw)[0] != 202)
        return len(kept), invalid

    def _check_fully(self, raw: bytes) -> tuple[int, bytes, str, dict[str, Any] | None, list[str]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, sendgrid_errors((None, "Bad Request: the body is not JSON")), "", None, []
        problems: list[tuple[str | None, str]] = []
        if isinstance(body, dict):
            problems += [
                (".".join(str(p) for p in e.absolute_path) or None, e.message)
                for e in self.validator.iter_errors(body)
            ]
        else:
            problems.append((None, "The body must be a JSON object."))
        if not problems:
            problems = self.limits.problems(body, len(raw))
        if not problems and "batch_id" in body and body["batch_id"] not in self.scheduled.batch_ids:
            problems.append(("batch_id", "invalid batch id"))
        if problems:
            return 400, sendgrid_errors(*problems[:20]), "", body if isinstance(body, dict) else None, []
        addresses = [to["email"] for p in body["personalizations"] for to in p.get("to", [])]
        return 202, b"", uuid.uuid4().hex[:22], body, addresses

    def _check_quickly(self, raw: bytes) -> tuple[int, bytes, str, dict[str, Any] | None, list[str]]:
        """The checks a benchmark can afford on every request: the recipients' count and
        that no address repeats, found without parsing the body."""
        addresses = [m.decode() for m in TO_ADDRESS.findall(raw)]
        folded = Counter(a.lower() for a in addresses)
        if not addresses or len(addresses) > MAX_RECIPIENTS or len(folded) < len(addresses) or len(raw) > MAX_MESSAGE_BYTES:
            return 400, sendgrid_errors(("personalizations", "between 1 and 1,000 distinct recipients, please")), "", None, []
        return 202, b"", uuid.uuid4().hex[:22], None, addresses

    def _record(self, headers: dict[str, str], raw: bytes, status: int, message_id: str = "",
                body: dict[str, Any] | None = None, addresses: list[str] | None = None, *, port: int = 0) -> None:
        if body is None and self.keep_bodies:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
        with self.lock:
            if status == 202:
                self.accepted_requests += 1
                self.delivered.update(addresses or ())
                if body:
                    self.scheduled.keep_copies(body, self.clock())
            else:
                self.rejected += 1
            if self.keep_bodies:
                self.mail_requests.append(MailRequest(headers, body or {}, status, message_id, port))


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the SendGrid stand-in until stdin closes.")
    parser.add_argument("--key", default="SG.test-key")
    parser.add_argument("--validate-every", type=int, default=1, help="Validate one body in N fully (schema and limits).")
    parser.add_argument("--validate-later", action="store_true", help="Validate those bodies when the tally is asked for.")
    args = parser.parse_args()
    standin = SendGridStandIn(args.key, keep_bodies=False, validate_schema_every=args.validate_every,
                              validate_later=args.validate_later)
    standin.start()
    print(standin.url, flush=True)
    # The parent asks for the tally by writing a line, and ends the stand-in by closing stdin.
    for _ in sys.stdin:
        own = time.process_time()
        validated, invalid = standin.validate_kept()
        with standin.lock:
            tally = {
                "requests": standin.accepted_requests,
                "rejected": standin.rejected,
                "recipients": sum(standin.delivered.values()),
                "distinct": len(standin.delivered),
                "validated_later": validated,
                "invalid_later": invalid,
                "cpu_seconds": round(own, 2),
            }
        print(json.dumps(tally), flush=True)
    standin.stop()


if __name__ == "__main__":
    main()
