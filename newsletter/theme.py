"""The look of the emails and pages: two palettes (light and dark) made from the
configured brand and accent colours, each text colour at 4.5:1 or more on what it sits on.

Owns: `Palette`, `Theme`, `build_theme`, `contrast`, `readable_on`, `SOCIAL_LABELS`.
Imports nothing of ours (the configuration hands its values in).

A brand colour is whatever the publisher's logo uses, often too light for text on white
(or too dark for text on the dark palette): it is kept for the masthead rule and moved
towards black (light) or white (dark) just enough for links and headings to reach
WCAG's 4.5:1 against every background they appear on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: WCAG AA for normal text. Aimed at with a small margin, so rounding never lands under it.
MINIMUM_CONTRAST = 4.5
_TARGET = 4.6

#: How a network is named in the footer; another name is shown capitalized.
SOCIAL_LABELS = {
    "linkedin": "LinkedIn", "x": "X", "twitter": "X (Twitter)", "bluesky": "Bluesky", "mastodon": "Mastodon",
    "facebook": "Facebook", "instagram": "Instagram", "youtube": "YouTube", "threads": "Threads", "rss": "RSS",
}


def _channels(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def luminance(colour: str) -> float:
    """The relative luminance of `#rrggbb` (WCAG 2)."""
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in _channels(colour))]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` colours, from 1 to 21."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _mix(colour: str, towards: str, share: float) -> str:
    mixed = (round(a + (b - a) * share) for a, b in zip(_channels(colour), _channels(towards), strict=True))
    return "#" + "".join(f"{v:02x}" for v in mixed)


def readable_on(colour: str, backgrounds: tuple[str, ...], *, dark: bool) -> str:
    """`colour`, or the nearest shade of it towards white (`dark`) or black that reads at
    4.5:1 or more on every one of `backgrounds`."""
    towards = "#ffffff" if dark else "#000000"
    for step in range(0, 101, 2):
        shade = _mix(colour, towards, step / 100)
        if all(contrast(shade, bg) >= _TARGET for bg in backgrounds):
            return shade
    return towards


@dataclass(frozen=True)
class Palette:
    """The colours of one colour scheme. `page` is behind the content, `surface` the
    content's own background, `boxed` the sponsor's box; the rest are text colours."""

    page: str
    surface: str
    boxed: str
    text: str
    heading: str
    muted: str
    link: str
    accent: str
    rule: str

    def text_pairs(self) -> dict[str, tuple[str, str]]:
        """Every text colour with every background it is used on: what must reach 4.5:1."""
        pairs: dict[str, tuple[str, str]] = {}
        for name in ("text", "heading", "muted", "link", "accent"):
            for bg_name in ("surface", "boxed"):
                pairs[f"{name} on {bg_name}"] = (getattr(self, name), getattr(self, bg_name))
        # The footer sits on the page colour: its text and links.
        pairs["muted on page"] = (self.muted, self.page)
        pairs["link on page"] = (self.link, self.page)
        return pairs


def _palette(base: dict[str, str], brand: str, accent: str, *, dark: bool) -> Palette:
    backgrounds = (base["page"], base["surface"], base["boxed"])
    return Palette(**base, link=readable_on(brand, backgrounds, dark=dark), accent=readable_on(accent, backgrounds, dark=dark))


_LIGHT = {"page": "#eef1f5", "surface": "#ffffff", "boxed": "#f5f7fa", "text": "#1f2933", "heading": "#111827",
          "muted": "#4b5563", "rule": "#d5dbe3"}
_DARK = {"page": "#0f1419", "surface": "#1a2027", "boxed": "#232b34", "text": "#e6e9ed", "heading": "#f5f6f8",
         "muted": "#b0b8c2", "rule": "#323c47"}


@dataclass(frozen=True)
class Theme:
    """What the templates use: both palettes, the logo and the type."""

    brand: str
    light: Palette
    dark: Palette
    font_stack: str
    logo_url: str = ""
    logo_width: int = 180
    dark_logo_url: str = ""
    thumbnails: bool = True
    social: tuple[tuple[str, str, str], ...] = field(default=())
    #: A text colour readable on the brand colour (the pages' header and buttons).
    on_brand: str = "#ffffff"


def build_theme(
    *,
    brand_color: str = "#0b5394",
    accent_color: str = "#b45309",
    font_stack: str = "Helvetica, Arial, sans-serif",
    logo_url: str = "",
    logo_width: int = 180,
    dark_logo_url: str = "",
    thumbnails: bool = True,
    social: dict[str, str] | None = None,
) -> Theme:
    """The theme of validated settings (`[theme]`): colours as lowercase `#rrggbb`."""
    on_brand = "#ffffff" if contrast(brand_color, "#ffffff") >= MINIMUM_CONTRAST else "#111111"
    return Theme(
        brand=brand_color,
        light=_palette(_LIGHT, brand_color, accent_color, dark=False),
        dark=_palette(_DARK, brand_color, accent_color, dark=True),
        font_stack=font_stack,
        logo_url=logo_url,
        logo_width=logo_width,
        dark_logo_url=dark_logo_url,
        thumbnails=thumbnails,
        social=tuple((name, SOCIAL_LABELS.get(name, name.capitalize()), url) for name, url in (social or {}).items()),
        on_brand=on_brand,
    )
