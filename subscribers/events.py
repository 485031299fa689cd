"""Applying what the email provider reports about a person: a bounce, a spam complaint,
an unsubscribe or a resubscribe through the provider's own links.

Owns: `PersonEvent`, `EventResult`, `apply_person_event`. Imports `models`, `store`,
`suppression` of this package (no table: the queries are theirs). The caller (the webhook's ingest in `newsletter`)
translates the provider's events, owns the transaction, and has already made sure each
event is applied once.

Rules:
- a hard bounce makes the subscriber `bounced`, a complaint `complained`; both put the
  address on the suppression list, so no send reaches it again;
- an unsubscribe makes an active, paused or pending subscriber `unsubscribed` and a
  resubscribe brings an `unsubscribed` one back to `active`; each writes a consent row
  whose form names where it came from ("sendgrid-unsubscribe" …). An event older than
  the person's newest consent row changes nothing: what they chose later wins;
- the subscriber is found by the id the message carried, and only when the event's
  address is theirs; otherwise by the address. Nobody found: `unknown`, never an error.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection

from .models import ConsentAction, Origin, Status, Subscriber
from .store import find_by_email, newest_consent_at, record_consent, subscribers_by_id, update_subscriber
from .suppression import is_suppressed, suppress

log = logging.getLogger(__name__)


class PersonEvent(StrEnum):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"


class EventResult(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    UNKNOWN = "unknown"


_GONE = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)


def _find(conn: Connection, subscriber_id: int | None, email: str) -> Subscriber | None:
    folded = email.strip().lower()
    if subscriber_id is not None:
        found = subscribers_by_id(conn, [subscriber_id])
        if found and (not folded or found[0].email.lower() == folded):
            return found[0]
    if not folded:
        return None
    return find_by_email(conn, folded)


def _chosen_later(conn: Connection, subscriber_id: int, at: datetime) -> bool:
    newest = newest_consent_at(conn, subscriber_id)
    return newest is not None and newest > at


def apply_person_event(
    conn: Connection,
    event: PersonEvent,
    *,
    subscriber_id: int | None,
    email: str,
    source: str,
    at: datetime,
    now: datetime,
) -> EventResult:
    """Apply one provider event to the person it concerns (see the module's rules).
    `source` names the provider's mechanism in the consent log; `at` is when the event
    happened, `now` when it arrived."""
    person = _find(conn, subscriber_id, email)
    if person is None:
        return EventResult.UNKNOWN
    if event in (PersonEvent.BOUNCED, PersonEvent.COMPLAINED):
        status = Status.BOUNCED if event is PersonEvent.BOUNCED else Status.COMPLAINED
        reason = "bounce" if event is PersonEvent.BOUNCED else "complaint"
        changed = False
        if not is_suppressed(conn, person.email):
            suppress(conn, person.email, reason=reason, now=now)
            changed = True
        # A complaint outranks a bounce: it is the stronger reason never to write again.
        if person.status is not status and person.status is not Status.COMPLAINED:
            update_subscriber(conn, person.id, status=status, unsubscribed_at=now, paused_until=None)
            changed = True
        if changed:
            log.info("subscriber %s %s (%s); suppressed", person.id, status.value, source)
        return EventResult.CHANGED if changed else EventResult.UNCHANGED
    if _chosen_later(conn, person.id, at):
        return EventResult.UNCHANGED
    origin = Origin(form=source)
    if event is PersonEvent.UNSUBSCRIBED:
        if person.status in _GONE:
            return EventResult.UNCHANGED
        update_subscriber(conn, person.id, status=Status.UNSUBSCRIBED, unsubscribed_at=at, paused_until=None)
        record_consent(conn, person.id, ConsentAction.UNSUBSCRIBED, sections=person.sections, origin=origin, now=at)
        log.info("subscriber %s unsubscribed (%s)", person.id, source)
        return EventResult.CHANGED
    if person.status is not Status.UNSUBSCRIBED or is_suppressed(conn, person.email):
        return EventResult.UNCHANGED
    update_subscriber(conn, person.id, status=Status.ACTIVE, unsubscribed_at=None, paused_until=None)
    record_consent(conn, person.id, ConsentAction.RESUBSCRIBED, sections=person.sections, origin=origin, now=at)
    log.info("subscriber %s resubscribed (%s)", person.id, source)
    return EventResult.CHANGED
