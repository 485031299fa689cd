"""What the tests that send through SendGrid share: the stand-in's API key, settings that
send through the stand-in, readers, the feed, building and sending an issue, and the
ledger's rows. The `standin` and `feed_server` fixtures are in `tests/conftest.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

import subscribers as people
from newsletter import issues
from newsletter.config import Settings, load_settings
from newsletter.sending import SendProgress, SendReport
from newsletter.ingest import ingest_feeds
from newsletter.models import Issue
from newsletter.tables import batches
from tests.conftest import NOW
from tests.helpers import Item, rss
from tests.sendgrid_standin import SendGridStandIn


API_KEY = "SG.test-key-6f1c0e"
ALL = ("drug-development", "manufacturing", "supply-chain", "facilities", "insights", "events", "news")


def sendgrid_settings(make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_url: str, **tables: Any) -> Settings:
    """Settings that send through the stand-in, with the API key from the environment."""
    settings = make_settings(
        feeds=[{"name": "Pharma", "url": feed_url}],
        delivery={"transport": "sendgrid"},
        sendgrid={"api_host": standin.url, **tables.pop("sendgrid", {})},
        **tables,
    )
    return load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})


def feed() -> bytes:
    day = timedelta(days=1)
    return rss([
        Item("FDA approves oral GLP-1", "https://pharma.example.com/a1", NOW - day, ["FDA Approvals"], guid="a1"),
        Item("CDMO doubles capacity", "https://pharma.example.com/a2", NOW - 2 * day, ["Manufacturing"], guid="a2"),
        Item("CPHI highlights", "https://pharma.example.com/a4", NOW - 3 * day, ["Events & Conferences"], guid="a4"),
    ])


def add_readers(engine: Engine, count: int, sections: tuple[str, ...] = ALL, *, start: int = 0, name: str = "Reader") -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn,
            [people.NewSubscriber(f"reader{n}@example.com", sections, name=f"{name}{n} Test") for n in range(start, start + count)],
            now=NOW,
        )


def build(engine: Engine, settings: Settings) -> Issue:
    ingest_feeds(engine, settings, clock=lambda: NOW)
    return issues.build_issue(engine, settings, now=NOW).issue


def two_segments(engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_server: str,
                 **sendgrid: Any) -> tuple[Settings, Issue]:
    """An issue for two readers of drug development and two of manufacturing: two batches."""
    settings = sendgrid_settings(make_settings, standin, feed_server, sendgrid=sendgrid)
    add_readers(engine, 2, ("drug-development",))
    add_readers(engine, 2, ("manufacturing",), start=2)
    return settings, build(engine, settings)


class Sleeps:
    """Records the waits between retries instead of sleeping through them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def send(engine: Engine, settings: Settings, issue: Issue, *, sleeps: Sleeps | None = None, progress: SendProgress | None = None,
         flags: issues.SendFlags = issues.SendFlags(), after_planning: Callable[[], None] | None = None) -> SendReport:
    transport = issues.make_transport(settings)
    try:
        return issues.send_pending(engine, settings, issue, transport=transport, clock=lambda: NOW, sleep=sleeps or Sleeps(),
                                   progress=progress, flags=flags, after_planning=after_planning)
    finally:
        transport.close()


def ledger(engine: Engine) -> list[tuple[int, str, int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(batches.c.id, batches.c.status, batches.c.status_code, batches.c.message_id, batches.c.error).order_by(batches.c.id)
        )]
