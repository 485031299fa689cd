"""All queries about subscribers and suppression, on a connection the caller gives.

Owns: creating, reading, listing and counting subscribers (the one lookup by address is
`find_by_email`), and the consent log. Imports `models`,
`errors`, `suppression`, `tables`, `tokens` of this package only. Callers own the transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Connection, Select, bindparam, delete, func, insert, select, update

from .errors import InvalidEmailError, InvalidNameError, UnknownSubscriberError
from .models import (
    ConsentAction,
    ConsentRecord,
    NewSubscriber,
    Origin,
    Status,
    Subscriber,
    parse_sections_key,
    sections_key,
)
from .suppression import blocked_addresses, mailable_clause
from .tables import consents, subscribers
from .tokens import looks_like_token, new_token


#: The longest name a subscriber may give.
NAME_CHARS = 100
# C0 and C1 control characters, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_name(name: str) -> str:
    """The name with its spaces tidied, or `InvalidNameError` saying what is wrong: longer
    than `NAME_CHARS` characters, or holding a control character (a line break in a name
    is how a header injection starts, so it is refused, not cleaned)."""
    bad = _CONTROL.search(name)
    if bad is not None:
        what = "a line break" if bad.group(0) in "\r\n\u2028\u2029" else f"a control character (U+{ord(bad.group(0)):04X})"
        raise InvalidNameError(f"the name holds {what}; write it on one line")
    tidy = " ".join(name.split())
    if len(tidy) > NAME_CHARS:
        raise InvalidNameError(f"the name has {len(tidy)} characters; at most {NAME_CHARS} are allowed")
    return tidy


def normalize_email(address: str) -> str:
    """The address in canonical form, or `InvalidEmailError` naming what is wrong.

    No DNS lookups are made: a subscriber form must answer at once, and bounces catch
    dead domains later.
    """
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmailError(f"{address!r} is not a valid email address: {exc}") from None
    # RFC 5321 limits that this version of email-validator does not enforce by itself.
    if len(result.local_part.encode("utf-8")) > 64:
        raise InvalidEmailError(f"{address!r} is not a valid email address: the part before the @-sign is too long")
    if len(result.normalized.encode("utf-8")) > 254:
        raise InvalidEmailError(f"{address!r} is not a valid email address: it is too long")
    return result.normalized.lower()


def _row_to_subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=Status(row.status),
        sections=parse_sections_key(row.sections),
        token=row.token,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        source=row.source,
        paused_until=row.paused_until,
        confirmation_sent_at=row.confirmation_sent_at,
        timezone=row.timezone,
    )


def upsert_subscribers(
    conn: Connection, items: Iterable[NewSubscriber], *, now: datetime, chunk: int = 5000
) -> tuple[int, int]:
    """Create the subscribers that do not exist yet and refresh the sections and name of
    those that do (and their time zone, when the item gives one). Returns (created, updated). Every address and name is validated first,
    so one bad value raises `InvalidEmailError` or `InvalidNameError` before anything is
    written for its chunk. An address that is suppressed or was erased is left out (see
    `suppression.blocked_addresses`): neither counted nor written."""
    created = updated = 0
    batch: list[NewSubscriber] = []

    def flush() -> None:
        nonlocal created, updated
        normalized = {normalize_email(item.email): item for item in batch}
        for item in normalized.values():
            check_name(item.name)
        for email in blocked_addresses(conn, normalized):
            del normalized[email]
        existing = {
            row.email: row.id
            for row in conn.execute(
                select(subscribers.c.email, subscribers.c.id).where(
                    subscribers.c.email.in_(list(normalized))
                )
            )
        }
        new_rows: list[dict[str, Any]] = []
        for email, item in normalized.items():
            if email in existing:
                values: dict[str, Any] = {"name": item.name, "sections": sections_key(item.sections)}
                if item.timezone is not None:
                    values["timezone"] = item.timezone
                conn.execute(update(subscribers).where(subscribers.c.id == existing[email]).values(**values))
                updated += 1
            else:
                new_rows.append(
                    {
                        "email": email,
                        "name": item.name,
                        "status": item.status.value,
                        "sections": sections_key(item.sections),
                        "token": new_token(),
                        "created_at": now,
                        "confirmed_at": now if item.status is Status.ACTIVE else None,
                        "unsubscribed_at": None,
                        "source": item.source,
                        "timezone": item.timezone,
                    }
                )
        if new_rows:
            conn.execute(insert(subscribers), new_rows)
            created += len(new_rows)
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return created, updated


def find_by_email(conn: Connection, address: str) -> Subscriber | None:
    """The subscriber whose stored address is exactly `address` (already normalized, or
    folded to lower case by the caller), if any. The one lookup by address."""
    row = conn.execute(select(subscribers).where(subscribers.c.email == address)).first()
    return _row_to_subscriber(row) if row is not None else None


def get_subscriber(conn: Connection, email: str) -> Subscriber:
    """The subscriber with that address, or `UnknownSubscriberError`."""
    found = find_by_email(conn, normalize_email(email))
    if found is None:
        raise UnknownSubscriberError("no subscriber with that address")
    return found


def create_pending(conn: Connection, *, email: str, name: str, sections: Sequence[str], token: str, source: str,
                   now: datetime, timezone: str | None = None) -> int:
    """Store a new subscriber waiting for their confirmation (sent `now`); their id."""
    key = conn.execute(
        insert(subscribers).values(
            email=email, name=name, status=Status.PENDING.value, sections=sections_key(tuple(sections)), token=token,
            created_at=now, source=source, confirmation_sent_at=now, timezone=timezone,
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def list_subscribers(
    conn: Connection, *, status: Status | None = None, limit: int = 100, offset: int = 0
) -> list[Subscriber]:
    """Subscribers in id order, optionally of one status."""
    query = select(subscribers.c.id).order_by(subscribers.c.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(subscribers.c.status == status.value)
    return subscribers_by_id(conn, list(conn.execute(query).scalars()))


def set_status(conn: Connection, subscriber_id: int, status: Status, *, now: datetime) -> None:
    """Change a subscriber's status; leaving records the time."""
    values: dict[str, Any] = {"status": status.value}
    if status in (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED):
        values["unsubscribed_at"] = now
    conn.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(**values))


def mailable_recipients() -> Select[tuple[int, str, str | None]]:
    """The query of the subscribers who may be mailed now (see `mailable_clause`), as
    (id, sections key, time zone): what a send plans from. A caller narrows it (`.where`), joins to
    it, or picks among its columns (`.with_only_columns` of its `selected_columns`): it
    stays one statement on `subscribers`, which the planning's speed depends on."""
    return select(subscribers.c.id, subscribers.c.sections, subscribers.c.timezone).where(mailable_clause())


def time_zones(conn: Connection) -> list[str]:
    """The time zones readers have chosen (each once; the site's, NULL, left out)."""
    query = select(subscribers.c.timezone).where(subscribers.c.timezone.is_not(None)).distinct()
    return [zone for zone in conn.execute(query).scalars() if zone]


def recipients_by(subscriber_id: ColumnElement[int], *before: ColumnElement[Any]) -> Select[Any]:
    """The query of what a send needs of each subscriber that `subscriber_id` (a column of
    the caller's table, such as a delivery's) names: the caller's columns `before`, then the
    subscriber's id (as `subscriber_id`), address, name, token, and whether they may be
    mailed now (`mailable`, each address looked up in the suppression list: meant for a
    batch of a thousand rows, not a scan). The caller narrows it (`.where`, `.order_by`)."""
    return select(
        *before,
        subscribers.c.id.label("subscriber_id"),
        subscribers.c.email,
        subscribers.c.name,
        subscribers.c.token,
        mailable_clause(few=True).label("mailable"),
    ).join_from(subscriber_id.table, subscribers, subscribers.c.id == subscriber_id)


def count_with_status(conn: Connection, status: Status) -> int:
    """How many subscribers stand in `status`, counted from an index (a few milliseconds
    at a million)."""
    return int(conn.execute(select(func.count()).select_from(subscribers).where(subscribers.c.status == status.value)).scalar_one())


def count_by_status(conn: Connection) -> dict[Status, int]:
    """How many subscribers stand in each status."""
    rows = conn.execute(
        select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
    ).all()
    return {Status(status): count for status, count in rows}


#: Statements of the hot paths (a page, a one-click unsubscribe), built once: building
#: one and computing its cache key cost more than running it from SQLAlchemy's cache.
_BY_TOKEN = select(subscribers).where(subscribers.c.token == bindparam("token"))
_ADD_CONSENT = insert(consents)
_BY_IDS = select(subscribers).where(subscribers.c.id.in_(bindparam("ids", expanding=True))).order_by(subscribers.c.id)
_UPDATES: dict[tuple[str, ...], Any] = {}


def subscribers_by_id(conn: Connection, ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers with these ids, in id order."""
    rows = conn.execute(_BY_IDS, {"ids": list(ids)}).all()
    return [_row_to_subscriber(row) for row in rows]


def subscriber_by_token(conn: Connection, token: str) -> Subscriber:
    """The subscriber whose links carry `token`, or `UnknownSubscriberError` (also for
    text that cannot be a token at all)."""
    row = None
    if looks_like_token(token):
        row = conn.execute(_BY_TOKEN, {"token": token}).first()
    if row is None:
        raise UnknownSubscriberError("no subscriber with that token")
    return _row_to_subscriber(row)


#: One statement for a page that shows a subscriber and signs a form for them: the row
#: and its newest consent id (`consent_version`), built once (a statement's construction
#: costs more than its execution from SQLAlchemy's compiled cache).
_BY_TOKEN_WITH_VERSION = select(
    subscribers,
    select(func.max(consents.c.id))
    .where(consents.c.subscriber_id == subscribers.c.id)
    .scalar_subquery()
    .label("consent_version"),
).where(subscribers.c.token == bindparam("token"))


def subscriber_for_form(conn: Connection, token: str) -> tuple[Subscriber, int]:
    """The subscriber behind `token` and their `consent_version`, in one query, or
    `UnknownSubscriberError`. For pages that only read; nothing is written."""
    row = conn.execute(_BY_TOKEN_WITH_VERSION, {"token": token}).first() if looks_like_token(token) else None
    if row is None:
        raise UnknownSubscriberError("no subscriber with that token")
    return _row_to_subscriber(row), int(row.consent_version or 0)


def update_subscriber(conn: Connection, subscriber_id: int, **values: Any) -> None:
    """Write the given columns of one subscriber (`sections` as a tuple, `status` as a
    `Status`); the use cases decide what may change."""
    if "sections" in values:
        values["sections"] = sections_key(values["sections"])
    if "status" in values:
        values["status"] = Status(values["status"]).value
    columns = tuple(sorted(values))
    statement = _UPDATES.get(columns)
    if statement is None:
        # One statement per set of columns written (a handful exist), built once.
        statement = _UPDATES[columns] = (
            update(subscribers).where(subscribers.c.id == bindparam("subscriber_id"))
            .values({name: bindparam(f"new_{name}", type_=subscribers.c[name].type) for name in columns})
        )
    conn.execute(statement, {"subscriber_id": subscriber_id, **{f"new_{name}": value for name, value in values.items()}})


def record_consent(
    conn: Connection,
    subscriber_id: int,
    action: ConsentAction,
    *,
    sections: Sequence[str],
    origin: Origin,
    now: datetime,
) -> int:
    """Append one row to the consent log and return its id. The user agent is cut to the
    column's length; an IP address is kept as given (the web app passes the client's)."""
    result = conn.execute(_ADD_CONSENT, {
        "subscriber_id": subscriber_id,
        "action": action.value,
        "sections": sections_key(tuple(sections)),
        "at": now,
        "ip": origin.ip[:45],
        "user_agent": origin.user_agent[:300],
        "form": origin.form[:50],
    })
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def consent_history(conn: Connection, subscriber_id: int) -> list[ConsentRecord]:
    """Every consent row of the subscriber, oldest first."""
    rows = conn.execute(
        select(consents).where(consents.c.subscriber_id == subscriber_id).order_by(consents.c.id)
    ).all()
    return [
        ConsentRecord(
            id=row.id,
            subscriber_id=row.subscriber_id,
            action=ConsentAction(row.action),
            sections=parse_sections_key(row.sections),
            at=row.at,
            ip=row.ip,
            user_agent=row.user_agent,
            form=row.form,
        )
        for row in rows
    ]


def newest_consent_at(conn: Connection, subscriber_id: int) -> datetime | None:
    """When the subscriber's newest consent row was written (None: there is none), in the
    time zone of a stored time (UTC)."""
    newest = conn.execute(select(func.max(consents.c.at)).where(consents.c.subscriber_id == subscriber_id)).scalar()
    if newest is None:
        return None
    # SQLite hands back the aggregate as text or a naive time.
    if isinstance(newest, str):
        newest = datetime.fromisoformat(newest)
    return newest if newest.tzinfo is not None else newest.replace(tzinfo=UTC)


def delete_consents(conn: Connection, subscriber_id: int) -> None:
    """Delete the subscriber's consent log (an erasure)."""
    conn.execute(delete(consents).where(consents.c.subscriber_id == subscriber_id))


def consent_version(conn: Connection, subscriber_id: int) -> int:
    """The id of the subscriber's newest consent row (0 for none). It changes with every
    choice a person makes, so a form signed with it cannot be replayed after a change."""
    value = conn.execute(
        select(func.max(consents.c.id)).where(consents.c.subscriber_id == subscriber_id)
    ).scalar()
    return int(value or 0)


def subscriber_by_id(conn: Connection, subscriber_id: int) -> Subscriber:
    """The subscriber with that id, or `UnknownSubscriberError`."""
    found = subscribers_by_id(conn, [subscriber_id])
    if not found:
        raise UnknownSubscriberError(f"no subscriber with id {subscriber_id}")
    return found[0]
