"""The sponsor's slot: `newsletter draft sponsor` puts it in the draft, the email shows it
as "Sponsored" after the named section (both parts), the preflight checks its label and
link, and bad input is refused naming the option before anything is stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from newsletter import drafts, issues, store
from newsletter.config import Settings
from newsletter.models import Sponsor
from tests.conftest import NOW
from tests.servers import LocalServer, Route
from tests.desk_support import CHROMIUM, Desk, browser, frame_text, open_desk, page, press  # noqa: F401
from tests.newsletter.web.test_browser_desk import desk  # noqa: F401

browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
from tests.newsletter.test_drafts import Editor, editor  # noqa: F401  (the fixture)


def rendered(editor: Editor) -> tuple[str, str]:
    from newsletter.config import load_settings

    settings = load_settings(editor.config, environ={})
    engine = issues.open_database(settings)
    try:
        draft = drafts.current_draft(engine, settings)
        message = issues.render_issue(engine, settings, draft.issue)
    finally:
        engine.dispose()
    return message.html, message.text


def test_a_sponsor_is_shown_as_sponsored_after_its_section(editor: Editor) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "sponsor", "--label", "Acme Biologics", "--text", "Fill-finish <b>capacity</b> in 2027.",
                          "--url", "https://acme.example.com/offer?src=pw", "--image", "https://img.example.com/acme.png",
                          "--after", "drug-development")
    assert code == 0 and "Sponsor Acme Biologics set." in output
    html, text = rendered(editor)
    box = html[html.index('class="sp"'):]
    assert re.search(r">Sponsored</p>", box) and ">Acme Biologics</a></h3>" in box
    assert 'href="https://acme.example.com/offer?src=pw"' in box and "Fill-finish capacity in 2027." in box
    assert re.search(r'<img [^>]*alt="Acme Biologics"', box)  # a standalone image is described
    # After the Drug Development section, before Manufacturing.
    assert html.index(">Drug Development</h2>") < html.index('class="sp"') < html.index(">Manufacturing</h2>")
    assert "== SPONSORED: Acme Biologics ==" in text and "https://acme.example.com/offer?src=pw" in text
    assert text.index("== DRUG DEVELOPMENT ==") < text.index("SPONSORED") < text.index("== MANUFACTURING ==")
    code, output = editor("draft", "check", "--no-links")
    assert code == 0 and "sponsor" not in output.lower()
    # No tracking pixel, with or without a sponsor.
    for img in re.findall(r"<img\b[^>]*>", html):
        assert not re.search(r'\b(width|height)="[01]"', img)
    assert editor("draft", "sponsor", "--remove") == (0, "Sponsor removed.\n")
    assert 'class="sp"' not in rendered(editor)[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--text", "x", "--url", "https://acme.example.com/"], "--label: a sponsor needs a label"),
        (["--label", "  ", "--url", "https://acme.example.com/"], "--label: a sponsor needs a label"),
        (["--label", "Acme", "--url", "javascript:alert(1)"], "--url: 'javascript:alert(1)' is not an http:// or https:// URL"),
        (["--label", "Acme", "--url", "data:text/html,hi"], "--url: 'data:text/html,hi' is not an http:// or https:// URL"),
        (["--label", "Acme", "--url", "https://acme.example.com/", "--image", "http://img.example.com/a.png"],
         "--image: 'http://img.example.com/a.png' is not an https:// URL"),
        (["--label", "Acme", "--url", "https://acme.example.com/", "--after", "nowhere"], "--after: no section 'nowhere'"),
        (["--label", "A" * 61, "--url", "https://acme.example.com/"], "--label: 61 characters, at most 60"),
    ],
)
def test_a_bad_sponsor_is_refused_naming_the_option(editor: Editor, args: list[str], expected: str) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "sponsor", *args)
    assert code == 2 and expected in output.replace("\n", " ")
    assert "Traceback" not in output
    assert 'class="sp"' not in rendered(editor)[0]


def test_the_preflight_checks_the_sponsors_label_and_link(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer
) -> None:
    from tests.newsletter.test_preflight import add_articles, check

    add_articles(engine, base=server.url)
    for path in ("/dd", "/mf", "/ev"):
        server.routes[path] = Route(200, b"ok")
    server.routes["/offer"] = Route(404, b"gone")
    settings = make_settings()
    draft = drafts.build_draft(engine, settings, now=NOW).draft
    drafts.set_sponsor(engine, settings, Sponsor("Acme", "Offer.", f"{server.url}/offer", after="events"), now=NOW)
    report = check(engine, settings, links=True)
    assert report.passed
    warnings = [f.message for f in report.warnings]
    assert f"sponsor 'Acme': {server.url}/offer answered 404 Not Found" in warnings
    assert f"sponsor url: {server.url}/offer is not https://" in warnings
    # A slot stored without the command's checks (an older row, another tool) still fails.
    with engine.begin() as conn:
        store.save_sponsor(conn, draft.issue.id, Sponsor("", "Offer.", "javascript:alert(1)"), now=NOW)
    errors = [f.message for f in check(engine, settings).errors]
    assert any("sponsor label: a sponsor needs a label" in e for e in errors)
    assert any("sponsor url: 'javascript:alert(1)' is not an http:// or https:// URL" in e for e in errors)


@browser_only
def test_the_desk_sets_and_removes_the_sponsor(desk: Desk, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_desk(page, desk.url)
    page.get_by_label("Sponsor").locator("summary").click()
    page.get_by_label("Sponsor's link").fill("javascript:alert(1)")
    press(page, "Save sponsor")
    expect(page.get_by_role("alert")).to_contain_text("--label: a sponsor needs a label")
    expect(page.get_by_role("alert")).to_contain_text("--url: 'javascript:alert(1)' is not an http:// or https:// URL")
    assert drafts.current_draft(engine, desk.settings).sponsor is None
    page.get_by_label("Sponsor's label").fill("Acme Biologics")
    page.get_by_label("Sponsor's text").fill("Fill-finish capacity in 2027.")
    page.get_by_label("Sponsor's link").fill("https://acme.example.com/offer")
    page.get_by_label("After the section").select_option("events")
    press(page, "Save sponsor")
    expect(page.get_by_role("status")).to_have_text("The sponsor's slot is saved.")
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Sponsored")
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Fill-finish capacity in 2027.")
    assert drafts.current_draft(engine, desk.settings).sponsor == Sponsor(
        "Acme Biologics", "Fill-finish capacity in 2027.", "https://acme.example.com/offer", "", "events")
    press(page, "Remove sponsor")
    expect(page.get_by_role("status")).to_have_text("The sponsor's slot is removed.")
    expect(frame_text(page, "Desktop (600 px)")).not_to_contain_text("Sponsored")
