"""Value types and status enums for people.

Owns: `Status`, `Subscriber`, `NewSubscriber`, `ConsentAction`, `ConsentRecord`, `Origin`.
Imports nothing of ours.
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
    #: The reader's IANA time zone; None: the site's (and an update leaves it as it is).
    timezone: str | None = None


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
    paused_until: datetime | None = None
    confirmation_sent_at: datetime | None = None
    #: The reader's IANA time zone (`zones.check_timezone`); None: the site's.
    timezone: str | None = None


def sections_key(sections: tuple[str, ...] | list[str] | set[str]) -> str:
    """The canonical text form of a set of section slugs: sorted, comma-separated."""
    return ",".join(sorted({s.strip() for s in sections if s.strip()}))


def parse_sections_key(key: str) -> tuple[str, ...]:
    """The inverse of `sections_key`."""
    return tuple(s for s in key.split(",") if s)


class ConsentAction(StrEnum):
    """What a person agreed to or withdrew; every row of the consent log is one of these."""

    REQUESTED = "requested"  # asked to subscribe through a form; not yet confirmed
    CONFIRMED = "confirmed"  # followed the confirmation link: double opt-in complete
    SECTIONS = "sections"  # chose a new set of sections
    PAUSED = "paused"  # paused mail until a date
    RESUMED = "resumed"  # ended a pause early
    UNSUBSCRIBED = "unsubscribed"  # withdrew consent to every mail
    RESUBSCRIBED = "resubscribed"  # gave consent again from their preference center
    IMPORTED = "imported"  # added by an import; consent was obtained elsewhere


@dataclass(frozen=True)
class Origin:
    """Where a request came from, recorded with each consent: the client's IP address, its
    user agent and the form or link used ("subscribe-form", "preferences", "one-click")."""

    ip: str = ""
    user_agent: str = ""
    form: str = ""


@dataclass(frozen=True)
class ConsentRecord:
    """One row of the consent log. `sections` are the sections in force after the action."""

    id: int
    subscriber_id: int
    action: ConsentAction
    sections: tuple[str, ...]
    at: datetime
    ip: str
    user_agent: str
    form: str
