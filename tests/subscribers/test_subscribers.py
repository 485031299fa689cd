"""The subscriber use cases on a real database (SQLite and PostgreSQL): double opt-in,
choices, pauses, leaving and coming back, the consent log, tokens and the mailable gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, select

import subscribers as people
from tests.conftest import NOW

KNOWN = ["drug-development", "events", "manufacturing", "news"]
ORIGIN = people.Origin(ip="203.0.113.9", user_agent="Test Browser/1.0", form="subscribe-form")
WEEK = timedelta(days=7)


def ask(conn: Connection, email: str, sections: list[str] | None = None, *, now: datetime = NOW) -> list[people.ConfirmationMail]:
    mails: list[people.ConfirmationMail] = []
    people.request_subscription(
        conn, email=email, name="Ann Example", sections=sections or ["news"], known_sections=KNOWN,
        origin=ORIGIN, now=now, send=mails.append,
    )
    return mails


def subscribe_and_confirm(engine: Engine, email: str, sections: list[str] | None = None) -> str:
    with engine.begin() as conn:
        (mail,) = ask(conn, email, sections)
        people.confirm_subscription(conn, mail.token, now=NOW, max_age=WEEK, origin=ORIGIN)
    return mail.token


def mailable_ids(conn: Connection, *, now: datetime | None = None) -> list[int]:
    """Who may be mailed, asked both ways `mailable_clause` has (for a scan of the whole
    list and for a few rows), which must agree."""
    found = []
    for few in (False, True):
        query = select(people.subscribers.c.id).where(people.mailable_clause(now=now, few=few)).order_by(people.subscribers.c.id)
        found.append(list(conn.execute(query).scalars()))
    assert found[0] == found[1]
    return found[0]


def test_a_new_address_is_pending_until_confirmed_and_both_steps_are_in_the_consent_log(engine: Engine) -> None:
    with engine.begin() as conn:
        (mail,) = ask(conn, " Ann@Example.COM ", ["news", "events", "news"])
        assert mail.kind is people.MailKind.CONFIRM and mail.email == "ann@example.com"
        pending = people.get_subscriber(conn, "ann@example.com")
        assert pending.status is people.Status.PENDING and pending.sections == ("events", "news")
        assert mailable_ids(conn) == []
        result, active = people.confirm_subscription(conn, mail.token, now=NOW + timedelta(hours=1), max_age=WEEK, origin=ORIGIN)
        assert result is people.ConfirmResult.CONFIRMED and active.status is people.Status.ACTIVE
        assert active.confirmed_at == NOW + timedelta(hours=1)
        assert mailable_ids(conn) == [active.id]
        history = people.consent_history(conn, active.id)
    assert [(c.action, c.sections, c.ip, c.user_agent, c.form) for c in history] == [
        (people.ConsentAction.REQUESTED, ("events", "news"), "203.0.113.9", "Test Browser/1.0", "subscribe-form"),
        (people.ConsentAction.CONFIRMED, ("events", "news"), "203.0.113.9", "Test Browser/1.0", "subscribe-form"),
    ]


def test_asking_again_never_reveals_or_changes_an_active_subscription(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com", ["events"])
    with engine.begin() as conn:
        (mail,) = ask(conn, "ann@example.com", ["news"])
        subscriber = people.get_subscriber(conn, "ann@example.com")
    # The owner is told; a stranger who typed the address learns and changes nothing.
    assert mail.kind is people.MailKind.ALREADY_SUBSCRIBED and mail.token == token
    assert subscriber.status is people.Status.ACTIVE and subscriber.sections == ("events",)


def test_a_pending_address_gets_a_fresh_confirmation_and_the_new_sections(engine: Engine) -> None:
    with engine.begin() as conn:
        (first,) = ask(conn, "ann@example.com", ["events"])
        (second,) = ask(conn, "ann@example.com", ["news"], now=NOW + timedelta(days=6))
        subscriber = people.get_subscriber(conn, "ann@example.com")
    assert second.kind is people.MailKind.CONFIRM and second.token == first.token
    assert subscriber.sections == ("news",) and subscriber.confirmation_sent_at == NOW + timedelta(days=6)


def test_suppressed_bounced_and_complained_addresses_are_sent_nothing(engine: Engine) -> None:
    subscribe_and_confirm(engine, "bounced@example.com")
    with engine.begin() as conn:
        people.suppress(conn, "gone@example.com", reason="erased", now=NOW)
        people.set_status(conn, people.get_subscriber(conn, "bounced@example.com").id, people.Status.BOUNCED, now=NOW)
        assert ask(conn, "gone@example.com") == []
        assert ask(conn, "bounced@example.com") == []
        with pytest.raises(people.UnknownSubscriberError):
            people.get_subscriber(conn, "gone@example.com")


def test_a_suppressed_address_is_not_mailable_whatever_its_status(engine: Engine) -> None:
    for address in ("ann@example.com", "bo@example.com"):
        subscribe_and_confirm(engine, address)
    with engine.begin() as conn:
        ann, bo = (people.get_subscriber(conn, a).id for a in ("ann@example.com", "bo@example.com"))
        assert mailable_ids(conn) == [ann, bo]
        people.suppress(conn, "bo@example.com", reason="complaint", now=NOW)
        people.suppress(conn, "nobody@example.com", reason="erased", now=NOW)
        assert mailable_ids(conn) == [ann]


def test_bad_input_is_refused_before_anything_is_written(engine: Engine) -> None:
    with engine.begin() as conn:
        for address in ("not-an-address", "a@b", "ann@example.com\r\nBcc: x@example.com", "x" * 400 + "@example.com"):
            with pytest.raises(people.InvalidEmailError):
                ask(conn, address)
        with pytest.raises(people.InvalidSectionError, match="'sports' is not one of"):
            ask(conn, "ann@example.com", ["news", "sports"])
        assert conn.execute(select(people.subscribers.c.id)).first() is None


def test_a_confirmation_link_expires_and_a_new_one_replaces_it(engine: Engine) -> None:
    with engine.begin() as conn:
        (mail,) = ask(conn, "ann@example.com")
    late = NOW + WEEK + timedelta(minutes=1)
    with engine.begin() as conn, pytest.raises(people.ConfirmationExpiredError):
        people.confirm_subscription(conn, mail.token, now=late, max_age=WEEK, origin=ORIGIN)
    resent: list[people.ConfirmationMail] = []
    with engine.begin() as conn:
        people.resend_confirmation(conn, mail.token, now=late, origin=ORIGIN, send=resent.append)
    (fresh,) = resent
    assert fresh.token != mail.token
    with engine.begin() as conn:
        with pytest.raises(people.UnknownSubscriberError):
            people.confirm_subscription(conn, mail.token, now=late, max_age=WEEK, origin=ORIGIN)
        result, subscriber = people.confirm_subscription(conn, fresh.token, now=late, max_age=WEEK, origin=ORIGIN)
        assert result is people.ConfirmResult.CONFIRMED
        again, _ = people.confirm_subscription(conn, fresh.token, now=late, max_age=WEEK, origin=ORIGIN)
        assert again is people.ConfirmResult.ALREADY_CONFIRMED
        actions = [c.action for c in people.consent_history(conn, subscriber.id)]
    assert actions == [people.ConsentAction.REQUESTED, people.ConsentAction.REQUESTED, people.ConsentAction.CONFIRMED]


def test_choosing_sections_is_logged_once_and_none_means_no_mail(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com", ["news"])
    prefs = people.Origin(ip="198.51.100.7", user_agent="UA", form="preferences")
    with engine.begin() as conn:
        chosen = people.choose_sections(conn, token, ["events", "manufacturing"], known_sections=KNOWN, origin=prefs, now=NOW)
        people.choose_sections(conn, token, ["manufacturing", "events"], known_sections=KNOWN, origin=prefs, now=NOW)
        assert chosen.sections == ("events", "manufacturing")
        with pytest.raises(people.InvalidSectionError):
            people.choose_sections(conn, token, ["<script>"], known_sections=KNOWN, origin=prefs, now=NOW)
        nothing = people.choose_sections(conn, token, [], known_sections=KNOWN, origin=prefs, now=NOW)
        assert nothing.sections == ()
        log = people.consent_history(conn, chosen.id)
    assert [(c.action, c.sections, c.form) for c in log[2:]] == [
        (people.ConsentAction.SECTIONS, ("events", "manufacturing"), "preferences"),
        (people.ConsentAction.SECTIONS, (), "preferences"),
    ]


def test_a_pause_stops_mail_until_it_runs_out(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    with engine.begin() as conn:
        paused = people.pause(conn, token, days=14, origin=ORIGIN, now=NOW)
        assert paused.status is people.Status.PAUSED and paused.paused_until == NOW + timedelta(days=14)
        assert mailable_ids(conn, now=NOW + timedelta(days=13)) == []
        assert mailable_ids(conn, now=NOW + timedelta(days=14)) == [paused.id]
        with pytest.raises(people.NotAllowedError):
            people.pause(conn, token, days=3, origin=ORIGIN, now=NOW)
        resumed = people.resume(conn, token, origin=ORIGIN, now=NOW)
        assert resumed.status is people.Status.ACTIVE and resumed.paused_until is None
    # Without a clock given, the database's own clock ends a pause that is over.
    real_now = datetime.now(UTC)
    with engine.begin() as conn:
        people.pause(conn, token, days=7, origin=ORIGIN, now=real_now - timedelta(days=8))
        assert mailable_ids(conn) == [resumed.id]
        people.pause(conn, token, days=7, origin=ORIGIN, now=real_now)
        assert mailable_ids(conn) == []
        # Opening the preferences after a pause ran out shows the subscription active.
        later = people.load_preferences(conn, token, now=real_now + timedelta(days=8))
        assert later.status is people.Status.ACTIVE


def test_unsubscribe_is_idempotent_and_resubscribe_brings_them_back(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    click = people.Origin(ip="192.0.2.1", user_agent="MailProvider", form="one-click")
    with engine.begin() as conn:
        gone = people.unsubscribe(conn, token, origin=click, now=NOW)
        people.unsubscribe(conn, token, origin=click, now=NOW + timedelta(minutes=1))
        assert gone.status is people.Status.UNSUBSCRIBED and gone.unsubscribed_at == NOW
        assert mailable_ids(conn) == []
        back = people.resubscribe(conn, token, origin=ORIGIN, now=NOW)
        assert back.status is people.Status.ACTIVE and back.unsubscribed_at is None
        actions = [c.action for c in people.consent_history(conn, back.id)]
    assert actions.count(people.ConsentAction.UNSUBSCRIBED) == 1
    assert actions[-1] is people.ConsentAction.RESUBSCRIBED


def test_an_address_that_bounced_or_is_suppressed_cannot_resubscribe(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    with engine.begin() as conn:
        people.unsubscribe(conn, token, origin=ORIGIN, now=NOW)
        people.suppress(conn, "ann@example.com", reason="complaint", now=NOW)
        with pytest.raises(people.NotAllowedError, match="cannot send email"):
            people.resubscribe(conn, token, origin=ORIGIN, now=NOW)


def test_an_unsubscribed_address_must_confirm_again_when_it_uses_the_form(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    with engine.begin() as conn:
        people.unsubscribe(conn, token, origin=ORIGIN, now=NOW)
        (mail,) = ask(conn, "ann@example.com", ["events"])
        assert mail.kind is people.MailKind.CONFIRM
        assert people.get_subscriber(conn, "ann@example.com").status is people.Status.PENDING
        assert mailable_ids(conn) == []


def test_rotating_a_token_invalidates_every_old_link(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    with engine.begin() as conn:
        subscriber = people.subscriber_by_token(conn, token)
        fresh = people.rotate_token(conn, subscriber.id)
        assert len(fresh) >= 32 and fresh != token
        assert people.subscriber_by_token(conn, fresh).id == subscriber.id
        for bad in (token, token[:-1] + ("A" if token[-1] != "A" else "B"), "", "../etc/passwd", "x" * 5000):
            with pytest.raises(people.UnknownSubscriberError):
                people.subscriber_by_token(conn, bad)


def test_erasing_a_subscriber_erases_their_consent_log(engine: Engine) -> None:
    token = subscribe_and_confirm(engine, "ann@example.com")
    with engine.begin() as conn:
        subscriber = people.subscriber_by_token(conn, token)
        conn.execute(people.subscribers.delete().where(people.subscribers.c.id == subscriber.id))
        assert people.consent_history(conn, subscriber.id) == []
