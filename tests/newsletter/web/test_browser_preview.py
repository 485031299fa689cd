"""The editors' preview as an editor uses it, in a real Chromium through Playwright,
against `newsletter preview` running as a real process: switch segments, the mobile
frame, pin and exclude and include again, the page reloading itself when a template file
or the draft changes, approval refused while the preflight finds an error, a test send.
And, in-process, what the preview refuses: other hosts, forms without their token.

Uses Debian's Chromium at /usr/bin/chromium; never downloads a browser. Article links
point at the local test server, so the link checks never leave the machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from newsletter import drafts, store
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.models import FeedItem, IssueStatus
from newsletter.render import builtin_templates
from newsletter.screenshots import CHROMIUM_ARGS
from newsletter.web.preview import create_preview_app
from tests.conftest import NOW
from tests.helpers import outbox_messages
from tests.servers import LocalServer, Route

CHROMIUM = Path("/usr/bin/chromium")
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
pytestmark = SQLITE_ONLY
browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
TITLES = {"dd": "Trial meets its endpoint", "mf": "New bioreactor plant", "ev": "Congress preview"}
CATEGORIES = {"dd": "Clinical Trials", "mf": "Manufacturing", "ev": "Events"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Client:
    """Requests to the app in-process through httpx's ASGI transport."""

    def __init__(self, app: Any, *, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, url, **kwargs)

        # Its own thread: the browser tests' Playwright keeps an event loop in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, call()).result()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@dataclass
class Preview:
    settings: Settings
    url: str
    templates: Path

    def article_id(self, engine: Engine, title: str) -> int:
        draft = drafts.current_draft(engine, self.settings)
        return next(a.article.id for a in draft.articles if a.article.title == title)


def draft_settings(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer,
                   **extra: Any) -> tuple[Settings, Path]:
    """Settings with a templates folder of our own, and a draft of three articles whose
    links answer on the local server."""
    templates = tmp_path / "templates"
    shutil.copytree(builtin_templates() / "email", templates / "email")
    items = []
    for n, (tag, title) in enumerate(TITLES.items()):
        server.routes[f"/{tag}"] = Route(200, b"ok")
        items.append(FeedItem(tag, f"{server.url}/{tag}", title, "", NOW - (n + 1) * timedelta(hours=5),
                              (CATEGORIES[tag],), f"About {title.lower()}.", ""))
    with engine.begin() as conn:
        store.upsert_articles(conn, items, source="test", now=NOW)
    settings = make_settings(templates={"folder": str(templates)}, **extra)
    drafts.build_draft(engine, settings, now=NOW)
    drafts.set_preheader(engine, "Three stories from the week in pharma")
    return settings, templates


def preview_settings(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path,
                     server: LocalServer) -> tuple[Settings, Path, int]:
    port = free_port()
    settings, templates = draft_settings(
        make_settings, engine, tmp_path, server,
        preview={"port": port, "test_recipients": ["editor@example.com"], "link_timeout": 2},
    )
    return settings, templates, port


@pytest.fixture
def preview(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer) -> Iterator[Preview]:
    """The preview app under uvicorn in a thread of this process, on a free port."""
    settings, templates, port = preview_settings(make_settings, engine, tmp_path, server)
    config = uvicorn.Config(create_preview_app(settings, engine=engine), host="127.0.0.1", port=port,
                            log_level="warning", timeout_graceful_shutdown=1)
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the preview app did not start"
        time.sleep(0.02)
    yield Preview(settings, f"http://127.0.0.1:{port}", templates)
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def preview_process(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path,
                    server: LocalServer) -> Iterator[Preview]:
    """`newsletter preview --port N` as a real process."""
    settings, templates, port = preview_settings(make_settings, engine, tmp_path, server)
    log = (tmp_path / "preview.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(tmp_path / "newsletter.toml"), "preview", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NEWSLETTER_CONFIG": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("newsletter preview did not start:\n" + (tmp_path / "preview.log").read_text())
            time.sleep(0.1)
        yield Preview(settings, url, templates)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    output = (tmp_path / "preview.log").read_text()
    assert f"Preview of the draft on {url}/" in output and "Traceback" not in output


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    yield context.new_page()
    context.close()


def open_page(page: Any, url: str) -> None:
    """Open the preview and wait until its live reload is connected."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_text("live reload: on")).to_be_visible()


def press(page: Any, name: str) -> None:
    """Press a button from the keyboard: focus it, then Enter."""
    page.get_by_role("button", name=name).focus()
    page.keyboard.press("Enter")


def frame_text(page: Any, title: str) -> Any:
    return page.frame_locator(f'iframe[title="{title}"]').locator("body")


@browser_only
def test_segments_and_the_mobile_frame(preview_process: Preview, page: Any) -> None:
    from playwright.sync_api import expect

    preview = preview_process
    open_page(page, preview.url)
    expect(page.get_by_role("heading", name="Issue 2026-w48: draft")).to_be_visible()
    inbox = page.get_by_label("Inbox")
    expect(inbox).to_contain_text("Pharma Weekly: Trial meets its endpoint")
    expect(inbox).to_contain_text("Three stories from the week in pharma")
    for title in ("Desktop (600 px)", "Mobile (375 px)"):
        expect(frame_text(page, title)).to_contain_text("Trial meets its endpoint")
        expect(frame_text(page, title)).to_contain_text("Hello Editor,")
    widths = {f.evaluate("document.documentElement.clientWidth") for f in page.frames[1:]}
    assert widths == {600, 375}
    # At 375 px the email's own mobile layout applies: its content is no wider than the frame.
    mobile = next(f for f in page.frames[1:] if f.evaluate("document.documentElement.clientWidth") == 375)
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
    expect(page.get_by_label("Preflight")).to_contain_text("Preflight: passed")
    full_size = page.get_by_label("Segment").locator("strong").inner_text()

    # A reader of Manufacturing only.
    page.get_by_label("Drug Development").uncheck()
    page.get_by_label("Events").uncheck()
    page.get_by_role("button", name="Show segment").click()
    expect(page.get_by_label("Drug Development")).not_to_be_checked()
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("New bioreactor plant")
    expect(frame_text(page, "Mobile (375 px)")).not_to_contain_text("Trial meets its endpoint")
    expect(inbox).to_contain_text("Pharma Weekly: New bioreactor plant")
    assert page.get_by_label("Segment").locator("strong").inner_text() != full_size
    # The segment's one article leads it: in the text part, under "TOP STORY", counted in the contents.
    expect(page.get_by_label("Plain text")).to_contain_text("== TOP STORY ==")
    expect(page.get_by_label("Plain text")).to_contain_text("- Manufacturing (1)")
    expect(page.get_by_label("Plain text")).not_to_contain_text("CLINICAL")


@browser_only
def test_pin_exclude_and_include_again(preview: Preview, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_page(page, preview.url)
    press(page, "Pin Congress preview")
    expect(page.get_by_role("status")).to_have_text("The article is pinned.")
    expect(page.get_by_role("button", name="Unpin Congress preview")).to_be_visible()

    press(page, "Exclude Congress preview")
    expect(page.get_by_role("status")).to_have_text("The article is excluded.")
    expect(frame_text(page, "Desktop (600 px)")).not_to_contain_text("Congress preview")
    draft = drafts.current_draft(engine, preview.settings)
    assert [a.title for a in draft.excluded] == ["Congress preview"]

    press(page, "Include Congress preview")
    expect(page.get_by_role("status")).to_have_text("The article is back in the draft.")
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Congress preview")
    draft = drafts.current_draft(engine, preview.settings)
    assert not draft.excluded and "Congress preview" in [a.article.title for a in draft.articles]


@browser_only
def test_the_page_reloads_itself_when_a_template_or_the_draft_changes(preview: Preview, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_page(page, preview.url)
    desktop = frame_text(page, "Desktop (600 px)")
    expect(desktop).to_contain_text("View in browser")
    template = preview.templates / "email" / "digest.mjml.j2"
    template.write_text(template.read_text().replace(">View in browser<", ">Read it on the web<"))
    expect(desktop).to_contain_text("Read it on the web", timeout=10_000)

    drafts.set_subject(engine, "Changed from the command line")
    expect(page.get_by_label("Inbox")).to_contain_text("Changed from the command line", timeout=10_000)


@browser_only
def test_approval_is_refused_while_the_preflight_finds_an_error(preview: Preview, page: Any, engine: Engine) -> None:
    from playwright.sync_api import expect

    open_page(page, preview.url)
    page.get_by_label("Subject").fill("S" * 151)
    page.get_by_label("Intro, in Markdown").fill("Hello **editors**")
    press(page, "Save texts")
    expect(page.get_by_role("status")).to_have_text("The subject, preheader and intro are saved.")
    expect(frame_text(page, "Desktop (600 px)")).to_contain_text("Hello editors")
    preflight = page.get_by_label("Preflight")
    expect(preflight).to_contain_text("Preflight: 1 error,")
    expect(preflight).to_contain_text("error [subject]: the subject has 151 characters, over 150")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("issue 2026-w48 fails its preflight (1 error)")
    assert drafts.current_draft(engine, preview.settings).issue.status is IssueStatus.DRAFT

    drafts.set_subject(engine, "GLP-1 and a new plant")
    open_page(page, preview.url)
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("The issue is approved and frozen for sending.")
    expect(page.get_by_role("heading", name="Issue 2026-w48: approved")).to_be_visible()
    expect(page.get_by_role("button", name="Pin Congress preview")).to_have_count(0)
    page.get_by_role("button", name="Reopen").click()
    expect(page.get_by_role("heading", name="Issue 2026-w48: draft")).to_be_visible()


@browser_only
def test_send_a_test_from_the_page(preview: Preview, page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, preview.url)
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_role("status")).to_have_text("The test is sent to the editors.")
    (message,) = outbox_messages(preview.settings.outbox_dir)
    assert message["To"] == "editor@example.com"
    assert message["Subject"] == "[TEST] Pharma Weekly: Trial meets its endpoint"


def test_the_preview_answers_only_on_localhost_and_only_signed_forms(
    make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer
) -> None:
    settings, _ = draft_settings(make_settings, engine, tmp_path, server)
    with pytest.raises(ConfigError, match="preview: listening on 0.0.0.0 needs preview.password"):
        create_preview_app(settings, host="0.0.0.0", engine=engine)
    app = create_preview_app(settings, engine=engine)
    local, other = Client(app, base_url="http://127.0.0.1:8100"), Client(app, base_url="http://evil.example")
    assert other.get("/").status_code == 421
    page = local.get("/")
    assert page.status_code == 200 and "Trial meets its endpoint" in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    answer = local.post("/draft", data={"action": "approve"})
    assert answer.status_code == 403 and "This form has expired" in answer.text
    assert drafts.current_draft(engine, settings).issue.status is IssueStatus.DRAFT
    email = local.get("/email")
    assert email.headers["content-security-policy"].startswith("default-src 'none'")


def test_with_a_password_every_request_needs_it(
    make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer
) -> None:
    settings, _ = draft_settings(make_settings, engine, tmp_path, server, preview={"password": "correct horse battery"})
    app = create_preview_app(settings, host="0.0.0.0", engine=engine)
    client = Client(app, base_url="http://preview.example")
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", auth=("editor", "wrong")).status_code == 401
    assert client.get("/", auth=("editor", "correct horse battery")).status_code == 200


def test_without_a_draft_the_page_says_how_to_make_one(make_settings: Callable[..., Settings], engine: Engine) -> None:
    settings = make_settings()  # no articles at all: an empty week, no draft can be built
    page = Client(create_preview_app(settings, engine=engine), base_url="http://127.0.0.1:8100").get("/")
    assert page.status_code == 200
    assert "There is no draft to preview" in page.text and "newsletter draft build" in page.text
