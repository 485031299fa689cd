"""SendGrid's Event Webhook end to end: an issue is sent through the SendGrid stand-in,
then its events are posted to `POST /webhooks/sendgrid` signed exactly as SendGrid signs
them (ECDSA P-256 over the timestamp header and the raw body, with a key made for the
test), and what a person sees is checked: the answer, the subscribers' statuses, the
suppression list, the consent log, the send ledger and `newsletter stats`."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

import subscribers as people
from newsletter import schedule
from newsletter.cli import app as cli
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.models import Issue
from newsletter.tables import batches, delivery_events, link_clicks, recipient_activity
from newsletter.web import create_app
from tests.conftest import NOW
from tests.sendgrid_standin import MailRequest, SendGridStandIn
from tests.sendgrid_helpers import API_KEY, add_readers, build, send, sendgrid_settings
from tests.newsletter.web.test_web import Client

SECRET = "test-secret-key-0123456789"
HOOK = "/webhooks/sendgrid"
#: Refusals happen before the database is touched: one backend is enough for them.
SIGNATURE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Signer:
    """A P-256 key pair made for the test; signs a body as SendGrid's Event Webhook does."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(NOW.timestamp()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


def events_for(request: MailRequest, event: str, *, at: float | None = None, only: set[str] | None = None,
               **extra: Any) -> list[dict[str, Any]]:
    """One event per recipient of a request the stand-in accepted, as SendGrid reports
    it: the message's custom_args (top level and the recipient's own) as top-level keys."""
    out = []
    for n, person in enumerate(request.body["personalizations"]):
        email = person["to"][0]["email"]
        if only is not None and email not in only:
            continue
        out.append({
            "email": email, "event": event, "timestamp": int(at or NOW.timestamp() + 60),
            "sg_event_id": uuid.uuid4().hex, "sg_message_id": f"{request.message_id}.filter0001.{n}.0",
            **request.body["custom_args"], **person["custom_args"], **extra,
        })
    return out


@dataclass
class Hook:
    """An issue sent through the stand-in to four readers, and the web app taking its events."""

    engine: Engine
    settings: Settings
    issue: Issue
    signer: Signer
    client: Client
    standin: SendGridStandIn
    config: Path

    def post(self, events: Any, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        raw = body if body is not None else json.dumps(events).encode("utf-8")
        return self.client.post(HOOK, content=raw, headers=self.signer.headers(raw) if headers is None else headers)

    def events(self, event: str, *emails: str, **extra: Any) -> list[dict[str, Any]]:
        wanted = set(emails) if emails else None
        return [e for r in self.standin.accepted for e in events_for(r, event, only=wanted, **extra)]

    def status(self, email: str) -> people.Status:
        with self.engine.connect() as conn:
            return people.get_subscriber(conn, email).status

    def stored(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(delivery_events)).scalar_one())

    def stats(self, *args: str) -> Any:
        result = CliRunner().invoke(cli, ["stats", *args], env={"NEWSLETTER_CONFIG": str(self.config), "COLUMNS": "200"})
        return result


@pytest.fixture
def hook(engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str) -> Hook:  # noqa: F811
    signer = Signer()
    base = sendgrid_settings(make_settings, standin, feed_server, security={"secret_key": SECRET},
                             sendgrid={"webhook_public_key": signer.public_key})
    config = base.base_dir / "newsletter.toml"
    settings = load_settings(config, environ={"SENDGRID_API_KEY": API_KEY})
    add_readers(engine, 2, ("drug-development",))
    add_readers(engine, 2, ("manufacturing",), start=2)
    issue = build(engine, settings)
    assert send(engine, settings, issue).recipients_sent == 4
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    return Hook(engine, settings, issue, signer, Client(app, base_url="https://news.example.com"), standin, config)


# The signature ---------------------------------------------------------------------------


def test_a_signed_batch_is_taken_in_and_counted(hook: Hook) -> None:
    events = hook.events("processed") + hook.events("delivered")
    answer = hook.post(events)
    assert answer.status_code == 200
    assert answer.json() == {"received": 8, "stored": 8, "duplicates": 0, "unknown": 0, "people_changed": 0}
    assert hook.stored() == 8


@SIGNATURE_ONLY
def test_a_tampered_body_is_refused_and_nothing_changes(hook: Hook) -> None:
    raw = json.dumps(hook.events("bounce", "reader0@example.com", type="bounce")).encode()
    headers = hook.signer.headers(raw)
    tampered = raw.replace(b"reader0@example.com", b"reader1@example.com")
    answer = hook.client.post(HOOK, content=tampered, headers=headers)
    assert answer.status_code == 403 and answer.json() == {"error": "The signature does not match the body."}
    assert hook.stored() == 0 and hook.status("reader1@example.com") is people.Status.ACTIVE
    # One byte of whitespace is enough: the signature covers the raw body as received.
    assert hook.client.post(HOOK, content=raw + b" ", headers=headers).status_code == 403
    assert hook.client.post(HOOK, content=raw, headers=headers).status_code == 200


@SIGNATURE_ONLY
def test_a_body_signed_with_another_key_is_refused(hook: Hook) -> None:
    raw = json.dumps(hook.events("spamreport", "reader0@example.com")).encode()
    answer = hook.client.post(HOOK, content=raw, headers=Signer().headers(raw))
    assert answer.status_code == 403
    assert hook.stored() == 0 and hook.status("reader0@example.com") is people.Status.ACTIVE


@SIGNATURE_ONLY
def test_a_request_without_the_signature_headers_is_unauthorized(hook: Hook) -> None:
    raw = json.dumps(hook.events("spamreport", "reader0@example.com")).encode()
    for missing in ("both", "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"):
        headers = hook.signer.headers(raw)
        for name in list(headers):
            if missing in ("both", name) and name != "Content-Type":
                del headers[name]
        answer = hook.client.post(HOOK, content=raw, headers=headers)
        assert answer.status_code == 401 and answer.json() == {"error": "Event Webhook requests must be signed."}
    assert hook.stored() == 0 and hook.status("reader0@example.com") is people.Status.ACTIVE


@SIGNATURE_ONLY
def test_a_signed_request_outside_the_replay_window_is_refused(hook: Hook) -> None:
    raw = json.dumps(hook.events("spamreport", "reader0@example.com")).encode()
    for offset in (-601, -3600):
        answer = hook.client.post(HOOK, content=raw, headers=hook.signer.headers(raw, timestamp=int(NOW.timestamp()) + offset))
        assert answer.status_code == 403 and answer.json() == {"error": "The request is older than the replay window."}
    for offset in (601, 86_400):
        answer = hook.client.post(HOOK, content=raw, headers=hook.signer.headers(raw, timestamp=int(NOW.timestamp()) + offset))
        assert answer.status_code == 403
        assert answer.json() == {"error": "The request's timestamp is in the future, beyond the replay window."}
    assert hook.stored() == 0 and hook.status("reader0@example.com") is people.Status.ACTIVE
    inside = hook.client.post(HOOK, content=raw, headers=hook.signer.headers(raw, timestamp=int(NOW.timestamp()) - 590))
    assert inside.status_code == 200


def test_a_replayed_batch_changes_nothing(hook: Hook) -> None:
    events = hook.events("group_unsubscribe", "reader2@example.com", asm_group_id=4242) + hook.events("click", url="https://pharma.example.com/a1")
    raw = json.dumps(events).encode()
    headers = hook.signer.headers(raw)
    first = hook.client.post(HOOK, content=raw, headers=headers)
    before = hook.stats("--json").stdout
    again = hook.client.post(HOOK, content=raw, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"received": 5, "stored": 0, "duplicates": 5, "unknown": 0, "people_changed": 0}
    assert hook.stats("--json").stdout == before
    with hook.engine.connect() as conn:
        history = people.consent_history(conn, people.get_subscriber(conn, "reader2@example.com").id)
    assert [(c.action, c.form) for c in history] == [(people.ConsentAction.UNSUBSCRIBED, "sendgrid-group_unsubscribe")]


@SIGNATURE_ONLY
def test_a_signed_body_that_is_not_a_list_of_events_is_a_bad_request(hook: Hook) -> None:
    expected = {
        b"[{\"event\": \"open\"": "The body is not valid JSON.",
        b"{\"event\": \"open\"}": "The body is not a list of events: expected a JSON array of events.",
        b"[1, 2]": "The body is not a list of events: event 0: expected a JSON object.",
    }
    for body, error in expected.items():
        answer = hook.post(None, body=body)
        assert answer.status_code == 400 and answer.json() == {"error": error}
    # The signature covers the raw bytes: a validly signed body that is not UTF-8 is
    # refused for what it is, not for its signature.
    not_utf8 = hook.post(None, body=b"\xff\xfe[]")
    assert not_utf8.status_code == 400 and not_utf8.json() == {"error": "The body is not valid JSON: it is not UTF-8."}
    assert hook.stored() == 0


@SIGNATURE_ONLY
def test_a_body_in_another_content_type_is_refused(hook: Hook) -> None:
    raw = json.dumps(hook.events("open")).encode()
    headers = {**hook.signer.headers(raw), "Content-Type": "application/x-www-form-urlencoded"}
    answer = hook.client.post(HOOK, content=raw, headers=headers)
    assert answer.status_code == 415 and "Send the events as application/json." in answer.text
    assert hook.stored() == 0


@SIGNATURE_ONLY
def test_a_body_over_the_size_limit_is_refused_before_it_is_read(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    signer = Signer()
    settings = make_settings(security={"secret_key": SECRET},
                             sendgrid={"webhook_public_key": signer.public_key, "webhook_max_bytes": 2048})
    client = Client(create_app(settings, engine=engine, clock=lambda: NOW), base_url="https://news.example.com")
    raw = json.dumps([{"event": "open", "sg_event_id": f"e{n}", "timestamp": 1} for n in range(100)]).encode()
    answer = client.post(HOOK, content=raw, headers=signer.headers(raw))
    assert answer.status_code == 413 and answer.json() == {"error": "The request body is larger than 2,048 bytes."}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(delivery_events)).scalar_one() == 0


def test_events_for_unknown_messages_and_subscribers_are_stored_and_counted(hook: Hook) -> None:
    strangers = [
        {"email": "nobody@example.org", "event": "bounce", "type": "bounce", "timestamp": int(NOW.timestamp()),
         "sg_event_id": "ev-stranger", "issue_id": str(hook.issue.id), "batch_id": "1", "subscriber_id": "999999"},
        {"email": "reader0@example.com", "event": "open", "timestamp": int(NOW.timestamp()), "sg_event_id": "ev-no-args"},
        {"event": "machine_learned_something", "sg_event_id": "ev-new-kind", "timestamp": "yesterday"},
    ]
    answer = hook.post(strangers)
    assert answer.status_code == 200 and answer.json()["unknown"] == 3
    assert hook.status("reader0@example.com") is people.Status.ACTIVE
    shown = hook.stats(hook.issue.slug)
    assert shown.exit_code == 0
    assert "1 stored events for this issue name no recipient of it." in shown.stdout
    assert json.loads(hook.stats("--json").stdout)["unknown_events"] == 1
    # Without an sg_event_id an event is known by its content, so its redelivery is too.
    anonymous = [{"event": "open", "email": "reader0@example.com", "timestamp": int(NOW.timestamp())}]
    assert hook.post(anonymous).json()["stored"] == 1
    assert hook.post(anonymous).json()["duplicates"] == 1


def test_thousands_of_events_in_one_request(hook: Hook) -> None:
    opens = [e for n in range(1250) for e in hook.events("open", timestamp=int(NOW.timestamp()) + n)]
    answer = hook.post(opens)
    assert answer.status_code == 200 and answer.json()["stored"] == 5000
    with hook.engine.connect() as conn:
        assert set(conn.execute(select(recipient_activity.c.opens)).scalars()) == {1250}



def test_later_requests_add_to_the_counts_and_keep_the_earliest_times(hook: Hook) -> None:
    """The aggregates are merged into what is stored: counts add up, and an event that
    arrives late but happened earlier moves the first time back (never forward)."""
    start = int(NOW.timestamp())
    url = "https://news.example.com/a"
    assert hook.post(hook.events("open", "reader0@example.com", timestamp=start + 600)
                     + hook.events("click", "reader0@example.com", timestamp=start + 700, url=url)).status_code == 200
    assert hook.post(hook.events("open", "reader0@example.com", timestamp=start + 60)
                     + hook.events("open", "reader0@example.com", timestamp=start + 900)
                     + hook.events("click", "reader0@example.com", timestamp=start + 650, url=url)
                     + hook.events("click", "reader0@example.com", timestamp=start + 800, url=url)).status_code == 200
    with hook.engine.connect() as conn:
        subscriber_id = people.get_subscriber(conn, "reader0@example.com").id
        row = conn.execute(select(recipient_activity).where(recipient_activity.c.subscriber_id == subscriber_id)).one()
        link = conn.execute(select(link_clicks).where(link_clicks.c.subscriber_id == subscriber_id)).one()
    assert (row.opens, row.clicks) == (3, 3)
    assert row.opened_at == NOW + timedelta(seconds=60) and row.clicked_at == NOW + timedelta(seconds=650)
    assert row.delivered_at is None and row.bounced_at is None
    assert (link.url, link.clicks, link.first_at) == (url, 3, NOW + timedelta(seconds=650))


# Configuration ---------------------------------------------------------------------------


@SIGNATURE_ONLY
def test_the_app_refuses_to_start_without_a_key_unless_verification_is_off(
    engine: Engine, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(security={"secret_key": SECRET}, delivery={"transport": "sendgrid"})
    with pytest.raises(ConfigError, match="sendgrid.webhook_public_key: the Event Webhook needs SendGrid's verification key"):
        create_app(settings, engine=engine)
    bad = make_settings(security={"secret_key": SECRET}, sendgrid={"webhook_public_key": base64.b64encode(b"not a key").decode()})
    with pytest.raises(ConfigError, match="sendgrid.webhook_public_key: not a public key"):
        create_app(bad, engine=engine)

    unchecked = make_settings(security={"secret_key": SECRET}, delivery={"transport": "sendgrid"}, sendgrid={"verify": False})
    with caplog.at_level(logging.WARNING, logger="newsletter.web.webhooks"):
        client = Client(create_app(unchecked, engine=engine, clock=lambda: NOW), base_url="https://news.example.com")
    assert "accepted WITHOUT checking their signature" in caplog.text
    answer = client.post(HOOK, json=[{"event": "open", "sg_event_id": "x", "timestamp": 1}])
    assert answer.status_code == 200 and answer.json()["stored"] == 1


@SIGNATURE_ONLY
def test_the_key_comes_from_the_environment(make_settings: Callable[..., Settings]) -> None:
    key = Signer().public_key
    path = make_settings().base_dir / "newsletter.toml"
    settings = load_settings(path, environ={"NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY": key, "NEWSLETTER_SENDGRID__VERIFY": "true"})
    assert settings.sendgrid.webhook_public_key == key
    with pytest.raises(ConfigError, match="NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY: sendgrid.webhook_public_key: expected"):
        load_settings(path, environ={"NEWSLETTER_SENDGRID__WEBHOOK_PUBLIC_KEY": "not base64!"})


@SIGNATURE_ONLY
def test_with_the_outbox_and_no_key_the_webhook_is_off(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    client = Client(create_app(make_settings(security={"secret_key": SECRET}), engine=engine), base_url="https://news.example.com")
    assert client.post(HOOK, json=[]).status_code == 404


# Effects -----------------------------------------------------------------------------------


def test_processed_events_confirm_a_batch_left_in_flight(hook: Hook) -> None:
    # A send killed after its request and before the answer was written down: in flight.
    with hook.engine.begin() as conn:
        first = conn.execute(select(func.min(batches.c.id))).scalar_one()
        conn.execute(update(batches).where(batches.c.id == first).values(status="in_flight"))
    unknown = send(hook.engine, hook.settings, hook.issue)
    assert unknown.unknown_batches == [first]
    request = next(r for r in hook.standin.accepted if r.body["custom_args"]["batch_id"] == str(first))

    assert hook.post(events_for(request, "processed")).status_code == 200

    with hook.engine.connect() as conn:
        assert conn.execute(select(batches.c.status).where(batches.c.id == first)).scalar_one() == "accepted"
    again = send(hook.engine, hook.settings, hook.issue)
    assert again.unknown_batches == [] and again.recipients_sent == 0
    assert len(hook.standin.accepted) == 2

    # A run that finds the batch in flight again (killed once more) settles it from the
    # events already stored, before it decides what is unknown.
    with hook.engine.begin() as conn:
        conn.execute(update(batches).where(batches.c.id == first).values(status="in_flight"))
    settled = send(hook.engine, hook.settings, hook.issue)
    assert settled.unknown_batches == [] and settled.complete and len(hook.standin.accepted) == 2


def test_resubscribing_to_the_group_brings_an_unsubscribed_reader_back(hook: Hook) -> None:
    later = NOW.timestamp() + 3600
    hook.post(hook.events("group_unsubscribe", "reader1@example.com", asm_group_id=4242))
    assert hook.status("reader1@example.com") is people.Status.UNSUBSCRIBED
    hook.post([e | {"timestamp": int(later)} for e in hook.events("group_resubscribe", "reader1@example.com", asm_group_id=4242)])
    assert hook.status("reader1@example.com") is people.Status.ACTIVE
    # An unsubscribe that happened before the resubscribe, arriving late, changes nothing.
    hook.post(hook.events("unsubscribe", "reader1@example.com"))
    assert hook.status("reader1@example.com") is people.Status.ACTIVE
    with hook.engine.connect() as conn:
        history = people.consent_history(conn, people.get_subscriber(conn, "reader1@example.com").id)
    assert [(c.action.value, c.form) for c in history] == [
        ("unsubscribed", "sendgrid-group_unsubscribe"), ("resubscribed", "sendgrid-group_resubscribe"),
    ]


def test_soft_bounces_and_other_drops_do_not_suppress(hook: Hook) -> None:
    hook.post(hook.events("bounce", "reader0@example.com", type="blocked", reason="421 try later")
              + hook.events("dropped", "reader1@example.com", reason="Spam Content")
              + hook.events("deferred", "reader2@example.com"))
    with hook.engine.connect() as conn:
        for n in range(3):
            assert not people.is_suppressed(conn, f"reader{n}@example.com")
            assert hook.status(f"reader{n}@example.com") is people.Status.ACTIVE


def test_the_end_to_end_story_in_statuses_suppressions_and_stats(hook: Hook, tmp_path: Path) -> None:
    sent_at = NOW.timestamp()
    hour = 3600
    events = (
        hook.events("processed")
        + hook.events("delivered", "reader0@example.com", "reader1@example.com", "reader2@example.com")
        + hook.events("bounce", "reader3@example.com", type="bounce", reason="550 5.1.1 no such user")
        + hook.events("spamreport", "reader2@example.com")
        + hook.events("open", "reader0@example.com", "reader1@example.com", "reader2@example.com", timestamp=int(sent_at + hour))
        + hook.events("click", "reader0@example.com", url="https://pharma.example.com/a1", timestamp=int(sent_at + 2 * hour))
        + hook.events("click", "reader0@example.com", url="https://pharma.example.com/a1", timestamp=int(sent_at + 3 * hour))
        + hook.events("click", "reader1@example.com", url="https://pharma.example.com/a1", timestamp=int(sent_at + 2 * hour))
        + hook.events("click", "reader1@example.com", url="https://news.example.com/archive/2026-w48", timestamp=int(sent_at + 2 * hour))
    )
    answer = hook.post(events)
    assert answer.status_code == 200 and answer.json()["people_changed"] == 2 and answer.json()["unknown"] == 0
    # A bounce for an address that is also dropped later changes nothing more.
    hook.post(hook.events("dropped", "reader3@example.com", reason="Bounced Address"))

    assert [hook.status(f"reader{n}@example.com") for n in range(4)] == [
        people.Status.ACTIVE, people.Status.ACTIVE, people.Status.COMPLAINED, people.Status.BOUNCED,
    ]
    with hook.engine.connect() as conn:
        assert [people.is_suppressed(conn, f"reader{n}@example.com") for n in range(4)] == [False, False, True, True]

    shown = hook.stats()
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    row = next(line for line in lines if line.startswith("│ all"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells == ["all", "4", "3 (75.0%)", "1 (25.0%)", "1 (33.3%)", "2 (66.7%)", "4", "0 (0.0%)", "3 (100.0%)"]
    assert "Opens are a soft figure" in shown.stdout
    assert any("FDA approves oral GLP-1" in line and "Drug Development" in line and "3" in line for line in lines)

    data = json.loads(hook.stats(hook.issue.slug, "--json").stdout)
    assert data["total"] | {"rates": None} == {
        "recipients": 4, "delivered": 3, "bounced": 1, "complaints": 1, "unique_opens": 3, "unique_clicks": 2,
        "clicks": 4, "unsubscribes": 0, "rates": None,
    }
    assert data["total"]["rates"]["unique_clicks"] == 0.6667
    sections = {s["section"]: s for s in data["sections"]}
    assert list(sections) == ["drug-development", "manufacturing"]
    assert sections["drug-development"]["recipients"] == 2 and sections["drug-development"]["unique_clicks"] == 2
    assert sections["drug-development"]["clicks"] == 3
    assert sections["manufacturing"]["bounced"] == 1 and sections["manufacturing"]["complaints"] == 1
    assert sections["manufacturing"]["unique_clicks"] == 0
    assert [(link["title"], link["clicks"], link["unique"]) for link in data["links"]] == [
        ("FDA approves oral GLP-1", 3, 2), ("", 1, 1),
    ]

    chart = tmp_path / "activity.png"
    drawn = hook.stats("--chart", str(chart))
    assert drawn.exit_code == 0 and f"Wrote {chart}" in drawn.stdout
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # The next send leaves the suppressed out.
    with hook.engine.connect() as conn:
        mailable = conn.execute(select(func.count()).select_from(people.subscribers).where(people.mailable_clause())).scalar_one()
    assert mailable == 2


def test_old_raw_events_are_pruned_and_the_statistics_stay(hook: Hook) -> None:
    hook.post(hook.events("delivered") + hook.events("click", "reader0@example.com", url="https://pharma.example.com/a1"))
    before = json.loads(hook.stats("--json").stdout)
    assert schedule.run_prune(hook.engine, hook.settings, now=NOW + timedelta(days=89)) == 0
    assert schedule.run_prune(hook.engine, hook.settings, now=NOW + timedelta(days=91)) == 5
    assert hook.stored() == 0
    assert json.loads(hook.stats("--json").stdout) == before
    jobs = {j.id: j.description for j in schedule.planned_jobs(hook.settings, now=NOW)}
    assert jobs["prune-events"] == "delete webhook events older than 90 days every 24 h"


@SIGNATURE_ONLY
def test_stats_says_what_is_wrong_in_one_line(hook: Hook) -> None:
    missing = hook.stats("1999-w01")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no issue '1999-w01'")
    assert "Traceback" not in missing.output
    # Without matplotlib (a dependency, but an installation can lose it) --chart says how to install it.
    script = "import sys; sys.modules['matplotlib'] = None; from newsletter.cli import app; app()"
    chart = hook.settings.base_dir / "chart.png"
    run = subprocess.run([sys.executable, "-c", script, "--config", str(hook.config), "stats", "--chart", str(chart)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "SENDGRID_API_KEY": API_KEY})
    assert run.returncode == 2 and not chart.exists()
    assert run.stderr.strip() == "error: --chart needs matplotlib, a dependency missing here: pip install matplotlib"
