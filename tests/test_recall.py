"""Recall (issue 20, part 3), on SQLite and PostgreSQL, through the SendGrid stand-in (its
scheduled sends play SendGrid's rules) and the outbox: a recall stops every copy not yet
due, a corrected issue reaches exactly the recalled readers, a crash between SendGrid's
acceptance and our ledger is settled by the next run, and every refusal leaves the ledger
as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from newsletter import issues
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import IssueError, RecallError, RecallRefusedError
from newsletter.models import Issue, IssueStatus
from newsletter.sending.ledger import ledger_summary
from newsletter.tables import archive, batches, recalls
from newsletter.transports.sendgrid.scheduled import ScheduledSends
from tests.helpers import outbox_messages
from tests.readers import (
    EIGHT_AM,
    SUNDAY_EVENING,
    add_zoned_readers,
    build_issue,
    correct_and_approve,
    delivery_states,
    ledger_snapshot,
    send_at,
)
from tests.sendgrid_standin import SendGridStandIn
from tests.servers import LocalServer, Route
from tests.test_sendgrid import API_KEY, feed

#: Monday 07:30 in London: the editor spots the error.
MONDAY_0730 = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)
TUESDAY = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    """The stand-in's time, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(SUNDAY_EVENING)


@pytest.fixture
def standin(clock: Clock) -> Iterator[SendGridStandIn]:
    srv = SendGridStandIn(API_KEY, clock=clock)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def feed_url(server: LocalServer) -> str:
    server.routes["/feed.xml"] = Route(body=feed(), headers={"content-type": "application/rss+xml"})
    return f"{server.url}/feed.xml"


@pytest.fixture
def sendgrid(make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_url: str) -> Settings:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"transport": "sendgrid", "local_time": "08:00"},
                             sendgrid={"api_host": standin.url})
    return load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})


@pytest.fixture
def outbox(make_settings: Callable[..., Settings], feed_url: str, tmp_path: Path) -> Settings:
    return make_settings(feeds=[{"name": "Pharma", "url": feed_url}],
                         delivery={"outbox_dir": str(tmp_path / "outbox"), "local_time": "08:00"})


def recall(engine: Engine, settings: Settings, issue: Issue, at: datetime, action: str = "cancel") -> issues.RecallReport:
    transport = issues.make_transport(settings)
    try:
        plan = issues.plan_recall(engine, issue, transport=transport, action=action, now=at)
        return issues.recall_issue(engine, plan, transport=transport, now=at)
    finally:
        transport.close()


def sent_issue(engine: Engine, settings: Settings) -> tuple[Issue, dict[str, str]]:
    """Eight readers in four zones, sent Sunday evening for their Monday 08:00."""
    city_of = add_zoned_readers(engine)
    issue = build_issue(engine, settings)
    assert send_at(engine, settings, issue, SUNDAY_EVENING).recipients_sent == 8
    return issue, city_of


def copies_by_reader(standin: SendGridStandIn, at: datetime) -> dict[str, list[tuple[str, str]]]:
    """Each reader's copies at `at`: (subject, fate)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for email, subject, fate in standin.fates(at):
        found.setdefault(email, []).append((subject, fate))
    return found


def test_a_recall_before_the_10_minute_mark_stops_every_delivery(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, city_of = sent_issue(engine, sendgrid)
    clock.at = SUNDAY_EVENING + timedelta(hours=1)

    report = recall(engine, sendgrid, issue, clock.at)

    assert (report.recalled, report.due) == (8, 0)
    assert {fate for _, _, fate in standin.fates(TUESDAY)} == {"cancelled"}
    assert {status for status, _ in delivery_states(engine, issue).values()} == {"recalled"}
    with engine.connect() as conn:
        summary = ledger_summary(conn, issue.id)
        assert (summary["recipients_sent"], summary["recipients_recalled"]) == (0, 8)
        found = issues.store.find_issue(conn, issue.id)
        assert found is not None and found.status is IssueStatus.APPROVED and found.provider_batch_id is None
        [(action, state)] = conn.execute(select(recalls.c.action, recalls.c.state)).all()
        assert (action, state) == ("cancel", "done")
    with pytest.raises(RecallError, match=f"issue {issue.slug} was recalled already .8 deliveries.: reopen the draft"):
        recall(engine, sendgrid, issue, clock.at)


def test_recalled_at_0730_london_and_resent_corrected_the_recalled_readers_get_it_once(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, city_of = sent_issue(engine, sendgrid)
    first_batch = {r.body["batch_id"] for r in standin.accepted}
    clock.at = MONDAY_0730

    report = recall(engine, sendgrid, issue, MONDAY_0730)

    # Seoul (Sunday 23:00 UTC) and Basel (07:00 UTC) have it; London (08:00) and Boston
    # (13:00) are stopped.
    stopped = {e for e, c in city_of.items() if c in ("london", "boston")}
    assert (report.recalled, report.due) == (4, 4)
    assert {e for e, (status, _) in delivery_states(engine, issue).items() if status == "recalled"} == stopped

    corrected = correct_and_approve(engine, sendgrid, "Pharma Weekly: corrected")
    clock.at = MONDAY_0730 + timedelta(minutes=5)
    resent = send_at(engine, sendgrid, corrected, clock.at)

    assert resent.recipients_sent == 4 and resent.complete
    new_requests = [r for r in standin.accepted if r.body["batch_id"] not in first_batch]
    assert len({r.body["batch_id"] for r in new_requests}) == 1
    assert {p["to"][0]["email"] for r in new_requests for p in r.body["personalizations"]} == stopped
    # London's is still today's 08:00, Boston's its 08:00 too.
    assert {p["to"][0]["email"]: p["send_at"] for r in new_requests for p in r.body["personalizations"]} == {
        e: int(EIGHT_AM[city_of[e]].timestamp()) for e in stopped}
    # Tuesday: every reader has exactly one copy; the recalled readers the corrected one.
    for email, copies in copies_by_reader(standin, TUESDAY).items():
        delivered = [subject for subject, fate in copies if fate == "delivered"]
        assert len(delivered) == 1, (email, copies)
        assert (delivered[0] == "Pharma Weekly: corrected") == (email in stopped)
    with engine.connect() as conn:
        done = issues.store.find_issue(conn, issue.id)
        assert done is not None and done.status is IssueStatus.SENT
        assert ledger_summary(conn, issue.id)["recipients_sent"] == 8
    # The web version is the corrected one, and the ledger shows who got which by hour.
    with engine.connect() as conn:
        assert conn.execute(select(archive.c.subject).where(archive.c.issue_id == issue.id)).scalar_one() == "Pharma Weekly: corrected"
    code, output = run(sendgrid, "send", "--status", issue.slug)
    assert code == 0, output
    hours = output.split("Deliveries by hour")[1]
    assert "2026-11-23 08:00 UTC" in hours and "recalled" not in hours


def test_pause_holds_the_copies_not_yet_due_and_resume_delivers_them(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, city_of = sent_issue(engine, sendgrid)
    clock.at = MONDAY_0730
    before = delivery_states(engine, issue)

    paused = recall(engine, sendgrid, issue, MONDAY_0730, action="pause")

    assert (paused.action, paused.recalled, paused.due) == ("pause", 4, 4)
    at_nine = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    fates = {email: fate for email, _, fate in standin.fates(at_nine)}
    assert {e for e, f in fates.items() if f == "paused"} == {e for e, c in city_of.items() if c in ("london", "boston")}
    assert delivery_states(engine, issue) == before
    with pytest.raises(RecallError, match=f"issue {issue.slug} is paused already"):
        recall(engine, sendgrid, issue, MONDAY_0730, action="pause")

    clock.at = at_nine
    transport = issues.make_transport(sendgrid)
    resumed = issues.resume_issue(engine, issue, transport=transport, now=at_nine)
    transport.close()

    assert resumed.action == "resume"
    fates = {email: fate for email, _, fate in standin.fates(at_nine)}
    assert [city_of[e] for e, f in sorted(fates.items()) if f != "delivered"] == ["boston", "boston"]
    assert {fate for _, _, fate in standin.fates(TUESDAY)} == {"delivered"}
    with pytest.raises(RecallError, match=f"issue {issue.slug} is not paused: nothing to resume"):
        issues.resume_issue(engine, issue, transport=issues.make_transport(sendgrid), now=at_nine)


def test_sendgrid_refusing_a_late_cancel_leaves_the_ledger_as_it_was(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, _ = sent_issue(engine, sendgrid)
    before = ledger_snapshot(engine, issue)
    # Our clock says 07:30, SendGrid's that Boston's 13:00 is 5 minutes away.
    clock.at = datetime(2026, 11, 23, 12, 55, tzinfo=UTC)

    with pytest.raises(RecallRefusedError, match=f"issue {issue.slug} was not recalled: SendGrid refused to cancel the send "
                                                 r"\(400: You can't pause or cancel a batch later than 10 minutes"):
        recall(engine, sendgrid, issue, MONDAY_0730)

    assert ledger_snapshot(engine, issue) == before
    assert {fate for _, _, fate in standin.fates(TUESDAY)} == {"delivered"}


def test_sendgrid_refusing_an_eleventh_held_batch_leaves_the_ledger_as_it_was(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, _ = sent_issue(engine, sendgrid)
    transport = issues.make_transport(sendgrid)
    others = ScheduledSends(transport._client, standin.url)  # type: ignore[attr-defined]
    for _ in range(10):
        others.hold(others.create_batch_id(), "cancel")
    transport.close()
    before = ledger_snapshot(engine, issue)
    clock.at = MONDAY_0730

    with pytest.raises(RecallRefusedError, match="can't pause or cancel more than 10 different batches at one time"):
        recall(engine, sendgrid, issue, MONDAY_0730)

    assert ledger_snapshot(engine, issue) == before


@pytest.mark.parametrize("settle_with", ["recall", "send"])
def test_a_crash_after_sendgrid_took_the_cancel_is_settled_by_the_next_run(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock, settle_with: str
) -> None:
    # A real `newsletter recall` process is killed while SendGrid's answer is on its way:
    # it runs on real time, so the stand-in and the send do too.
    clock.at = datetime.now(UTC)
    add_zoned_readers(engine)
    issue = build_issue(engine, sendgrid)
    send_at(engine, sendgrid, issue, clock.at)
    standin.hold_delay = 30.0
    env = {**os.environ, "SENDGRID_API_KEY": API_KEY}
    log = sendgrid.base_dir / "recall.log"
    with log.open("wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(sendgrid.base_dir / "newsletter.toml"),
                                  "recall", issue.slug], env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            taken = standin.hold_taken.wait(60)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert taken, log.read_text()
    standin.hold_delay = 0.0
    with engine.connect() as conn:
        assert conn.execute(select(recalls.c.state)).scalars().all() == ["asked"]
    assert {status for status, _ in delivery_states(engine, issue).values()} == {"planned"}

    now = clock.at = datetime.now(UTC)
    if settle_with == "recall":
        report = recall(engine, sendgrid, issue, now)
        assert report.settled_earlier
    else:
        with pytest.raises(IssueError, match=f"issue {issue.slug}: an interrupted recall was finished now"):
            send_at(engine, sendgrid, issue, now)

    # The ledger agrees with SendGrid: the copies it cancelled are recalled, no more.
    cancelled = {email for email, _, fate in standin.fates(now + timedelta(days=2)) if fate == "cancelled"}
    states = delivery_states(engine, issue)
    assert cancelled and {e for e, (s, _) in states.items() if s == "recalled"} == cancelled
    with engine.connect() as conn:
        assert conn.execute(select(recalls.c.state)).scalars().all() == ["done"]
    assert [a for a in standin.api_requests if a[0] == "POST" and a[1] == "/v3/user/scheduled_sends"] == [
        ("POST", "/v3/user/scheduled_sends", 201)]


def test_the_outbox_moves_what_is_not_yet_due_to_recalled_and_the_resend_writes_it_corrected(
    engine: Engine, outbox: Settings, tmp_path: Path
) -> None:
    issue, city_of = sent_issue(engine, outbox)
    folder = tmp_path / "outbox" / issue.slug

    report = recall(engine, outbox, issue, MONDAY_0730)

    assert (report.recalled, report.due) == (4, 4)
    recalled = {str(m["To"]) for m in outbox_messages(folder / "recalled")}
    assert recalled == {e for e, c in city_of.items() if c in ("london", "boston")}
    kept = [m for m in outbox_messages(folder) if str(m["To"]) not in recalled]
    assert {city_of[str(m["To"])] for m in kept} == {"seoul", "basel"}

    corrected = correct_and_approve(engine, outbox, "Pharma Weekly: corrected")
    send_at(engine, outbox, corrected, MONDAY_0730 + timedelta(minutes=5))

    # Outside `recalled/`: every reader once, the recalled ones corrected.
    outside = [read_message(p) for p in folder.rglob("*.eml") if "recalled" not in p.relative_to(folder).parts]
    assert Counter(str(m["To"]) for m in outside) == Counter(city_of.keys())
    assert {str(m["To"]) for m in outside if str(m["Subject"]) == "Pharma Weekly: corrected"} == recalled


def read_message(path: Path) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())  # type: ignore[return-value]


def run(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_recall_refuses_an_issue_never_sent_fully_delivered_or_sent_by_smtp(
    engine: Engine, outbox: Settings, make_settings: Callable[..., Settings], feed_url: str, tmp_path: Path
) -> None:
    add_zoned_readers(engine, per_zone=1)
    issue = build_issue(engine, outbox)

    code, output = run(outbox, "recall", issue.slug)
    assert code == 1 and f"error: issue {issue.slug} was never sent: nothing to recall" in output

    send_at(engine, outbox, issue, SUNDAY_EVENING)
    before = ledger_snapshot(engine, issue)
    # Run on today's clock, long after that Monday: everything is delivered.
    code, output = run(outbox, "recall", issue.slug)
    assert code == 1 and f"error: issue {issue.slug}: all 4 deliveries are already due or delivered (the last at " in output
    code, output = run(outbox, "recall", issue.slug, "--pause")
    assert code == 1 and f"error: issue {issue.slug}: the outbox transport cannot pause a send" in output
    code, output = run(outbox, "resume", issue.slug)
    assert code == 1 and f"error: issue {issue.slug} is not paused: nothing to resume" in output
    assert ledger_snapshot(engine, issue) == before

    # The same ledger, as an SMTP relay would have left it.
    with engine.begin() as conn:
        conn.execute(update(batches).where(batches.c.issue_id == issue.id).values(transport="smtp"))
    smtp = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"transport": "smtp"})
    code, output = run(smtp, "recall", issue.slug)
    assert code == 1 and f"error: issue {issue.slug} was sent through smtp, which cannot recall a message once it is sent" in output


def test_the_cli_says_what_cannot_be_stopped_before_it_recalls(engine: Engine, outbox: Settings, tmp_path: Path) -> None:
    city_of = add_zoned_readers(engine)
    issue = build_issue(engine, outbox)
    now = datetime.now(UTC)
    send_at(engine, outbox, issue, now)
    later = sum(1 for _, at in delivery_states(engine, issue).values() if at is not None and at > now + timedelta(minutes=1))

    code, output = run(outbox, "recall", issue.slug)

    assert code == 0, output
    lines = output.splitlines()
    cannot = next(i for i, line in enumerate(lines) if "cannot be stopped" in line)
    asking = next(i for i, line in enumerate(lines) if line.startswith("Asking outbox to cancel"))
    assert cannot < asking
    assert f"Recalled {later:,} deliveries of issue {issue.slug}" in output
    assert len(list((tmp_path / "outbox" / issue.slug / "recalled").rglob("*.eml"))) == later == len(city_of)
