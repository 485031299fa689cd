"""The desk's answers to bad input, in-process over HTTP (httpx over ASGI) on SQLite and
PostgreSQL: an approved draft refused with the reason, items with a javascript: or
non-http link, an empty title or an unknown section, a test address that is not one,
forged and missing CSRF tokens, the login (none, wrong, rate-limited, right), two editors
saving at once; and the draft log, filled from the desk and the command line alike,
shown by `newsletter draft log`, and `newsletter preview set-password`."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import threading
import time
import uuid
from html import unescape
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter import drafts
from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError, ConflictError
from newsletter.models import IssueStatus
from newsletter.web.desk import create_desk_app
from newsletter.web.desk.auth import hash_password, verify_password
from newsletter.web.limits import Counters
from tests.conftest import NOW
from tests.desk_support import Client, article_id, draft_settings
from tests.helpers import outbox_messages
from tests.servers import LocalServer, Route

PASSWORD = "correct horse battery staple"
runner = CliRunner()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer) -> Settings:
    made, _ = draft_settings(make_settings, engine, tmp_path, server, preview={"link_timeout": 2})
    return made


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Client:
    return Client(create_desk_app(settings, engine=engine))


def post(client: Client, action: str, **fields: str) -> httpx.Response:
    return client.post("/draft", data={**client.tokens(), "action": action, **fields})


def test_an_approved_draft_refuses_every_change_with_the_reason(client: Client, settings: Settings, engine: Engine) -> None:
    drafts.approve(engine, settings)
    article = str(article_id(engine, settings, "Congress preview"))
    for action, fields in (("texts", {"subject": "Late change"}), ("down", {"article": article}),
                           ("pin", {"article": article}), ("move", {"article": article, "section": "news"}),
                           ("add", {"title": "Late", "link": "https://example.com/late", "section": "news"})):
        answer = post(client, action, **fields)
        assert answer.status_code == 409, (action, answer.text)
        assert "Not done: issue 2026-w48 is approved and frozen: `newsletter draft reopen` to change it." in \
            unescape(answer.text)
    draft = drafts.current_draft(engine, settings)
    assert draft.issue.status is IssueStatus.APPROVED and draft.issue.subject == ""
    assert "Late" not in [a.article.title for a in draft.articles]


@pytest.mark.parametrize(("fields", "message"), [
    ({"title": "Click me", "link": "javascript:alert(document.cookie)", "section": "events"},
     "link 'javascript:alert(document.cookie)': expected an http:// or https:// URL"),
    ({"title": "Files", "link": "ftp://files.example.com/report.pdf", "section": "events"},
     "link 'ftp://files.example.com/report.pdf': expected an http:// or https:// URL"),
    ({"title": "A picture", "link": "https://example.com/a", "image": "data:image/png;base64,AAAA", "section": "events"},
     "image 'data:image/png;base64,AAAA': expected an http:// or https:// URL of an image"),
    ({"title": "   ", "link": "https://example.com/empty", "section": "events"}, "title: an item needs a title"),
    ({"title": "Sport", "link": "https://example.com/sport", "section": "sport"},
     "section 'sport': no such section (known: drug-development,"),
])
def test_a_bad_item_is_refused_and_kept_in_the_form(client: Client, settings: Settings, engine: Engine,
                                                     fields: dict[str, str], message: str) -> None:
    before = drafts.current_draft(engine, settings)
    answer = post(client, "add", **fields)
    assert answer.status_code == 400 and message in unescape(answer.text)
    assert f'value="{fields["link"]}"' in unescape(answer.text) or "javascript" in fields["link"]
    after = drafts.current_draft(engine, settings)
    assert after.articles == before.articles and after.version == before.version


def test_moving_to_a_section_that_does_not_exist_is_refused(client: Client, settings: Settings, engine: Engine) -> None:
    article = str(article_id(engine, settings, "Congress preview"))
    answer = post(client, "move", article=article, section="sport")
    assert answer.status_code == 400 and "section 'sport': no such section" in unescape(answer.text)
    answer = post(client, "move", article="999999", section="news")
    assert answer.status_code == 400 and "article 999999: no such article" in unescape(answer.text)
    answer = post(client, "frobnicate")
    assert answer.status_code == 400 and "Unknown action 'frobnicate'" in unescape(answer.text)


@pytest.mark.parametrize(("to", "message"), [
    ("not-an-address", "test address 'not-an-address' is not an email address"),
    ("ed@example.com, chief@", "test address 'chief@' is not an email address"),
    ("", "test addresses: type one or more email addresses"),
    (", ".join(f"e{n}@example.com" for n in range(11)), "test addresses: 11 given, at most 10"),
])
def test_a_test_address_that_is_not_one_is_refused(client: Client, settings: Settings, to: str, message: str) -> None:
    answer = post(client, "test", to=to)
    assert answer.status_code == 400 and message in unescape(answer.text)
    assert f'value="{to}"' in unescape(answer.text)
    assert outbox_messages(settings.outbox_dir) == []


def test_forged_or_missing_csrf_tokens_change_nothing(settings: Settings, engine: Engine) -> None:
    client = Client(create_desk_app(settings, engine=engine))
    version = client.tokens()["version"]
    other = Client(create_desk_app(settings, engine=engine)).tokens()["csrf"]
    for csrf in (None, "", "1700000000.forged", other):
        data = {"action": "texts", "subject": "Forged", "version": version, **({"csrf": csrf} if csrf is not None else {})}
        answer = client.post("/draft", data=data)
        assert answer.status_code == 403 and "This form has expired" in unescape(answer.text)
    assert drafts.current_draft(engine, settings).issue.subject == ""


def test_the_desk_answers_only_on_localhost_without_a_password(settings: Settings, engine: Engine) -> None:
    with pytest.raises(ConfigError, match="preview: listening on 0.0.0.0 needs preview.password_hash"):
        create_desk_app(settings, host="0.0.0.0", engine=engine)
    app = create_desk_app(settings, engine=engine)
    assert Client(app, base_url="http://evil.example").get("/").status_code == 421
    page = Client(app).get("/")
    assert page.status_code == 200 and "Trial meets its endpoint" in page.text
    assert "script-src 'self' 'nonce-" in page.headers["content-security-policy"]
    assert Client(app).get("/email").headers["content-security-policy"].startswith("default-src 'none'")


def test_the_login_refuses_wrong_passwords_rate_limited_and_admits_the_right_one(
    make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer
) -> None:
    settings, _ = draft_settings(make_settings, engine, tmp_path, server, preview={"password_hash": hash_password(PASSWORD)})
    app = create_desk_app(settings, host="0.0.0.0", engine=engine, counters=Counters())
    client = Client(app, base_url="http://desk.example")
    assert client.get("/").status_code == 303 and client.get("/").headers["location"] == "/login"
    for path in ("/email", "/version", "/links", "/desk.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/desk.css").status_code == 200  # the login page's style
    assert client.post("/draft", data={"action": "approve"}).status_code == 401

    def login(password: str) -> httpx.Response:
        csrf = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        return client.post("/login", data={"csrf": csrf, "password": password})

    assert client.post("/login", data={"password": PASSWORD}).status_code == 403  # no CSRF token
    for _ in range(4):
        answer = login("wrong password")
        assert answer.status_code == 401 and "Wrong password." in unescape(answer.text)
    assert login(PASSWORD).status_code == 303  # the fifth attempt
    assert client.get("/").status_code == 200 and "Trial meets its endpoint" in client.get("/").text
    client.cookies.clear()
    answer = login(PASSWORD)
    assert answer.status_code == 429 and "Too many login attempts" in unescape(answer.text)
    assert int(answer.headers["retry-after"]) > 0
    # A forged cookie is no session.
    client.cookies["desk_session"] = "1700000000.forged.signature"
    assert client.get("/email").status_code == 401


def test_the_later_of_two_saves_sees_the_earlier_and_loses_nothing(client: Client, settings: Settings,
                                                                    engine: Engine) -> None:
    first, second = client.tokens(), client.tokens()
    assert first["version"] == second["version"]
    kept = "Five stories from the week in pharma"
    saved = client.post("/draft", data={**first, "action": "texts", "subject": "First", "preheader": kept, "intro": ""})
    assert saved.status_code == 303
    late = client.post("/draft", data={**second, "action": "texts", "subject": "", "preheader": kept, "intro": "Second"})
    assert late.status_code == 409
    assert "subject set ('First') on the desk" in unescape(late.text) and "came first and stays" in unescape(late.text)
    assert ">Second</textarea>" in unescape(late.text)  # the later editor's text, kept to save again
    assert drafts.current_draft(engine, settings).issue.subject == "First"
    # A pin made against the old version is refused too; against the new one it is made.
    article = str(article_id(engine, settings, "Congress preview"))
    assert client.post("/draft", data={**second, "action": "pin", "article": article}).status_code == 409
    assert post(client, "pin", article=article).status_code == 303
    assert drafts.current_draft(engine, settings).lead_id == int(article)


def test_a_stale_version_writes_nothing(settings: Settings, engine: Engine) -> None:
    version = drafts.current_draft(engine, settings).version
    drafts.set_subject(engine, "From the CLI", now=NOW)
    with pytest.raises(ConflictError, match=r"subject set \('From the CLI'\) from the command line at 09:00:00 UTC"):
        drafts.set_intro(engine, "Stale", origin="desk", expect=version, now=NOW)
    draft = drafts.current_draft(engine, settings)
    assert draft.issue.intro == "" and draft.version == version + 1


def test_the_log_holds_the_changes_of_the_desk_and_the_command_line(client: Client, settings: Settings,
                                                                    engine: Engine, tmp_path: Path) -> None:
    config = str(tmp_path / "newsletter.toml")
    env = {"COLUMNS": "200", "NEWSLETTER_CONFIG": ""}
    article = article_id(engine, settings, "New bioreactor plant")
    assert runner.invoke(app, ["--config", config, "draft", "pin", str(article)], env=env).exit_code == 0
    assert post(client, "exclude", article=str(article)).status_code == 303
    result = runner.invoke(app, ["--config", config, "draft", "log", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    changes = [(c["origin"], c["action"]) for c in shown["changes"]]
    assert changes[:2] == [("desk", "excluded"), ("cli", "pinned")]
    assert ("cli", "built") in changes and shown["version"] == shown["changes"][0]["version"]
    table = runner.invoke(app, ["--config", config, "draft", "log"], env=env).output
    assert "excluded: " in table and "New bioreactor plant" in table and "desk" in table and "cli" in table
    page = client.get("/").text
    assert "excluded: " in page and "pinned: " in page


def test_set_password_writes_an_argon2_hash_the_desk_accepts(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    env = {"COLUMNS": "200", "NEWSLETTER_CONFIG": ""}
    short = runner.invoke(app, ["--config", str(config), "preview", "set-password"], input="short\n", env=env)
    assert short.exit_code == 2 and "the password has 5 characters; at least 12 are needed" in short.output
    result = runner.invoke(app, ["--config", str(config), "preview", "set-password"], input=PASSWORD + "\n", env=env)
    assert result.exit_code == 0 and "[preview] password_hash" in result.output, result.output
    stored = tomllib.loads(config.read_text())["preview"]["password_hash"]
    assert stored.startswith("$argon2id$") and PASSWORD not in config.read_text()
    assert verify_password(stored, PASSWORD) and not verify_password(stored, "wrong")
    # The rest of the file is as it was, and a second call replaces the hash in place.
    assert load_settings(config).preview.link_timeout == 2
    runner.invoke(app, ["--config", str(config), "preview", "set-password"], input="another long password\n", env=env)
    assert config.read_text().count("password_hash") == 1
    assert verify_password(load_settings(config).preview.password_hash, "another long password")


def test_the_old_password_setting_says_where_it_moved(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text('[preview]\npassword = "hunter2hunter2"\n')
    with pytest.raises(ConfigError, match=r"preview.password: moved: write it as \[preview\] password_hash"):
        load_settings(config, environ={})


def test_wrong_passwords_are_counted_in_redis_across_restarts(
    make_settings: Callable[..., Settings], engine: Engine, tmp_path: Path, server: LocalServer
) -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    site = {"name": "Pharma Weekly", "base_url": f"https://{uuid.uuid4().hex}.example.com", "timezone": "Europe/London"}
    settings, _ = draft_settings(make_settings, engine, tmp_path, server, site=site,
                                 web={"rate_limit_storage": "redis://127.0.0.1:6379/0"},
                                 preview={"password_hash": hash_password(PASSWORD)})
    answers = []
    for _ in range(2):  # the desk restarted: a new app, the same count
        client = Client(create_desk_app(settings, host="0.0.0.0", engine=engine), base_url="http://desk.example")
        for _ in range(3):
            csrf = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            answers.append(client.post("/login", data={"csrf": csrf, "password": "wrong"}).status_code)
    assert answers == [401] * 5 + [429]


def test_of_two_saves_at_the_same_instant_exactly_one_wins(settings: Settings, engine: Engine) -> None:
    version = drafts.current_draft(engine, settings).version
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def save(subject: str) -> None:
        start.wait()
        try:
            drafts.set_subject(engine, subject, origin="desk", expect=version, now=NOW)
            outcomes[subject] = "saved"
        except ConflictError as exc:
            outcomes[subject] = str(exc)

    threads = [threading.Thread(target=save, args=(s,)) for s in ("One", "Two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    (winner,) = [s for s, outcome in outcomes.items() if outcome == "saved"]
    (loser,) = [outcome for outcome in outcomes.values() if outcome != "saved"]
    assert f"subject set ('{winner}') on the desk at 09:00:00 UTC came first and stays" in loser
    draft = drafts.current_draft(engine, settings)
    assert draft.issue.subject == winner and draft.version == version + 1


def test_slow_links_do_not_hold_the_page_up(settings: Settings, engine: Engine, server: LocalServer) -> None:
    # Every article link takes 1.5 s to answer, one of them with a 404.
    for tag in ("dd", "mf", "ev", "d2"):
        server.routes[f"/{tag}"] = Route(200, b"ok", delay=1.5)
    server.routes["/e2"] = Route(404, b"gone", delay=1.5)
    client = Client(create_desk_app(settings, engine=engine))
    page = client.get("/")
    # The page is there while the links are still being asked.
    assert page.status_code == 200 and "Links: being checked in the background" in page.text
    assert client.get("/links").json() == {"done": False, "warnings": []}
    deadline = time.monotonic() + 20
    while not (found := client.get("/links").json())["done"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (warning,) = found["warnings"]
    assert "'GMP webinar announced'" in warning and "answered 404" in warning
    # Once in, the page shows them itself (no script needed).
    page = client.get("/")
    assert "Links: 1 not answering" in page.text and "answered 404" in page.text and "1 warning<" in page.text


def _at_a_terminal(config: Path, *answers: str) -> tuple[int, str]:
    """`newsletter preview set-password` in a terminal of its own (a pseudo-terminal that
    is its controlling one, as getpass wants), typing each answer when it is asked."""
    argv = [sys.executable, "-m", "newsletter", "--config", str(config), "preview", "set-password"]
    pid, leader = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(sys.executable, argv, {**os.environ, "NEWSLETTER_CONFIG": ""})
    output, asked, deadline = b"", 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if asked < len(answers) and output.count(b": ") > asked:
            os.write(leader, answers[asked].encode() + b"\n")
            asked += 1
    _, status = os.waitpid(pid, 0)
    os.close(leader)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_set_password_at_a_terminal_asks_twice(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    code, output = _at_a_terminal(config, PASSWORD, "not the same password")
    assert code == 2 and "the two passwords differ; nothing was changed" in output, output
    assert "password_hash" not in config.read_text()
    code, output = _at_a_terminal(config, PASSWORD, PASSWORD)
    assert code == 0 and "The same password again" in output and PASSWORD not in output, output
    assert verify_password(load_settings(config).preview.password_hash, PASSWORD)


def test_with_no_draft_the_desk_says_so_as_a_status_not_an_error(make_settings: Callable[..., Settings],
                                                                  engine: Engine) -> None:
    # As after a send, before the next draft is built: nothing is wrong, there is nothing to edit.
    client = Client(create_desk_app(make_settings(), engine=engine))
    page = client.get("/")
    assert page.status_code == 200
    assert '<p class="nodraft" role="status">There is no draft: run `newsletter draft build`' in page.text
    assert 'role="alert"' not in page.text
