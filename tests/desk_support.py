"""What the desk's tests share: a draft of five articles whose links answer on the local
test server, the desk app in-process (httpx over ASGI) or under uvicorn in a thread, and
reading a page's form tokens."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
from newsletter.models import FeedItem
from newsletter.render import builtin_templates
from newsletter.screenshots import CHROMIUM_ARGS
from newsletter.web.desk import create_desk_app
from tests.conftest import NOW
from tests.servers import LocalServer, Route

TITLES = {"dd": "Trial meets its endpoint", "mf": "New bioreactor plant", "ev": "Congress preview",
          "d2": "Phase II data in obesity", "e2": "GMP webinar announced"}
CATEGORIES = {"dd": "Clinical Trials", "mf": "Manufacturing", "ev": "Events", "d2": "Clinical Trials", "e2": "Events"}
LOCAL = "http://127.0.0.1:8100"
CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Client:
    """Requests to the app in-process through httpx's ASGI transport, keeping cookies."""

    def __init__(self, app: Any, *, base_url: str = LOCAL) -> None:
        self.app = app
        self.base_url = base_url
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url, cookies=self.cookies) as client:
                answer = await client.request(method, url, **kwargs)
                self.cookies.update({k: v for k, v in client.cookies.items()})
                return answer

        # Its own thread: the browser tests' Playwright keeps an event loop in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, call()).result()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def tokens(self) -> dict[str, str]:
        """The CSRF token and draft version the page's forms carry now."""
        return form_tokens(self.get("/").text)


def form_tokens(html: str) -> dict[str, str]:
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    version = re.search(r'name="version" value="(\d+)"', html)
    assert csrf is not None, "the page has no form token"
    return {"csrf": csrf.group(1), "version": version.group(1) if version else ""}


@dataclass
class Desk:
    settings: Settings
    url: str
    templates: Path

    def article_id(self, engine: Engine, title: str) -> int:
        return article_id(engine, self.settings, title)


def article_id(engine: Engine, settings: Settings, title: str) -> int:
    draft = drafts.current_draft(engine, settings)
    found = [a.article.id for a in draft.articles if a.article.title == title] + [a.id for a in draft.excluded if a.title == title]
    return found[0]


def draft_settings(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer,
                   **extra: Any) -> tuple[Settings, Path]:
    """Settings with a templates folder of our own, and a draft of five articles (two in
    Drug Development, two in Events) whose links answer on the local server."""
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
    drafts.set_preheader(engine, "Five stories from the week in pharma")
    return settings, templates


@contextmanager
def running_desk(settings: Settings, engine: Engine, port: int, templates: Path) -> Iterator[Desk]:
    """The desk app under uvicorn in a thread of this process."""
    config = uvicorn.Config(create_desk_app(settings, engine=engine), host="127.0.0.1", port=port,
                            log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the desk did not start"
        time.sleep(0.02)
    try:
        yield Desk(settings, f"http://127.0.0.1:{port}", templates)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    # The desk renders the email and runs the preflight for each page: on a loaded machine
    # (CI runs the suite on two cores with three workers) that can pass Playwright's 5 s.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def open_desk(page: Any, url: str) -> None:
    """Open the desk and wait until its live reload answers."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#live")).to_have_text("live reload: on")


def press(page: Any, name: str) -> None:
    """Press a button from the keyboard: focus it, then Enter. Only once the page has
    loaded (its email frames included): a form submitted while the page is still loading
    was seen to be dropped by Chromium on a loaded machine, the page staying as it was."""
    page.wait_for_load_state("load")
    page.get_by_role("button", name=name, exact=True).focus()
    page.keyboard.press("Enter")


def done(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("p.notice")).to_have_text(text)


def frame_text(page: Any, title: str) -> Any:
    return page.frame_locator(f'iframe[title="{title}"]').locator("body")
