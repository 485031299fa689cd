"""Bodies that break parsers, sent to every POST route of the app's route table.

The sweep takes the routes from the route tables (`newsletter.web.app.ROUTES`, and the
editor's desk's `DESK_ROUTES`), so a route added later is covered without touching
this file. Every bad body is sent in every content type, by a
client that wants JSON and by one that wants a page, signed for the webhook so that its
parser is reached too: each answer is a 4xx with one clear line, in JSON or as the styled
page as the client asked, and nothing is logged with a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.convertors import IntegerConvertor
from starlette.routing import Route

import subscribers as people
from newsletter.config import Settings
from newsletter.web import create_app
from newsletter.web.app import ROUTES
from newsletter.web.desk import DESK_ROUTES as PREVIEW_ROUTES, create_desk_app as create_preview_app
from tests.conftest import NOW
from tests.newsletter.test_events import Signer
from tests.newsletter.web.test_web import BASE, SECRET, Client, page_text

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

POST_ROUTES = [r for r in ROUTES if isinstance(r, Route) and "POST" in (r.methods or set())]
PREVIEW_POST_ROUTES = [r for r in PREVIEW_ROUTES if isinstance(r, Route) and "POST" in (r.methods or set())]


def nested_multipart(depth: int) -> bytes:
    """A multipart body whose parts are multiparts, `depth` deep, with the boundary b."""
    inner = b'Content-Disposition: form-data; name="email"\r\n\r\nann@example.com'
    for level in reversed(range(depth)):
        outer = b"b" if level == 0 else b"b%d" % level
        inner = (b"--" + outer + b"\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (level + 1)
                 + inner + b"\r\n--" + outer + b"--\r\n")
    return inner


BAD_BODIES: dict[str, bytes] = {
    "JSON arrays 5000 deep, unclosed": b"[" * 5000,
    "JSON arrays 5000 deep, closed": b"[" * 5000 + b"]" * 5000,
    "JSON objects 3000 deep": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "not UTF-8": b"\xff\xfe\x00\x01email=ann%40example.com",
    "JSON with a Latin-1 string": b'{"email": "\xe9ve@example.com"}',
    "JSON array at the top": b'["ann@example.com"]',
    "JSON string at the top": b'"ann@example.com"',
    "JSON null": b"null",
    "JSON number of 5000 digits": b'{"email": ' + b"9" * 5000 + b"}",
    "JSON number out of range": b'{"email": 1e999999}',
    "JSON NaN": b'{"email": NaN, "name": Infinity}',
    "JSON of the wrong types": b'{"email": ["a@example.com"], "name": {"x": 1}, "sections": "news"}',
    "JSON email of 12000 characters": b'{"email": "' + b"a" * 12_000 + b'@example.com"}',
    "form name of 12000 characters": b"email=ann%40example.com&name=" + b"a" * 12_000,
    "form of 500 fields": b"&".join(b"f%d=1" % n for n in range(500)),
    "form with a percent-encoded non-UTF-8 value": b"email=%FF%FE%40example.com&List-Unsubscribe=%FF",
    "multipart 300 deep": nested_multipart(300),
    "multipart with a broken boundary": b"--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nann",
    "binary noise": bytes(range(256)) * 8,
    "empty": b"",
    "larger than web.max_body_bytes": b"a" * 40_000,
}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "multipart/form-data",
    "text/plain",
    "",
]
#: Accept headers, and whether each asks for JSON.
ACCEPTS = {"application/json": True, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8": False}


@dataclass
class App:
    client: Client
    signer: Signer
    token: str


@pytest.fixture
def app(engine: Engine, make_settings: Callable[..., Settings]) -> App:
    signer = Signer()
    settings = make_settings(
        security={"secret_key": SECRET},
        web={"subscribe_per_ip": 1_000_000, "subscribe_per_address": 1_000_000},
        sendgrid={"webhook_public_key": signer.public_key},
    )
    client = Client(create_app(settings, engine=engine, clock=lambda: NOW, monotonic=lambda: 0.0), base_url=BASE)
    assert client.post("/subscribe", data={"email": "ann@example.com"}).status_code == 200
    with engine.connect() as conn:
        token = people.get_subscriber(conn, "ann@example.com").token
    return App(client, signer, token)


def url_of(route: Route, token: str) -> str:
    # Every path parameter of a POST route is a subscriber's token or a number today.
    values = {name: "1" if isinstance(convertor, IntegerConvertor) else token
              for name, convertor in route.param_convertors.items()}
    return route.path_format.format(**values)


def check_answer(answer: Any, *, json_client: bool, what: str) -> None:
    assert 400 <= answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
    kind = answer.headers.get("content-type", "")
    if json_client:
        assert kind.startswith("application/json"), f"{what}: {kind}"
        error = answer.json()["error"]
        assert isinstance(error, str) and error and "\n" not in error, what
    else:
        assert kind.startswith("text/html"), f"{what}: {kind}"
        assert 'role="alert"' in answer.text or "This link is not valid" in answer.text, what
    assert "Traceback" not in answer.text and "Error(" not in answer.text, what


@pytest.mark.parametrize("route", POST_ROUTES, ids=[r.path for r in POST_ROUTES])
def test_no_bad_body_gets_a_5xx_or_a_traceback_on_any_post_route(
    app: App, route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = url_of(route, app.token)
    for name, body in BAD_BODIES.items():
        for content_type in CONTENT_TYPES:
            for accept, json_client in ACCEPTS.items():
                headers = {**app.signer.headers(body), "Accept": accept}
                del headers["Content-Type"]
                if content_type:
                    headers["Content-Type"] = content_type
                answer = app.client.post(url, content=body, headers=headers)
                sent_json = content_type.startswith("application/json")
                check_answer(answer, json_client=json_client or sent_json, what=f"{url} {name} as {content_type!r}")
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == []


@pytest.mark.parametrize("route", PREVIEW_POST_ROUTES, ids=[r.path for r in PREVIEW_POST_ROUTES])
def test_no_bad_body_gets_a_5xx_on_the_preview_either(
    engine: Engine, make_settings: Callable[..., Settings], route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    preview = Client(create_preview_app(make_settings(), engine=engine, clock=lambda: NOW), base_url="http://127.0.0.1")
    for name, body in BAD_BODIES.items():
        for content_type in CONTENT_TYPES:
            answer = preview.post(route.path, content=body, headers={"Content-Type": content_type} if content_type else {})
            what = f"{route.path} {name} as {content_type!r}"
            # The preview answers editors in one plain line.
            assert 400 <= answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
            assert answer.text and "\n" not in answer.text.strip() and "Traceback" not in answer.text, what
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_deep_json_on_subscribe_is_a_clear_400_for_scripts_and_for_people(app: App) -> None:
    for_script = app.client.post("/subscribe", content=b"[" * 5000, headers={"content-type": "application/json"})
    assert for_script.status_code == 400
    assert for_script.json() == {"error": "The body is not valid JSON: it is nested too deeply."}
    for_person = app.client.post(
        "/subscribe", content=b"[" * 5000, headers={"content-type": "application/json", "accept": "text/html"}
    )
    # A client that sent JSON is answered in JSON whatever it accepts.
    assert for_person.status_code == 400 and for_person.json()["error"].endswith("nested too deeply.")
    form = app.client.post(
        "/subscribe", content=b"email=%FF", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 400 and form.headers["content-type"].startswith("text/html")
    assert "The form data could not be read: it is not UTF-8." in page_text(form.text)


def test_a_json_client_gets_its_415_in_json_and_a_browser_gets_the_page(app: App) -> None:
    body = b"email=ann@example.com"
    script = app.client.post("/subscribe", content=body, headers={"content-type": "text/plain", "accept": "application/json"})
    assert script.status_code == 415
    assert script.json() == {
        "error": "Send the form as application/x-www-form-urlencoded, multipart/form-data or application/json."
    }
    browser = app.client.post("/subscribe", content=body, headers={"content-type": "text/plain"})
    assert browser.status_code == 415 and "<h1>" in browser.text and "Send the form as" in browser.text
    one_click = app.client.post(f"/unsubscribe/{app.token}", json={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 415 and "multipart/form-data" in one_click.json()["error"]


@pytest.mark.parametrize(
    ("accept", "json_answer"),
    [
        ("application/json", True),
        ("text/html;q=0.9, application/json", True),
        ("application/json;q=0.5, text/html", False),
        ("application/json;q=0", False),
        ("text/html;q=0, */*", True),
        ("application/*", True),
        ("*/*", False),
        ("", False),
        ("application/json;q=nonsense, text/html;q=0.1", False),
    ],
)
def test_the_answer_follows_the_accept_header_and_its_q_values(app: App, accept: str, json_answer: bool) -> None:
    answer = app.client.post("/subscribe", content=b"email=", headers={
        "content-type": "application/x-www-form-urlencoded", "accept": accept,
    })
    assert answer.status_code == 422
    if json_answer:
        assert set(answer.json()) == {"error"} and "email" in answer.json()["error"]
    else:
        assert answer.headers["content-type"].startswith("text/html") and 'role="alert"' in answer.text


def test_a_signed_webhook_body_that_breaks_the_parser_is_a_400_after_the_signature(app: App) -> None:
    for body, error in {
        b"[" * 5000: "The body is not valid JSON: it is nested too deeply.",
        b"\xff\xfe[]": "The body is not valid JSON: it is not UTF-8.",
    }.items():
        signed = app.client.post("/webhooks/sendgrid", content=body, headers=app.signer.headers(body))
        assert signed.status_code == 400 and signed.json() == {"error": error}
        # Unsigned, the same body is refused for its signature before anything reads it.
        forged = app.client.post("/webhooks/sendgrid", content=body, headers=Signer().headers(body))
        assert forged.status_code == 403 and forged.json() == {"error": "The signature does not match the body."}
