"""The digest in a real Chromium (Playwright on Debian's /usr/bin/chromium): with every
<style> removed, as Gmail for other accounts and Yahoo's Android app do, it still fits a
375 px screen and keeps its headline colours; in light and dark colour schemes every
piece of text reads at 4.5:1 or more against what is behind it (computed here)."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from newsletter.models import Sponsor
from newsletter.render import Renderer
from tests.desk_support import browser  # noqa: F401  (the module's Chromium)
from tests.newsletter.test_email_theme import renderer, wcag_contrast
from tests.newsletter.test_render import issue_content

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")

# Every text node that shows, with its colour and the first opaque background behind it.
TEXT_COLOURS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest('.ph')) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!box.width || !box.height || style.visibility === 'hidden' || style.display === 'none') continue;
    let bg = null;
    for (let up = el; up; up = up.parentElement) {
      const c = getComputedStyle(up).backgroundColor;
      if (c && c !== 'transparent' && !c.endsWith(', 0)')) { bg = c; break; }
    }
    out.push({text: node.textContent.trim().slice(0, 40), colour: style.color, bg: bg || 'rgb(255, 255, 255)',
              size: parseFloat(style.fontSize)});
  }
  return out;
}"""


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def hex_of(rgb: str) -> str:
    r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def open_email(browser: Any, html: str, *, width: int, scheme: str = "light", images: bool = True) -> Any:
    """A page showing `html`; every https image answers with a real 1200×675 (or logo-sized)
    PNG, or, without `images`, fails to load."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    big, logo = png(1200, 675, (40, 90, 140)), png(360, 80, (11, 83, 148))

    def answer(route: Any) -> None:
        if not images:
            route.abort()
        elif "logo" in route.request.url:
            route.fulfill(status=200, content_type="image/png", body=logo)
        else:
            route.fulfill(status=200, content_type="image/png", body=big)

    page.route("https://**/*", answer)
    page.set_content(html, wait_until="load")
    return page


def full_render(**theme: Any) -> tuple[Renderer, str]:
    made = renderer(logo_url="https://cdn.example.com/logo.png", dark_logo_url="https://cdn.example.com/logo-dark.png",
                    social={"linkedin": "https://www.linkedin.com/company/pw"}, **theme)
    content = replace(issue_content(per_section=3, sections=4), sponsor=Sponsor(
        "Acme Biologics", "Contract manufacturing for biologics, from cell line to fill-finish.", "https://acme.example.com/",
        "https://img.example.com/acme.png", "manufacturing"))
    return made, made.render(content).html


@pytest.mark.parametrize("images", [True, False], ids=["images-load", "images-fail"])
def test_without_any_style_element_it_fits_375_px_and_keeps_its_colours(browser: Any, images: bool) -> None:
    made, html = full_render()
    page = open_email(browser, html, width=375, images=images)
    removed = page.evaluate("() => { const s = [...document.querySelectorAll('style')]; s.forEach(e => e.remove()); return s.length; }")
    assert removed >= 3
    assert page.evaluate("() => document.querySelectorAll('style').length") == 0
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    colours = page.evaluate("() => [...document.querySelectorAll('h3 a')].map(a => [getComputedStyle(a).color, getComputedStyle(a).textDecorationLine])")
    assert len(colours) == 12 + 1  # eleven compact items, the lead, the sponsor
    for colour, decoration in colours:
        assert hex_of(colour) == made.theme.light.heading and decoration == "none"
    # Every image stays inside the column, loaded or not.
    widths = page.evaluate("() => [...document.querySelectorAll('img')].filter(i => i.offsetParent).map(i => i.getBoundingClientRect().right)")
    assert widths and max(widths) <= 375
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [600, 375])
def test_every_text_reads_at_4_5_to_1_in_light_and_dark(browser: Any, scheme: str, width: int) -> None:
    made, html = full_render()
    page = open_email(browser, html, width=width, scheme=scheme)
    assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches") is (scheme == "dark")
    found = page.evaluate(TEXT_COLOURS)
    assert len(found) > 60
    palette = made.theme.dark if scheme == "dark" else made.theme.light
    backgrounds = {hex_of(f["bg"]) for f in found}
    assert backgrounds <= {palette.page, palette.surface, palette.boxed}, backgrounds
    for item in found:
        ratio = wcag_contrast(hex_of(item["colour"]), hex_of(item["bg"]))
        assert ratio >= 4.5, f"{scheme}: {item['text']!r} {item['colour']} on {item['bg']}: {ratio:.2f}"
        assert item["size"] >= 13, item
    logo_shown = page.evaluate("() => [...document.querySelectorAll('h1 img')].filter(i => getComputedStyle(i).display !== 'none').map(i => i.src)")
    assert logo_shown == ["https://cdn.example.com/logo-dark.png" if scheme == "dark" else "https://cdn.example.com/logo.png"]
    page.close()


def test_on_a_phone_the_thumbnail_stacks_above_its_text(browser: Any) -> None:
    _, html = full_render()
    for width, beside in ((600, True), (375, False)):
        page = open_email(browser, html, width=width)
        boxes = page.evaluate("() => { const t = document.querySelector('.it'); return [t.querySelector('.th').getBoundingClientRect().toJSON(), t.querySelector('.tx').getBoundingClientRect().toJSON()]; }")
        thumb, text = boxes
        assert (text["left"] >= thumb["right"] - 1) is beside
        assert (text["top"] >= thumb["bottom"] - 1) is (not beside)
        page.close()
