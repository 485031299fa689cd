"""The scheduled service: fire times across DST, the missed-run policy, once per slot,
the draft policy, and the real service as a subprocess stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

import subscribers as people
from newsletter import schedule, store
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.models import FeedItem, IssueStatus
from newsletter.tables import deliveries, issues, scheduled_runs
from tests.conftest import NOW
from tests.helpers import Item, outbox_messages, rss
from tests.servers import LocalServer, Route

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # London leaves BST on Sunday 25 October 2026: 08:00 is 07:00 UTC before, 08:00 after.
        ("Europe/London", utc(2026, 10, 18, 12), [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), utc(2026, 11, 2, 8)]),
        # New York leaves EDT on 1 November 2026: 08:00 is 12:00 UTC, then 13:00 UTC.
        ("America/New_York", utc(2026, 10, 25, 12), [utc(2026, 10, 26, 12), utc(2026, 11, 2, 13), utc(2026, 11, 9, 13)]),
        # Seoul has no DST; Monday 08:00 KST is Sunday 23:00 UTC.
        ("Asia/Seoul", utc(2026, 11, 22, 22), [utc(2026, 11, 22, 23), utc(2026, 11, 29, 23), utc(2026, 12, 6, 23)]),
        # Spring forward: London enters BST on 28 March 2027.
        ("Europe/London", utc(2027, 3, 21, 12), [utc(2027, 3, 22, 8), utc(2027, 3, 29, 7), utc(2027, 4, 5, 7)]),
    ],
)
def test_next_fire_times_across_dst(make_settings: Callable[..., Settings], zone: str, now: datetime, expected: list[datetime]) -> None:
    settings = make_settings(site={"timezone": zone})
    assert schedule.next_fire_times(schedule.digest_trigger(settings), now, 3) == expected


def test_crontab_weekdays_use_the_standard_numbers() -> None:
    london = ZoneInfo("Europe/London")
    monday = schedule.crontab_trigger("0 8 * * 1", london)
    assert schedule.next_fire_times(monday, utc(2026, 11, 24, 12), 1) == [utc(2026, 11, 30, 8)]
    sunday = schedule.crontab_trigger("30 6 * * 7", london)
    assert schedule.next_fire_times(sunday, utc(2026, 11, 24, 12), 1) == [utc(2026, 11, 29, 6, 30)]
    weekdays = schedule.crontab_trigger("0 9 * * 1-5", london)
    assert [t.weekday() for t in schedule.next_fire_times(weekdays, utc(2026, 11, 27, 12), 3)] == [0, 1, 2]
    with pytest.raises(ConfigError, match="schedule.digest_cron"):
        schedule.crontab_trigger("0 25 * * 1", london)


def test_the_missed_run_policy(make_settings: Callable[..., Settings]) -> None:
    trigger = schedule.digest_trigger(make_settings())  # Monday 08:00 London = 08:00 UTC in November
    slot = utc(2026, 11, 23, 8)
    never: Callable[[datetime], bool] = lambda s: False
    inside = schedule.missed_run(trigger, now=slot + 5 * HOUR, grace=6 * HOUR, already_ran=never)
    assert (inside.action, inside.slot) == ("run", slot)
    outside = schedule.missed_run(trigger, now=slot + 7 * HOUR, grace=6 * HOUR, already_ran=never)
    assert (outside.action, outside.slot) == ("skip", slot) and "past the grace period" in outside.reason
    ran = schedule.missed_run(trigger, now=slot + HOUR, grace=6 * HOUR, already_ran=lambda s: s == slot)
    assert ran.action == "none"


def _seed(engine: Engine, when: datetime) -> None:
    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("a", "https://p.example.com/a", "Insight", "", when - DAY, ("Insights",), "", "")], source="t", now=when)
        people.upsert_subscribers(conn, [people.NewSubscriber(f"r{n}@example.com", ("insights",)) for n in range(3)], now=when)


def test_a_slot_runs_once_and_builds_the_slots_issue(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    slot = utc(2026, 11, 23, 8)
    _seed(engine, slot)
    first = schedule.run_digest(engine, settings, slot, clock=lambda: slot + 2 * HOUR)
    assert (first.status, first.issue, first.recipients) == ("sent", "2026-w48", 3)
    with engine.connect() as conn:
        issue = store.find_issue(conn, "2026-w48")
    assert issue is not None and issue.window_end == slot  # derived from the slot, not the clock
    again = schedule.run_digest(engine, settings, slot, clock=lambda: slot + 3 * HOUR)
    assert again.status == "already_ran"
    later = schedule.run_digest(engine, settings, slot + 7 * DAY, clock=lambda: slot + 7 * DAY)
    assert later.status == "empty" and "no new articles" in later.detail
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 3
        assert dict(conn.execute(select(scheduled_runs.c.slot, scheduled_runs.c.status)).all()) == {slot: "sent", slot + 7 * DAY: "empty"}


def test_catch_up_inside_and_outside_the_grace_period(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    slot = utc(2026, 11, 23, 8)
    _seed(engine, slot)
    late = schedule.catch_up(engine, settings, now=slot + 7 * HOUR)
    assert late.action == "skip"
    with engine.connect() as conn:
        assert store.latest_issue(conn) is None
    assert schedule.catch_up(engine, settings, now=slot + 8 * HOUR).action == "none"  # skipped once is decided

    next_slot = slot + 7 * DAY
    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("b", "https://p.example.com/b", "Next", "", next_slot - DAY, ("Insights",), "", "")], source="t", now=next_slot)
    in_time = schedule.catch_up(engine, settings, now=next_slot + 2 * HOUR)
    assert in_time.action == "run"
    with engine.connect() as conn:
        issue = store.latest_issue(conn)
    assert issue is not None and issue.status is IssueStatus.SENT and issue.window_end == next_slot


def test_without_auto_send_editors_are_reminded_and_nothing_is_sent(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(schedule={"auto_send": False, "editors": ["editor@example.com"]})
    slot = utc(2026, 11, 23, 8)
    _seed(engine, slot)
    result = schedule.run_digest(engine, settings, slot, clock=lambda: slot)
    assert result.status == "awaiting_approval"
    [reminder] = outbox_messages(settings.outbox_dir)
    assert reminder["To"] == "editor@example.com" and "2026-w48 awaits approval" in reminder["Subject"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 0


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_the_real_service_sends_once_and_stops_cleanly(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    server.routes["/feed.xml"] = Route(body=rss([Item("Fresh insight", "https://p.example.com/f", now - HOUR, ["Insights"], guid="f")]),
                                       headers={"content-type": "application/rss+xml"})
    settings = make_settings(
        feeds=[{"name": "P", "url": f"{server.url}/feed.xml"}],
        schedule={"digest_cron": "* * * * * *", "grace_hours": 0, "refresh_minutes": 60},
    )
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(f"r{n}@example.com", ("insights",)) for n in range(4)], now=now)
    config = str(settings.base_dir / "newsletter.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}

    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def start(log: Path) -> subprocess.Popen[str]:
        # The child keeps its own copy of the file; ours is closed at once.
        with log.open("w") as handle:
            return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", config, "schedule"],
                                    stdout=handle, stderr=subprocess.STDOUT, text=True, env=env)

    def started(log: Path) -> bool:
        return "event=started" in log.read_text()

    def sent_issues() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(issues).where(issues.c.status == "sent")).scalar_one())

    service = start(logs[0])
    try:
        assert _wait(lambda: sent_issues() == 1, 60), "no issue was sent"
        assert _wait(lambda: started(logs[0]), 30)
        time.sleep(2.5)  # a few more one-second slots: empty weeks, nothing more sent
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    output = logs[0].read_text()
    assert service.returncode == 0, output
    assert "event=digest " in output and "status=sent" in output and "event=stopping signal=SIGTERM" in output
    assert "Traceback" not in output

    restarted = start(logs[1])
    try:
        assert _wait(lambda: started(logs[1]), 60), logs[1].read_text()
        time.sleep(2.5)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
    assert restarted.returncode == 0, logs[1].read_text()
    assert sent_issues() == 1
    counts = Counter(m["To"] for m in outbox_messages(settings.outbox_dir))
    assert len(counts) == 4 and set(counts.values()) == {1}


def test_a_stop_request_ends_the_send_after_the_batch_in_flight(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    import threading

    from newsletter import issues as use_cases

    settings = make_settings(delivery={"batch_size": 2})
    slot = utc(2026, 11, 23, 8)
    _seed(engine, slot)  # three readers: two batches
    built = use_cases.build_issue(engine, settings, now=slot)
    stop = threading.Event()

    class StopAfterFirst:
        def start(self, total_batches: int, total_recipients: int) -> None:
            assert total_batches == 2

        def advance(self, batches: int, recipients: int) -> None:
            stop.set()  # as SIGTERM does in the service, while the first batch is recorded

    first = use_cases.send_pending(engine, settings, built.issue, transport=use_cases.make_transport(settings),
                                   clock=lambda: slot, progress=StopAfterFirst(), stop=stop)
    assert (first.batches_sent, first.complete) == (1, False)
    rest = use_cases.send_pending(engine, settings, built.issue, transport=use_cases.make_transport(settings), clock=lambda: slot)
    assert (rest.batches_sent, rest.complete) == (1, True)
    assert len(outbox_messages(settings.outbox_dir)) == 3
