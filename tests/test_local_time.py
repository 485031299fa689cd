"""Delivery at each reader's local time (issue 20, part 2): `[delivery] local_time` gives
every delivery the next such time in its reader's zone; SendGrid gets it as each
personalization's `send_at` (through the stand-in, which checks the 72-hour horizon), the
outbox as a header and an hour folder, and `send --status` shows the deliveries by hour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

import subscribers as people
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.sending.timing import delivery_time
from tests.conftest import write_config
from tests.helpers import outbox_messages
from tests.readers import EIGHT_AM, SUNDAY_EVENING, add_zoned_readers, build_issue, delivery_states, send_at
from tests.sendgrid_standin import SendGridStandIn
from tests.servers import LocalServer, Route
from tests.test_sendgrid import API_KEY, feed


@pytest.fixture
def feed_url(server: LocalServer) -> str:
    server.routes["/feed.xml"] = Route(body=feed(), headers={"content-type": "application/rss+xml"})
    return f"{server.url}/feed.xml"


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    clock = [SUNDAY_EVENING]
    srv = SendGridStandIn(API_KEY, clock=lambda: clock[0])
    srv.start()
    yield srv
    srv.stop()


def test_the_next_local_time_is_found_in_each_zone_across_days_and_daylight_saving() -> None:
    # Sunday 18:00 UTC: Seoul's next 08:00 is that night, the others' Monday morning.
    assert delivery_time(SUNDAY_EVENING, "Asia/Seoul", "08:00", site_zone="Europe/London").at == EIGHT_AM["seoul"]
    assert delivery_time(SUNDAY_EVENING, "America/New_York", "08:00", site_zone="Europe/London").at == EIGHT_AM["boston"]
    # At 08:00 sharp the next one is tomorrow's.
    assert delivery_time(EIGHT_AM["london"], "", "08:00", site_zone="Europe/London").at == EIGHT_AM["london"] + timedelta(days=1)
    # The night the clocks go forward in London (29 March 2026), 08:00 is 07:00 UTC.
    spring = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert delivery_time(spring, "Europe/London", "08:00", site_zone="UTC").at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    # A zone that is not an IANA name is the site's, and said so.
    odd = delivery_time(SUNDAY_EVENING, "Mars/Olympus", "08:00", site_zone="Europe/London")
    assert (odd.at, odd.zone, odd.unknown_zone) == (EIGHT_AM["london"], "Europe/London", True)
    # Beyond the horizon a time is clamped to it.
    far = delivery_time(SUNDAY_EVENING, "Europe/London", "08:00", site_zone="UTC", horizon=timedelta(hours=6))
    assert far.clamped and far.at == SUNDAY_EVENING + timedelta(hours=6)


def test_local_time_must_be_hh_mm_and_the_error_names_the_key(tmp_path: Path) -> None:
    for bad in ("8am", "24:00", "08:60", "8:00"):
        path = write_config(tmp_path / "newsletter.toml", {"delivery": {"local_time": bad}})
        with pytest.raises(ConfigError, match=r"delivery\.local_time: .*HH:MM"):
            load_settings(path, environ={})
    good = write_config(tmp_path / "newsletter.toml", {"delivery": {"local_time": "07:30"}})
    assert load_settings(good, environ={}).delivery.local_time == "07:30"


def test_sendgrid_gets_each_readers_0800_as_the_send_at_of_their_personalization(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_url: str
) -> None:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"transport": "sendgrid", "local_time": "08:00"},
                             sendgrid={"api_host": standin.url})
    settings = load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})
    city_of = add_zoned_readers(engine)
    issue = build_issue(engine, settings)

    report = send_at(engine, settings, issue, SUNDAY_EVENING)

    assert report.recipients_sent == 8 and report.complete
    requests = standin.accepted
    # Segments and batches as without local time: one request per segment, several zones in each.
    assert len(requests) == 2
    [batch_id] = {r.body["batch_id"] for r in requests}
    assert batch_id in standin.batch_ids and ("POST", "/v3/mail/batch", 201) in standin.api_requests
    sent_at = {p["to"][0]["email"]: p["send_at"] for r in requests for p in r.body["personalizations"]}
    assert sent_at == {email: int(EIGHT_AM[city].timestamp()) for email, city in city_of.items()}
    # The ledger says the same, and the issue keeps the batch id for a recall.
    assert {email: at for email, (_, at) in delivery_states(engine, issue).items()} == {e: EIGHT_AM[c] for e, c in city_of.items()}
    with engine.connect() as conn:
        assert issue_batch_id(conn, issue.id) == batch_id


def issue_batch_id(conn: object, issue_id: int) -> str | None:
    from newsletter import store

    return store.provider_batch_id(conn, issue_id)  # type: ignore[arg-type]


def test_a_resumed_send_reuses_the_batch_id(
    engine: Engine, make_settings: Callable[..., Settings], standin: SendGridStandIn, feed_url: str
) -> None:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"transport": "sendgrid", "local_time": "08:00"},
                             sendgrid={"api_host": standin.url})
    settings = load_settings(settings.base_dir / "newsletter.toml", environ={"SENDGRID_API_KEY": API_KEY})
    add_zoned_readers(engine, per_zone=1)
    issue = build_issue(engine, settings)
    send_at(engine, settings, issue, SUNDAY_EVENING)
    # A reader who joins later is reached by the next run, in the same batch.
    add_zoned_readers_late(engine)

    send_at(engine, settings, issue, SUNDAY_EVENING + timedelta(hours=1))

    assert len({r.body["batch_id"] for r in standin.accepted}) == 1
    assert [a for a in standin.api_requests if a[1] == "/v3/mail/batch"] == [("POST", "/v3/mail/batch", 201)]


def add_zoned_readers_late(engine: Engine) -> None:
    import subscribers as people

    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("late@example.com", ("drug-development",))], now=SUNDAY_EVENING)


def test_the_outbox_files_each_message_by_its_delivery_hour_and_status_shows_the_hours(
    engine: Engine, make_settings: Callable[..., Settings], feed_url: str, tmp_path: Path
) -> None:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"outbox_dir": str(tmp_path / "outbox"),
                                                                                     "local_time": "08:00"})
    city_of = add_zoned_readers(engine)
    issue = build_issue(engine, settings)

    send_at(engine, settings, issue, SUNDAY_EVENING)

    folders = {p.parent.parent.name for p in (tmp_path / "outbox" / issue.slug).rglob("*.eml")}
    assert folders == {f"{at:%Y-%m-%dT%H}Z" for at in EIGHT_AM.values()}
    for message in outbox_messages(tmp_path / "outbox" / issue.slug):
        city = city_of[str(message["To"])]
        assert parsedate_to_datetime(str(message["X-Newsletter-Send-At"])) == EIGHT_AM[city]

    result = CliRunner().invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "send", "--status", issue.slug],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Deliveries by hour" in result.output
    for at in EIGHT_AM.values():
        assert f"{at:%Y-%m-%d %H:%M} UTC" in result.output


def test_a_transport_that_cannot_schedule_is_refused_with_local_time(
    engine: Engine, make_settings: Callable[..., Settings], feed_url: str
) -> None:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"transport": "smtp", "local_time": "08:00"})
    add_zoned_readers(engine, per_zone=1)
    issue = build_issue(engine, settings)

    with pytest.raises(ConfigError, match="delivery.local_time is set but the smtp transport cannot deliver at a given time"):
        send_at(engine, settings, issue, SUNDAY_EVENING)
    assert delivery_states(engine, issue) == {}


def test_a_zone_that_is_not_an_iana_name_gets_the_sites_time_and_the_send_says_so(
    engine: Engine, make_settings: Callable[..., Settings], feed_url: str, tmp_path: Path
) -> None:
    settings = make_settings(feeds=[{"name": "Pharma", "url": feed_url}], delivery={"outbox_dir": str(tmp_path / "outbox"),
                                                                                     "local_time": "08:00"})
    add_zoned_readers(engine, per_zone=1)
    with engine.begin() as conn:
        conn.execute(update(people.subscribers).where(people.subscribers.c.email == "seoul0@example.com")
                     .values(timezone="Mars/Olympus"))
    issue = build_issue(engine, settings)
    config = str(settings.base_dir / "newsletter.toml")

    started = datetime.now(UTC)
    sent = CliRunner().invoke(app, ["--config", config, "send", issue.slug], env={"COLUMNS": "200"})

    assert sent.exit_code == 0, sent.output
    assert "warning: time zone 'Mars/Olympus' of some subscribers is not an IANA name: they get the issue at 08:00 in " \
           "Europe/London (site.timezone)" in sent.output
    [mars] = [m for m in outbox_messages(tmp_path / "outbox" / issue.slug) if str(m["To"]) == "seoul0@example.com"]
    expected = delivery_time(started, "Europe/London", "08:00", site_zone="Europe/London").at
    assert parsedate_to_datetime(str(mars["X-Newsletter-Send-At"])) == expected

    stats = CliRunner().invoke(app, ["--config", config, "stats", issue.slug, "--json"])
    assert stats.exit_code == 0, stats.output
    assert sum(hour.get("sent", 0) for hour in json.loads(stats.stdout)["by_hour"]) == 4
