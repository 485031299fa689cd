"""Turning untrusted source HTML into plain text and safe links.

Owns: `plain_text`, `fold_text`, `shorten`, `safe_url`, `canonical_url`, `why_left_out`. Imports nh3.

Titles and summaries are stored as plain text: nh3 drops every tag (and the content of
`script` and `style`), entities are decoded, white space folded. Templates escape them
again on output, so nothing from a feed can run in an email or a page. Links are kept only
when they are absolute http(s) URLs.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

_SPACE = re.compile(r"\s+")
_BLOCK_END = re.compile(r"(<br\s*/?>|</(?:p|div|li|h[1-6]|tr|td|blockquote)\s*>)", re.IGNORECASE)
# What a cut must not end with: spaces, punctuation, an ellipsis, an opening bracket.
_CUT_TAIL = re.compile(r"[\s,;:.\-–—…(\[{«“\"']+$")
_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid)$", re.IGNORECASE)


def plain_text(value: str) -> str:
    """Text without tags or entities, white space folded, control characters dropped."""
    if not value:
        return ""
    # Block boundaries become spaces, so "<p>One.</p><p>Two.</p>" reads "One. Two.".
    text = nh3.clean(_BLOCK_END.sub(r"\1 ", value), tags=set(), attributes={})
    return fold_text(html.unescape(text) if "&amp;" in text else text)


def fold_text(text: str) -> str:
    """Text that is already free of tags with its entities decoded (a feed that escaped
    them twice is decoded twice), control characters dropped, white space folded."""
    text = html.unescape(text)
    text = "".join(ch for ch in text if ch.isprintable() or ch in " \t\n")
    return _SPACE.sub(" ", text).strip()


def shorten(text: str, limit: int) -> str:
    """`text` cut on a word boundary to at most `limit` characters, ending with one `…`.

    Never mid-word (text without spaces, such as Chinese, is cut between characters) and
    never with a second ellipsis or a dangling stop, comma or bracket before it."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if not text[limit - 1].isspace():
        space = cut.rfind(" ")
        if space > 0:
            cut = cut[:space]
    return _CUT_TAIL.sub("", cut) + "…"


def safe_url(value: str, base: str = "") -> str:
    """An absolute http(s) URL, or "" for anything else (javascript:, data:, mailto:, junk)."""
    value = (value or "").strip()
    if not value:
        return ""
    if base:
        value = urljoin(base, value)
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c in value for c in ' <>"\'`'):
        return ""
    return value


def canonical_url(url: str) -> str:
    """The URL without fragment and tracking parameters, scheme and host in lower case."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", query, ""))


def why_left_out(guid: str, url: str, title: str, seen: set[str], *, noun: str) -> str:
    """Why a source's item (a feed "item", a WordPress "post") with this guid, canonical
    link and title is left out, or "" to keep it. A kept item's guid and link go into
    `seen`, so that a later item repeating either is left out."""
    if guid in seen or url in seen:
        return f"it repeats an earlier {noun}'s guid or link"
    seen.update((guid, url))
    if not title:
        return "it has no title"
    return ""
