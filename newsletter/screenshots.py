"""PNG pictures of an email as desktop (600 px) and mobile (375 px) readers see it, taken
with headless Chromium through Playwright, to share with colleagues.

Owns: `take_screenshots`, `CHROMIUM_ARGS`. Imports `errors`. Playwright is imported only
when a picture is taken; it drives the system's Chromium and never downloads a browser.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError, RenderError

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WIDTHS = (("desktop", 600), ("mobile", 375))


def take_screenshots(html: str, folder: Path, *, stem: str, chromium: Path, dark: bool = False) -> list[Path]:
    """Write `<stem>-desktop.png` and `<stem>-mobile.png` (whole page) into `folder`, or
    with `dark` `<stem>-desktop-dark.png` and `<stem>-mobile-dark.png` as Chromium shows
    them with a dark colour scheme; the paths written. Images that do not load within a
    few seconds are left out."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ConfigError("screenshots need Playwright: pip install playwright (it uses the system's Chromium)") from None
    if not chromium.is_file():
        raise ConfigError(f"preview.chromium: no Chromium at {chromium} (on Debian: apt-get install chromium)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {folder}: cannot be created ({exc.strerror})") from None
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(CHROMIUM_ARGS))
            try:
                for name, width in WIDTHS:
                    page = browser.new_page(viewport={"width": width, "height": 800},
                                            color_scheme="dark" if dark else "light")
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
