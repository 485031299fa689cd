"""The SMTP transport against a real SMTP server (aiosmtpd on 127.0.0.1): the same
messages as the outbox, STARTTLS and implicit TLS with a certificate made here, AUTH
LOGIN, 4xx retried where the last try stopped, 5xx for one address recorded in the ledger
while the others are delivered, a connection dropped mid-batch, and a killed send resumed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select

import subscribers as people
from newsletter import issues
from newsletter.config import Settings
from newsletter.errors import TransportAuthError
from newsletter.ingest import ingest_feeds
from newsletter.links import list_unsubscribe_folded, substitutions
from newsletter.models import Batch, Issue, OutcomeKind, Recipient
from newsletter.sending.ledger import ledger_summary
from newsletter.tables import batches, deliveries
from newsletter.transports.smtp import SmtpTransport
from tests.helpers import Item, parts, rss
from tests.servers import LocalServer, Route
from tests.newsletter.transports.test_outbox import MESSAGE

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
USER, PASSWORD = "mailer", "s3cret-relay"


class Relay:
    """What the server does: keep each accepted message, refuse addresses in `refuse`, and
    answer the next DATA or MAIL commands from `data_answers` / `mail_answers` first
    ("drop" closes the connection without a word)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}
        self.data_answers: list[str] = []
        self.mail_answers: list[str] = []
        self.logins: list[str] = []
        self.connections = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.mail_answers:
            return self.mail_answers.pop(0)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answers:
            answer = self.data_answers.pop(0)
            if answer == "drop":
                assert server.transport is not None
                server.transport.close()
            return answer
        assert isinstance(envelope.content, bytes)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    def to(self) -> list[str]:
        return [rcpt for _, rcpts, _ in self.received for rcpt in rcpts]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "relay.pem", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    """A plain relay without login, as a local Postfix would be."""
    handler = Relay()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def start_tls_relay(folder: Path, *, implicit: bool) -> tuple[Relay, Controller, ssl.SSLContext]:
    cert_file, key_file = certificate(folder)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    handler = Relay()
    # aiosmtpd offers AUTH only after its own STARTTLS unless told otherwise; with implicit
    # TLS the whole connection is encrypted before the greeting.
    tls: dict[str, Any] = (
        {"ssl_context": server_context, "auth_require_tls": False, "auth_required": False} if implicit
        else {"tls_context": server_context, "require_starttls": True, "auth_required": True}
    )
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=handler.authenticate, **tls)
    controller.start()
    return handler, controller, ssl.create_default_context(cafile=str(cert_file))


def recipient(n: int) -> Recipient:
    token = f"tok{n}" * 6
    return Recipient(n, f"reader{n}@example.com", substitutions(token, f"Reader{n}", base_url="https://news.example.com"),
                     f"https://news.example.com/unsubscribe/{token}", f"mailto:unsub@example.com?subject=unsubscribe-{token}")


def batch(count: int, batch_id: int = 7) -> Batch:
    return Batch(id=batch_id, issue_id=1, issue_slug="2026-w48", segment_id=3, message=MESSAGE,
                 recipients=tuple(recipient(n) for n in range(1, count + 1)), sender_name="Pharma Weekly",
                 sender_address="news@example.com", reply_to="editors@example.com", list_id="<pharma-weekly.example.com>")


def read(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_each_recipient_gets_the_outboxs_message_over_one_kept_connection(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    transport = SmtpTransport(host="127.0.0.1", port=port, tls="none", connections=2)
    try:
        first = transport.send(batch(3))
        second = transport.send(batch(2, batch_id=8))
    finally:
        transport.close()
    assert (first.kind, first.status_code, first.refused) == (OutcomeKind.ACCEPTED, 250, ())
    assert second.kind is OutcomeKind.ACCEPTED
    assert handler.to() == [f"reader{n}@example.com" for n in (1, 2, 3, 1, 2)]
    assert {sender for sender, _, _ in handler.received} == {"news@example.com"}
    message = read(handler.received[0][2])
    assert message["To"] == "reader1@example.com" and message["From"] == "Pharma Weekly <news@example.com>"
    assert message["Subject"] == MESSAGE.subject and message["Reply-To"] == "editors@example.com"
    assert message["List-Id"] == "<pharma-weekly.example.com>"
    assert message["Message-ID"] == "<2026-w48.7.1@example.com>"
    assert message["List-Unsubscribe"] == (
        f"<https://news.example.com/unsubscribe/{'tok1' * 6}>, <mailto:unsub@example.com?subject=unsubscribe-{'tok1' * 6}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Folded as the outbox folds it (`links.list_unsubscribe_folded`).
    header_block = handler.received[0][2].split(b"\r\n\r\n", 1)[0].decode()
    assert f"\r\nList-Unsubscribe: {list_unsubscribe_folded(recipient(1))}\r\n" in header_block
    text, html = parts(message)
    assert "Hello Reader1," in html and "Hello Reader1," in text
    assert f'href="https://news.example.com/unsubscribe/{"tok1" * 6}"' in html


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_tls_and_login(tmp_path: Path, implicit: bool) -> None:
    handler, controller, client_context = start_tls_relay(tmp_path, implicit=implicit)
    try:
        transport = SmtpTransport(host="127.0.0.1", port=controller.port, username=USER, password=PASSWORD,
                                  tls="implicit" if implicit else "starttls", ssl_context=client_context)
        try:
            outcome = transport.send(batch(2))
        finally:
            transport.close()
        assert outcome.kind is OutcomeKind.ACCEPTED
        assert handler.to() == ["reader1@example.com", "reader2@example.com"]
        assert handler.logins and set(handler.logins) <= {"LOGIN", "PLAIN"}

        wrong = SmtpTransport(host="127.0.0.1", port=controller.port, username=USER, password="wrong",
                              tls="implicit" if implicit else "starttls", ssl_context=client_context)
        with pytest.raises(TransportAuthError, match="refused the login: 535"):
            wrong.send(batch(1))
        wrong.close()

        # A certificate the client does not trust is never sent a password.
        untrusted = SmtpTransport(host="127.0.0.1", port=controller.port, username=USER, password=PASSWORD,
                                  tls="implicit" if implicit else "starttls")
        refused = untrusted.send(batch(1))
        untrusted.close()
        assert refused.kind is OutcomeKind.RETRYABLE and "CERTIFICATE_VERIFY_FAILED" in refused.error
        assert len(handler.logins) == 1
    finally:
        controller.stop()


def test_a_dropped_connection_resumes_after_the_last_accepted_recipient(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    handler.data_answers = [""] * 0
    transport = SmtpTransport(host="127.0.0.1", port=port, tls="none")
    sent_before_drop = 2
    # The third message's DATA: the server closes the connection instead of answering.
    handler.data_answers = []
    first = None
    try:
        # Let two messages through, then drop.
        original = handler.handle_DATA

        async def drop_third(server: SMTP, session: Session, envelope: Envelope) -> str:
            if len(handler.received) == sent_before_drop and not getattr(handler, "dropped", False):
                handler.dropped = True  # type: ignore[attr-defined]
                assert server.transport is not None
                server.transport.close()
                return "421 closing"
            return await original(server, session, envelope)

        handler.handle_DATA = drop_third  # type: ignore[method-assign]
        first = transport.send(batch(5))
        second = transport.send(batch(5))
    finally:
        transport.close()
    assert first is not None and first.kind is OutcomeKind.RETRYABLE
    assert second.kind is OutcomeKind.ACCEPTED
    assert handler.to() == [f"reader{n}@example.com" for n in range(1, 6)]


@pytest.mark.parametrize("where", ["mail", "data"])
def test_421_and_451_are_retried_and_then_accepted(relay: tuple[Relay, int], where: str) -> None:
    handler, port = relay
    answers = ["421 4.7.0 Too busy, come back later", "451 4.3.0 Local error, try again"]
    if where == "mail":
        handler.mail_answers = answers
    else:
        handler.data_answers = answers
    transport = SmtpTransport(host="127.0.0.1", port=port, tls="none")
    try:
        tries = [transport.send(batch(3)) for _ in range(3)]
    finally:
        transport.close()
    assert [(t.kind, t.status_code) for t in tries] == [
        (OutcomeKind.RETRYABLE, 421), (OutcomeKind.RETRYABLE, 451), (OutcomeKind.ACCEPTED, 250)
    ]
    assert handler.to() == ["reader1@example.com", "reader2@example.com", "reader3@example.com"]


# End to end: `newsletter send`'s use case, the ledger, and the relay.

def feed() -> bytes:
    day = dt.timedelta(days=1)
    return rss([
        Item("FDA approves oral GLP-1", "https://pharma.example.com/a1", NOW - day, ["FDA Approvals"], guid="a1"),
        Item("CDMO doubles capacity", "https://pharma.example.com/a2", NOW - 2 * day, ["Manufacturing"], guid="a2"),
    ])


def smtp_issue(engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, port: int, readers: int,
               **delivery: Any) -> tuple[Settings, Issue]:
    server.routes["/feed.xml"] = Route(body=feed(), headers={"content-type": "application/rss+xml"})
    settings = make_settings(feeds=[{"name": "Pharma", "url": f"{server.url}/feed.xml"}],
                             delivery={"transport": "smtp", **delivery},
                             smtp={"host": "127.0.0.1", "port": port, "tls": "none", "connections": 2})
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(f"reader{n}@example.com", ("drug-development",), name=f"R{n}")
                                         for n in range(readers)], now=NOW)
    ingest_feeds(engine, settings, clock=lambda: NOW)
    return settings, issues.build_issue(engine, settings, now=NOW).issue


def test_a_5xx_for_one_address_is_recorded_in_the_ledger_and_the_others_are_delivered(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, relay: tuple[Relay, int]
) -> None:
    handler, port = relay
    settings, issue = smtp_issue(engine, make_settings, server, port, 5, batch_size=2)
    handler.refuse["reader3@example.com"] = "550 5.1.1 mailbox unavailable"
    handler.data_answers = ["451 4.3.0 try again"]
    waits: list[float] = []
    transport = issues.make_transport(settings)
    try:
        report = issues.send_pending(engine, settings, issue, transport=transport, clock=lambda: NOW, sleep=waits.append)
    finally:
        transport.close()
    assert report.complete and len(waits) == 1
    assert (report.recipients_sent, report.recipients_refused) == (4, 1)
    assert sorted(handler.to()) == [f"reader{n}@example.com" for n in (0, 1, 2, 4)]
    with engine.connect() as conn:
        summary = ledger_summary(conn, issue.id)
        statuses = dict(conn.execute(select(people.subscribers.c.email, deliveries.c.status)
                                     .join(deliveries, deliveries.c.subscriber_id == people.subscribers.c.id)).all())
        errors = [e for e in conn.execute(select(batches.c.error)).scalars() if e]
    assert summary["accepted"] == 3 and summary["recipients_sent"] == 4 and summary["recipients_skipped"] == 1
    assert statuses["reader3@example.com"] == "refused"
    assert errors == ["1 recipient(s) refused: 550 5.1.1 mailbox unavailable"]
    # A second run sends nothing again, to anyone.
    resumed = issues.make_transport(settings)
    try:
        again = issues.send_pending(engine, settings, issue, transport=resumed, clock=lambda: NOW)
    finally:
        resumed.close()
    assert again.batches_sent == 0 and len(handler.received) == 4


KILLED_SEND = '''
import sys
from newsletter import issues
from newsletter.config import load_settings

settings = load_settings(sys.argv[1], environ={})
engine = issues.open_database(settings)
issue = issues.find_issue(engine, sys.argv[2])
issues.send_pending(engine, settings, issue, transport=issues.make_transport(settings))
'''


def test_a_killed_send_leaves_its_batch_unknown_and_sends_only_the_rest_on_resume(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, relay: tuple[Relay, int], tmp_path: Path
) -> None:
    """kill -9 while the relay is slow to answer one message: the batches accepted stay
    accepted, the one in flight is unknown (SMTP cannot say whether the relay kept what it
    had), and the next run sends only the batches never started."""
    handler, port = relay
    settings, issue = smtp_issue(engine, make_settings, server, port, 6, batch_size=2)
    original = handler.handle_DATA
    import asyncio

    async def slow_fourth(server_: SMTP, session: Session, envelope: Envelope) -> str:
        if len(handler.received) == 3:
            await asyncio.sleep(30)
        return await original(server_, session, envelope)

    handler.handle_DATA = slow_fourth  # type: ignore[method-assign]
    script = tmp_path / "send.py"
    script.write_text(KILLED_SEND)
    settings = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"connections": 1})})
    config = tmp_path / "newsletter.toml"
    config.write_text(config.read_text().replace("connections = 2", "connections = 1"))
    process = subprocess.Popen([sys.executable, str(script), str(config), issue.slug])
    deadline = time.monotonic() + 30
    while len(handler.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.kill()
    process.wait()
    assert len(handler.received) == 3
    handler.handle_DATA = original  # type: ignore[method-assign]
    resumed = issues.make_transport(settings)
    try:
        report = issues.send_pending(engine, settings, issue, transport=resumed, clock=lambda: NOW)
    finally:
        resumed.close()
    assert report.unknown_batches and not report.complete
    # Batch one (two readers) was accepted; batch two is unknown (one of its two sent);
    # batch three goes out now. No one has the issue twice.
    assert len(handler.received) == 5
    assert len(set(handler.to())) == 5
