"""The web app in-process through httpx (Starlette's Client) on a real database and
the outbox: subscribe, confirm, the preference center, one-click unsubscribe, and every
bad input the issue names."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import Engine, select
import asyncio

import httpx

import subscribers as people
from newsletter.config import Settings
from newsletter.web import create_app
from tests.conftest import NOW
from tests.helpers import outbox_messages, parts

SECRET = "test-secret-key-0123456789"
BASE = "https://news.example.com"
ALLOWED_ORIGIN = "https://www.pharma.example.com"
INVALID_PAGE = "<h1>This link is not valid</h1>"


class Client:
    """A blocking httpx client that calls the ASGI app in-process, request by request.

    (Starlette's Client is not used: on this Starlette it warns that it wants
    `httpx2`.) httpx's ASGI transport waits for the whole app call, so a background task
    such as sending the confirmation email has finished when a request returns."""

    def __init__(self, app: Any, *, base_url: str) -> None:
        self.app = app
        self.base_url = base_url
        self.cookies = httpx.Cookies()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("203.0.113.50", 50000))
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url, cookies=self.cookies) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(call())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Site:
    """The app under test with its database, settings, clocks and an HTTP client."""

    client: Client
    engine: Engine
    settings: Settings
    now: list[datetime] = field(default_factory=lambda: [NOW])
    seconds: list[float] = field(default_factory=lambda: [0.0])

    def advance(self, delta: timedelta) -> None:
        self.now[0] += delta
        self.seconds[0] += delta.total_seconds()

    def mails(self) -> list[EmailMessage]:
        return outbox_messages(self.settings.outbox_dir)

    def subscriber(self, email: str) -> people.Subscriber:
        with self.engine.connect() as conn:
            return people.get_subscriber(conn, email)

    def consents(self, email: str) -> list[people.ConsentRecord]:
        with self.engine.connect() as conn:
            return people.consent_history(conn, self.subscriber(email).id)

    def subscribe(self, email: str, sections: list[str] | None = None, **headers: str) -> Any:
        data: dict[str, Any] = {"email": email, "name": "Ann Example", "sections": sections or ["news", "events"]}
        return self.client.post("/subscribe", data=data, headers=headers)

    def confirmed(self, email: str, sections: list[str] | None = None) -> str:
        """Subscribe and follow the link in the email; returns the token."""
        assert self.subscribe(email, sections).status_code == 200
        token = link_token(self.mails()[-1], "confirm")
        assert self.client.get(f"/confirm/{token}").status_code == 200
        return token

    def csrf(self, token: str) -> str:
        page = self.client.get(f"/preferences/{token}")
        assert page.status_code == 200
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found
        return found.group(1)


def link_token(message: EmailMessage, kind: str) -> str:
    text, html = parts(message)
    found = re.search(rf"{BASE}/{kind}/([A-Za-z0-9_-]+)", text)
    assert found, text
    assert f"{BASE}/{kind}/{found.group(1)}" in html
    return found.group(1)


def page_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def make_site(engine: Engine, make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Site]]:
    def make(theme: dict[str, Any] | None = None, welcome: bool = False, **web: Any) -> Site:
        # The opt-in tests count the mails in the outbox; the welcome email that follows
        # a confirmation has tests of its own (tests/test_welcome.py).
        settings = make_settings(
            security={"secret_key": SECRET},
            web={"cors_origins": [ALLOWED_ORIGIN], **web},
            theme=theme or {},
            welcome={"enabled": welcome},
        )
        site = Site(client=None, engine=engine, settings=settings)  # type: ignore[arg-type]
        app = create_app(
            settings, engine=engine, clock=lambda: site.now[0], monotonic=lambda: site.seconds[0]
        )
        site.client = Client(app, base_url=BASE)
        return site

    yield make


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


# Subscribing -------------------------------------------------------------------------


def test_the_subscribe_page_is_a_labelled_form_with_every_section(site: Site) -> None:
    page = site.client.get("/subscribe")
    assert page.status_code == 200
    assert '<label for="email">Email address</label>' in page.text
    for name in site.settings.section_names().values():
        assert f'checked> {name}</label>' in page.text
    assert "<script" not in page.text and 'lang="en"' in page.text
    assert "Pharma Weekly" in page.text


def test_subscribing_sends_a_confirmation_email_and_following_it_activates(site: Site) -> None:
    answer = site.subscribe("Ann@Example.com", ["news", "events"], **{"user-agent": "Firefox/200"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (mail,) = site.mails()
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Please confirm your subscription to Pharma Weekly"
    text, html = parts(mail)
    assert "Hello Ann Example," in text and "Events, News" in text and "7 days" in text
    assert "Confirm my subscription" in html and not re.search(r"<mj-", html)
    token = link_token(mail, "confirm")
    assert site.subscriber("ann@example.com").status is people.Status.PENDING

    confirmed = site.client.get(f"/confirm/{token}")
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert f'href="/preferences/{token}"' in confirmed.text
    subscriber = site.subscriber("ann@example.com")
    assert subscriber.status is people.Status.ACTIVE and subscriber.sections == ("events", "news")
    log = site.consents("ann@example.com")
    assert [(c.action, c.form, c.user_agent) for c in log] == [
        (people.ConsentAction.REQUESTED, "subscribe-form", "Firefox/200"),
        (people.ConsentAction.CONFIRMED, "confirm-link", "python-httpx/" + httpx.__version__),
    ]
    assert log[0].ip == "203.0.113.50"
    again = site.client.get(f"/confirm/{token}")
    assert again.status_code == 200 and "already confirmed" in again.text


def test_the_answer_is_the_same_for_new_pending_active_and_suppressed_addresses(site: Site) -> None:
    site.confirmed("active@example.com")
    site.subscribe("pending@example.com")
    with site.engine.begin() as conn:
        people.suppress(conn, "suppressed@example.com", reason="complaint", now=NOW)
    before = len(site.mails())
    answers = [site.subscribe(f"{who}@example.com") for who in ("new", "pending", "active", "suppressed")]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    sent = {m["To"]: m for m in site.mails()[before:]}
    # The owner of an active address is told so; a suppressed address is sent nothing.
    assert sorted(sent) == ["active@example.com", "new@example.com", "pending@example.com"]
    assert sent["active@example.com"]["Subject"] == "You are already subscribed to Pharma Weekly"
    assert site.subscriber("active@example.com").sections == ("events", "news")

    json_answers = [
        site.client.post("/subscribe", json={"email": f"{who}@example.com"}) for who in ("new2", "active", "suppressed")
    ]
    assert {a.status_code for a in json_answers} == {202}
    assert len({a.text for a in json_answers}) == 1


def test_json_subscribe_with_cors_for_configured_origins_only(site: Site) -> None:
    answer = site.client.post(
        "/subscribe", json={"email": "ann@example.com", "sections": ["news"]}, headers={"origin": ALLOWED_ORIGIN}
    )
    assert answer.status_code == 202 and answer.json()["ok"] is True
    assert answer.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert site.subscriber("ann@example.com").sections == ("news",)
    other = site.client.post("/subscribe", json={"email": "bob@example.com"}, headers={"origin": "https://evil.example"})
    assert other.status_code == 202 and "access-control-allow-origin" not in other.headers
    preflight = site.client.options(
        "/subscribe", headers={"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-methods"] == "POST"
    refused = site.client.options("/subscribe", headers={"origin": "https://evil.example"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    # Errors are readable by the allowed site's script too.
    bad = site.client.post("/subscribe", json={"email": "nope"}, headers={"origin": ALLOWED_ORIGIN})
    assert bad.status_code == 422 and bad.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "valid email address" in bad.json()["error"]


@pytest.mark.parametrize(
    "address",
    [
        "",
        "not-an-address",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@localhost",
        "ann@example.com\r\nBcc: victim@example.com",
        "ann@example.com, bob@example.com",
        '"<script>alert(1)</script>"@example.com',
        "<script>alert(1)</script>@example.com",
        "ann@exa mple.com",
        "a" * 65 + "@example.com",
        "ann@" + "x" * 300 + ".com",
    ],
)
def test_malformed_and_hostile_addresses_are_refused_with_a_clear_message(site: Site, address: str) -> None:
    answer = site.subscribe(address)
    assert answer.status_code in (400, 422)
    assert "<script>alert" not in answer.text
    assert 'role="alert"' in answer.text and "Traceback" not in answer.text
    assert site.mails() == []
    with site.engine.connect() as conn:
        assert conn.execute(select(people.subscribers.c.id)).first() is None


def test_a_refused_form_keeps_what_was_typed_escaped(site: Site) -> None:
    answer = site.client.post("/subscribe", data={"email": "ann@", "name": "<b>Ann</b>"})
    assert answer.status_code == 422
    assert "Please check your email address" in answer.text or "valid email address" in answer.text
    assert 'value="ann@"' in answer.text and "&lt;b&gt;Ann&lt;/b&gt;" in answer.text


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"email=ann%40example.com&x=" + b"a" * 20_000, "application/x-www-form-urlencoded", 413, "larger than"),
        (b'{"email": "ann@example.com", "name": "' + b"a" * 20_000 + b'"}', "application/json", 413, "larger than"),
        (b"email=ann@example.com", "text/plain", 415, "application/x-www-form-urlencoded"),
        (b"<email>ann@example.com</email>", "application/xml", 415, "Send the form"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'["ann@example.com"]', "application/json", 400, "JSON object"),
        (b'{"email": ["ann@example.com"]}', "application/json", 400, "must be strings"),
        (b'{"email": "ann@example.com", "sections": "news"}', "application/json", 400, "list of section"),
        (b'{"email": "ann@example.com", "sections": ["sports"]}', "application/json", 400, "not one of"),
        (b"email=a%40example.com&email=b%40example.com", "application/x-www-form-urlencoded", 400, "more than once"),
        (b"email=%FF%FE", "application/x-www-form-urlencoded", 400, "could not be read"),
    ],
)
def test_bad_bodies_get_a_clear_error_and_write_nothing(
    site: Site, body: bytes, content_type: str, status: int, says: str
) -> None:
    answer = site.client.post("/subscribe", content=body, headers={"content-type": content_type})
    assert answer.status_code == status
    assert says in answer.text
    assert site.mails() == []


def test_a_body_larger_than_declared_is_cut_off(site: Site) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"a" * 1000

    answer = site.client.post(
        "/subscribe", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 413


def test_the_hidden_field_only_bots_fill_in_gets_the_same_answer_and_nothing_else(site: Site) -> None:
    answer = site.client.post("/subscribe", data={"email": "ann@example.com", "website": "http://spam.example"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert site.mails() == []


def test_bursts_over_the_per_ip_limit_get_429_until_the_window_passes(make_site: Callable[..., Site]) -> None:
    # The limits library counts on the wall clock: a window of three seconds, waited out.
    site = make_site(subscribe_per_ip=5, rate_window_seconds=3)
    started = time.monotonic()
    answers = [site.subscribe(f"reader{n}@example.com").status_code for n in range(7)]
    assert answers == [200] * 5 + [429] * 2
    refused = site.subscribe("late@example.com")
    assert refused.status_code == 429 and "Too many requests" in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert len(site.mails()) == 5
    time.sleep(max(0.0, started + 3.1 - time.monotonic()))
    assert site.subscribe("late@example.com").status_code == 200


def test_one_address_gets_at_most_the_configured_number_of_emails(make_site: Callable[..., Site]) -> None:
    site = make_site(subscribe_per_address=3)
    codes = [site.subscribe("Ann@example.com").status_code for _ in range(3)]
    codes.append(site.subscribe("ann@EXAMPLE.com").status_code)
    codes.append(site.client.post("/subscribe", json={"email": "ann@example.com"}).status_code)
    assert codes == [200, 200, 200, 429, 429]
    assert len(site.mails()) == 3


# Confirming --------------------------------------------------------------------------


def test_an_expired_confirmation_offers_a_new_link_that_replaces_the_old(make_site: Callable[..., Site]) -> None:
    site = make_site(confirm_days=2)
    site.subscribe("ann@example.com")
    old = link_token(site.mails()[-1], "confirm")
    site.advance(timedelta(days=2, minutes=1))
    expired = site.client.get(f"/confirm/{old}")
    assert expired.status_code == 410 and "This confirmation link has expired" in expired.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', expired.text)
    assert csrf and f'action="/confirm/{old}"' in expired.text
    assert site.client.post(f"/confirm/{old}", data={}).status_code == 403
    resent = site.client.post(f"/confirm/{old}", data={"csrf": csrf.group(1)})
    assert resent.status_code == 200 and "Check your inbox" in resent.text
    fresh = link_token(site.mails()[-1], "confirm")
    assert fresh != old
    assert site.client.get(f"/confirm/{old}").status_code == 404
    assert site.client.get(f"/confirm/{fresh}").status_code == 200
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE


@pytest.mark.parametrize("kind", ["confirm", "preferences", "unsubscribe"])
def test_unknown_and_tampered_tokens_get_a_plain_404(site: Site, kind: str) -> None:
    token = site.confirmed("ann@example.com")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for bad in (tampered, "A" * 32, "x", "..%2F..%2Fetc", "%00", "a" * 5000):
        for answer in (site.client.get(f"/{kind}/{bad}"), site.client.post(f"/{kind}/{bad}", data={"List-Unsubscribe": "One-Click"})):
            assert answer.status_code == 404, (kind, bad)
            assert INVALID_PAGE in answer.text
            assert page_text(answer.text) == "This link is not valid This link is not valid"
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE


# The preference center ---------------------------------------------------------------


def test_the_preference_center_shows_the_choices_accessibly_with_the_branding(make_site: Callable[..., Site]) -> None:
    site = make_site(theme={"brand_color": "#FFD700", "logo_url": "https://cdn.example.com/logo.png"})
    token = site.confirmed("ann@example.com", ["events", "news"])
    page = site.client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert "ann@example.com" in page.text and "Pharma Weekly" in page.text
    assert '<img src="https://cdn.example.com/logo.png" alt="Pharma Weekly">' in page.text
    # Light brand colour: dark text on it, for contrast.
    assert "--brand: #ffd700; --on-brand: #111111;" in page.text
    assert 'value="events" checked> Events</label>' in page.text
    assert 'value="manufacturing"> Manufacturing</label>' in page.text
    assert '<label for="pause_days">' in page.text and "<legend>Sections you receive</legend>" in page.text
    assert "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_a_pause_that_has_run_out_ends_when_the_page_is_opened(site: Site) -> None:
    """The preference page reads without writing, except when a pause has run out: then
    it ends the pause first and shows the reader active, with a form that still works."""
    token = site.confirmed("pat@example.com", ["events"])
    site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "pause", "pause_days": "30"})
    assert site.subscriber("pat@example.com").status is people.Status.PAUSED
    site.now[0] += timedelta(days=31)
    page = site.client.get(f"/preferences/{token}").text
    assert "Resume now" not in page and "paused until" not in page
    assert site.subscriber("pat@example.com").status is people.Status.ACTIVE
    saved = site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "save", "sections": ["news"]})
    assert saved.status_code == 303 and site.subscriber("pat@example.com").sections == ("news",)


def test_changing_sections_pausing_resuming_leaving_and_coming_back(site: Site) -> None:
    token = site.confirmed("ann@example.com", ["events", "news"])
    saved = site.client.post(
        f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "save", "sections": ["manufacturing"]}
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"/preferences/{token}?done=save"
    assert "Your sections are saved." in site.client.get(saved.headers["location"]).text
    assert site.subscriber("ann@example.com").sections == ("manufacturing",)

    paused = site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "pause", "pause_days": "30"})
    assert paused.status_code == 303
    page = site.client.get(f"/preferences/{token}").text
    assert "paused until 23 December 2026" in page and "Resume now" in page
    assert site.subscriber("ann@example.com").status is people.Status.PAUSED

    site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "resume"})
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE

    site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "unsubscribe"})
    page = site.client.get(f"/preferences/{token}").text
    assert "You are <strong>unsubscribed</strong>" in page and "Subscribe again" in page
    site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "resubscribe"})
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE
    actions = [c.action.value for c in site.consents("ann@example.com")]
    assert actions == ["requested", "confirmed", "sections", "paused", "resumed", "unsubscribed", "resubscribed"]
    assert {c.form for c in site.consents("ann@example.com")[2:]} == {"preferences"}


def test_preference_forms_need_a_valid_fresh_unused_csrf_token(site: Site) -> None:
    token = site.confirmed("ann@example.com", ["news"])
    other = site.confirmed("bob@example.com", ["news"])
    csrf = site.csrf(token)
    form = {"action": "save", "sections": ["events"]}
    for bad in ({}, {"csrf": ""}, {"csrf": "123.abc"}, {"csrf": "garbage"}, {"csrf": site.csrf(other)}, {"csrf": csrf + "x"}):
        answer = site.client.post(f"/preferences/{token}", data={**form, **bad})
        assert answer.status_code == 403 and "This form has expired" in answer.text
    assert site.subscriber("ann@example.com").sections == ("news",)
    # The form works once; sent again (replayed) after the change, it is refused.
    assert site.client.post(f"/preferences/{token}", data={**form, "csrf": csrf}).status_code == 303
    replay = site.client.post(f"/preferences/{token}", data={"action": "save", "sections": ["news"], "csrf": csrf})
    assert replay.status_code == 403
    assert site.subscriber("ann@example.com").sections == ("events",)
    # A form left open longer than web.form_minutes has expired.
    stale = site.csrf(token)
    site.advance(timedelta(minutes=121))
    assert site.client.post(f"/preferences/{token}", data={**form, "csrf": stale}).status_code == 403


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"action": "explode"}, 400, "Unknown action"),
        ({}, 400, "Unknown action"),
        ({"action": "save", "sections": ["<script>x</script>"]}, 400, "is not one of"),
        ({"action": "pause", "pause_days": "3"}, 409, "a pause lasts one of"),
        ({"action": "pause", "pause_days": "-1"}, 400, "how long to pause"),
        ({"action": "pause"}, 400, "how long to pause"),
    ],
)
def test_bad_preference_forms_get_a_clear_error(site: Site, form: dict[str, Any], status: int, says: str) -> None:
    token = site.confirmed("ann@example.com", ["news"])
    answer = site.client.post(f"/preferences/{token}", data={**form, "csrf": site.csrf(token)})
    assert answer.status_code == status and says in answer.text
    assert "<script>x" not in answer.text
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE


# One-click unsubscribe ---------------------------------------------------------------


def test_the_unsubscribe_page_is_one_button_that_sends_the_one_click_body(site: Site) -> None:
    token = site.confirmed("ann@example.com")
    page = site.client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert page.text.count("<button") == 1
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE


def test_one_click_unsubscribes_at_once_without_cookie_or_redirect_and_is_idempotent(site: Site) -> None:
    token = site.confirmed("ann@example.com")
    site.client.cookies.clear()
    first = site.client.post(
        f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert first.status_code == 200 and "location" not in first.headers
    assert "You are unsubscribed" in first.text
    assert site.subscriber("ann@example.com").status is people.Status.UNSUBSCRIBED
    # Mail providers may send it again, and as multipart/form-data.
    second = site.client.post(f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert second.status_code == 200
    log = site.consents("ann@example.com")
    assert [c.action for c in log].count(people.ConsentAction.UNSUBSCRIBED) == 1
    assert log[-1].form == "one-click"
    assert "You are unsubscribed" in site.client.get(f"/unsubscribe/{token}").text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/x-www-form-urlencoded", 400),
        (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded", 400),
        (b"list-unsubscribe=one-click", "application/x-www-form-urlencoded", 400),
        (b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", 400),
        (b"List-Unsubscribe=One-Click", "text/plain", 415),
        (b'{"List-Unsubscribe": "One-Click"}', "application/json", 415),
        (b"List-Unsubscribe=One-Click", "", 415),
        (b"List-Unsubscribe=One-Click&pad=" + b"x" * 20_000, "application/x-www-form-urlencoded", 413),
    ],
)
def test_one_click_with_the_wrong_body_or_content_type_changes_nothing(
    site: Site, body: bytes, content_type: str, status: int
) -> None:
    token = site.confirmed("ann@example.com")
    headers = {"content-type": content_type} if content_type else {}
    answer = site.client.post(f"/unsubscribe/{token}", content=body, headers=headers)
    assert answer.status_code == status
    assert site.subscriber("ann@example.com").status is people.Status.ACTIVE


# The app as a whole ------------------------------------------------------------------


def test_unknown_pages_and_methods_get_a_page_not_a_traceback(site: Site) -> None:
    missing = site.client.get("/wp-admin")
    assert missing.status_code == 404 and "Page not found" in missing.text
    wrong = site.client.delete("/subscribe")
    assert wrong.status_code == 405
    assert site.client.get("/healthz").text == "ok"


def test_no_address_or_token_reaches_the_logs(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = site.confirmed("secret.person@example.com")
    site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "pause", "pause_days": "7"})
    site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    site.client.get("/preferences/" + "B" * 32)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("newsletter", "subscribers"))
    assert "GET /preferences/<token> 200" in ours and "subscriber 1 unsubscribed (one-click)" in ours
    assert token not in ours and "secret.person" not in ours


def test_the_app_refuses_to_start_without_a_secret_key(make_settings: Callable[..., Settings], engine: Engine) -> None:
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        create_app(make_settings(), engine=engine)


def test_serve_without_a_secret_key_says_so_in_one_line(make_settings: Callable[..., Settings], tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from newsletter.cli import app

    make_settings()
    result = CliRunner().invoke(
        app, ["--config", str(tmp_path / "newsletter.toml"), "serve", "--port", "8999"], env={"NEWSLETTER_SECRET_KEY": ""}
    )
    assert result.exit_code == 2
    assert "security.secret_key" in result.output and "NEWSLETTER_SECRET_KEY" in result.output
    assert "Traceback" not in result.output


def test_a_templates_folder_restyles_the_pages_and_the_confirmation_email(
    make_site: Callable[..., Site], tmp_path: Any
) -> None:
    folder = tmp_path / "mine"
    (folder / "web").mkdir(parents=True)
    (folder / "email").mkdir()
    (folder / "web" / "subscribed.html").write_text(
        '{% extends "base.html" %}{% block title %}Thanks{% endblock %}{% block content %}<h1>Thanks, {{ site.name }}!</h1>{% endblock %}'
    )
    (folder / "email" / "confirm.txt.j2").write_text("Confirm here: {{ confirm_url }}\n")
    site = make_site()
    settings = site.settings.model_copy(update={"templates": site.settings.templates.model_copy(update={"folder": str(folder)})})
    site.client = Client(create_app(settings, engine=site.engine), base_url=BASE)
    answer = site.subscribe("ann@example.com")
    assert "<h1>Thanks, Pharma Weekly!</h1>" in answer.text
    text, html = parts(site.mails()[-1])
    assert text.startswith("Confirm here: https://news.example.com/confirm/")
    assert "Confirm my subscription" in html  # the built-in MJML part is still used
