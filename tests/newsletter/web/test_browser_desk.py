"""The editor's desk as an editor uses it, in a real Chromium through Playwright: each action
done on the page, then checked in what is delivered: the test send's .eml in the outbox,
and the approved issue. Reorder (buttons and drag and drop), pin as lead, exclude, move to
another section, add an item, the texts with their live preview and counters, approve, a
test send to typed addresses (remembered), the login refused and accepted, the page in
step with the command line, two browsers editing at once; and a week's issue taken from
draft to approved and test-sent without the terminal.

Uses Debian's Chromium at /usr/bin/chromium; never downloads a browser. Article links
point at the local test server, so the link checks never leave the machine.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

import subscribers as people
from newsletter import drafts, issues
from newsletter.config import Settings
from newsletter.models import IssueStatus
from newsletter.web.desk.auth import hash_password
from tests.conftest import NOW
from tests.desk_support import (  # noqa: F401  (browser and page are fixtures)
    CHROMIUM,
    Desk,
    browser,
    done,
    draft_settings,
    frame_text,
    free_port,
    open_desk,
    page,
    press,
    running_desk,
)
from tests.helpers import outbox_messages, parts, wait_until_healthy
from tests.servers import LocalServer

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def desk(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer) -> Iterator[Desk]:
    port = free_port()
    settings, templates = draft_settings(make_settings, engine, tmp_path, server,
                                         preview={"port": port, "test_recipients": ["editor@example.com"], "link_timeout": 2})
    with running_desk(settings, engine, port, templates) as running:
        yield running


def test_send(page: Any, desk: Desk, to: str = "editor@example.com") -> EmailMessage:
    """Send a test from the page; the newest .eml in the outbox."""
    page.wait_for_load_state("load")  # see desk_support.press
    page.get_by_label("Test to").fill(to)
    page.get_by_role("button", name="Send a test").click()
    done(page, "The test is sent.")
    messages = outbox_messages(desk.settings.outbox_dir)
    assert messages
    return messages[-1]


test_send.__test__ = False  # type: ignore[attr-defined]


def text_of(message: EmailMessage) -> str:
    return parts(message)[0]


def order(text: str, *titles: str) -> list[int]:
    return [text.index(t) for t in titles]


def test_the_email_comes_first_beside_the_articles(desk: Desk, page: Any) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    expect(page.get_by_role("heading", name="Issue 2026-w48: draft")).to_be_visible()
    inbox = page.get_by_label("Inbox")
    expect(inbox).to_contain_text("Pharma Weekly: Trial meets its endpoint")
    for title in ("Desktop (600 px)", "Mobile (375 px)"):
        expect(frame_text(page, title)).to_contain_text("Trial meets its endpoint")
    # Both frames start on the first screen (1280 × 800), side by side, the articles beside them.
    desktop = page.locator('iframe[title="Desktop (600 px)"]').bounding_box()
    mobile = page.locator('iframe[title="Mobile (375 px)"]').bounding_box()
    articles = page.get_by_label("Articles").bounding_box()
    assert desktop["y"] < 300 and abs(mobile["y"] - desktop["y"]) < 2 and mobile["x"] > desktop["x"] + desktop["width"] - 1
    assert articles["x"] > mobile["x"] + mobile["width"] and articles["y"] < 800
    assert {f.evaluate("document.documentElement.clientWidth") for f in page.frames[1:]} == {600, 375}
    expect(page.get_by_label("Preflight")).to_contain_text("Preflight: passed")
    expect(page.locator("#links")).to_have_text("Links: all answer", timeout=15_000)
    # A reader of Manufacturing only, in dark mode.
    page.get_by_role("checkbox", name="Drug Development").uncheck()
    page.get_by_role("checkbox", name="Events").uncheck()
    page.get_by_role("button", name="Show segment").click()
    expect(frame_text(page, "Mobile (375 px)")).not_to_contain_text("Trial meets its endpoint")
    expect(inbox).to_contain_text("Pharma Weekly: New bioreactor plant")
    page.get_by_role("link", name="Dark").click()
    expect(page.get_by_role("link", name="Dark")).to_have_attribute("aria-current", "true")
    dark = page.frame_locator('iframe[title="Desktop (600 px)"]').locator("body")
    expect(dark).to_contain_text("New bioreactor plant")
    assert "scheme=dark" in page.locator('iframe[title="Desktop (600 px)"]').get_attribute("src")
    assert "sections=manufacturing" in page.locator('iframe[title="Desktop (600 px)"]').get_attribute("src")


def test_reorder_with_the_buttons_and_by_drag_and_drop(desk: Desk, page: Any, engine: Engine) -> None:
    open_desk(page, desk.url)
    # In Events, not the section of the lead story (which is listed apart, on top).
    first, second = "Congress preview", "GMP webinar announced"
    press(page, f"Move down {first}")
    done(page, "The article is moved down.")
    text = text_of(test_send(page, desk))
    assert text.index(second) < text.index(first)

    # Dragged back to the top of its section.
    page.locator(f'li[data-article="{desk.article_id(engine, first)}"]').drag_to(
        page.locator(f'li[data-article="{desk.article_id(engine, second)}"]'), target_position={"x": 10, "y": 2})
    done(page, "The article is moved.")
    text = text_of(test_send(page, desk))
    assert text.index(first) < text.index(second)
    titles = [a.article.title for a in drafts.current_draft(engine, desk.settings).articles]
    assert titles.index(first) < titles.index(second)


def test_without_javascript_every_button_is_a_plain_form(desk: Desk, browser: Any, engine: Engine) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.goto(desk.url)
    press(page, "Move down Congress preview")
    done(page, "The article is moved down.")
    press(page, "Pin as lead New bioreactor plant")
    done(page, "The article is pinned: it leads the issue.")
    page.get_by_label("Subject", exact=True).fill("Without a script")
    press(page, "Save texts")
    done(page, "The subject, preheader and intro are saved.")
    context.close()
    draft = drafts.current_draft(engine, desk.settings)
    events = [a.article.title for a in draft.articles if a.section == "events"]
    assert events == ["GMP webinar announced", "Congress preview"]
    assert draft.lead_id == desk.article_id(engine, "New bioreactor plant") and draft.issue.subject == "Without a script"


def test_pin_as_lead_exclude_and_move_to_another_section(desk: Desk, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    press(page, "Pin as lead Congress preview")
    done(page, "The article is pinned: it leads the issue.")
    expect(page.locator("li", has_text="Congress preview").locator(".tag.lead")).to_be_visible()
    text = text_of(test_send(page, desk))
    assert text.index("== TOP STORY ==") < text.index("Congress preview") < text.index("Trial meets its endpoint")

    press(page, "Exclude New bioreactor plant")
    done(page, "The article is excluded.")
    assert "New bioreactor plant" not in text_of(test_send(page, desk))

    page.get_by_label("Section for Phase II data in obesity").select_option("events")
    press(page, "Move Phase II data in obesity")
    done(page, "The article is moved.")
    text = text_of(test_send(page, desk))
    assert text.index("== EVENTS ==") < text.index("Phase II data in obesity")
    draft = drafts.current_draft(engine, desk.settings)
    assert {a.article.title: a.section for a in draft.articles}["Phase II data in obesity"] == "events"

    press(page, "Include New bioreactor plant")
    done(page, "The article is back in the draft.")
    assert "New bioreactor plant" in text_of(test_send(page, desk))


def test_add_an_item_of_the_editors(desk: Desk, page: Any, engine: Engine) -> None:
    open_desk(page, desk.url)
    form = page.get_by_label("Add an item")
    form.locator("summary").click()
    form.get_by_label("Title").fill("CPHI Milan, 8–10 October")
    form.get_by_label("Link (http or https)").fill("https://www.cphi.com/europe/")
    form.get_by_label("Section").select_option("events")
    form.get_by_label("Summary").fill("Three days, 2,500 exhibitors.")
    form.get_by_role("button", name="Add the item").click()
    done(page, "The item is added to the draft.")
    message = test_send(page, desk)
    text, html = parts(message)
    assert "CPHI Milan, 8–10 October" in text and "Three days, 2,500 exhibitors." in text
    assert "www.cphi.com" in html
    draft = drafts.current_draft(engine, desk.settings)
    added = next(a for a in draft.articles if a.article.title == "CPHI Milan, 8–10 October")
    assert added.editor_item and added.section == "events" and added.article.source == drafts.EDITOR_SOURCE


def test_texts_with_live_preview_and_counters(desk: Desk, page: Any) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    page.get_by_label("Intro, in Markdown").fill("Hello **editors**, a *short* week.")
    # The frames show the typed intro before it is saved.
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Hello editors, a short week.")
    page.get_by_label("Subject", exact=True).fill("S" * 151)
    expect(page.locator('.count[data-for="subject"]')).to_have_class("count over")
    expect(page.locator('.count[data-for="subject"]')).to_have_text("151 / 150")
    page.get_by_label("Subject", exact=True).fill("GLP-1, a new plant and CPHI")
    expect(page.locator('.count[data-for="subject"]')).to_have_text("27 / 70")
    expect(page.locator("#inbox-subject")).to_have_text("GLP-1, a new plant and CPHI")
    page.get_by_label("Preheader").fill("What moved in pharma this week")
    press(page, "Save texts")
    done(page, "The subject, preheader and intro are saved.")
    message = test_send(page, desk)
    text, html = parts(message)
    assert message["Subject"] == "[TEST] GLP-1, a new plant and CPHI"
    assert "What moved in pharma this week" in html
    assert "Hello editors, a short week." in " ".join(text.replace("*", "").split())
    expect(page.get_by_label("Changes")).to_contain_text("texts set")


def test_approve_freezes_the_issue_that_goes_out(desk: Desk, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    page.get_by_label("Subject", exact=True).fill("S" * 151)
    press(page, "Save texts")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("issue 2026-w48 fails its preflight (1 error)")
    assert drafts.current_draft(engine, desk.settings).issue.status is IssueStatus.DRAFT

    page.get_by_label("Subject", exact=True).fill("The week in pharma")
    press(page, "Save texts")
    page.get_by_role("button", name="Approve").click()
    done(page, "The issue is approved and frozen for sending.")
    expect(page.get_by_role("heading", name="Issue 2026-w48: approved")).to_be_visible()
    expect(page.get_by_role("button", name="Pin as lead Congress preview")).to_have_count(0)
    issue = drafts.current_draft(engine, desk.settings).issue
    assert issue.status is IssueStatus.APPROVED and issue.subject == "The week in pharma"
    assert issues.render_issue(engine, desk.settings, issue).subject == "The week in pharma"
    expect(page.get_by_label("Changes")).to_contain_text("approved")
    page.get_by_role("button", name="Reopen").click()
    expect(page.get_by_role("heading", name="Issue 2026-w48: draft")).to_be_visible()


def test_a_test_goes_to_the_typed_addresses_which_are_remembered(desk: Desk, page: Any) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    expect(page.get_by_label("Test to")).to_have_value("editor@example.com")
    message = test_send(page, desk, to="chief@example.com, desk@example.org")
    assert message["To"] in ("chief@example.com", "desk@example.org")
    assert {m["To"] for m in outbox_messages(desk.settings.outbox_dir)} == {"chief@example.com", "desk@example.org"}
    assert message["Subject"] == "[TEST] Pharma Weekly: Trial meets its endpoint"
    page.goto(desk.url)
    expect(page.get_by_label("Test to")).to_have_value("chief@example.com, desk@example.org")
    page.get_by_label("Test to").fill("chief@example.com, not an address")
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_role("alert")).to_contain_text("test address 'not' is not an email address")


def test_the_page_stays_in_step_with_the_command_line(desk: Desk, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    drafts.set_subject(engine, "Changed from the command line", origin="cli")
    expect(page.get_by_label("Inbox")).to_contain_text("Changed from the command line", timeout=10_000)
    expect(page.get_by_label("Changes")).to_contain_text("cli")
    template = desk.templates / "email" / "digest.mjml.j2"
    template.write_text(template.read_text().replace(">View in browser<", ">Read it on the web<"))
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Read it on the web", timeout=10_000)
    # While the editor types, the page does not reload under them: it says so.
    page.get_by_label("Intro, in Markdown").fill("Typing")
    drafts.set_preheader(engine, "Also from the command line", origin="cli")
    expect(page.locator("#stale")).to_contain_text("preheader set", timeout=10_000)
    expect(page.get_by_label("Intro, in Markdown")).to_have_value("Typing")


def test_two_browsers_editing_at_once_lose_no_edit(desk: Desk, browser: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    first, second = (browser.new_context(viewport={"width": 1280, "height": 800}).new_page() for _ in range(2))
    open_desk(first, desk.url)
    open_desk(second, desk.url)
    second.get_by_label("Intro, in Markdown").fill("The second editor's intro")
    first.get_by_label("Subject", exact=True).fill("The first editor's subject")
    press(first, "Save texts")
    done(first, "The subject, preheader and intro are saved.")
    press(second, "Save texts")
    alert = second.get_by_role("alert")
    expect(alert).to_contain_text("""subject set ("The first editor's subject") on the desk""")
    expect(alert).to_contain_text("came first and stays; this change was not made")
    # The later save sees the earlier one, and keeps its own text to save again.
    expect(second.get_by_label("Intro, in Markdown")).to_have_value("The second editor's intro")
    expect(second.get_by_label("Inbox")).to_contain_text("The first editor's subject")
    second.get_by_label("Subject", exact=True).fill("The first editor's subject")
    press(second, "Save texts")
    done(second, "The subject, preheader and intro are saved.")
    issue = drafts.current_draft(engine, desk.settings).issue
    assert (issue.subject, issue.intro) == ("The first editor's subject", "The second editor's intro")
    first.context.close()
    second.context.close()


def test_the_login_is_refused_then_accepted(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path,
                                            server: LocalServer, page: Any) -> None:
    from playwright.sync_api import expect

    port = free_port()
    settings, templates = draft_settings(make_settings, engine, tmp_path, server,
                                         preview={"port": port, "password_hash": hash_password(PASSWORD)})
    with running_desk(settings, engine, port, templates) as desk:
        page.goto(desk.url)
        expect(page).to_have_url(f"{desk.url}/login")
        assert httpx.get(f"{desk.url}/email").status_code == 401
        page.get_by_label("Password").fill("wrong password, surely")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong password.")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Issue 2026-w48: draft")).to_be_visible()
        expect(page.locator("#live")).to_have_text("live reload: on")
        press(page, "Pin as lead Congress preview")
        done(page, "The article is pinned: it leads the issue.")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{desk.url}/login")


def test_a_weeks_issue_from_draft_to_approved_and_test_sent_without_the_terminal(
    make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer, page: Any
) -> None:
    """`newsletter preview` as a real process; everything else on the page."""
    from playwright.sync_api import expect

    port = free_port()
    settings, _ = draft_settings(make_settings, engine, tmp_path, server, preview={"port": port, "link_timeout": 2})
    log = (tmp_path / "desk.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(tmp_path / "newsletter.toml"), "preview", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NEWSLETTER_CONFIG": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, tmp_path / "desk.log")
        open_desk(page, url)
        page.get_by_label("Subject", exact=True).fill("Obesity data and a new plant")
        page.get_by_label("Intro, in Markdown").fill("Five stories this week.")
        press(page, "Save texts")
        done(page, "The subject, preheader and intro are saved.")
        press(page, "Pin as lead Phase II data in obesity")
        done(page, "The article is pinned: it leads the issue.")
        press(page, "Exclude Congress preview")
        done(page, "The article is excluded.")
        page.get_by_label("Test to").fill("chief@example.com")
        page.get_by_role("button", name="Send a test").click()
        done(page, "The test is sent.")
        page.get_by_role("button", name="Approve").click()
        done(page, "The issue is approved and frozen for sending.")
        expect(page.get_by_label("Changes")).to_contain_text("approved")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    assert "Traceback" not in (tmp_path / "desk.log").read_text()
    (message,) = outbox_messages(settings.outbox_dir)
    text = text_of(message)
    assert message["To"] == "chief@example.com" and message["Subject"] == "[TEST] Obesity data and a new plant"
    assert "Five stories this week." in text and "Congress preview" not in text
    assert text.index("== TOP STORY ==") < text.index("Phase II data in obesity") < text.index("Trial meets its endpoint")
    draft = drafts.current_draft(engine, settings)
    assert draft.issue.status is IssueStatus.APPROVED and draft.lead_id == drafts.current_draft(engine, settings).lead_id
    with engine.connect() as conn:
        log_entries = drafts.entries(conn, draft.issue.id)
    assert [e.action for e in log_entries][:4] == ["approved", "test sent", "excluded", "pinned"]
    assert {e.origin for e in log_entries[:5]} == {"desk"}


def test_screenshots_at_1280_and_375_light_and_dark(desk: Desk, browser: Any, engine: Engine, tmp_path: Path) -> None:
    """The desk's first screen as docs/desk.md shows it; DESK_SHOTS=<folder> keeps the PNGs."""
    from playwright.sync_api import expect

    drafts.set_intro(engine, "Obesity data, a new plant and **two events** this week.")
    choices = [("drug-development",), ("drug-development", "events"), ("manufacturing",), ("events",)] * 310
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(f"reader{n}@example.com", sections)
                                         for n, sections in enumerate(choices)], now=NOW)
    drafts.pin(engine, desk.settings, desk.article_id(engine, "Phase II data in obesity"), now=NOW)
    folder = Path(os.environ.get("DESK_SHOTS") or tmp_path)
    for width, height in ((1280, 800), (375, 812)):
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
            page = context.new_page()
            open_desk(page, f"{desk.url}/?scheme={scheme}")
            expect(page.locator("#links")).to_have_text("Links: all answer", timeout=15_000)
            expect(frame_text(page, "Mobile (375 px)")).to_contain_text("Phase II data in obesity")
            # Nothing wider than the screen: no sideways scrolling at either width.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            path = folder / f"desk-{width}-{scheme}.png"
            page.screenshot(path=str(path))
            context.close()
            png = path.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert struct.unpack(">II", png[16:24]) == (width, height)
