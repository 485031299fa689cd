"""The SMTP transport: each recipient's message handed to a relay (Postfix, Amazon SES's
SMTP endpoint, Haraka, …) over a pool of kept connections.

Owns: `SmtpTransport`. Imports `errors`, `models` and `transports.outbox` (the same
per-recipient message, headers and personal values as the outbox writes); the standard
library's `smtplib` and `ssl`.

A batch goes out on one connection of the pool (up to `connections` at once, one per
sending thread), one message per recipient, each its own MAIL FROM / RCPT TO / DATA. What
each answer means (the send loop in `sending` decides what to do with it):

    250 after DATA                  that recipient is sent
    5xx to RCPT TO or DATA          that recipient is refused for good (`Outcome.refused`);
                                    the rest of the batch goes on
    4xx (421, 451, …), a dropped    the batch is retryable; a retry on the same transport
    connection, a timeout           starts after the last recipient the relay accepted
    5xx to MAIL FROM                the batch fails (the sender is refused: a setting)
    535 and other AUTH refusals     `TransportAuthError`: nothing more can be sent

Exactly once, as far as SMTP allows: the relay says 250 for one message at a time, so a
retry skips every recipient already answered. What SMTP cannot promise: when the
connection drops after the message's final dot but before the 250 arrives, the relay may
have taken the message, and the retry sends it again (RFC 1047); and a batch left in flight
by a killed process is reported unknown and, if resent (`--resend-unknown`), is sent again
to everyone in it. Each message's Message-ID is the same on every try
(`<issue.batch.subscriber@domain>`), so a receiving system that drops duplicates can.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import socket
import ssl
import threading
from datetime import UTC, datetime
from typing import Literal

from ..errors import TransportAuthError
from ..models import Batch, Outcome, OutcomeKind
from .outbox import MessageTemplate, batch_template

log = logging.getLogger(__name__)

#: Seconds to wait for the relay to answer one command.
TIMEOUT = 30.0

TlsMode = Literal["starttls", "implicit", "none"]


class SmtpTransport:
    """Sends each batch's messages through an SMTP relay. Thread-safe: each batch borrows
    a connection of its own from the pool."""

    name = "smtp"
    # A message handed over twice is delivered twice: SMTP has no idempotency key.
    idempotent = False

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        tls: TlsMode = "starttls",
        connections: int = 4,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self._login = (username, password) if username else None
        self._context = ssl_context or ssl.create_default_context()
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(connections)
        self._lock = threading.Lock()
        self._templates: dict[tuple[int, int], MessageTemplate] = {}
        #: Per batch being sent: the recipients answered so far (subscriber id → the
        #: refusal, or "" when sent), so that a retry starts where the last try stopped.
        self._answered: dict[int, dict[int, str]] = {}

    def send(self, batch: Batch) -> Outcome:
        with self._lock:
            answered = self._answered.setdefault(batch.id, {})
            template = self._template(batch)
        now = datetime.now(UTC)
        with self._slots:
            try:
                client = self._borrow()
            except smtplib.SMTPAuthenticationError as exc:
                raise TransportAuthError(f"the SMTP relay {self.host} refused the login: {_answer(exc.smtp_code, exc.smtp_error)}") from None
            except smtplib.SMTPResponseException as exc:
                return _retry_or_fail(exc.smtp_code, f"connecting to {self.host}:{self.port}: {_answer(exc.smtp_code, exc.smtp_error)}")
            except (OSError, smtplib.SMTPException) as exc:
                return Outcome(OutcomeKind.RETRYABLE, error=f"cannot connect to {self.host}:{self.port}: {exc}")
            outcome = self._send_on(client, batch, template, answered, now)
            if outcome is None:
                self._idle.put(client)
                with self._lock:
                    self._answered.pop(batch.id, None)
                refused = tuple((sid, why) for sid, why in answered.items() if why)
                return Outcome(OutcomeKind.ACCEPTED, message_id=f"smtp-{batch.id}", status_code=250, refused=refused)
            _close(client)
            if outcome.kind is OutcomeKind.PERMANENT:
                with self._lock:
                    self._answered.pop(batch.id, None)
            return outcome

    def _send_on(
        self, client: smtplib.SMTP, batch: Batch, template: MessageTemplate, answered: dict[int, str], now: datetime
    ) -> Outcome | None:
        """Send every recipient not yet answered; None when all are, or the outcome that
        stopped the batch (the connection is then not used again)."""
        for recipient in batch.recipients:
            if recipient.subscriber_id in answered:
                continue
            message = template.build(recipient, batch=batch, now=now)
            try:
                client.sendmail(batch.sender_address, [recipient.email], message)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                if code >= 500:
                    answered[recipient.subscriber_id] = _answer(code, text)
                    continue
                return _retry_or_fail(code, f"recipient deferred: {_answer(code, text)}")
            except smtplib.SMTPSenderRefused as exc:
                return _retry_or_fail(exc.smtp_code, f"sender {batch.sender_address} refused: {_answer(exc.smtp_code, exc.smtp_error)}")
            except smtplib.SMTPDataError as exc:
                if exc.smtp_code >= 500:
                    answered[recipient.subscriber_id] = _answer(exc.smtp_code, exc.smtp_error)
                    continue
                return _retry_or_fail(exc.smtp_code, f"message deferred: {_answer(exc.smtp_code, exc.smtp_error)}")
            except smtplib.SMTPResponseException as exc:
                return _retry_or_fail(exc.smtp_code, _answer(exc.smtp_code, exc.smtp_error))
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("batch %d: SMTP connection lost after %d of %d recipients", batch.id, len(answered), len(batch.recipients))
                return Outcome(OutcomeKind.RETRYABLE, error=f"connection to {self.host} lost: {exc.__class__.__name__}")
            answered[recipient.subscriber_id] = ""
        return None

    def _template(self, batch: Batch) -> MessageTemplate:
        key = (batch.issue_id, batch.segment_id)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = batch_template(batch)
        return template

    def _borrow(self) -> smtplib.SMTP:
        """An idle connection that still answers, or a new one (logged in)."""
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            try:
                if client.noop()[0] == 250:
                    return client
            except (OSError, smtplib.SMTPException):
                pass
            _close(client)

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP
        if self.tls == "implicit":
            client = _ImplicitTls(self._context, self.timeout)
            client.connect(self.host, self.port)
        else:
            # Given the host here, the client keeps it for STARTTLS's certificate check.
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.tls == "starttls":
                client.starttls(context=self._context)
                client.ehlo()
            if self._login is not None:
                client.login(*self._login)
        except BaseException:
            _close(client)
            raise
        return client

    def close(self) -> None:
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                break
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                _close(client)
        self._templates.clear()


class _ImplicitTls(smtplib.SMTP_SSL):
    """`SMTP_SSL` that closes its socket when the TLS handshake fails (the standard
    library leaves it to the garbage collector)."""

    def __init__(self, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        raw = socket.create_connection((host, port), timeout, self.source_address)
        try:
            return self.context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise


def _answer(code: int, text: bytes | str) -> str:
    """The relay's answer as one line, for the ledger and the log (never an address of ours)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:500]


def _retry_or_fail(code: int, error: str) -> Outcome:
    kind = OutcomeKind.PERMANENT if code >= 500 else OutcomeKind.RETRYABLE
    return Outcome(kind, status_code=code, error=error)


def _close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass
