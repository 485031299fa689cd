"""The one gate every send consults: who may be mailed right now.

Owns: `mailable_clause`, `MAILABLE_STATUSES`, `suppress`, `is_suppressed`. Imports
`models` and `tables` only. A subscriber is mailable when active, or paused with the
pause over, and their address is not on the suppression list.
The sender applies this gate twice: when it plans the batches of an issue, and again for
each batch just before it goes out, so an unsubscribe or a bounce takes effect at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, func, insert, literal, or_, select

from .models import Status
from .tables import UTCDateTime, subscribers, suppressions


#: The statuses `mailable_clause` lets through (paused ones only once the pause is over).
MAILABLE_STATUSES = (Status.ACTIVE.value, Status.PAUSED.value)


def mailable_clause(*, now: datetime | None = None, few: bool = False) -> ColumnElement[bool]:
    """A WHERE clause on `subscribers` that keeps only those who may be mailed now.

    A paused subscriber counts again once `paused_until` has passed, so a pause ends by
    itself without a job. Without `now` the database's clock decides (both SQLite and
    PostgreSQL keep it in UTC, as the column is).

    `few` is for a statement that reads a few rows (a batch of a thousand): each one's
    address is looked up in the suppression list, rather than the whole list read once
    per statement as for a scan of every subscriber. With 50,000 suppressed addresses,
    reading a batch back took 11 ms the one way and 3 ms the other."""
    cutoff = literal(now, UTCDateTime()) if now is not None else func.current_timestamp()
    return and_(
        # The same as "active, or paused with the pause over", written so that SQLite
        # reads the (status, sections) index once per status: as a plain OR it walks
        # both branches and keeps every matching row id in memory to merge them (25 MB
        # at a million subscribers, and planning was no faster for it).
        subscribers.c.status.in_(MAILABLE_STATUSES),
        or_(
            subscribers.c.status == Status.ACTIVE.value,
            and_(subscribers.c.paused_until.is_not(None), subscribers.c.paused_until <= cutoff),
        ),
        ~exists().where(suppressions.c.email == subscribers.c.email) if few else subscribers.c.id.not_in(_suppressed_ids()),
    )


def _suppressed_ids() -> Select[tuple[int]]:
    """The ids of subscribers whose address is on the suppression list.

    Asked as one uncorrelated subquery, which the database evaluates once per statement
    (SQLite builds a temporary index of the ids, PostgreSQL a hash), instead of probing
    the suppression list with every subscriber's address: at a million subscribers that
    is 0.7 s instead of 3 s on SQLite, even with an empty list. Written as `email IN
    (the list)` rather than a join so that SQLite walks the suppression list and looks
    each address up, never the other way round (a join let it scan every subscriber
    once per statement). For a statement that reads a few rows, see `few`."""
    other = subscribers.alias("suppressed_subscriber")
    return select(other.c.id).where(other.c.email.in_(select(suppressions.c.email)))


def suppress(conn: Connection, email: str, *, reason: str, now: datetime) -> None:
    """Put an (already normalized) address on the suppression list; idempotent."""
    if not is_suppressed(conn, email):
        conn.execute(insert(suppressions).values(email=email, reason=reason, created_at=now))


def is_suppressed(conn: Connection, email: str) -> bool:
    """Whether the address is on the suppression list."""
    return conn.execute(
        select(suppressions.c.email).where(suppressions.c.email == email)
    ).first() is not None
