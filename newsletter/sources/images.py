"""Image sizes: which of the sizes a source offers an article keeps, and whether it is small.

Owns: `dimension`, `sized`, `html_images`, `same_image`, `choose_size`, `settle_image`.
Imports `models` and `sources.clean`.

Sources give sizes in many places: `width`/`height` on `media:content` and
`media:thumbnail`, on an `<img>` in the content, `media_details` in WordPress's REST API
(with every generated size), and WordPress's file names (`photo-300x200.jpg`). A size that
is missing, zero, negative or absurd (over `MAX_SIDE`) is unknown, never guessed. The sizes
of one image are those whose file names differ only by WordPress's size suffix.

Of an image's sizes, the largest that fits the slot is kept: at most twice the slot's
width (sharp on high-density screens), else the smallest there is. A known size narrower
than `images.min_hero_width` makes the image small: a thumbnail, never stretched across
the email. An image of unknown size is kept as unknown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ..models import FeedItem, ImageSize
from .clean import safe_url

MAX_SIDE = 20_000
#: The slot the parsers aim for before ingest applies `images.hero_width`.
DEFAULT_SLOT = 552
DEFAULT_MIN_HERO = 400
_SUFFIX = re.compile(r"-(\d{1,5})x(\d{1,5})(?=\.(?:jpe?g|png|gif|webp|avif)$)", re.IGNORECASE)
_SCALED = re.compile(r"-(?:scaled|rotated)(?=\.(?:jpe?g|png|gif|webp|avif)$)", re.IGNORECASE)
_IMG = re.compile(r"<img\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"([a-zA-Z-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def dimension(value: Any) -> int | None:
    """A side in pixels from a source's value ("1200", 1200, "1200px"), or None when it is
    missing, not a number, zero, negative or absurd."""
    text = str(value).strip().lower().removesuffix("px") if value is not None else ""
    try:
        number = int(float(text)) if text else 0
    except (ValueError, OverflowError):
        return None
    return number if 0 < number <= MAX_SIDE else None


def sized(url: str, width: Any = None, height: Any = None) -> ImageSize:
    """An image size from what a source says, falling back to WordPress's `-WxH` file name."""
    w, h = dimension(width), dimension(height)
    if w is None:
        match = _SUFFIX.search(urlsplit(url).path)
        if match:
            w, h = dimension(match.group(1)), dimension(match.group(2))
    return ImageSize(url, w, h if w is not None else None)


def html_images(markup: str, base: str) -> list[ImageSize]:
    """The http(s) images of some HTML in order, with their `width`/`height` attributes."""
    found = []
    for match in _IMG.finditer(markup or ""):
        attrs = {m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None else m.group(3)) for m in _ATTR.finditer(match.group(1))}
        url = safe_url(attrs.get("src", ""), base)
        if url:
            found.append(sized(url, attrs.get("width"), attrs.get("height")))
    return found


def _key(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.lower() + _SCALED.sub("", _SUFFIX.sub("", parts.path))


def same_image(sizes: Iterable[ImageSize]) -> tuple[ImageSize, ...]:
    """The first image's sizes among `sizes` (the first, then every other size of it)."""
    listed = list(sizes)
    if not listed:
        return ()
    key = _key(listed[0].url)
    return tuple(dict.fromkeys(s for s in listed if _key(s.url) == key))


def choose_size(sizes: Sequence[ImageSize], *, slot: int, min_hero: int) -> ImageSize | None:
    """The size to keep: the widest known one at most twice `slot`, else the narrowest
    known one. When that is narrower than `min_hero` and a size of unknown width is
    offered too (often the original), the unknown one is kept instead."""
    known = [s for s in sizes if s.width]
    unknown = [s for s in sizes if not s.width]
    fits = [s for s in known if (s.width or 0) <= 2 * slot]
    best = max(fits, key=lambda s: s.width or 0) if fits else min(known, key=lambda s: s.width or 0) if known else None
    if unknown and (best is None or (best.width or 0) < min_hero):
        return unknown[0]
    return best


def settle_image(item: FeedItem, *, slot: int, min_hero: int) -> FeedItem:
    """The item with the size of its image chosen for `slot` and its small flag set."""
    sizes = item.image_sizes or ((sized(item.image_url),) if item.image_url else ())
    best = choose_size(sizes, slot=slot, min_hero=min_hero)
    if best is None:
        return replace(item, image_url="", image_width=None, image_height=None, image_small=False)
    small = best.width is not None and best.width < min_hero
    return replace(item, image_url=best.url, image_width=best.width, image_height=best.height, image_small=small)
