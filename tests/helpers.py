"""Builders for test data: feeds as RSS or Atom text, parsed outbox messages, CSV text and
awkward names for it; a free port and a wait for a server started as a subprocess."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import httpx


@dataclass
class Item:
    title: str
    link: str | None
    published: datetime | None
    categories: list[str] = field(default_factory=list)
    guid: str | None = None
    description: str = ""
    raw_title: bool = False
    extra: str = ""


def rss(items: list[Item], *, title: str = "Pharma News", link: str = "https://pharma.example.com/") -> bytes:
    """An RSS 2.0 document. Titles are escaped unless `raw_title`; descriptions go in CDATA."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
           f"<channel><title>{escape(title)}</title><link>{link}</link><description>test</description>"]
    for item in items:
        out.append("<item>")
        out.append(f"<title>{item.title if item.raw_title else escape(item.title)}</title>")
        if item.link is not None:
            out.append(f"<link>{escape(item.link)}</link>")
        if item.guid:
            out.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>')
        if item.published:
            out.append(f"<pubDate>{format_datetime(item.published)}</pubDate>")
        for category in item.categories:
            out.append(f"<category><![CDATA[{category}]]></category>")
        if item.description:
            out.append(f"<description><![CDATA[{item.description}]]></description>")
        out.append(item.extra)
        out.append("</item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode("utf-8")


def outbox_messages(folder: Path) -> list[EmailMessage]:
    """Every .eml under `folder`, parsed; a batch still being written (its `.tmp` folder,
    renamed when complete) is not there yet, for a test polling while a server sends."""
    parser = BytesParser(policy=policy.default)
    found = []
    for path in sorted(folder.rglob("*.eml")):
        if any(part.endswith(".tmp") for part in path.relative_to(folder).parts):
            continue
        try:
            found.append(parser.parsebytes(path.read_bytes()))
        except FileNotFoundError:  # renamed between the listing and the read
            continue
    return found  # type: ignore[return-value]


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float = 30) -> httpx.Response:
    """The first answer of `url` from the server `process` is starting; AssertionError
    with the server's log when it exits or does not answer in time."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no answer from {url}:\n" + log.read_text())


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float = 20) -> None:
    """Wait until the server `process` started answers `url`/healthz; fails with its log."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


#: Names that trip up text sent past CSV, COPY and array syntax: backslashes, quotes,
#: braces, commas, non-ASCII, what COPY and arrays read as NULL, empty, formula-looking,
#: and spaces the import tidies.
AWKWARD_NAMES = [
    "Ann \\ Archer", "Bob \"The\" Builder", "O'Brien, Cy", "Zoë Ünal 名前", "{Dee,Eve}", "\\N", "NULL", "",
    "=SUM(A1)", "-1", "+Plus", "@at", "\\.", "Trailing \\", "  spaced  out  ",
]


def as_csv(rows: list[list[str]]) -> str:
    """The rows as `csv.writer` writes them."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()
