"""Editors' own items: a folder of Markdown files with YAML front matter.

Owns: `read_folder`, `parse_item`, `ItemError`, `FRONT_MATTER_KEYS`. Imports `models`,
`errors`, `sources.clean` and `sources.feeds` (for `FetchResult`); PyYAML reads the front
matter (safe loading only: no tags, no objects).

A file looks like this; `title` and `url` are required, the rest optional:

    ---
    title: CPHI Milan, 8–10 October
    url: https://www.cphi.com/europe/
    section: events
    date: 2026-11-20 09:00
    image: https://img.example.com/cphi.jpg
    summary: Three days, 2,500 exhibitors.
    ---
    The body. Its first paragraph is the summary when `summary` is not given.

A file whose front matter is wrong is left out with its name and the line of the problem;
the other files are still read. `section` names a configured section by slug or heading;
the caller says which categories stand for each section (see `ingest.section_categories`),
and the item carries them, so section assignment needs no special case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import Any

import yaml

from ..errors import SourceError
from ..models import FeedItem
from .clean import canonical_url, plain_text, safe_url, shorten
from .feeds import FetchResult

FRONT_MATTER_KEYS = ("title", "url", "section", "date", "image", "summary")
# Section key (folded slug or heading) → categories that put an item there; None when the
# section cannot be chosen by a category (it has none of its own and is not the fallback).
SectionCategories = Mapping[str, tuple[str, ...] | None]

_FENCE = re.compile(r"^---[ \t]*$")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKDOWN_MARKS = re.compile(r"(^#{1,6}\s+|^>\s?|[*_`~]+)", re.MULTILINE)


class ItemError(SourceError):
    """What is wrong with one file, and on which line (1-based, of the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


def _split(text: str) -> tuple[list[str], str]:
    """(front matter lines, body) of a file; the front matter starts on line 2."""
    lines = text.splitlines()
    if not lines or not _FENCE.match(lines[0]):
        raise ItemError(1, "no front matter: the file must start with a line '---'")
    for index, line in enumerate(lines[1:], start=1):
        if _FENCE.match(line):
            return lines[1:index], "\n".join(lines[index + 1 :])
    raise ItemError(len(lines), "the front matter is not closed by a line '---'")


def _load(front: list[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """The front matter's mapping and the file line of each key."""
    source = "\n".join(front)
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ItemError(mark.line + 2 if mark else 2, f"front matter is not valid YAML: {problem}") from None
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ItemError(2, "front matter must be 'key: value' lines")
    lines = {str(key.value): key.start_mark.line + 2 for key, _ in node.value}
    return data, lines


def _text(data: Mapping[str, Any], key: str, line: int) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ItemError(line, f"{key}: expected text, got a {'list' if isinstance(value, list) else 'mapping'}")
    return str(value).strip()


def _date(value: Any, line: int, zone: tzinfo) -> datetime | None:
    # YAML reads 2026-11-20 as a date and "2026-11-20 09:00" as a naive datetime; both are
    # the site's local time unless an offset is given.
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ItemError(line, f"date: expected a date such as 2026-11-20 or 2026-11-20 09:00, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _body_summary(body: str) -> str:
    for paragraph in re.split(r"\n\s*\n", body):
        text = plain_text(_MARKDOWN_MARKS.sub("", _MARKDOWN_LINK.sub(r"\1", paragraph)))
        if text:
            return text
    return ""


def parse_item(
    text: str, *, sections: SectionCategories, zone: tzinfo, summary_chars: int
) -> FeedItem:
    """One Markdown file as an item. Raises `ItemError` naming the line of the problem."""
    front, body = _split(text)
    data, lines = _load(front)
    unknown = [key for key in data if str(key) not in FRONT_MATTER_KEYS]
    if unknown:
        key = str(unknown[0])
        raise ItemError(lines.get(key, 2), f"unknown key {key!r} (known: {', '.join(FRONT_MATTER_KEYS)})")
    at = {key: lines.get(key, 2) for key in FRONT_MATTER_KEYS}
    title = plain_text(_text(data, "title", at["title"]))
    if not title:
        raise ItemError(at["title"], "title: missing; every item needs a title")
    raw_url = _text(data, "url", at["url"])
    url = safe_url(raw_url)
    if not url:
        why = f"expected an http(s) URL, got {raw_url!r}" if raw_url else "missing; every item needs a link"
        raise ItemError(at["url"], f"url: {why}")
    raw_image = _text(data, "image", at["image"])
    image = safe_url(raw_image)
    if raw_image and not image:
        raise ItemError(at["image"], f"image: expected an http(s) URL, got {raw_image!r}")
    section = _text(data, "section", at["section"])
    categories: tuple[str, ...] = ()
    if section:
        key = _fold(section)
        if key not in sections:
            known = sorted({k for k in sections if re.fullmatch(r"[a-z0-9-]+", k)})
            raise ItemError(at["section"], f"section: {section!r} is not a configured section (known: {', '.join(known)})")
        found = sections[key]
        if found is None:
            raise ItemError(
                at["section"],
                f"section: {section!r} lists no category of its own to reach it by; add one to its categories",
            )
        categories = found
    summary = plain_text(_text(data, "summary", at["summary"])) or _body_summary(body)
    url = canonical_url(url)
    return FeedItem(
        guid=url[:1000],
        url=url,
        title=shorten(title, 300),
        author="",
        published_at=_date(data.get("date"), at["date"], zone),
        categories=categories,
        summary=shorten(summary, summary_chars),
        image_url=image,
    )


def read_folder(folder: Path, *, sections: SectionCategories, zone: tzinfo, summary_chars: int) -> FetchResult:
    """Every `*.md` file under `folder` (hidden ones aside), in name order.

    Never raises: a missing folder is a failed result, a bad file a line in `skipped`
    ("events/cphi.md, line 4: …"), and the other files are still read.
    """
    if not folder.is_dir():
        return FetchResult("failed", error=f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    try:
        paths = sorted(folder.rglob("*.md"))
    except OSError as exc:
        return FetchResult("failed", error=f"folder {folder} cannot be read: {exc.strerror}")
    items: list[FeedItem] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
            item = parse_item(text, sections=sections, zone=zone, summary_chars=summary_chars)
        except ItemError as exc:
            skipped.append(f"{name}, {exc}: left out")
            continue
        except UnicodeDecodeError:
            skipped.append(f"{name}: not UTF-8 text: left out")
            continue
        except OSError as exc:
            skipped.append(f"{name}: cannot be read ({exc.strerror}): left out")
            continue
        if item.url in seen:
            skipped.append(f"{name}: left out because {seen[item.url]} has the same url")
            continue
        seen[item.url] = name
        items.append(item)
    return FetchResult("fetched", items=tuple(items), skipped=tuple(skipped))
