"""The SendGrid transport end to end: real `sendgrid` client → the local stand-in, which
validates every request against SendGrid's schema and limits. Each answer SendGrid can
give is played once, and what a reader would get is checked in the recorded requests and
the ledger."""

from __future__ import annotations

import html

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

import subscribers as people
from newsletter import issues
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.sending import SendProgress, SendReport
from newsletter.sending.ledger import ledger_summary
from newsletter.errors import TransportAuthError
from newsletter.ingest import ingest_feeds
from newsletter.models import Batch, Issue, Recipient, RenderedMessage
from newsletter.tables import batches, deliveries
from newsletter.transports.sendgrid import SendGridTransport, mail_body, mail_body_json
from tests.conftest import NOW
from tests.helpers import Item, rss
from tests.sendgrid_standin import Answer, MailRequest, SendGridStandIn, sendgrid_errors
from tests.servers import LocalServer, Route

API_KEY = "SG.test-key-6f1c0e"
ALL = ("drug-development", "manufacturing", "supply-chain", "facilities", "insights", "events", "news")


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    srv = SendGridStandIn(API_KEY)
    srv.start()
    yield srv
    srv.stop()


def sendgrid_settings(make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_url: str, **tables: Any) -> Settings:
    """Settings that send through the stand-in, with the API key from the environment."""
    settings = make_settings(
        feeds=[{"name": "Pharma", "url": feed_url}],
        delivery={"transport": "sendgrid"},
        sendgrid={"api_host": standin.url, **tables.pop("sendgrid", {})},
        **tables,
    )
    return load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})


def feed() -> bytes:
    day = timedelta(days=1)
    return rss([
        Item("FDA approves oral GLP-1", "https://pharma.example.com/a1", NOW - day, ["FDA Approvals"], guid="a1"),
        Item("CDMO doubles capacity", "https://pharma.example.com/a2", NOW - 2 * day, ["Manufacturing"], guid="a2"),
        Item("CPHI highlights", "https://pharma.example.com/a4", NOW - 3 * day, ["Events & Conferences"], guid="a4"),
    ])


def add_readers(engine: Engine, count: int, sections: tuple[str, ...] = ALL, *, start: int = 0, name: str = "Reader") -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn,
            [people.NewSubscriber(f"reader{n}@example.com", sections, name=f"{name}{n} Test") for n in range(start, start + count)],
            now=NOW,
        )


def build(engine: Engine, settings: Settings) -> Issue:
    ingest_feeds(engine, settings, clock=lambda: NOW)
    return issues.build_issue(engine, settings, now=NOW).issue


def two_segments(engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str,
                 **sendgrid: Any) -> tuple[Settings, Issue]:
    """An issue for two readers of drug development and two of manufacturing: two batches."""
    settings = sendgrid_settings(make_settings, standin, feed_server, sendgrid=sendgrid)
    add_readers(engine, 2, ("drug-development",))
    add_readers(engine, 2, ("manufacturing",), start=2)
    return settings, build(engine, settings)


@pytest.fixture
def feed_server(server: LocalServer) -> str:
    server.routes["/feed.xml"] = Route(body=feed(), headers={"content-type": "application/rss+xml"})
    return f"{server.url}/feed.xml"


class Sleeps:
    """Records the waits between retries instead of sleeping through them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def send(engine: Engine, settings: Settings, issue: Issue, *, sleeps: Sleeps | None = None, progress: SendProgress | None = None,
         flags: issues.SendFlags = issues.SendFlags(), after_planning: Callable[[], None] | None = None) -> SendReport:
    transport = issues.make_transport(settings)
    try:
        return issues.send_pending(engine, settings, issue, transport=transport, clock=lambda: NOW, sleep=sleeps or Sleeps(),
                                   progress=progress, flags=flags, after_planning=after_planning)
    finally:
        transport.close()


def ledger(engine: Engine) -> list[tuple[int, str, int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(batches.c.id, batches.c.status, batches.c.status_code, batches.c.message_id, batches.c.error).order_by(batches.c.id)
        )]


def test_one_request_per_batch_with_each_readers_values_and_headers(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server, sendgrid={"asm_group_id": 4242})
    add_readers(engine, 2, ("drug-development",))
    add_readers(engine, 1, ("manufacturing", "events"), start=2)
    issue = build(engine, settings)

    report = send(engine, settings, issue, flags=issues.SendFlags(sandbox=True))

    assert report.recipients_sent == 3 and report.complete and not report.failed_batches
    requests = standin.accepted
    assert len(requests) == 2 and len(standin.mail_requests) == 2
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {API_KEY}"}
    with engine.connect() as conn:
        tokens = {s.email: s.token for s in (people.get_subscriber(conn, f"reader{n}@example.com") for n in range(3))}
        ids = {s.email: s.id for s in (people.get_subscriber(conn, f"reader{n}@example.com") for n in range(3))}
    by_to = {p["to"][0]["email"]: (r, p) for r in requests for p in r.body["personalizations"]}
    assert sorted(by_to) == ["reader0@example.com", "reader1@example.com", "reader2@example.com"]
    request, person = by_to["reader2@example.com"]
    token = tokens["reader2@example.com"]
    assert person["substitutions"] == {
        "%%greeting%%": "Hello Reader2,",
        "%%first_name%%": "Reader2",
        "%%text_greeting%%": "Hello Reader2,",
        "%%text_first_name%%": "Reader2",
        "%%preferences_url%%": f"https://news.example.com/preferences/{token}",
        "%%unsubscribe_url%%": f"https://news.example.com/unsubscribe/{token}",
    }
    assert person["headers"] == {
        "List-Unsubscribe": f"<https://news.example.com/unsubscribe/{token}>, <mailto:news@example.com?subject=unsubscribe-{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert person["custom_args"] == {"subscriber_id": str(ids["reader2@example.com"])}
    body = request.body
    assert body["custom_args"]["issue_id"] == str(issue.id) and body["custom_args"]["issue"] == "2026-w48"
    assert body["categories"] == ["Pharma Weekly", "issue-2026-w48"]
    assert body["asm"] == {"group_id": 4242}
    assert body["headers"] == {"List-Id": "Pharma Weekly <pharma-weekly.example.com>"}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert body["from"] == {"email": "news@example.com", "name": "Pharma Weekly"}
    text, html = body["content"]
    assert text["type"] == "text/plain" and html["type"] == "text/html"
    assert "CDMO doubles capacity" in html["value"] and "CPHI highlights" in html["value"]
    assert "FDA approves" not in html["value"] and "%%unsubscribe_url%%" in html["value"]
    # The other segment went in its own request, with only its own articles.
    other = by_to["reader0@example.com"][0].body
    assert "FDA approves oral GLP-1" in other["content"][1]["value"] and "CDMO" not in other["content"][1]["value"]
    assert {p["to"][0]["email"] for p in other["personalizations"]} == {"reader0@example.com", "reader1@example.com"}

    # The ledger keeps each request's X-Message-Id; the batch id is in the request's custom_args.
    kept = {int(r.body["custom_args"]["batch_id"]): r.message_id for r in requests}
    assert {(b, status, code, mid) for b, status, code, mid, _ in ledger(engine)} == {
        (b, "accepted", 202, mid) for b, mid in kept.items()
    }
    with engine.connect() as conn:
        summary = ledger_summary(conn, issue.id)
    assert (summary["recipients_sent"], summary["recipients_planned"], summary["recipients_skipped"]) == (report.recipients_sent, 0, 0)
    assert send(engine, settings, issue).recipients_sent == 0 and len(standin.mail_requests) == 2


def test_a_segment_of_1000_is_one_request_and_1001_is_two(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 1000, ("drug-development",))
    add_readers(engine, 1001, ("manufacturing",), start=1000)
    issue = build(engine, settings)

    report = send(engine, settings, issue)

    assert report.recipients_sent == 2001 and report.complete
    sizes = sorted(len(r.body["personalizations"]) for r in standin.accepted)
    assert sizes == [1, 1000, 1000]
    for request in standin.accepted:
        addresses = [a.lower() for a in request.recipients]
        assert len(addresses) == len(set(addresses))
    assert set(standin.delivered.values()) == {1} and len(standin.delivered) == 2001


def test_batches_are_claimed_a_round_at_a_time(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    """Batch ids (the order batches are claimed in) go first batch of every segment, then
    second of every segment: one round reads its readers from one stretch of the table."""
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 1001, ("drug-development",))
    add_readers(engine, 1001, ("manufacturing",), start=1001)
    issue = build(engine, settings)

    report = send(engine, settings, issue)

    assert report.recipients_sent == 2002 and report.complete
    with engine.connect() as conn:
        planned = conn.execute(select(batches.c.segment_id, batches.c.recipients).order_by(batches.c.id)).all()
    first, second = planned[0].segment_id, planned[1].segment_id
    assert first != second
    assert [tuple(row) for row in planned] == [(first, 1000), (second, 1000), (first, 1), (second, 1)]
    assert set(standin.delivered.values()) == {1} and len(standin.delivered) == 2002


def test_the_same_address_is_never_twice_in_one_request(standin: SendGridStandIn) -> None:
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>", text="%%greeting%%")
    recipients = tuple(
        Recipient(n, email, {"%%greeting%%": "Hello,"}, f"https://x.example/u/{n}", f"mailto:u@x.example?subject={n}")
        for n, email in enumerate(["a@example.com", "b@example.com", "A@Example.com"])
    )
    batch = Batch(1, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "")
    body = mail_body(batch)
    assert [p["to"][0]["email"] for p in body["personalizations"]] == ["a@example.com", "b@example.com"]

    transport = SendGridTransport(api_key=API_KEY, api_host=standin.url)
    assert transport.send(batch).kind.value == "accepted"
    transport.close()
    # The stand-in holds SendGrid's line: a request naming an address twice is refused.
    body["personalizations"].append({"to": [{"email": "B@example.com"}]})
    assert standin.limits.problems(body, 100) == [
        ("personalizations", "Each email address in the personalization block should be unique; 1 repeated.")
    ]


def test_rate_limit_waits_until_the_reset_time_then_retries(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    import time

    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 3)
    issue = build(engine, settings)
    reset = int(time.time()) + 30
    standin.answer_next(
        Answer(429, {"X-RateLimit-Reset": str(reset)}, sendgrid_errors((None, "too many requests"))),
        Answer(429, {}, sendgrid_errors((None, "too many requests"))),
    )
    sleeps = Sleeps()

    report = send(engine, settings, issue, sleeps=sleeps)

    assert report.recipients_sent == 3 and report.complete
    assert [r.status for r in standin.mail_requests] == [429, 429, 202]
    assert 25 <= sleeps.waits[0] <= 30  # until X-RateLimit-Reset
    assert 0.5 <= sleeps.waits[1] <= 2.0  # no header: backoff with jitter
    assert set(standin.delivered.values()) == {1}


def test_server_errors_timeouts_and_dropped_connections_are_retried(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server, sendgrid={"timeout": 0.5})
    add_readers(engine, 3)
    issue = build(engine, settings)
    standin.answer_next(
        Answer(500, body=sendgrid_errors((None, "internal error"))),
        Answer(503, delay=1.5),  # answered after our timeout: no answer for us
        Answer(drop=True),
        Answer(503),
    )
    sleeps = Sleeps()

    report = send(engine, settings, issue, sleeps=sleeps)

    assert report.recipients_sent == 3 and report.complete
    assert len(sleeps.waits) == 4
    assert [round(w) <= 8 for w in sleeps.waits] == [True] * 4
    assert standin.delivered == Counter({f"reader{n}@example.com": 1 for n in range(3)})


def test_a_timeout_after_sendgrid_took_the_request_mails_that_batch_twice(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    """The known cost of retrying timeouts (see docs/sending.md): SendGrid has
    no idempotency key, so a request it took but answered too late is sent again."""
    settings = sendgrid_settings(make_settings, standin, feed_server, sendgrid={"timeout": 0.5})
    add_readers(engine, 2)
    issue = build(engine, settings)
    standin.answer_next(Answer(202, delay=1.5, accept=True))

    report = send(engine, settings, issue)

    assert report.recipients_sent == 2 and report.complete
    assert standin.delivered == Counter({"reader0@example.com": 2, "reader1@example.com": 2})


def test_a_stop_request_ends_a_retry_wait_and_leaves_the_batch_to_the_next_run(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    """SendGrid says to come back in a minute; meanwhile the run is asked to stop (SIGTERM,
    Ctrl-C, the scheduler): it stops waiting at once, and the batch goes back to planned,
    neither failed nor unknown. The next run sends it, once."""
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 2)
    issue = build(engine, settings)
    standin.answer_next(Answer(429, headers={"X-RateLimit-Reset": str(int(time.time()) + 60)}))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    transport = issues.make_transport(settings)
    started = time.monotonic()
    try:
        report = issues.send_pending(engine, settings, issue, transport=transport, clock=lambda: NOW, stop=stop)
    finally:
        transport.close()

    assert time.monotonic() - started < 5
    assert report.recipients_sent == 0 and not report.complete and not report.failed_batches and not report.unknown_batches
    assert [status for _, status, *_ in ledger(engine)] == ["planned"]
    again = send(engine, settings, issue)
    assert again.recipients_sent == 2 and again.complete
    assert standin.delivered == Counter({"reader0@example.com": 1, "reader1@example.com": 1})


def test_a_batch_that_keeps_failing_is_failed_and_the_run_goes_on(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings, issue = two_segments(engine, make_settings, standin, feed_server, concurrency=1)
    standin.answer_next(*[Answer(500, body=sendgrid_errors((None, "internal error")))] * 5)
    sleeps = Sleeps()

    report = send(engine, settings, issue, sleeps=sleeps)

    assert len(report.failed_batches) == 1 and report.recipients_sent == 2 and not report.complete
    assert "500: internal error" in report.failed_batches[0][1]
    assert len(sleeps.waits) == 4 and sleeps.waits == sorted(sleeps.waits)
    assert [status for _, status, *_ in ledger(engine)] == ["failed", "accepted"]
    # --retry-failed sends only that batch again.
    retried = send(engine, settings, issue, flags=issues.SendFlags(retry_failed=True))
    assert retried.recipients_sent == 2 and retried.complete
    assert set(standin.delivered.values()) == {1} and len(standin.delivered) == 4


@pytest.mark.parametrize("status", [400, 413])
def test_a_rejected_request_is_failed_at_once_with_sendgrids_message(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str, status: int
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 2)
    issue = build(engine, settings)
    standin.answer_next(Answer(status, body=sendgrid_errors(("personalizations.0.to", "Does not contain a valid address."))))

    report = send(engine, settings, issue)

    assert len(standin.mail_requests) == 1 and report.failed_total == 1
    assert report.failed_batches[0][1] == f"{status}: personalizations.0.to: Does not contain a valid address."
    assert ledger(engine)[0][1:3] == ("failed", status)


def test_a_refused_api_key_stops_the_run_and_leaves_the_batch_to_send(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    # One request at a time, so that the refused one is the only one made.
    settings, issue = two_segments(engine, make_settings, standin, feed_server, concurrency=1)
    standin.answer_next(Answer(403, body=sendgrid_errors((None, "access forbidden"))))

    with pytest.raises(TransportAuthError, match="refused the API key .403: access forbidden.; check SENDGRID_API_KEY"):
        send(engine, settings, issue)

    assert len(standin.mail_requests) == 1
    assert [status for _, status, *_ in ledger(engine)] == ["planned", "planned"]
    assert send(engine, settings, issue).recipients_sent == 4


def test_unsubscribes_and_suppressions_after_planning_are_left_out(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 5)
    issue = build(engine, settings)

    def leave_after_planning() -> None:
        """Between planning and the first request, one reader unsubscribes and one bounces."""
        with engine.begin() as conn:
            leaver = people.get_subscriber(conn, "reader1@example.com")
            people.set_status(conn, leaver.id, people.Status.UNSUBSCRIBED, now=NOW)
            people.suppress(conn, "reader3@example.com", reason="bounce", now=NOW)

    report = send(engine, settings, issue, after_planning=leave_after_planning)

    assert report.planned_recipients == 5
    assert report.recipients_sent == 3 and report.recipients_skipped == 2
    assert sorted(standin.delivered) == ["reader0@example.com", "reader2@example.com", "reader4@example.com"]
    with engine.connect() as conn:
        summary = ledger_summary(conn, issue.id)
        assert Counter(conn.execute(select(deliveries.c.status)).scalars()) == Counter({"planned": 3, "skipped": 2})
    assert (summary["recipients_sent"], summary["recipients_planned"], summary["recipients_skipped"]) == (3, 0, 2)


def test_readers_names_reach_sendgrid_exactly_as_stored(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    """A batch's recipients are read back from the database in one piece (as JSON on
    SQLite): every name, however awkward, must arrive as it is stored, and who may no
    longer be mailed must still be told apart."""
    settings = sendgrid_settings(make_settings, standin, feed_server)
    names = ['Zoë "Z" O\'Brien', "Back\\slash Smith", "Émile 🧪 Dupont", "</script> Ng", "%%greeting%% X", "Ann"]
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn, [people.NewSubscriber(f"reader{n}@example.com", ALL, name=name) for n, name in enumerate(names)], now=NOW
        )
    issue = build(engine, settings)

    def bounce_after_planning() -> None:
        with engine.begin() as conn:
            people.suppress(conn, "reader5@example.com", reason="bounce", now=NOW)

    report = send(engine, settings, issue, after_planning=bounce_after_planning)

    assert report.recipients_sent == 5 and report.recipients_skipped == 1
    with engine.connect() as conn:
        stored = {s.email: s for s in (people.get_subscriber(conn, f"reader{n}@example.com") for n in range(len(names)))}
    got = {p["to"][0]["email"]: p for r in standin.accepted for p in r.body["personalizations"]}
    assert sorted(got) == [f"reader{n}@example.com" for n in range(5)]
    for email, person in got.items():
        first = stored[email].name.replace("%", "").split()[0]
        # As stored in the text part; HTML-escaped in the HTML part (trust issue, 1).
        assert person["substitutions"]["%%text_first_name%%"] == first
        assert person["substitutions"]["%%text_greeting%%"] == f"Hello {first},"
        assert person["substitutions"]["%%first_name%%"] == html.escape(first)
        assert person["substitutions"]["%%greeting%%"] == f"Hello {html.escape(first)},"
        assert person["substitutions"]["%%unsubscribe_url%%"] == f"https://news.example.com/unsubscribe/{stored[email].token}"
        assert person["custom_args"] == {"subscriber_id": str(stored[email].id)}
    assert got["reader0@example.com"]["substitutions"]["%%text_first_name%%"] == "Zoë"
    assert got["reader1@example.com"]["substitutions"]["%%first_name%%"] == "Back\\slash"


def test_the_cli_exits_non_zero_on_a_failed_batch_and_shows_the_ledger(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings, issue = two_segments(engine, make_settings, standin, feed_server, concurrency=1)
    standin.answer_next(Answer(400, body=sendgrid_errors(("from.email", "The from address does not match a verified Sender Identity."))))
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(settings.base_dir / "newsletter.toml"), "SENDGRID_API_KEY": API_KEY}

    result = runner.invoke(app, ["-v", "send", "--json"], env=env)

    assert result.exit_code == 1, result.output
    assert "@example.com" not in result.stderr and API_KEY not in result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["failed_batches"][0]["error"] == "400: from.email: The from address does not match a verified Sender Identity."
    assert report["recipients_sent"] == 2 and report["failed_total"] == 1

    status = runner.invoke(app, ["send", "--status", "2026-w48"], env=env)
    assert status.exit_code == 1
    assert "failed" in status.stdout and "The from address does not match a verified Sender Identity." in status.stdout
    as_json = json.loads(runner.invoke(app, ["send", "--status", "2026-w48", "--json"], env=env).stdout)
    assert as_json["counts"]["accepted"] == 1 and as_json["counts"]["failed"] == 1
    assert [b["status"] for b in as_json["batches"]] == ["failed", "accepted"]

    again = runner.invoke(app, ["send", "--retry-failed"], env=env)
    assert again.exit_code == 0, again.output
    assert len(standin.delivered) == 4 and set(standin.delivered.values()) == {1}


def test_the_cli_says_what_is_wrong_in_one_line(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str
) -> None:
    settings = sendgrid_settings(make_settings, standin, feed_server)
    add_readers(engine, 2)
    build(engine, settings)
    config = str(settings.base_dir / "newsletter.toml")
    runner = CliRunner()

    wrong_key = runner.invoke(app, ["send"], env={"NEWSLETTER_CONFIG": config, "SENDGRID_API_KEY": "SG.wrong"})
    assert wrong_key.exit_code == 1
    # One message (Rich wraps it at the width of the test's pseudo-terminal), no traceback.
    assert " ".join(wrong_key.stderr.split()) == (
        f"error: SendGrid at {standin.url} refused the API key (401: The provided authorization grant is invalid, "
        "expired, or revoked); check SENDGRID_API_KEY and that the key may send mail"
    )
    assert "SG.wrong" not in wrong_key.output

    no_key = runner.invoke(app, ["send"], env={"NEWSLETTER_CONFIG": config})
    assert no_key.exit_code == 2 and " ".join(no_key.stderr.split()) == (
        'error: delivery.transport is "sendgrid" but no API key is set: export SENDGRID_API_KEY'
    )
    unknown = runner.invoke(app, ["send", "--status", "1999-w01"], env={"NEWSLETTER_CONFIG": config})
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no issue '1999-w01'")
    if engine.dialect.name == "sqlite":
        worker = runner.invoke(app, ["send", "--worker"], env={"NEWSLETTER_CONFIG": config, "SENDGRID_API_KEY": API_KEY})
        assert worker.exit_code == 2 and "--worker needs PostgreSQL" in worker.stderr
    assert standin.delivered == Counter()


def test_the_demo_delivers_through_the_configured_api_host(
    standin: SendGridStandIn, tmp_path: Path
) -> None:
    runner = CliRunner()
    outbox = runner.invoke(app, ["demo", "--folder", str(tmp_path / "outbox-demo"), "--subscribers", "60", "--json"])
    assert outbox.exit_code == 0, outbox.output
    env = {"NEWSLETTER_DELIVERY__TRANSPORT": "sendgrid", "NEWSLETTER_SENDGRID__API_HOST": standin.url, "SENDGRID_API_KEY": API_KEY}

    result = runner.invoke(app, ["demo", "--folder", str(tmp_path / "sendgrid-demo"), "--subscribers", "60", "--json"], env=env)

    assert result.exit_code == 0, result.output
    by_outbox, by_sendgrid = json.loads(outbox.stdout), json.loads(result.stdout)
    assert by_sendgrid["recipients"] == by_outbox["recipients"] > 0
    assert by_sendgrid["sections"] == by_outbox["sections"] and by_sendgrid["segments"] == by_outbox["segments"]
    assert set(standin.delivered.values()) == {1} and len(standin.delivered) == by_outbox["recipients"]
    sent_by_outbox = {p.stem for p in (tmp_path / "outbox-demo" / "outbox").rglob("*.eml")}
    assert len(sent_by_outbox) == len(standin.delivered)
    assert not list((tmp_path / "sendgrid-demo").glob("outbox/*/*"))
    requests: list[MailRequest] = standin.accepted
    assert {len(r.body["content"]) for r in requests} == {2}


def test_logs_name_ids_never_addresses_tokens_or_the_key(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str,
    caplog: pytest.LogCaptureFixture
) -> None:
    settings, issue = two_segments(engine, make_settings, standin, feed_server, concurrency=1)
    standin.answer_next(
        Answer(500, body=sendgrid_errors((None, "internal error"))),
        Answer(400, body=sendgrid_errors(("personalizations.0.to.0.email", "Does not contain a valid address."))),
    )
    caplog.set_level(logging.DEBUG)

    report = send(engine, settings, issue)

    assert report.failed_total == 1 and report.recipients_sent == 2
    with engine.connect() as conn:
        tokens = [people.get_subscriber(conn, f"reader{n}@example.com").token for n in range(4)]
    logged = caplog.text
    assert "batch 1: 500: internal error; retrying" in logged and "batch 1 of issue 2026-w48 failed" in logged
    assert "@example.com" not in logged and API_KEY not in logged
    assert not any(token in logged for token in tokens)


def test_the_quick_check_of_the_stand_in_counts_and_refuses_repeats() -> None:
    """What the benchmark relies on when it validates only one body in N in full."""
    quick = SendGridStandIn(API_KEY, keep_bodies=False, validate_schema_every=1000)
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>", text="%%greeting%%")
    recipients = tuple(
        Recipient(n, f"r{n}@example.com", {"%%greeting%%": "Hello,"}, f"https://x.example/u/{n}", "mailto:u@x.example")
        for n in range(3)
    )
    raw = mail_body_json(Batch(1, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "")).encode()
    body = json.loads(raw)
    assert quick._check(raw)[0] == 202  # the first body is checked in full
    status, _, _, _, addresses = quick._check(raw)
    assert status == 202 and addresses == ["r0@example.com", "r1@example.com", "r2@example.com"]
    body["personalizations"].append({"to": [{"email": "R1@example.com"}]})
    assert quick._check(json.dumps(body).encode())[0] == 400
    quick.httpd.server_close()


def test_the_request_body_is_the_json_of_what_it_says() -> None:
    """The body is written as JSON text, not built from dicts: every value, however
    awkward, must come out as the same JSON `json.dumps` would give."""
    awkward = ['Zoë "Z" O\'Brien', "back\\slash", "tab\there", "line\nbreak", "emoji 🧪", "</script>", "%%greeting%%", ""]
    message = RenderedMessage(subject="R&D \"weekly\" — 🧪", preheader="", html="<p>%%greeting%% ✓</p>", text="%%first_name%%\n")
    recipients = tuple(
        # A newsletter's recipient has the four tags of `TAGS` (written by one format).
        Recipient(n, f"r{n}@exämple.com", {"%%greeting%%": f"Hello {value},", "%%first_name%%": value,
                                           "%%preferences_url%%": f"https://x.example/p/{value}", "%%unsubscribe_url%%": value},
                  f"https://x.example/u/{n}\"", f"mailto:u@x.example?subject=unsubscribe-{n}")
        for n, value in enumerate(awkward)
    ) + (
        # Tags in another order, more tags, fewer tags, four tags but not those four:
        # each recipient's own values still.
        Recipient(20, "r20@example.com", {"%%first_name%%": "Ann", "%%greeting%%": "Hi Ann,"}, "https://x.example/u/20", "m:20"),
        Recipient(21, "r21@example.com", {"%%first_name%%": "Bo", "%%greeting%%": "Hi,", "%%x%%": "%s%d"}, "u21", "m:21"),
        Recipient(22, "r22@example.com", {}, "u22", "m:22"),
        Recipient(23, "r23@example.com", {"%%greeting%%": "Hey,", "%%first_name%%": "Cy"}, "u23", "m:23"),
        Recipient(24, "r24@example.com", {"%%unsubscribe_url%%": "u%%", "%%preferences_url%%": "p%s", "%%first_name%%": "Di",
                                          "%%greeting%%": "Hi Di,"}, "u24", "m:24"),
        Recipient(25, "r25@example.com", {"%%greeting%%": "Hi,", "%%first_name%%": "Ed", "%%preferences_url%%": "p",
                                          "%%y%%": "%(x)s"}, "u25", "m:25"),
    )
    batch = Batch(9, 4, "2026-w48", 2, message, recipients, "Pharma \"News\"", "news@example.com", "desk@example.com",
                  categories=("Pharma News", "issue-2026-w48"), sandbox=True)
    expected = {
        "personalizations": [
            {
                "to": [{"email": r.email}],
                "substitutions": r.substitutions,
                "headers": {"List-Unsubscribe": f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>",
                            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                "custom_args": {"subscriber_id": str(r.subscriber_id)},
            }
            for r in recipients
        ],
        "from": {"email": "news@example.com", "name": "Pharma \"News\""},
        "subject": message.subject,
        "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}],
        "custom_args": {"issue_id": "4", "batch_id": "9", "issue": "2026-w48"},
        "reply_to": {"email": "desk@example.com"},
        "categories": ["Pharma News", "issue-2026-w48"],
        "asm": {"group_id": 77},
        "mail_settings": {"sandbox_mode": {"enable": True}},
    }
    text = mail_body_json(batch, asm_group_id=77)
    assert json.loads(text) == expected
    assert text.isascii()  # non-ASCII goes as \\u escapes, as json.dumps writes it


def test_a_body_is_sent_as_ready_json_and_as_plain_json_where_the_charset_is_refused() -> None:
    """The body goes as `application/json; charset=utf-8`, which the `sendgrid` client
    passes through as it is. An endpoint that wants exactly `application/json` answers
    415: that batch and every later one are then sent as the client encodes them."""
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>", text="%%greeting%%")

    def batch(batch_id: int) -> Batch:
        recipients = tuple(Recipient(n, f"r{batch_id}-{n}@example.com", {"%%greeting%%": "Hello,"}, "https://x.example/u",
                                     "mailto:u@x.example") for n in range(3))
        return Batch(batch_id, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "")

    for charset_allowed, types in [(True, ["application/json; charset=utf-8"] * 2),
                                   (False, ["application/json; charset=utf-8", "application/json", "application/json"])]:
        strict = SendGridStandIn(API_KEY, charset_allowed=charset_allowed)
        strict.start()
        try:
            transport = SendGridTransport(api_key=API_KEY, api_host=strict.url)
            assert [transport.send(batch(n)).kind.value for n in (1, 2)] == ["accepted", "accepted"]
            transport.close()
            assert [r.headers["content-type"] for r in strict.mail_requests] == types
            assert [r.status for r in strict.mail_requests][-2:] == [202, 202]
            assert sum(strict.delivered.values()) == 6 and len(strict.delivered) == 6
        finally:
            strict.stop()


def test_the_client_formats_a_body_as_a_short_note_not_its_700_kb() -> None:
    """The `sendgrid` client formats every body into a DEBUG line, logged or not; ours
    formats as its size, so that costs nothing, and even a log at DEBUG would hold no
    address or unsubscribe token. The bytes sent are the body itself."""
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>" * 2000, text="%%greeting%%")
    recipients = tuple(Recipient(n, f"reader{n}@example.com", {"%%greeting%%": "Hello,"}, f"https://x.example/u/tok{n}",
                                 "mailto:u@x.example") for n in range(1000))
    batch = Batch(5, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "")
    stand_in = SendGridStandIn(API_KEY)
    stand_in.start()
    records: list[logging.LogRecord] = []
    handled: list[logging.LogRecord] = []

    def see(record: logging.LogRecord) -> bool:
        records.append(record)
        return True

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handled.append(record)

    client_log = logging.getLogger("python_http_client.client")
    level, handler = client_log.level, Keep()
    client_log.setLevel(logging.DEBUG)
    client_log.addHandler(handler)
    # Ahead of the transport's own filter, to see each line as the client formats it.
    client_log.filters.insert(0, see)
    try:
        transport = SendGridTransport(api_key=API_KEY, api_host=stand_in.url)
        assert transport.send(batch).kind.value == "accepted"
        transport.close()
        [request] = stand_in.mail_requests
        assert request.body == mail_body(batch)
    finally:
        client_log.removeFilter(see)
        client_log.removeHandler(handler)
        client_log.setLevel(level)
        stand_in.stop()
    body_bytes = len(mail_body_json(batch).encode())
    [payload] = [r.getMessage() for r in records if r.getMessage().startswith("PAYLOAD")]
    assert payload == f"PAYLOAD: <{body_bytes} bytes of JSON>"
    assert not any("reader1@" in r.getMessage() or "tok1" in r.getMessage() for r in records)
    # And none of its DEBUG lines reaches a handler: the HEADERS line holds the API key.
    assert any(API_KEY in r.getMessage() for r in records) and handled == []


def small_batch(batch_id: int, count: int = 3) -> Batch:
    message = RenderedMessage(subject="Weekly", preheader="", html="<p>%%greeting%%</p>", text="%%greeting%%")
    recipients = tuple(Recipient(n, f"r{batch_id}-{n}@example.com", {"%%greeting%%": "Hello,"}, "https://x.example/u",
                                 "mailto:u@x.example") for n in range(count))
    return Batch(batch_id, 1, "2026-w48", 1, message, recipients, "Weekly", "news@example.com", "")


def test_requests_share_a_connection_and_one_the_server_closed_is_replaced(standin: SendGridStandIn) -> None:
    """One connection carries a thread's requests one after the other. A connection the
    server closed while it was idle (without saying so) is replaced before the next
    request, which is therefore not lost; `close` ends the connections."""
    transport = SendGridTransport(api_key=API_KEY, api_host=standin.url)
    standin.answer_next(Answer(accept=True), Answer(accept=True, hang_up=True))
    assert [transport.send(small_batch(n)).kind.value for n in (1, 2)] == ["accepted", "accepted"]
    assert standin.hung_up.wait(5)
    assert [transport.send(small_batch(n)).kind.value for n in (3, 4)] == ["accepted", "accepted"]
    transport.close()
    assert transport.send(small_batch(5)).kind.value == "accepted"  # a closed transport opens a new one
    transport.close()

    ports = [r.port for r in standin.mail_requests]
    assert [r.status for r in standin.mail_requests] == [202] * 5
    assert ports[0] == ports[1] and ports[2] == ports[3]  # kept
    assert len({ports[1], ports[2], ports[4]}) == 3  # replaced after the hang-up, and after close
    assert sum(standin.delivered.values()) == 15 and len(standin.delivered) == 15


def test_each_sending_thread_has_its_own_connection(standin: SendGridStandIn) -> None:
    transport = SendGridTransport(api_key=API_KEY, api_host=standin.url)
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def sender(first: int) -> None:
        start.wait()
        outcomes.extend(transport.send(small_batch(first + n)).kind.value for n in range(3))

    threads = [threading.Thread(target=sender, args=(n * 10,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transport.close()
    assert outcomes == ["accepted"] * 9
    assert len({r.port for r in standin.mail_requests}) == 3
    assert sum(standin.delivered.values()) == 27 and len(standin.delivered) == 27


def test_behind_a_proxy_the_client_sends_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `https_proxy`/`http_proxy` set, requests go through the proxy as urllib sends
    them (the client's own opener), unless `no_proxy` names the API host."""
    proxy = LocalServer()
    proxy.routes["/v3/mail/send"] = Route(202, b"", headers={"X-Message-Id": "via-proxy"})
    proxy.start()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        # The host does not exist: only the proxy can take the request.
        transport = SendGridTransport(api_key=API_KEY, api_host="http://api.sendgrid.invalid")
        outcome = transport.send(small_batch(1))
        transport.close()
        assert (outcome.kind.value, outcome.message_id) == ("accepted", "via-proxy")
        [request] = proxy.requests
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert json.loads(request.body)["custom_args"]["batch_id"] == "1"
    finally:
        proxy.stop()
    monkeypatch.setenv("no_proxy", "api.sendgrid.invalid")
    assert SendGridTransport(api_key=API_KEY, api_host="http://api.sendgrid.invalid")._connections is not None


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, signed by its own key: (cert, key) files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec as curves
    from cryptography.x509.oid import NameOID

    key = curves.generate_private_key(curves.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_requests_verify_the_certificate_and_keep_the_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over TLS, as against SendGrid: the server's certificate is checked against the
    trusted ones (here one made for the test, trusted through SSL_CERT_FILE), and one
    handshake serves a thread's requests. An untrusted certificate is a failed attempt,
    never a request sent."""
    import ssl

    cert_file, key_file = self_signed(tmp_path)
    server = SendGridStandIn(API_KEY)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.httpd.socket = tls.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    url = f"https://localhost:{server.httpd.server_address[1]}"
    try:
        untrusted = SendGridTransport(api_key=API_KEY, api_host=url)
        refused = untrusted.send(small_batch(1))
        untrusted.close()
        assert refused.kind.value == "retryable" and "CERTIFICATE_VERIFY_FAILED" in refused.error

        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        transport = SendGridTransport(api_key=API_KEY, api_host=url)
        assert [transport.send(small_batch(n)).kind.value for n in (2, 3, 4)] == ["accepted"] * 3
        transport.close()
    finally:
        server.stop()
    assert [r.status for r in server.mail_requests] == [202] * 3
    assert len({r.port for r in server.mail_requests}) == 1
    assert sum(server.delivered.values()) == 9
