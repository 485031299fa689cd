"""A subscriber's own choices: sections, a pause, leaving and coming back.

Owns: `load_preferences`, `choose_sections`, `choose_timezone`, `pause`, `resume`, `unsubscribe`,
`resubscribe`, `PAUSE_CHOICES`. Imports `models`, `errors`, `store`, `optin` (for
`check_sections`), `zones` of this package.

Every function takes the subscriber's link token: holding the token is what proves the
person received our email. Every change is written to the consent log with its origin;
asking for what is already so changes nothing and logs nothing, so each action is
idempotent (a one-click unsubscribe sent twice by a mail provider is one withdrawal).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from .errors import NotAllowedError
from .models import ConsentAction, Origin, Status, Subscriber
from .optin import check_sections
from .store import record_consent, subscriber_by_token, subscriber_by_id, update_subscriber
from .suppression import is_suppressed
from .zones import check_timezone

log = logging.getLogger(__name__)

#: The pauses a subscriber may choose, in days, with the words the page shows.
PAUSE_CHOICES: dict[int, str] = {7: "1 week", 14: "2 weeks", 30: "1 month", 90: "3 months"}


def pause_has_ended(subscriber: Subscriber, *, now: datetime) -> bool:
    """Whether `subscriber` is paused until a time that has passed (`load_preferences`
    then ends the pause)."""
    return subscriber.status is Status.PAUSED and subscriber.paused_until is not None and subscriber.paused_until <= now


def load_preferences(conn: Connection, token: str, *, now: datetime) -> Subscriber:
    """The subscriber behind `token` as they stand now: a pause that has run out is ended
    (the send path already treats them as active, see `mailable_clause`).

    Raises `UnknownSubscriberError` for an unknown token."""
    subscriber = subscriber_by_token(conn, token)
    if pause_has_ended(subscriber, now=now):
        update_subscriber(conn, subscriber.id, status=Status.ACTIVE, paused_until=None)
        return subscriber_by_id(conn, subscriber.id)
    return subscriber


def choose_sections(
    conn: Connection,
    token: str,
    sections: Sequence[str],
    *,
    known_sections: Collection[str],
    origin: Origin,
    now: datetime,
) -> Subscriber:
    """Keep the sections chosen. Choosing none is allowed: that person is sent nothing
    until they choose again. Raises `InvalidSectionError` for a slug the site lacks."""
    subscriber = load_preferences(conn, token, now=now)
    chosen = check_sections(sections, known_sections)
    if chosen == subscriber.sections:
        return subscriber
    update_subscriber(conn, subscriber.id, sections=chosen)
    record_consent(conn, subscriber.id, ConsentAction.SECTIONS, sections=chosen, origin=origin, now=now)
    log.info("subscriber %s chose %d sections", subscriber.id, len(chosen))
    return subscriber_by_id(conn, subscriber.id)


def choose_timezone(conn: Connection, token: str, timezone: str, *, now: datetime) -> Subscriber:
    """Keep the reader's time zone (an IANA name; `InvalidTimezoneError` for any other).
    Not a matter of consent, so nothing goes in the consent log."""
    subscriber = load_preferences(conn, token, now=now)
    zone = check_timezone(timezone)
    if zone == subscriber.timezone:
        return subscriber
    update_subscriber(conn, subscriber.id, timezone=zone)
    log.info("subscriber %s chose a time zone", subscriber.id)
    return replace(subscriber, timezone=zone)


def pause(conn: Connection, token: str, *, days: int, origin: Origin, now: datetime) -> Subscriber:
    """Stop mail for `days` (one of `PAUSE_CHOICES`); it starts again by itself after.
    Only an active (or already paused) subscriber can pause."""
    subscriber = load_preferences(conn, token, now=now)
    if days not in PAUSE_CHOICES:
        raise NotAllowedError(f"a pause lasts one of: {', '.join(PAUSE_CHOICES.values())}")
    if subscriber.status not in (Status.ACTIVE, Status.PAUSED):
        raise NotAllowedError("Only an active subscription can be paused.")
    until = now + timedelta(days=days)
    update_subscriber(conn, subscriber.id, status=Status.PAUSED, paused_until=until)
    record_consent(conn, subscriber.id, ConsentAction.PAUSED, sections=subscriber.sections, origin=origin, now=now)
    log.info("subscriber %s paused for %d days", subscriber.id, days)
    return subscriber_by_id(conn, subscriber.id)


def resume(conn: Connection, token: str, *, origin: Origin, now: datetime) -> Subscriber:
    """End a pause now. Does nothing for a subscriber who is not paused."""
    subscriber = load_preferences(conn, token, now=now)
    if subscriber.status is not Status.PAUSED:
        return subscriber
    update_subscriber(conn, subscriber.id, status=Status.ACTIVE, paused_until=None)
    record_consent(conn, subscriber.id, ConsentAction.RESUMED, sections=subscriber.sections, origin=origin, now=now)
    log.info("subscriber %s resumed", subscriber.id)
    return subscriber_by_id(conn, subscriber.id)


def unsubscribe(conn: Connection, token: str, *, origin: Origin, now: datetime) -> Subscriber:
    """Withdraw from every mail at once. Idempotent: unsubscribing again, or an address
    that bounced or complained, changes and logs nothing."""
    subscriber = subscriber_by_token(conn, token)
    if subscriber.status in (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED):
        return subscriber
    update_subscriber(
        conn, subscriber.id, status=Status.UNSUBSCRIBED, unsubscribed_at=now, paused_until=None
    )
    record_consent(
        conn, subscriber.id, ConsentAction.UNSUBSCRIBED, sections=subscriber.sections, origin=origin, now=now
    )
    log.info("subscriber %s unsubscribed (%s)", subscriber.id, origin.form)
    # What was just written, without reading it back (a one-click unsubscribe is hot).
    return replace(subscriber, status=Status.UNSUBSCRIBED, unsubscribed_at=now, paused_until=None)


def resubscribe(conn: Connection, token: str, *, origin: Origin, now: datetime) -> Subscriber:
    """Come back after unsubscribing, from the person's own preference center: the token
    proves the address is theirs, so no new confirmation email is needed. An address that
    bounced, complained or is suppressed cannot come back this way."""
    subscriber = subscriber_by_token(conn, token)
    if subscriber.status in (Status.ACTIVE, Status.PAUSED):
        return subscriber
    if subscriber.status in (Status.BOUNCED, Status.COMPLAINED) or is_suppressed(conn, subscriber.email):
        raise NotAllowedError(
            "We cannot send email to this address any more. Please contact us to subscribe again."
        )
    if subscriber.status is Status.PENDING:
        raise NotAllowedError("Please confirm your subscription with the link in our email first.")
    update_subscriber(conn, subscriber.id, status=Status.ACTIVE, unsubscribed_at=None, paused_until=None)
    record_consent(
        conn, subscriber.id, ConsentAction.RESUBSCRIBED, sections=subscriber.sections, origin=origin, now=now
    )
    log.info("subscriber %s resubscribed", subscriber.id)
    return subscriber_by_id(conn, subscriber.id)
