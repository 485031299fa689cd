"""The desk's Recall (issue 20): the latest issue sent, while copies of it are not yet due,
is shown in a bar with Recall (and Pause, Resume) buttons that call the same use cases as
`newsletter recall`; over HTTP (httpx over ASGI) through the SendGrid stand-in with
`[delivery] local_time`, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import unescape

import httpx
from sqlalchemy import Engine, update

from newsletter import drafts
from newsletter.config import Settings
from newsletter.models import IssueStatus
from newsletter.tables import batches
from newsletter.web.desk import create_desk_app
from tests.desk_support import Client
from tests.newsletter.test_recall import (  # noqa: F401 - the recall tests' fixtures
    MONDAY_0730, TUESDAY, Clock, clock, feed_url, outbox, sendgrid, sent_issue, standin,
)
from tests.readers import delivery_states, ledger_snapshot
from tests.sendgrid_standin import SendGridStandIn


def desk(settings: Settings, engine: Engine, at: Callable[[], datetime]) -> Client:
    return Client(create_desk_app(settings, engine=engine, clock=at))


def press(client: Client, action: str, issue: str, *, csrf: bool = True, token: str = "") -> httpx.Response:
    """Press a button of the bar, with the CSRF token of the page as drawn now (or `token`)."""
    token = token or (client.tokens()["csrf"] if csrf else "")
    return client.post("/draft", data={**({"csrf": token} if token else {}), "action": action, "issue": issue})


def test_the_recall_button_stops_every_copy_not_yet_due_and_the_ledger_shows_them_recalled(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, city_of = sent_issue(engine, sendgrid)
    clock.at = MONDAY_0730
    client = desk(sendgrid, engine, clock)
    page = unescape(client.get("/").text)
    assert f"Last sent issue: <strong>{issue.slug}</strong>" in page and "4 copies not yet due" in page
    assert 'value="recall"' in page and 'value="pause"' in page

    answer = press(client, "recall", issue.slug)

    assert answer.status_code == 303, answer.text
    page = unescape(client.get(answer.headers["location"]).text)
    assert (f"Recalled 4 deliveries of issue {issue.slug}; 4 already due or delivered could not be stopped." in page)
    # Copies due after 07:40 (London's 08:00, Boston's 13:00) are recalled; Basel and Seoul had theirs.
    states = delivery_states(engine, issue)
    assert {e for e, (status, _) in states.items() if status == "recalled"} == \
        {e for e, c in city_of.items() if c in ("london", "boston")}
    assert {e for e, f in ((e, f) for e, _, f in standin.fates(TUESDAY)) if f == "cancelled"} == \
        {e for e, c in city_of.items() if c in ("london", "boston")}
    draft, log = drafts.draft_log(engine, sendgrid)
    assert draft.issue.status is IssueStatus.APPROVED
    assert (log[0].origin, log[0].action, log[0].detail) == ("desk", "recalled", "4 deliveries stopped, 4 already due or delivered")
    # The issue is approved again, so the bar is gone and the draft shows Reopen.
    assert "Last sent issue" not in page and 'value="reopen"' in page


def test_pause_then_resume_from_the_desk(engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock) -> None:
    issue, _ = sent_issue(engine, sendgrid)
    clock.at = MONDAY_0730
    client = desk(sendgrid, engine, clock)
    before = delivery_states(engine, issue)

    paused = press(client, "pause", issue.slug)
    page = unescape(client.get(paused.headers["location"]).text)

    assert f"Paused 4 deliveries of issue {issue.slug}" in page and "<strong>paused</strong>" in page
    assert 'value="resume"' in page and 'value="pause"' not in page
    assert delivery_states(engine, issue) == before
    resumed = press(client, "resume", issue.slug)
    assert f"Resumed issue {issue.slug}: 4 deliveries held are delivered" in unescape(client.get(resumed.headers["location"]).text)
    assert {fate for _, _, fate in standin.fates(TUESDAY)} == {"delivered"}


def test_a_recall_without_the_csrf_token_is_refused_and_changes_nothing(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, _ = sent_issue(engine, sendgrid)
    clock.at = MONDAY_0730
    before = ledger_snapshot(engine, issue)
    client = desk(sendgrid, engine, clock)

    answer = press(client, "recall", issue.slug, csrf=False)

    assert answer.status_code == 403 and "This form has expired" in unescape(answer.text)
    assert ledger_snapshot(engine, issue) == before
    assert {fate for _, _, fate in standin.fates(TUESDAY)} == {"delivered"}


def test_sendgrid_refusing_shows_its_reason_and_the_ledger_stays(
    engine: Engine, sendgrid: Settings, standin: SendGridStandIn, clock: Clock
) -> None:
    issue, _ = sent_issue(engine, sendgrid)
    before = ledger_snapshot(engine, issue)
    # Our clock says 07:30, SendGrid's that Boston's 13:00 is 5 minutes away.
    clock.at = datetime(2026, 11, 23, 12, 55, tzinfo=MONDAY_0730.tzinfo)

    answer = press(desk(sendgrid, engine, lambda: MONDAY_0730), "recall", issue.slug)

    assert answer.status_code == 409
    assert (f"Not done: issue {issue.slug} was not recalled: SendGrid refused to cancel the send (400: You can't pause or "
            "cancel a batch later than 10 minutes") in unescape(answer.text)
    assert ledger_snapshot(engine, issue) == before


def test_an_issue_sent_through_smtp_shows_why_it_cannot_be_recalled(engine: Engine, outbox: Settings) -> None:
    issue, _ = sent_issue(engine, outbox)
    client = desk(outbox, engine, lambda: MONDAY_0730)
    drawn = client.tokens()["csrf"]  # the page drawn before: its Recall button is pressed below
    with engine.begin() as conn:
        conn.execute(update(batches).where(batches.c.issue_id == issue.id).values(transport="smtp"))
    before = ledger_snapshot(engine, issue)
    page = unescape(client.get("/").text)
    assert "Cannot be recalled: sent through smtp, which cannot recall a message once it is sent." in page
    assert 'value="recall"' not in page

    answer = press(client, "recall", issue.slug, token=drawn)

    assert answer.status_code == 409
    assert f"Not done: issue {issue.slug} was sent through smtp, which cannot recall a message once it is sent." in \
        unescape(answer.text)
    assert ledger_snapshot(engine, issue) == before


def test_the_outbox_recall_and_the_refusals_of_an_unsent_or_unknown_issue(engine: Engine, outbox: Settings) -> None:
    issue, _ = sent_issue(engine, outbox)
    client = desk(outbox, engine, lambda: MONDAY_0730)
    page = unescape(client.get("/").text)
    assert 'value="recall"' in page and 'value="pause"' not in page  # the outbox cannot pause

    assert press(client, "recall", issue.slug).status_code == 303
    answer = press(client, "recall", issue.slug)
    assert answer.status_code == 409 and f"Not done: issue {issue.slug} was recalled already (4 deliveries)" in unescape(answer.text)
    answer = press(client, "recall", "2031-w01")
    assert answer.status_code == 409 and "Not done: no issue '2031-w01'" in unescape(answer.text)
    answer = press(client, "recall", "")
    assert answer.status_code == 400 and "The form names no issue" in unescape(answer.text)
