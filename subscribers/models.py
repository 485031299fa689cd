"""Value types and status enums for people.

Owns: `Status`, `Subscriber`, `NewSubscriber`. Imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """Where a subscriber stands. Only `ACTIVE` subscribers are mailed."""

    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


@dataclass(frozen=True)
class NewSubscriber:
    """What is needed to create or refresh a subscriber."""

    email: str
    sections: tuple[str, ...]
    name: str = ""
    status: Status = Status.ACTIVE
    source: str = ""


@dataclass(frozen=True)
class Subscriber:
    """A subscriber as stored. `sections` is sorted and free of duplicates."""

    id: int
    email: str
    name: str
    status: Status
    sections: tuple[str, ...]
    token: str
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    source: str


def sections_key(sections: tuple[str, ...] | list[str] | set[str]) -> str:
    """The canonical text form of a set of section slugs: sorted, comma-separated."""
    return ",".join(sorted({s.strip() for s in sections if s.strip()}))


def parse_sections_key(key: str) -> tuple[str, ...]:
    """The inverse of `sections_key`."""
    return tuple(s for s in key.split(",") if s)
