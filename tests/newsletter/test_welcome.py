"""The welcome email, as a new reader and an editor meet it: sent once when a subscription
is confirmed (never for a re-confirmation), carrying the latest issue in the reader's
sections or a short note before the first, with a digest's per-recipient headers; a
failure never undoes the confirmation and the retry job sends it later. Through the
outbox and the SendGrid stand-in, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

import subscribers as people
from newsletter import issues, schedule, store
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.models import FeedItem, Issue, IssueStatus
from newsletter.tables import welcomes
from newsletter.web import create_app
from tests.conftest import NOW
from tests.helpers import outbox_messages, parts
from tests.sendgrid_standin import Answer, SendGridStandIn
from tests.newsletter.transports.test_smtp import Relay, relay  # noqa: F401  (a real SMTP server, aiosmtpd)
from tests.newsletter.web.test_web import BASE, SECRET, Client, Site

DAY = timedelta(days=1)
API_KEY = "SG.welcome-test-key"
runner = CliRunner()


def publish_issue(engine: Engine, settings: Settings) -> Issue:
    """An issue with an Insights and a Drug Development article, sent (to nobody)."""
    with engine.begin() as conn:
        store.upsert_articles(conn, [
            FeedItem("i1", "https://p.example.com/insight", "Why biosimilars win in Europe", "Ann Writer", NOW - DAY,
                     ("Insights",), "An insight worth reading.", ""),
            FeedItem("d1", "https://p.example.com/drug", "FDA approves oral GLP-1", "", NOW - 2 * DAY,
                     ("FDA Approvals",), "A drug story.", ""),
        ], source="t", now=NOW)
    issue = issues.build_issue(engine, settings, now=NOW).issue
    with engine.begin() as conn:
        store.set_issue_status(conn, issue.id, IssueStatus.SENT, now=NOW)
    return issue


def welcome_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(welcomes).order_by(welcomes.c.id)))


def welcome_mails(settings: Settings) -> list[EmailMessage]:
    return outbox_messages(settings.outbox_dir / "welcome")


def app_site(engine: Engine, settings: Settings) -> Site:
    site = Site(client=None, engine=engine, settings=settings)  # type: ignore[arg-type]
    site.client = Client(create_app(settings, engine=engine, clock=lambda: site.now[0],
                                    monotonic=lambda: site.seconds[0]), base_url=BASE)
    return site


@pytest.fixture
def welcome_site(engine: Engine, make_settings: Callable[..., Settings]) -> Site:
    return app_site(engine, make_settings(security={"secret_key": SECRET}))


def confirm(site: Site, email: str, sections: list[str]) -> str:
    """Subscribe through the form and follow the confirmation link; returns the token."""
    assert site.subscribe(email, sections).status_code == 200
    token = site.subscriber(email).token
    answer = site.client.get(f"/confirm/{token}")
    assert answer.status_code == 200 and "You are subscribed" in answer.text
    return token


def test_a_confirmed_reader_is_welcomed_once_with_the_latest_issue_in_their_sections(welcome_site: Site) -> None:
    site = welcome_site
    issue = publish_issue(site.engine, site.settings)
    token = confirm(site, "ann@example.com", ["insights"])

    (mail,) = welcome_mails(site.settings)
    assert mail["To"] == "ann@example.com" and mail["Subject"] == "Welcome to Pharma Weekly"
    # The per-recipient headers of a digest: one-click unsubscribe and the list's id.
    assert f"<{BASE}/unsubscribe/{token}>" in mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Id"] == "Pharma Weekly <pharma-weekly.example.com>"
    text, html = parts(mail)
    assert "Hello Ann," in text and "Welcome to Pharma Weekly: your subscription is confirmed, with Insights." in text
    assert "Why biosimilars win in Europe" in text and "Why biosimilars win in Europe" in html
    assert "FDA approves oral GLP-1" not in text + html, "a section the reader did not choose"
    assert f"{BASE}/preferences/{token}" in text and f"{BASE}/unsubscribe/{token}" in html
    assert f"{BASE}/archive/{issue.slug}" in text and "%%" not in text + html and not re.search(r"<mj-", html)
    (row,) = welcome_rows(site.engine)
    assert (row.status, row.attempts, row.issue_id, row.error) == ("sent", 1, issue.id, "")

    # Following the link again, or leaving and confirming a new subscription: no second welcome.
    assert "already confirmed" in site.client.get(f"/confirm/{token}").text
    assert site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    confirm(site, "ann@example.com", ["insights", "events"])
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE
    assert len(welcome_mails(site.settings)) == 1 and len(welcome_rows(site.engine)) == 1


def test_before_the_first_issue_the_welcome_is_a_short_note(welcome_site: Site) -> None:
    confirm(welcome_site, "bo@example.com", ["events", "news"])
    (mail,) = welcome_mails(welcome_site.settings)
    text, html = parts(mail)
    assert "Our first issue is being prepared" in text and "Our first issue is being prepared" in html
    assert "with Events, News." in text and "IN THIS ISSUE" not in text and "TOP STORY" not in text
    (row,) = welcome_rows(welcome_site.engine)
    assert (row.status, row.issue_id) == ("sent", None)


def test_with_the_welcome_switched_off_nothing_is_recorded_or_sent(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    site = app_site(engine, make_settings(security={"secret_key": SECRET}, welcome={"enabled": False}))
    confirm(site, "cy@example.com", ["news"])
    assert welcome_rows(engine) == [] and not (site.settings.outbox_dir / "welcome").exists()


def test_a_failed_welcome_keeps_the_confirmation_shows_in_stats_and_the_retry_job_sends_it(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # An outbox that cannot be written: a file stands where its folder should be.
    blocked = tmp_path / "blocked-outbox"
    blocked.write_text("not a folder")
    settings = make_settings(security={"secret_key": SECRET}, delivery={"outbox_dir": str(blocked)},
                             welcome={"subject": "Hello from {site}"})
    site = app_site(engine, settings)
    publish_issue(engine, settings)
    confirm(site, "dee@example.com", ["insights"])
    assert site.subscriber("dee@example.com").status is people.Status.ACTIVE
    (row,) = welcome_rows(engine)
    assert (row.status, row.attempts) == ("failed", 1) and "cannot write" in row.error

    result = runner.invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "stats"], env={"COLUMNS": "200"})
    assert "Welcome emails: 0 sent, 1 failed (1 to be tried again), 0 pending." in result.output

    blocked.unlink()
    report = schedule.run_welcomes(engine, settings, clock=lambda: NOW + timedelta(minutes=30))
    assert (report.sent, report.failed) == (1, 0)
    (mail,) = welcome_mails(settings)
    assert mail["To"] == "dee@example.com" and mail["Subject"] == "Hello from Pharma Weekly"
    (row,) = welcome_rows(engine)
    assert (row.status, row.attempts, row.error) == ("sent", 2, "")
    # Nothing is due any more: a second run sends nothing.
    assert schedule.run_welcomes(engine, settings).sent == 0 and len(welcome_mails(settings)) == 1
    result = runner.invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "stats", "--json"])
    assert '"welcomes": {' in result.output and '"sent": 1' in result.output


def test_a_reader_who_leaves_before_the_retry_is_not_welcomed(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked-outbox"
    blocked.write_text("not a folder")
    settings = make_settings(security={"secret_key": SECRET}, delivery={"outbox_dir": str(blocked)})
    site = app_site(engine, settings)
    token = confirm(site, "eve@example.com", ["news"])
    site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    blocked.unlink()
    assert schedule.run_welcomes(engine, settings).skipped == 1
    assert welcome_mails(settings) == [] and welcome_rows(engine)[0].status == "skipped"


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    server = SendGridStandIn(API_KEY)
    server.start()
    yield server
    server.stop()


def test_through_sendgrid_a_refused_welcome_is_retried_and_the_request_fits_the_schema(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn
) -> None:
    made = make_settings(security={"secret_key": SECRET}, delivery={"transport": "sendgrid"},
                         sendgrid={"api_host": standin.url, "verify": False})
    settings = load_settings(made.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})
    site = app_site(engine, settings)
    publish_issue(engine, settings)
    assert site.subscribe("fay@example.com", ["drug-development"]).status_code == 200
    token = site.subscriber("fay@example.com").token
    # SendGrid has a bad moment as the welcome goes: the confirmation stands all the same.
    standin.answer_next(Answer(status=500))
    assert "You are subscribed" in site.client.get(f"/confirm/{token}").text
    assert site.subscriber("fay@example.com").status is people.Status.ACTIVE
    (row,) = welcome_rows(engine)
    assert row.status == "failed" and row.attempts == 1

    assert schedule.run_welcomes(engine, settings).sent == 1
    welcome_request = standin.accepted[-1]
    body = welcome_request.body
    (personalization,) = body["personalizations"]
    assert [to["email"] for to in personalization["to"]] == ["fay@example.com"]
    assert personalization["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"{BASE}/unsubscribe/{token}" in personalization["headers"]["List-Unsubscribe"]
    assert body["headers"]["List-Id"] == "Pharma Weekly <pharma-weekly.example.com>"
    assert body["subject"] == "Welcome to Pharma Weekly" and "welcome" in body["categories"]
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    assert "FDA approves oral GLP-1" in html and "Why biosimilars win in Europe" not in html
    assert welcome_rows(engine)[0].status == "sent"


def test_an_editor_can_send_the_welcome_as_a_test(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    publish_issue(engine, settings)
    config = str(settings.base_dir / "newsletter.toml")
    result = runner.invoke(app, ["--config", config, "draft", "test", "--welcome", "--sections", "insights",
                                 "--to", "editor@example.com"])
    assert result.exit_code == 0, result.output
    assert "Test sent to editor@example.com." in result.output
    (mail,) = outbox_messages(settings.outbox_dir / "welcome-test")
    assert mail["Subject"] == "[TEST] Welcome to Pharma Weekly" and mail["List-Unsubscribe-Post"]
    text, _ = parts(mail)
    assert "Hello Editor," in text and "Why biosimilars win in Europe" in text and "FDA approves" not in text
    assert welcome_rows(engine) == [], "a test is not a reader's welcome"
    bad = runner.invoke(app, ["--config", config, "draft", "test", "--welcome", "--sections", "sport"])
    assert bad.exit_code == 2 and "--sections: unknown section 'sport'" in bad.output


def test_spamassassin_gives_the_welcome_no_points_the_sender_controls(
    welcome_site: Site, tmp_path: Path
) -> None:
    from tests.newsletter.test_email_checks import assert_no_sender_points

    if shutil.which("spamassassin") is None:
        pytest.skip("Debian's spamassassin is not installed (.ci/run installs it)")
    publish_issue(welcome_site.engine, welcome_site.settings)
    confirm(welcome_site, "ann@example.com", ["insights", "drug-development"])
    (path,) = sorted((welcome_site.settings.outbox_dir / "welcome").rglob("*.eml"))
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")
    assert_no_sender_points(path, prefs)


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
@pytest.mark.parametrize("latest", [True, False], ids=["latest-issue", "note"])
def test_in_chromium_the_welcome_fits_375_and_600_px(
    engine: Engine, make_settings: Callable[..., Settings], latest: bool
) -> None:
    from playwright.sync_api import sync_playwright

    from newsletter import drafts, welcome

    settings = make_settings()
    if latest:
        publish_issue(engine, settings)
    with engine.connect() as conn:
        content = welcome.latest_content(conn, settings)
    message = welcome.welcome_message(issues.make_renderer(settings), settings, content, ("insights", "events"))
    html = drafts.sample_message(message, settings).html
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            for width in (600, 375):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.route("https://**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load")
                assert page.evaluate("() => document.documentElement.scrollWidth") <= width
                shown = page.inner_text("body")
                assert "Hello Editor," in shown and "Welcome to Pharma Weekly" in shown
                assert ("Why biosimilars win in Europe" in shown) is latest
                assert ("Our first issue is being prepared" in shown) is not latest
                page.close()
        finally:
            browser.close()


def test_through_smtp_a_refused_reader_is_kept_failed_and_sent_once_the_relay_takes_them(
    engine: Engine, make_settings: Callable[..., Settings], relay: tuple[Relay, int]
) -> None:
    handler, port = relay
    settings = make_settings(security={"secret_key": SECRET}, delivery={"transport": "smtp"},
                             smtp={"host": "127.0.0.1", "port": port, "tls": "none"})
    site = app_site(engine, settings)
    publish_issue(engine, settings)
    assert site.subscribe("gil@example.com", ["insights"]).status_code == 200
    token = site.subscriber("gil@example.com").token
    handler.refuse["gil@example.com"] = "450 4.2.1 mailbox busy, try later"
    assert "You are subscribed" in site.client.get(f"/confirm/{token}").text
    (row,) = welcome_rows(engine)
    assert row.status == "failed" and "mailbox busy" in row.error

    del handler.refuse["gil@example.com"]
    assert schedule.run_welcomes(engine, settings).sent == 1
    welcomes_received = [m for _, _, m in handler.received if b"Subject: =?utf-8?q?Welcome_to_Pharma_Weekly?=" in m]
    assert len(welcomes_received) == 1
    message = welcomes_received[0].decode()
    assert f"<{BASE}/unsubscribe/{token}>" in message and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in message
    assert "List-Id: Pharma Weekly <pharma-weekly.example.com>" in message
    assert welcome_rows(engine)[0].status == "sent"


def test_the_editors_preview_shows_the_welcome_of_a_segment(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    from newsletter.web.desk import create_desk_app

    settings = make_settings()
    client = Client(create_desk_app(settings, engine=engine), base_url="http://127.0.0.1:8100")
    note = client.get("/welcome?sections=insights")
    assert note.status_code == 200 and "Our first issue is being prepared" in note.text
    assert note.headers["content-security-policy"].startswith("default-src 'none'")
    publish_issue(engine, settings)
    html = client.get("/welcome?sections=insights").text
    assert "Why biosimilars win in Europe" in html and "FDA approves oral GLP-1" not in html
    text = client.get("/welcome?sections=drug-development&kind=text").text
    assert "Hello Editor," in text and "FDA approves oral GLP-1" in text and "Why biosimilars" not in text
    # The next draft's page links to it, with the segment shown.
    from newsletter import drafts

    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("e2", "https://p.example.com/event", "CPHI opens", "", NOW + 6 * DAY,
                                              ("Events",), "", "")], source="t", now=NOW + 6 * DAY)
    drafts.build_draft(engine, settings, now=NOW + 7 * DAY)
    assert 'href="/welcome?sections=' in client.get("/").text


def test_a_reader_who_confirmed_before_the_welcome_existed_is_not_welcomed_on_coming_back(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    before = app_site(engine, make_settings(security={"secret_key": SECRET}, welcome={"enabled": False}))
    token = confirm(before, "hal@example.com", ["news"])
    before.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    site = app_site(engine, make_settings(security={"secret_key": SECRET}))
    confirm(site, "hal@example.com", ["news"])
    assert site.subscriber("hal@example.com").status is people.Status.ACTIVE
    assert welcome_rows(engine) == [] and welcome_mails(site.settings) == []
    # A reader new since then is welcomed as usual.
    confirm(site, "ida@example.com", ["news"])
    assert [m["To"] for m in welcome_mails(site.settings)] == ["ida@example.com"]


def test_the_preflight_warns_when_the_welcome_would_not_render_with_the_issue(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from newsletter import drafts

    folder = tmp_path / "mine" / "email"
    folder.mkdir(parents=True)
    settings = make_settings(templates={"folder": str(folder.parent)})
    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("i1", "https://p.example.com/insight", "Why biosimilars win", "", NOW - DAY,
                                              ("Insights",), "An insight.", "")], source="t", now=NOW)
    drafts.build_draft(engine, settings, now=NOW)
    _, report = drafts.check_draft(engine, settings)
    assert report.passed and not [f for f in report.findings if f.check == "welcome"]

    (folder / "welcome.mjml.j2").write_text('{% extends "email/digest.mjml.j2" %}{% block greeting %}{{ oops.name }}{% endblock %}')
    _, report = drafts.check_draft(engine, settings)
    (finding,) = [f for f in report.findings if f.check == "welcome"]
    assert finding.level == "warning" and "the welcome email cannot be rendered with this issue" in finding.message
    assert "'oops' is undefined" in finding.message and report.passed, "the digest does not wait for the welcome"
