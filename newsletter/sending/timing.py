"""When each reader's copy is delivered: the next local time of day in their zone.

Owns: `SCHEDULE_HORIZON`, `DeliveryTime`, `parse_local_time`, `delivery_time`, `delivery_times`.
Imports nothing of ours: pure functions of a clock value, a zone name and `HH:MM`.

`[delivery] local_time = "08:00"` gives each delivery the first 08:00 in the reader's zone
after the send starts (the planning's `now`). SendGrid takes a `send_at` at most 72 hours
ahead; a time further away is clamped to that horizon and counted, so it is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: How far ahead a delivery may be scheduled (SendGrid's limit for `send_at`).
SCHEDULE_HORIZON = timedelta(hours=72)


@dataclass(frozen=True)
class DeliveryTime:
    """When a reader of one zone gets the issue (UTC), and whether it was clamped to the
    horizon; `zone` is the zone used (the site's when the reader's is unknown)."""

    at: datetime
    zone: str
    clamped: bool = False
    unknown_zone: bool = False


def parse_local_time(value: str) -> time:
    """`HH:MM` as a time of day (the setting is validated when it is read)."""
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def delivery_time(now: datetime, zone: str, local_time: str, *, site_zone: str,
                  horizon: timedelta = SCHEDULE_HORIZON) -> DeliveryTime:
    """The first `local_time` in `zone` after `now` (an aware datetime), in UTC, at most
    `horizon` ahead. An empty or unknown `zone` is the site's (`unknown_zone` says which).
    A local time that a daylight-saving change skips is read as the clocks after it."""
    unknown = False
    try:
        tz = ZoneInfo(zone or site_zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, unknown = ZoneInfo(site_zone), True
    wanted = parse_local_time(local_time)
    local_now = now.astimezone(tz)
    day = local_now.date()
    while True:
        candidate = datetime.combine(day, wanted, tzinfo=tz).astimezone(UTC)
        if candidate > now:
            break
        day += timedelta(days=1)
    limit = now.astimezone(UTC) + horizon
    if candidate > limit:
        return DeliveryTime(limit.replace(microsecond=0), tz.key, clamped=True, unknown_zone=unknown)
    return DeliveryTime(candidate, tz.key, unknown_zone=unknown)


def delivery_times(now: datetime, zones: Iterable[str | None], local_time: str, *, site_zone: str,
                   horizon: timedelta = SCHEDULE_HORIZON) -> dict[str, DeliveryTime]:
    """`delivery_time` of each zone (None and "" are the site's), keyed by the zone as given
    ("" for none)."""
    return {(z or ""): delivery_time(now, z or "", local_time, site_zone=site_zone, horizon=horizon) for z in set(zones)}

