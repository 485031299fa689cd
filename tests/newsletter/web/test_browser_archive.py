"""The archive as a reader meets it, in Debian's Chromium against `newsletter serve`:
open the archive, follow an issue, come back, and subscribe from the form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

import subscribers as people
from newsletter.config import Settings
from tests.helpers import outbox_messages
from tests.newsletter.web.test_browser import CHROMIUM, CHROMIUM_ARGS, add_articles, pytestmark, send_issue, served  # noqa: F401

__all__ = ["pytestmark", "served"]


def test_open_the_archive_follow_an_issue_and_subscribe(served: Settings, engine: Engine, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    settings = served
    now = datetime.now(UTC)
    add_articles(engine, now - timedelta(days=1), "Week 1")
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("reader@example.com", ("events",))], now=now)
    send_issue(engine, settings, now)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.goto(f"{settings.site.base_url}/archive")
            expect(page.get_by_role("heading", level=1)).to_contain_text("newsletter archive")
            page.locator("article.issue h2 a").first.click()
            expect(page).to_have_url(f"{settings.site.base_url}/archive/{now.isocalendar()[0]}-w{now.isocalendar()[1]:02d}")
            expect(page.get_by_role("link", name="Week 1: new bioreactor plant")).to_be_visible()
            expect(page.get_by_text("Unsubscribe")).to_have_count(0)
            page.screenshot(path=str(tmp_path / "issue.png"), full_page=True)

            page.go_back()
            page.get_by_label("Email address").fill("newcomer@example.com")
            page.get_by_label("Manufacturing").uncheck()
            page.get_by_role("button", name="Subscribe").click()
            expect(page.locator("body")).to_contain_text("email")
        finally:
            browser.close()

    with engine.connect() as conn:
        row = conn.execute(select(people.subscribers.c.status, people.subscribers.c.sections)
                           .where(people.subscribers.c.email == "newcomer@example.com")).one()
    assert row.status == "pending" and "manufacturing" not in row.sections and "events" in row.sections
    assert [m["To"] for m in outbox_messages(settings.outbox_dir) if "confirm" in str(m["Subject"]).lower()] == ["newcomer@example.com"]
