"""Trust at the edges: what a stranger sends never reaches a reader as markup or as a
header, a suppressed or erased address is never created or mailed again, content never
becomes a template, and the subscribe form's answer does not wait for the database.

Each test names the bad input of the trust issue it answers (its part in brackets)."""

from __future__ import annotations

import html as htmllib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text, update
from typer.testing import CliRunner

import subscribers as people
from newsletter import db, drafts, issues, store
from newsletter.cli import app as cli_app
from newsletter.config import Settings, load_settings
from newsletter.errors import EditError
from newsletter.models import FeedItem
from newsletter.web import create_app
from tests.conftest import NOW
from tests.helpers import outbox_messages, parts, wait_until_healthy
from tests.sendgrid_standin import SendGridStandIn
from tests.newsletter.web.test_browser import free_port
from tests.sendgrid_helpers import API_KEY
from tests.newsletter.web.test_web import BASE, SECRET, Client, link_token

HOSTILE = "<a href=https://phish.example/login><b>URGENT: verify</b></a>"
INJECTION = "Eve\r\nBcc: x@evil.example"
TEMPLATE_TITLE = "Template {{ 7*7 }} %%nosuchtag%%"
ZWSP = "\u200b"
runner = CliRunner()


def add_articles(engine: Engine, *, title: str = "FDA approves oral GLP-1") -> None:
    when = NOW - timedelta(days=1)
    items = [
        FeedItem("a1", "https://pharma.example.com/a1", title, "", when, ("FDA Approvals",), "Summary of the approval.", ""),
        FeedItem("a2", "https://pharma.example.com/a2", "CDMO doubles capacity", "", when, ("Manufacturing",), "Plant.", ""),
    ]
    with engine.begin() as conn:
        store.upsert_articles(conn, items, source="test", now=when)


def add_reader(engine: Engine, email: str, sections: tuple[str, ...], name: str) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(email, sections, name=name)], now=NOW)


def web_client(settings: Settings, engine: Engine) -> Client:
    return Client(create_app(settings, engine=engine, clock=lambda: NOW, monotonic=lambda: 0.0), base_url=BASE)


def trust_settings(make_settings: Callable[..., Settings], **tables: Any) -> Settings:
    return make_settings(security={"secret_key": SECRET}, **tables)


def sendgrid_variant(make_settings: Callable[..., Settings], standin: SendGridStandIn) -> Settings:
    """The same test's settings, sending through the SendGrid stand-in."""
    settings = trust_settings(make_settings, delivery={"transport": "sendgrid"}, sendgrid={"api_host": standin.url})
    return load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})


def send_issue(engine: Engine, settings: Settings) -> None:
    issue = issues.build_issue(engine, settings, now=NOW).issue
    transport = issues.make_transport(settings)
    try:
        report = issues.send_pending(engine, settings, issue, transport=transport, clock=lambda: NOW, sleep=lambda s: None)
    finally:
        transport.close()
    assert report.complete and not report.failed_batches


def delivered_by_sendgrid(standin: SendGridStandIn) -> dict[str, tuple[str, str, str]]:
    """What SendGrid would deliver to each address: (subject, text, html) with the
    personalization's substitutions applied, as SendGrid applies them (plain string
    replacement in the subject and in every content part)."""
    out = {}
    for request in standin.accepted:
        body = request.body
        content = {c["type"]: c["value"] for c in body["content"]}
        for person in body["personalizations"]:
            subject, textpart, htmlpart = body["subject"], content["text/plain"], content["text/html"]
            for key, value in person.get("substitutions", {}).items():
                subject, textpart, htmlpart = (part.replace(key, value) for part in (subject, textpart, htmlpart))
            out[person["to"][0]["email"]] = (subject, textpart, htmlpart)
    return out


def outbox_digest(settings: Settings, address: str) -> EmailMessage:
    (message,) = [m for m in outbox_messages(settings.outbox_dir / "2026-w48") if m["To"] == address]
    return message


# [1] A subscriber's name is injected into every digest --------------------------------


@pytest.mark.parametrize("transport", ["outbox", "sendgrid"])
def test_a_hostile_name_from_the_form_reaches_the_digest_as_text(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, transport: str
) -> None:
    settings = trust_settings(make_settings)
    client = web_client(settings, engine)
    answer = client.post("/subscribe", data={"email": "eve@example.com", "name": HOSTILE, "sections": ["drug-development"]})
    assert answer.status_code == 200
    (confirmation,) = outbox_messages(settings.outbox_dir)
    confirmation_html = parts(confirmation)[1]
    assert htmllib.escape(HOSTILE, quote=False) in confirmation_html and "phish.example/login>" not in confirmation_html
    assert client.get(f"/confirm/{link_token(confirmation, 'confirm')}").status_code == 200
    with engine.connect() as conn:
        assert people.get_subscriber(conn, "eve@example.com").name == HOSTILE
    add_articles(engine)
    if transport == "sendgrid":
        settings = sendgrid_variant(make_settings, standin)
    send_issue(engine, settings)

    if transport == "outbox":
        message = outbox_digest(settings, "eve@example.com")
        textpart, htmlpart = parts(message)
    else:
        _, textpart, htmlpart = delivered_by_sendgrid(standin)["eve@example.com"]
    # The greeting takes the name's first word, "<a": escaped in HTML, plain in text.
    assert "Hello &lt;a," in htmlpart and "Hello <a," in textpart
    assert "<a," not in htmlpart and "href=https://phish" not in htmlpart and "<b>URGENT" not in htmlpart


def test_a_name_with_a_line_break_is_refused_wherever_it_enters(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = trust_settings(make_settings)
    client = web_client(settings, engine)
    form = client.post("/subscribe", data={"email": "eve@example.com", "name": INJECTION})
    assert form.status_code == 422 and "line break" in form.text
    as_json = client.post("/subscribe", json={"email": "eve@example.com", "name": INJECTION})
    assert as_json.status_code == 422 and "line break" in as_json.json()["error"]
    too_long = client.post("/subscribe", json={"email": "eve@example.com", "name": "E" * 101})
    assert too_long.status_code == 422 and "at most 100" in too_long.json()["error"]
    config = str(settings.base_dir / "newsletter.toml")
    added = runner.invoke(cli_app, ["--config", config, "subscribers", "add", "eve@example.com", "--name", INJECTION])
    assert added.exit_code == 2 and "line break" in added.output
    csv_file = tmp_path / "people.csv"
    csv_file.write_text('email,name\nann@example.com,Ann\neve@example.com,"Eve\rBcc: x@evil.example"\n', encoding="utf-8")
    imported = runner.invoke(cli_app, ["--config", config, "subscribers", "import", str(csv_file), "--name-column", "name",
                                       "--json"])
    rejected = json.loads(imported.output[imported.output.index("{"):])["rejected"]
    assert rejected == [{"line": 3, "why": "the name holds a line break; write it on one line"}]
    with engine.connect() as conn:
        # Nothing from a refused request: only the valid row of the import is stored.
        emails = [s.email for s in people.list_subscribers(conn)]
    assert emails == ["ann@example.com"] and not outbox_messages(settings.outbox_dir)


@pytest.mark.parametrize("transport", ["outbox", "sendgrid"])
def test_a_stored_name_with_a_line_break_adds_no_header(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, transport: str
) -> None:
    """A row written before names were checked (or by hand) still reaches no header."""
    settings = trust_settings(make_settings)
    add_reader(engine, "eve@example.com", ("news", "manufacturing"), "Eve")
    with engine.begin() as conn:
        conn.execute(update(people.subscribers).values(name=INJECTION))
    add_articles(engine)
    if transport == "sendgrid":
        settings = sendgrid_variant(make_settings, standin)
    send_issue(engine, settings)
    if transport == "outbox":
        message = outbox_digest(settings, "eve@example.com")
        assert "Bcc" not in message and "x@evil.example" not in str(message.items())
        textpart, htmlpart = parts(message)
    else:
        (request,) = standin.accepted
        (person,) = request.body["personalizations"]
        assert set(person["headers"]) == {"List-Unsubscribe", "List-Unsubscribe-Post"} and "bcc" not in person
        _, textpart, htmlpart = delivered_by_sendgrid(standin)["eve@example.com"]
    assert "Hello Eve," in textpart and "Hello Eve," in htmlpart and "\r\nBcc" not in textpart + htmlpart


# [2] An erased address that had bounced is mailed again ------------------------------


def erase_after(engine: Engine, email: str, *, status: people.Status | None, suppressed: str = "") -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(email, ("news",), name="Gone")], now=NOW)
        if status is not None:
            subscriber = people.get_subscriber(conn, email)
            people.set_status(conn, subscriber.id, status, now=NOW)
        if suppressed:
            people.suppress(conn, email, reason=suppressed, now=NOW)
        people.erase(conn, email, now=NOW)


def count_rows(engine: Engine, email: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM subscribers WHERE email = :e"), {"e": email}).scalar_one())


@pytest.mark.parametrize("status,suppressed", [(people.Status.BOUNCED, "bounce"), (people.Status.COMPLAINED, "complaint"),
                                               (people.Status.BOUNCED, "")])
def test_an_erased_address_that_bounced_or_complained_is_never_created_or_mailed_again(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path, status: people.Status, suppressed: str
) -> None:
    settings = trust_settings(make_settings, preview={"test_recipients": ["gone@example.com"]})
    erase_after(engine, "gone@example.com", status=status, suppressed=suppressed)
    client = web_client(settings, engine)
    form = client.post("/subscribe", data={"email": "gone@example.com", "name": "Back"})
    fresh = client.post("/subscribe", data={"email": "fresh@example.com", "name": "Back"})
    assert form.status_code == fresh.status_code == 200 and form.text == fresh.text
    as_json = client.post("/subscribe", json={"email": "gone@example.com"})
    assert as_json.status_code == 202
    config = str(settings.base_dir / "newsletter.toml")
    added = runner.invoke(cli_app, ["--config", config, "subscribers", "add", "gone@example.com"])
    assert added.exit_code == 2 and "suppression list" in added.output
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email\ngone@example.com\n", encoding="utf-8")
    imported = runner.invoke(cli_app, ["--config", config, "subscribers", "import", str(csv_file)], env={"COLUMNS": "200"})
    assert "suppression list" in imported.output
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("gone@example.com", ("news",))], now=NOW)
    add_articles(engine)
    drafts.build_draft(engine, settings, now=NOW)
    with pytest.raises(EditError, match="#1 is on the suppression list"):
        drafts.send_test(engine, settings, transport=issues.make_transport(settings))
    assert count_rows(engine, "gone@example.com") == 0
    assert [m["To"] for m in outbox_messages(settings.outbox_dir)] == ["fresh@example.com"]


@pytest.mark.parametrize("status", [people.Status.ACTIVE, people.Status.UNSUBSCRIBED])
def test_an_erased_address_comes_back_only_through_its_own_double_opt_in(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path, status: people.Status
) -> None:
    settings = trust_settings(make_settings)
    erase_after(engine, "left@example.com", status=status)
    config = str(settings.base_dir / "newsletter.toml")
    added = runner.invoke(cli_app, ["--config", config, "subscribers", "add", "left@example.com"])
    assert added.exit_code == 2 and "suppression list" in added.output
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email\nleft@example.com\n", encoding="utf-8")
    runner.invoke(cli_app, ["--config", config, "subscribers", "import", str(csv_file)], env={"COLUMNS": "200"})
    assert count_rows(engine, "left@example.com") == 0

    client = web_client(settings, engine)
    assert client.post("/subscribe", data={"email": "left@example.com", "name": "Back"}).status_code == 200
    (confirmation,) = outbox_messages(settings.outbox_dir)
    assert count_rows(engine, "left@example.com") == 1
    assert client.get(f"/confirm/{link_token(confirmation, 'confirm')}").status_code == 200
    with engine.connect() as conn:
        assert people.get_subscriber(conn, "left@example.com").status is people.Status.ACTIVE
        # Their own new consent: the erasure no longer keeps the CLI from updating them.
        assert people.standing(conn, "left@example.com") is people.Standing.CLEAR


# [4] The subscribe form's timing tells who is subscribed -----------------------------


def test_the_subscribe_answer_does_not_wait_for_the_database(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`newsletter serve` as a real process answers a subscribe while another process
    holds the SQLite database locked: the lookup and the writes run after the answer,
    so the answer cannot depend on what they find."""
    port = free_port()
    database = tmp_path / "locked.db"
    settings = make_settings(site={"base_url": f"http://127.0.0.1:{port}"}, web={"port": port},
                             database={"url": f"sqlite:///{database}"})
    engine = db.open_engine(settings.database_url)
    db.upgrade(engine)
    engine.dispose()
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(tmp_path / "newsletter.toml"), "serve", "--host", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, tmp_path / "serve.log")
        lock = sqlite3.connect(database, timeout=1)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            answer = httpx.post(f"{url}/subscribe", data={"email": "new@example.com", "name": "New"}, timeout=3)
            took = time.monotonic() - started
            assert answer.status_code == 200 and "on its way" in answer.text
            assert took < 1.0, f"the answer took {took:.2f} s while the database was locked"
        finally:
            lock.rollback()
            lock.close()
        # Once the lock is gone, the work done after the answer lands.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rows = sqlite3.connect(database).execute("SELECT status FROM subscribers WHERE email = 'new@example.com'").fetchall()
            if rows:
                break
            time.sleep(0.1)
        assert rows == [("pending",)]
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# [7] Article text that looks like a template blocks the whole send -------------------


@pytest.mark.parametrize("transport", ["outbox", "sendgrid"])
def test_article_text_that_looks_like_a_template_is_printed_as_it_is(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, transport: str
) -> None:
    settings = trust_settings(make_settings)
    add_reader(engine, "ann@example.com", ("drug-development", "manufacturing"), "Ann")
    add_articles(engine, title=TEMPLATE_TITLE)
    if transport == "sendgrid":
        settings = sendgrid_variant(make_settings, standin)
    # The preflight runs before the send and must not refuse it.
    send_issue(engine, settings)
    if transport == "outbox":
        message = outbox_digest(settings, "ann@example.com")
        subject = str(message["Subject"])
        textpart, htmlpart = parts(message)
    else:
        subject, textpart, htmlpart = delivered_by_sendgrid(standin)["ann@example.com"]
    shown = htmllib.unescape(htmlpart)
    assert TEMPLATE_TITLE in shown and "Template 49" not in shown
    assert TEMPLATE_TITLE in textpart.replace(ZWSP, "") and TEMPLATE_TITLE in subject.replace(ZWSP, "")
    # No substitution can match inside the content: its %% are broken up.
    assert "%%nosuchtag%%" not in htmlpart + textpart + subject
