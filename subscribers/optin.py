"""Double opt-in: asking to subscribe, confirming, and asking for a new confirmation link.

Owns: `request_subscription`, `confirm_subscription`, `resend_confirmation`,
`ConfirmationMail`, `MailKind`, `SendMail`, `ConfirmResult`. Imports `models`, `errors`,
`store`, `suppression`, `tokens` of this package. It never sends mail itself: the caller
hands it a `SendMail` callable (the web app's mailer), so this package needs nothing of
`newsletter`.

Nobody may learn from the outside whether an address is subscribed, so
`request_subscription` behaves the same for the caller whatever it finds: it returns
nothing, and it sends the address either a confirmation link (new, pending or gone) or a
note that it is already subscribed (active or paused). Suppressed, bounced and
complained addresses are sent nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection

from .errors import ConfirmationExpiredError, InvalidSectionError, NotAllowedError
from .models import ConsentAction, Origin, Status, Subscriber
from .store import (
    check_name,
    create_pending,
    find_by_email,
    normalize_email,
    record_consent,
    subscriber_by_token,
    subscriber_by_id,
    update_subscriber,
)
from .suppression import forget_erasure, may_create
from .tokens import new_token, rotate_token
from .zones import check_timezone

log = logging.getLogger(__name__)



class MailKind(StrEnum):
    """Which email a person gets after asking to subscribe."""

    CONFIRM = "confirm"  # follow the link to confirm the subscription
    ALREADY_SUBSCRIBED = "already-subscribed"  # you are subscribed; here are your preferences


@dataclass(frozen=True)
class ConfirmationMail:
    """An email the opt-in flow needs sent: to whom, and the token for its links."""

    kind: MailKind
    subscriber_id: int
    email: str
    name: str
    token: str
    sections: tuple[str, ...]


SendMail = Callable[[ConfirmationMail], None]


def check_sections(chosen: Sequence[str], known: Collection[str]) -> tuple[str, ...]:
    """The chosen section slugs, free of duplicates, or `InvalidSectionError` naming the
    first one the site does not have."""
    for slug in chosen:
        if slug not in known:
            shown = slug if len(slug) <= 40 else slug[:40] + "…"
            raise InvalidSectionError(f"{shown!r} is not one of this newsletter's sections")
    return tuple(sorted(set(chosen)))


def check_subscription(
    *, email: str, name: str, sections: Sequence[str], known_sections: Collection[str]
) -> tuple[str, str, tuple[str, ...]]:
    """(address, name, sections) as they would be stored, or the error naming what is
    wrong with the request. Touches no database: the web app runs it before it answers,
    and does the rest after, so that no answer depends on who is subscribed."""
    address = normalize_email(email)
    display = check_name(name)
    chosen = check_sections(sections, known_sections) or tuple(sorted(known_sections))
    return address, display, chosen


def request_subscription(
    conn: Connection,
    *,
    email: str,
    name: str,
    sections: Sequence[str],
    known_sections: Collection[str],
    origin: Origin,
    now: datetime,
    send: SendMail,
    timezone: str | None = None,
) -> None:
    """Ask to subscribe `email` to `sections` (none chosen means every known section),
    reading in `timezone` (None: the site's).

    Raises `InvalidEmailError`, `InvalidNameError`, `InvalidSectionError` or
    `InvalidTimezoneError` for bad input, before anything is written (`check_subscription` runs the same checks alone). Otherwise it answers nothing, whatever the address's standing (see the module
    docstring), and hands at most one `ConfirmationMail` to `send`.
    """
    address, display, chosen = check_subscription(email=email, name=name, sections=sections, known_sections=known_sections)
    zone = check_timezone(timezone) if timezone else None
    if not may_create(conn, address, own_consent=True):
        log.info("subscription request for a suppressed address ignored")
        return
    current = find_by_email(conn, address)
    if current is None:
        token = new_token()
        subscriber_id = create_pending(
            conn, email=address, name=display, sections=chosen, token=token, source=origin.form[:100], now=now,
            timezone=zone,
        )
        record_consent(conn, subscriber_id, ConsentAction.REQUESTED, sections=chosen, origin=origin, now=now)
        log.info("new pending subscriber %s", subscriber_id)
        send(ConfirmationMail(MailKind.CONFIRM, subscriber_id, address, display, token, chosen))
        return
    if current.status in (Status.BOUNCED, Status.COMPLAINED):
        log.info("subscription request for subscriber %s (%s) ignored", current.id, current.status)
        return
    if current.status in (Status.ACTIVE, Status.PAUSED):
        # Someone else may have typed this address: change nothing, tell the owner.
        log.info("subscription request for subscriber %s, already %s", current.id, current.status)
        send(
            ConfirmationMail(
                MailKind.ALREADY_SUBSCRIBED, current.id, address, current.name, current.token, current.sections
            )
        )
        return
    # Pending, or unsubscribed and asking to come back: a fresh confirmation is needed.
    update_subscriber(
        conn,
        current.id,
        status=Status.PENDING,
        sections=chosen,
        name=display or current.name,
        confirmation_sent_at=now,
        timezone=zone or current.timezone,
    )
    record_consent(conn, current.id, ConsentAction.REQUESTED, sections=chosen, origin=origin, now=now)
    log.info("confirmation sent again to subscriber %s", current.id)
    send(ConfirmationMail(MailKind.CONFIRM, current.id, address, display or current.name, current.token, chosen))


class ConfirmResult(StrEnum):
    CONFIRMED = "confirmed"  # the subscription is active from now on
    ALREADY_CONFIRMED = "already-confirmed"  # the link was used before; nothing changed


def confirm_subscription(
    conn: Connection, token: str, *, now: datetime, max_age: timedelta, origin: Origin
) -> tuple[ConfirmResult, Subscriber]:
    """Follow a confirmation link: a pending subscriber becomes active and the consent is
    recorded. Following it again changes nothing.

    Raises `UnknownSubscriberError` for a token that is not (or no longer) anyone's,
    `ConfirmationExpiredError` when the email is older than `max_age`, and
    `NotAllowedError` when the subscriber left since (unsubscribed, bounced).
    """
    subscriber = subscriber_by_token(conn, token)
    if subscriber.status in (Status.ACTIVE, Status.PAUSED):
        return ConfirmResult.ALREADY_CONFIRMED, subscriber
    if subscriber.status is not Status.PENDING:
        raise NotAllowedError(
            "This subscription was ended after the confirmation email was sent. "
            "Subscribe again to receive the newsletter."
        )
    sent = subscriber.confirmation_sent_at or subscriber.created_at
    if now - sent > max_age:
        raise ConfirmationExpiredError("this confirmation link has expired")
    update_subscriber(conn, subscriber.id, status=Status.ACTIVE, confirmed_at=now, unsubscribed_at=None)
    # A person who was erased and came back through the form has now consented again.
    forget_erasure(conn, subscriber.email)
    record_consent(
        conn, subscriber.id, ConsentAction.CONFIRMED, sections=subscriber.sections, origin=origin, now=now
    )
    log.info("subscriber %s confirmed", subscriber.id)
    return ConfirmResult.CONFIRMED, subscriber_by_id(conn, subscriber.id)


def resend_confirmation(
    conn: Connection, token: str, *, now: datetime, origin: Origin, send: SendMail
) -> None:
    """Send a pending subscriber a new confirmation link, under a new token (so the expired
    link stays dead). Does nothing for anyone who is no longer pending.

    Raises `UnknownSubscriberError` for an unknown token.
    """
    subscriber = subscriber_by_token(conn, token)
    if subscriber.status is not Status.PENDING or not may_create(conn, subscriber.email, own_consent=True):
        return
    fresh = rotate_token(conn, subscriber.id)
    update_subscriber(conn, subscriber.id, confirmation_sent_at=now)
    record_consent(
        conn, subscriber.id, ConsentAction.REQUESTED, sections=subscriber.sections, origin=origin, now=now
    )
    log.info("new confirmation link for subscriber %s", subscriber.id)
    send(
        ConfirmationMail(
            MailKind.CONFIRM, subscriber.id, subscriber.email, subscriber.name, fresh, subscriber.sections
        )
    )
