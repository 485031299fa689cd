"""The SendGrid stand-in's batch and scheduled-sends rules, met through our own SendGrid
transport (the client a recall uses): an unknown batch id is refused in a Mail Send and
in a cancel, a `send_at` more than 72 hours ahead is refused, a cancel is asked once and
asking again changes nothing, and a resume with nothing held asks nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from newsletter.errors import RecallRefusedError
from newsletter.models import Batch, OutcomeKind, Recipient, RenderedMessage
from newsletter.transports import RecallTarget
from newsletter.transports.sendgrid import SendGridTransport
from tests.sendgrid_standin import SendGridStandIn
from tests.test_sendgrid import API_KEY

NOW = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    srv = SendGridStandIn(API_KEY, clock=lambda: NOW)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def transport(standin: SendGridStandIn) -> Iterator[SendGridTransport]:
    made = SendGridTransport(api_key=API_KEY, api_host=standin.url)
    yield made
    made.close()


def batch(*, batch_id: str, due: datetime) -> Batch:
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>", text="%%greeting%%")
    recipients = tuple(Recipient(n, f"r{n}@example.com", {"%%greeting%%": "Hello,"}, "https://x.example/u", "mailto:u@x.example")
                       for n in range(2))
    return Batch(1, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "",
                 send_at={0: due, 1: due + timedelta(hours=5)}, provider_batch_id=batch_id)


def test_a_mail_send_naming_an_unknown_batch_id_or_too_far_ahead_is_refused(transport: SendGridTransport) -> None:
    unknown = transport.send(batch(batch_id="not-a-batch", due=NOW + timedelta(hours=14)))
    assert (unknown.kind, unknown.status_code) == (OutcomeKind.PERMANENT, 400)
    assert "batch_id: invalid batch id" in unknown.error

    far = transport.send(batch(batch_id=transport.open_send(), due=NOW + timedelta(hours=70)))
    assert far.kind is OutcomeKind.PERMANENT
    assert "personalizations.1.send_at: send_at may not be more than 72 hours in the future." in far.error


def test_a_cancel_is_asked_once_and_a_resume_with_nothing_held_asks_nothing(
    transport: SendGridTransport, standin: SendGridStandIn
) -> None:
    batch_id = transport.open_send()
    assert transport.send(batch(batch_id=batch_id, due=NOW + timedelta(hours=14))).kind is OutcomeKind.ACCEPTED
    target = RecallTarget("2026-w48", batch_id, NOW + timedelta(minutes=10))

    assert transport.recall(target, "cancel") is False
    assert transport.recall(target, "cancel") is True
    posts = [r for r in standin.api_requests if r[0] == "POST" and r[1] == "/v3/user/scheduled_sends"]
    assert posts == [("POST", "/v3/user/scheduled_sends", 201)]
    assert {fate for _, _, fate in standin.fates(NOW + timedelta(days=1))} == {"cancelled"}

    with pytest.raises(RecallRefusedError, match=r"SendGrid refused to cancel the send \(400: batch_id: invalid batch id\)"):
        transport.recall(RecallTarget("2026-w48", "unknown", NOW), "cancel")
    other = transport.open_send()
    transport.resume(RecallTarget("2026-w48", other, NOW))
    assert not [r for r in standin.api_requests if r[0] == "DELETE"]
