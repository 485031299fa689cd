"""PNG pictures of an email as desktop (600 px) and mobile (375 px) readers see it, taken
with headless Chromium through Playwright, to share with colleagues.

Owns: `take_screenshots`, `find_chromium`, `CHROMIUM_ARGS`, `INSTALL_CHROMIUM`. Imports
`errors` and `netguard`. Playwright (a dependency) is imported only when a picture is
taken; it drives the system's Chromium and never downloads a browser.

Chromium reaches the network only through us: every request the page makes (an article's
image, whose URL a feed chose) is answered by the network guard's client, so an image at
`http://169.254.169.254/` or `http://127.0.0.1:6379/` is never asked for unless
`[ingest] allow_networks` allows it. JavaScript is off, as in email clients.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from . import netguard
from .errors import ConfigError, RenderError, SourceError

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: What installs a Chromium for us, said when none is found.
INSTALL_CHROMIUM = "sudo apt-get install chromium"
#: The names a system Chromium goes by on PATH, when the configured one is missing.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
WIDTHS = (("desktop", 600), ("mobile", 375))
# Seconds for one image, and its largest size: a picture is not worth waiting longer for.
IMAGE_SECONDS = 5.0
IMAGE_BYTES = 10_000_000


def _answer(client: httpx.Client, route: Any) -> None:
    """Answer one request of the page with what the guarded client fetched, or refuse it."""
    url = route.request.url
    if not url.startswith(("http://", "https://")):
        route.abort("blockedbyclient")
        return
    try:
        with netguard.deadline(IMAGE_SECONDS, setting="screenshots"), client.stream("GET", url) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > IMAGE_BYTES:
                    raise SourceError(f"over {IMAGE_BYTES:,} bytes")
            kind = response.headers.get("content-type", "application/octet-stream")
    except (httpx.HTTPError, SourceError):
        route.abort("blockedbyclient")
        return
    route.fulfill(status=response.status_code, headers={"content-type": kind}, body=body)


def find_chromium(configured: Path, *, path: str | None = None) -> Path:
    """The Chromium to drive: `configured` when it is there; when the default is missing,
    the first `chromium` or `chromium-browser` on `path` (the PATH by default). A
    `ConfigError` that names the command installing it otherwise."""
    if configured.is_file():
        return configured
    if configured == DEFAULT_CHROMIUM:
        for name in CHROMIUM_NAMES:
            found = shutil.which(name, path=path)
            if found:
                return Path(found)
    raise ConfigError(
        f"preview.chromium: no Chromium at {configured}; install it with `{INSTALL_CHROMIUM}` (Debian, Ubuntu), "
        "or set preview.chromium to the browser's path"
    )


def take_screenshots(
    html: str, folder: Path, *, stem: str, chromium: Path, policy: netguard.NetworkPolicy, user_agent: str = "",
    dark: bool = False,
) -> list[Path]:
    """Write `<stem>-desktop.png` and `<stem>-mobile.png` (whole page) into `folder`, or
    with `dark` `<stem>-desktop-dark.png` and `<stem>-mobile-dark.png` as Chromium shows
    them with a dark colour scheme; the paths written. Images that do not load within a
    few seconds, and images at addresses `policy` refuses, are left out."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ConfigError("screenshots need Playwright, a dependency: pip install . again (it uses the system's Chromium)") from None
    chromium = find_chromium(chromium)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {folder}: cannot be created ({exc.strerror})") from None
    written = []
    try:
        client = netguard.make_client(policy, timeout=IMAGE_SECONDS, headers={"User-Agent": user_agent} if user_agent else {})
        with client, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(CHROMIUM_ARGS))
            try:
                for name, width in WIDTHS:
                    page = browser.new_page(viewport={"width": width, "height": 800}, java_script_enabled=False,
                                            color_scheme="dark" if dark else "light")
                    # Chromium connects to nothing itself: the guarded client answers every request.
                    page.route("**/*", lambda route: _answer(client, route))
                    page.set_content(html, wait_until="domcontentloaded")
                    try:
                        page.wait_for_load_state("load", timeout=5000)
                    except PlaywrightError:
                        pass  # An image that does not load is left out of the picture.
                    path = folder / f"{stem}-{name}{'-dark' if dark else ''}.png"
                    page.screenshot(path=str(path), full_page=True)
                    written.append(path)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise RenderError(f"Chromium could not take the screenshots: {str(exc).splitlines()[0]}") from None
    return written
