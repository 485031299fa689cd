"""RSS and Atom feeds: fetch with httpx, parse with feedparser, clean into `FeedItem`s.

Owns: `fetch_feed`, `parse_feed`, `FetchResult`, and the cleaning of titles, summaries,
links and images. Imports `models`, `errors` and `sources.clean`.

Fetching honours ETag and Last-Modified, follows redirects, gives up after a timeout,
and stops reading at a size cap, so a 50 MB "feed" costs no more than the cap.
A `file:` URL reads a local file, for feeds produced on the same machine (and the demo).
The client given is the network guard's (`ingest.make_client`): an internal address it
refuses and a fetch past its deadline arrive here as `SourceError`s, reported like any other.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import feedparser
import httpx

from ..errors import SourceError
from ..models import FeedItem, ImageSize
from .clean import canonical_url, plain_text, safe_url, shorten, why_left_out
from .images import DEFAULT_MIN_HERO, DEFAULT_SLOT, html_images, same_image, settle_image, sized
from .summary import clean_summary

FetchStatus = Literal["fetched", "not_modified", "failed"]


@dataclass(frozen=True)
class FetchResult:
    """What one fetch of one feed gave."""

    status: FetchStatus
    items: tuple[FeedItem, ...] = ()
    skipped: tuple[str, ...] = ()
    etag: str = ""
    last_modified: str = ""
    error: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(f"feed is {int(declared):,} bytes, over the {max_bytes:,}-byte limit")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise SourceError(f"feed is over the {max_bytes:,}-byte limit; stopped reading")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_file(url: str, max_bytes: int) -> bytes:
    path = Path(unquote(urlsplit(url).path))
    try:
        if path.stat().st_size > max_bytes:
            raise SourceError(f"feed file is over the {max_bytes:,}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None


def fetch_feed(
    client: httpx.Client,
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    max_bytes: int,
    summary_chars: int,
) -> FetchResult:
    """Fetch and parse one feed. Never raises for a bad feed: the result says what failed."""
    try:
        if url.startswith("file:"):
            content = _read_file(url, max_bytes)
            new_etag, new_modified, final_url = "", "", url
        else:
            headers = {}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304:
                    return FetchResult("not_modified", etag=etag, last_modified=last_modified)
                if response.status_code >= 400:
                    raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}")
                content = _read_capped(response, max_bytes)
                new_etag = response.headers.get("etag", "")
                new_modified = response.headers.get("last-modified", "")
                final_url = str(response.url)
        items, skipped, warnings = parse_feed(content, base_url=final_url, summary_chars=summary_chars)
    except SourceError as exc:
        return FetchResult("failed", error=str(exc), etag=etag, last_modified=last_modified)
    except httpx.TimeoutException:
        return FetchResult("failed", error="timed out", etag=etag, last_modified=last_modified)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return FetchResult("failed", error=f"connection failed: {reason}", etag=etag, last_modified=last_modified)
    return FetchResult(
        "fetched", items=tuple(items), skipped=tuple(skipped), etag=new_etag, last_modified=new_modified,
        warnings=tuple(warnings),
    )


def _entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _entry_images(entry: Any, html: str, base_url: str) -> tuple[ImageSize, ...]:
    """Every size of the item's image: its media:content, media:thumbnail or image
    enclosure first, then the content's images, each with the width and height given."""
    offered: list[ImageSize] = []
    for media in entry.get("media_content", []) or []:
        kind = f"{media.get('type', '')} {media.get('medium', '')}"
        if "image" in kind or not kind.strip():
            url = safe_url(media.get("url", ""), base_url)
            if url:
                offered.append(sized(url, media.get("width"), media.get("height")))
    for media in entry.get("media_thumbnail", []) or []:
        url = safe_url(media.get("url", ""), base_url)
        if url:
            offered.append(sized(url, media.get("width"), media.get("height")))
    for enclosure in entry.get("enclosures", []) or []:
        if str(enclosure.get("type", "")).startswith("image/"):
            url = safe_url(enclosure.get("href", ""), base_url)
            if url:
                offered.append(sized(url))
    return same_image(offered + html_images(html, base_url))


def _xml_error(parsed: Any) -> str:
    """The XML syntax error feedparser worked around, or "" (encoding notes don't count)."""
    exc = parsed.get("bozo_exception")
    if not parsed.get("bozo") or exc is None or isinstance(exc, feedparser.CharacterEncodingOverride):
        return ""
    line = getattr(exc, "getLineNumber", lambda: None)()
    return f"malformed XML{f' at line {line}' if line else ''}: {getattr(exc, 'getMessage', lambda: str(exc))()}"


def parse_feed(content: bytes, *, base_url: str, summary_chars: int) -> tuple[list[FeedItem], list[str], list[str]]:
    """Items of a feed document, cleaned; a line for each item left out and why; and
    warnings about the document (XML that feedparser had to read leniently).

    Raises `SourceError` when the document is not an RSS or Atom feed at all, or is so
    malformed that no item could be read from it.
    """
    parsed = feedparser.parse(content, sanitize_html=True, resolve_relative_uris=True)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        if content.lstrip()[:200].lower().startswith((b"<!doctype html", b"<html")):
            raise SourceError("not a feed: the URL answered with an HTML page")
        if not content.strip():
            raise SourceError("not a feed: the response was empty")
        raise SourceError(f"not an RSS or Atom feed: {reason or 'unrecognised document'}")
    feed_link = parsed.feed.get("link") or base_url
    site_name = plain_text(parsed.feed.get("title", ""))
    items: list[FeedItem] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.entries, start=1):
        title = plain_text(entry.get("title", ""))
        label = f"item {index}" + (f" ({title[:60]!r})" if title else "")
        raw_link = entry.get("link", "")
        url = safe_url(raw_link, feed_link)
        guid = str(entry.get("id") or "").strip()
        if not url and guid:
            # A guid stands in for the link only when it is itself an absolute URL.
            url = safe_url(guid)
        if not url:
            why = "its link is not an http(s) URL" if raw_link else "it has no link"
            skipped.append(f"{label}: left out because {why}")
            continue
        url = canonical_url(url)
        guid = guid or url
        why = why_left_out(guid, url, title, seen, noun="item")
        if why:
            skipped.append(f"{label}: left out because {why}")
            continue
        contents = entry.get("content") or []
        encoded = str(contents[0].get("value", "")) if contents else ""
        summary = clean_summary(
            str(entry.get("summary", "") or encoded), limit=summary_chars, post_url=url, title=title,
            site_url=feed_link, site_name=site_name, content=encoded,
        )
        full_html = " ".join([entry.get("summary", "")] + [c.get("value", "") for c in contents])
        categories = tuple(
            dict.fromkeys(c for c in (plain_text(t.get("term", "") or "") for t in entry.get("tags", []) or []) if c)
        )
        item = FeedItem(
            guid=guid[:1000],
            url=url,
            title=shorten(title, 300),
            author=shorten(plain_text(entry.get("author", "")), 200),
            published_at=_entry_time(entry),
            categories=categories,
            summary=summary.text,
            image_url="",
            image_sizes=_entry_images(entry, full_html, feed_link),
            summary_cleaned=summary.cleaned,
        )
        items.append(settle_image(item, slot=DEFAULT_SLOT, min_hero=DEFAULT_MIN_HERO))
    xml_error = _xml_error(parsed)
    if xml_error and not items:
        raise SourceError(f"not an RSS or Atom feed: {xml_error}")
    return items, skipped, [f"{xml_error}; {len(items)} items read leniently"] if xml_error else []

