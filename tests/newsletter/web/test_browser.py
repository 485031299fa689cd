"""What a person clicks, in a real Chromium through Playwright, against `newsletter serve`
running as a real process: subscribe on the page → the confirmation email lands in the
outbox → follow its link → choose sections in the preference center → the next issue
has only those sections for them → unsubscribe → the issue after skips them.

Uses Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it); never downloads a
browser.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine

import subscribers as people
from newsletter import issues, store
from newsletter.config import Settings
from newsletter.models import FeedItem
from tests.helpers import outbox_messages, parts, wait_until_healthy

CHROMIUM = Path("/usr/bin/chromium")
SECRET = "browser-test-secret-0123456789"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path) -> Iterator[Settings]:
    """`newsletter serve` on a free port, for settings whose base URL is that port."""
    port = free_port()
    settings = make_settings(site={"base_url": f"http://127.0.0.1:{port}"}, web={"port": port})
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(tmp_path / "newsletter.toml"), "serve", "--host", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, tmp_path / "serve.log")
        yield settings
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def add_articles(engine: Engine, when: datetime, tag: str) -> None:
    items = [
        FeedItem(f"{tag}-dd", f"https://pharma.example.com/{tag}-dd", f"{tag}: trial results", "", when, ("Clinical Trials",), "Results.", ""),
        FeedItem(f"{tag}-mf", f"https://pharma.example.com/{tag}-mf", f"{tag}: new bioreactor plant", "", when, ("Manufacturing",), "Plant.", ""),
        FeedItem(f"{tag}-ev", f"https://pharma.example.com/{tag}-ev", f"{tag}: congress preview", "", when, ("Events",), "Congress.", ""),
    ]
    with engine.begin() as conn:
        store.upsert_articles(conn, items, source="test", now=when)


def mail_to(folder: Path, address: str, *, subject: str = "") -> list[EmailMessage]:
    return [m for m in outbox_messages(folder) if m["To"] == address and subject in str(m["Subject"])]


def wait_for_mail(folder: Path, address: str, *, subject: str) -> EmailMessage:
    """The one email to `address`: the app sends it just after its answer (a background
    task), so it may land a moment after the page shows."""
    deadline = time.monotonic() + 15
    while not (found := mail_to(folder, address, subject=subject)) and time.monotonic() < deadline:
        time.sleep(0.05)
    (message,) = found
    return message


def link(message: EmailMessage, kind: str) -> str:
    text, _ = parts(message)
    found = re.search(rf"http://127\.0\.0\.1:\d+/{kind}/[A-Za-z0-9_-]+", text)
    assert found, text
    return found.group(0)


def send_issue(engine: Engine, settings: Settings, now: datetime) -> None:
    built = issues.build_issue(engine, settings, now=now)
    issues.send_pending(engine, settings, built.issue, transport=issues.make_transport(settings), clock=lambda: now)


def test_subscribe_confirm_choose_sections_and_unsubscribe_in_a_browser(
    served: Settings, engine: Engine, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = served
    base = settings.site.base_url
    now = datetime.now(UTC)
    add_articles(engine, now - timedelta(days=1), "Week 1")
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("other@example.com", ("manufacturing", "drug-development"))], now=now)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        try:
            page.goto(f"{base}/subscribe")
            expect(page.get_by_role("heading", name="Subscribe to Pharma Weekly")).to_be_visible()
            page.get_by_label("Email address").fill("reader@example.com")
            page.get_by_label("Your name").fill("Rita Reader")
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

            confirmation = wait_for_mail(settings.outbox_dir, "reader@example.com", subject="Please confirm")
            page.goto(link(confirmation, "confirm"))
            expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()

            page.get_by_role("link", name="Choose your sections or pause your subscription").click()
            expect(page.get_by_role("heading", name="Your Pharma Weekly preferences")).to_be_visible()
            for name in ("Drug Development", "Supply Chain", "Facilities", "Insights", "Events", "News"):
                page.get_by_label(name, exact=True).uncheck()
            expect(page.get_by_label("Manufacturing", exact=True)).to_be_checked()
            # Keyboard only: focus the save button and press Enter.
            page.get_by_role("button", name="Save sections").focus()
            page.keyboard.press("Enter")
            expect(page.get_by_role("status")).to_have_text("Your sections are saved.")
            expect(page.get_by_label("Events", exact=True)).not_to_be_checked()
        finally:
            browser.close()

        # The next issue: only Manufacturing for this reader.
        send_issue(engine, settings, now)
        (first,) = mail_to(settings.outbox_dir, "reader@example.com", subject="Pharma Weekly:")
        text, html = parts(first)
        assert "Week 1: new bioreactor plant" in html and "- Manufacturing (1)" in text
        assert "trial results" not in html and "congress preview" not in html
        unsubscribe_url = first["List-Unsubscribe"].split(",")[0].strip("<> ")
        assert unsubscribe_url.startswith(f"{base}/unsubscribe/")

        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        try:
            page.goto(unsubscribe_url)
            expect(page.get_by_role("heading", name="Unsubscribe from Pharma Weekly?")).to_be_visible()
            page.get_by_role("button", name="Unsubscribe").click()
            expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
            assert page.url == unsubscribe_url  # answered with 200, no redirect
        finally:
            browser.close()

    # The issue after skips them; the other reader still gets it.
    later = now + timedelta(days=7)
    add_articles(engine, now + timedelta(days=1), "Week 2")
    send_issue(engine, settings, later)
    assert len(mail_to(settings.outbox_dir, "reader@example.com", subject="Pharma Weekly:")) == 1
    assert len(mail_to(settings.outbox_dir, "other@example.com", subject="Pharma Weekly:")) == 2
    with engine.connect() as conn:
        reader = people.get_subscriber(conn, "reader@example.com")
        actions = [c.action.value for c in people.consent_history(conn, reader.id)]
    assert reader.status is people.Status.UNSUBSCRIBED
    assert actions == ["requested", "confirmed", "sections", "unsubscribed"]
    # The server's log names routes, never the address or the token.
    log = (tmp_path / "serve.log").read_text()
    assert "POST /subscribe 200" in log and "POST /unsubscribe/<token> 200" in log
    assert "reader@example.com" not in log and reader.token not in log
