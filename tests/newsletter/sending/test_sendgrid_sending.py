"""A send through SendGrid from plan to done: batches and their rounds, rate limits,
retries, stop requests, failed and refused batches, the ledger and the logs. The real
`sendgrid` client talks to the local stand-in; each answer SendGrid can give is played once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

import subscribers as people
from newsletter import issues
from newsletter.config import Settings
from newsletter.sending.ledger import ledger_summary
from newsletter.errors import TransportAuthError
from newsletter.tables import batches, deliveries
from tests.conftest import NOW
from tests.sendgrid_standin import Answer, SendGridStandIn, sendgrid_errors
from tests.sendgrid_helpers import API_KEY, Sleeps, add_readers, build, ledger, send, sendgrid_settings, two_segments


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
