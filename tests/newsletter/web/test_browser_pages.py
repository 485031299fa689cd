"""Every public page in a real Chromium against `newsletter serve` as a real process:
axe-core (axe-playwright-python) finds no serious or critical violation on any of them,
in the light and the dark colour scheme; and the form `newsletter embed` prints, served
from another site (127.0.0.2), subscribes without JavaScript and lands on the web app's
"Check your inbox" page.

With NEWSLETTER_PAGE_SHOTS=<folder> the test also writes each page's picture at 600 and
375 px wide there (docs/pages.md shows them:
`NEWSLETTER_PAGE_SHOTS=docs/pages python -m pytest tests/newsletter/web/test_browser_pages.py`).
Uses Debian's Chromium at /usr/bin/chromium; never downloads a browser.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

import subscribers as people
from newsletter.cli import app
from newsletter.config import Settings
from tests.helpers import free_port, wait_for_http
from tests.newsletter.web.test_browser import CHROMIUM, CHROMIUM_ARGS, SECRET, add_articles, link, send_issue, wait_for_mail

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
SCHEMES = ("light", "dark")
WIDTHS = (600, 375)
BLOCKING = ("serious", "critical")


@pytest.fixture
def served(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path) -> Iterator[Settings]:
    """`newsletter serve` on a free port of 127.0.0.1, with a description and a theme."""
    port = free_port()
    settings = make_settings(
        site={"base_url": f"http://127.0.0.1:{port}", "description": "The week in pharma, for people who make medicines."},
        web={"port": port}, theme={"brand_color": "#0b5394", "accent_color": "#b45309"},
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(tmp_path / "newsletter.toml"), "serve", "--host", "127.0.0.1"],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_CONFIG": ""},
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", process, log)
            yield settings
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def publisher_site(served: Settings, tmp_path: Path) -> Iterator[str]:
    """The publisher's own site on 127.0.0.2: one page with the form `newsletter embed` printed."""
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "newsletter.toml"), "embed"], env={"NEWSLETTER_CONFIG": ""})
    assert result.exit_code == 0, result.output
    folder = tmp_path / "publisher"
    folder.mkdir()
    (folder / "index.html").write_text(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>A publisher</title></head>"
        f"<body><main><h1>Industry news</h1><aside>{result.output}</aside></main></body></html>",
        encoding="utf-8",
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def serious(axe: Any, page: Any) -> list[str]:
    """The serious and critical axe-core violations of the page, one line each."""
    found = axe.run(page).response["violations"]
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found if v["impact"] in BLOCKING
    ]


def test_every_public_page_passes_axe_in_light_and_dark(
    served: Settings, publisher_site: str, engine: Engine, tmp_path: Path
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    base = served.site.base_url
    now = datetime.now(UTC)
    add_articles(engine, now - timedelta(days=1), "Week 1")
    send_issue(engine, served, now)
    slug = re.search(r'href="/archive/([\w-]+)"', httpx.get(f"{base}/").text)
    assert slug, "the landing page links to no issue"
    shots = Path(os.environ.get("NEWSLETTER_PAGE_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    # A confirmation asked for a month ago: its link has expired.
    asked: list[people.ConfirmationMail] = []
    with engine.begin() as conn:
        people.request_subscription(
            conn, email="late@example.org", name="", sections=(), known_sections=list(served.section_names()),
            origin=people.Origin(ip="192.0.2.1", user_agent="test", form="test"), now=now - timedelta(days=30), send=asked.append,
        )
    axe = Axe()
    outbox = served.outbox_dir
    visited: dict[str, str] = {}
    problems: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        # axe-core is injected by the test; the pages' own policy allows no script.
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        try:
            # The embedded form on another site, posted without JavaScript of ours.
            page.goto(publisher_site)
            page.get_by_label("Email address").fill("reader@example.org")
            page.get_by_role("button", name="Subscribe to Pharma Weekly").click()
            expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
            assert page.url == f"{base}/subscribe"
            visited["subscribed"] = page.content()
            confirm = link(wait_for_mail(outbox, "reader@example.org", subject="Please confirm"), "confirm")
            unsubscribe = confirm.replace("/confirm/", "/unsubscribe/")
            preferences = confirm.replace("/confirm/", "/preferences/")
            pages = {
                "landing": f"{base}/",
                "subscribe": f"{base}/subscribe",
                "confirmed": confirm,
                "preferences": preferences,
                "unsubscribe": unsubscribe,
                "privacy": f"{base}/privacy",
                "archive": f"{base}/archive/",
                "issue": f"{base}/archive/{slug.group(1)}",
                "expired": f"{base}/confirm/{asked[0].token}",
                "invalid-link": f"{base}/preferences/not-a-token",
                "not-found": f"{base}/no-such-page",
            }
            for scheme in SCHEMES:
                page.emulate_media(color_scheme=scheme)
                for name, url in pages.items():
                    page.goto(url)
                    problems += [f"{name} ({scheme}): {p}" for p in serious(axe, page)]
                    _shoot(page, shots, name, scheme)
                # A refused subscription: the form again, with what to correct.
                page.goto(f"{base}/subscribe")
                page.get_by_label("Email address").fill("not-an-address@")
                page.evaluate("document.querySelector('#email').type = 'text'")
                page.get_by_role("button", name="Subscribe").click()
                expect(page.get_by_role("alert")).to_contain_text("valid email address")
                problems += [f"refused ({scheme}): {p}" for p in serious(axe, page)]
                _shoot(page, shots, "refused", scheme)
                page.goto(publisher_site)
                page.get_by_label("Email address").fill(f"{scheme}@example.org")
                page.get_by_role("button", name="Subscribe to Pharma Weekly").click()
                expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
                problems += [f"subscribed ({scheme}): {p}" for p in serious(axe, page)]
                _shoot(page, shots, "subscribed", scheme)
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
    assert "Check your inbox" in visited["subscribed"]
    assert len(list(shots.glob("*.png"))) == 13 * len(WIDTHS) * len(SCHEMES)


def _shoot(page: Any, folder: Path, name: str, scheme: str) -> None:
    """The page's first screen at each width, as a reader on a laptop or a phone sees it."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000 if width == 600 else 760})
        page.screenshot(path=str(folder / f"{name}-{width}-{scheme}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})

