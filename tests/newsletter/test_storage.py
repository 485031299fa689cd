"""Storage failures as a user meets them [trust issue, part 6]: a read-only file or
folder, a lock held past the busy timeout, a full disk, an unreachable server. Each is
one line naming the database and the problem, exit status 3, no traceback (only with
--debug, and even there no address or token), nothing half-written; the web app answers
503. Logs at DEBUG never carry an address or a token."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import Pool
from typer.testing import CliRunner

import subscribers as people
from newsletter import db, store
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.errors import DatabaseUnavailableError
from newsletter.models import FeedItem
from tests.conftest import NOW, POSTGRES_URL, write_config
from tests.helpers import outbox_messages
from tests.sendgrid_standin import SendGridStandIn
from tests.sendgrid_helpers import API_KEY
from tests.newsletter.test_trust import add_articles, send_issue, sendgrid_variant, trust_settings, web_client
from tests.newsletter.web.test_web import SECRET, link_token

VICTIM = "storage-victim@example.org"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# A link token (secrets.token_urlsafe(24)): 32 URL-safe characters mixing cases and digits.
TOKEN_LIKE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Z])(?=[\w-]*[a-z])[\w-]{32}(?![\w-])")
runner = CliRunner()
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="NEWSLETTER_TEST_POSTGRES_URL not set")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def cli(config: Path, *args: str, debug: bool = False) -> Outcome:
    """The command in this process, as Typer runs it."""
    result = runner.invoke(app, ["--config", str(config), *(["--debug"] if debug else []), *args], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def cli_as_nobody(config: Path, *args: str, debug: bool = False) -> Outcome:
    """The command as a real process run by `nobody`: root writes any file, whatever its mode."""
    command = [*NOBODY, sys.executable, "-m", "newsletter", "--config", str(config), *(["--debug"] if debug else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_one_line(outcome: Outcome, database: str, *problem: str) -> None:
    """Exit status 3 and one line on stderr naming the database and the problem; no
    traceback, no address, no token anywhere in the output."""
    shown = outcome.stdout + outcome.stderr
    assert outcome.code == 3, shown
    (line,) = outcome.stderr.strip().splitlines()
    assert line.startswith(f"error: database {database}"), line
    assert any(words in line for words in problem), line
    assert "Traceback" not in shown and VICTIM not in shown
    assert not TOKEN_LIKE.search(shown), shown


def assert_debug_traceback(outcome: Outcome) -> None:
    """With --debug the traceback comes first, still without the address or a token."""
    shown = outcome.stdout + outcome.stderr
    assert outcome.code == 3 and "Traceback" in shown and "DatabaseUnavailableError" in shown
    assert VICTIM not in shown and not TOKEN_LIKE.search(shown), shown
    assert outcome.stderr.strip().splitlines()[-1].startswith("error: database ")


def add_fresh_articles(engine: Engine, count: int = 3) -> None:
    """Articles published an hour ago by the real clock: `newsletter build` reads that clock."""
    when = datetime.now(UTC) - timedelta(hours=1)
    items = [FeedItem(f"s{i}", f"https://pharma.example.com/s{i}", f"Storage story {i}", "", when,
                      ("FDA Approvals",), "A summary. " * 40, "") for i in range(count)]
    with engine.begin() as conn:
        store.upsert_articles(conn, items, source="test", now=when)


def nothing_written(url: str, *, issues_before: int = 0) -> None:
    """The address the command was adding is not stored, and no issue was half-built."""
    engine = db.open_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(people.subscribers.c.id).where(people.subscribers.c.email == VICTIM)).first() is None
            assert conn.execute(text("SELECT count(*) FROM issues")).scalar_one() == issues_before
    finally:
        engine.dispose()


def config_for(path: Path, url: str, tmp: Path) -> Path:
    return write_config(path, {
        "site": {"name": "Pharma Weekly", "base_url": "https://news.example.com", "timezone": "Europe/London"},
        "sender": {"name": "Pharma Weekly", "address": "news@example.com"},
        "database": {"url": url},
        "delivery": {"outbox_dir": str(tmp / "outbox")},
    })


def with_query(url: str, **values: str) -> str:
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in values.items())


def with_pg_option(url: str, option: str) -> str:
    """A PostgreSQL URL from the fixture (which sets options=-csearch_path…) with one more
    server option, such as `lock_timeout=300`."""
    assert "options=" in url
    return url.replace("options=", f"options=-c{option.replace('=', '%3D')}%20", 1)


# Read-only file or folder ---------------------------------------------------------------


@pytest.fixture
def nobodys_database() -> Iterator[tuple[Path, Path, str]]:
    """A migrated SQLite database with a subscriber and articles in a folder that `nobody`
    owns, under a folder anyone may enter (pytest's own temporary folders are root's)."""
    base = Path(tempfile.mkdtemp(prefix="newsletter-storage-"))
    base.chmod(0o755)
    folder = base / "data"
    folder.mkdir()
    url = f"sqlite:///{folder / 'news.db'}"
    config = config_for(base / "newsletter.toml", url, base)
    engine = db.open_engine(url)
    db.upgrade(engine)
    add_fresh_articles(engine)
    engine.dispose()
    (base / "outbox").mkdir()
    for path in (base / "outbox", folder, *folder.iterdir()):
        os.chown(path, 65534, 65534)
    yield config, folder, url
    shutil.rmtree(base)


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_database_file_or_folder_is_one_line_and_exit_3(
    nobodys_database: tuple[Path, Path, str], read_only: str
) -> None:
    config, folder, url = nobodys_database
    # Writable, the same commands work for the same user: what fails next is the mode alone.
    assert cli_as_nobody(config, "subscribers", "add", "someone@example.org").code == 0
    if read_only == "file":
        (folder / "news.db").chmod(0o444)
    else:
        folder.chmod(0o555)
    for args in (["subscribers", "add", VICTIM, "--name", "Vic Tim"], ["build"]):
        assert_one_line(cli_as_nobody(config, *args), url, "read-only", "cannot be opened")
    assert_debug_traceback(cli_as_nobody(config, "subscribers", "add", VICTIM, debug=True))
    nothing_written(url)


@needs_postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_read_only_postgres_database_is_one_line_and_exit_3(database_url: str, tmp_path: Path) -> None:
    engine = db.open_engine(database_url)
    db.upgrade(engine)
    add_fresh_articles(engine)
    engine.dispose()
    url = with_pg_option(database_url, "default_transaction_read_only=on")
    config = config_for(tmp_path / "newsletter.toml", url, tmp_path)
    shown = db.open_engine(url).url.render_as_string(hide_password=True)
    for args in (["subscribers", "add", VICTIM], ["build"]):
        assert_one_line(cli(config, *args), shown, "read-only")
    nothing_written(database_url)


# Locked past the busy timeout -----------------------------------------------------------


@contextmanager
def write_lock_held(database_url: str) -> Iterator[tuple[str, str]]:
    """Another connection holds the write lock of a migrated database while the block
    runs. Yields (url, url as the error shows it): the database's URL with a short busy
    timeout (SQLite) or lock timeout (PostgreSQL)."""
    engine = db.open_engine(database_url)
    if database_url.startswith("sqlite"):
        url = with_query(database_url, timeout="0.3")
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        holder.execute("BEGIN IMMEDIATE")
        release: Callable[[], None] = holder.close
    else:
        url = with_pg_option(database_url, "lock_timeout=300")
        conn = engine.connect()
        conn.execute(text("LOCK TABLE subscribers, issues IN EXCLUSIVE MODE"))
        release = conn.close
    try:
        yield url, db.open_engine(url).url.render_as_string(hide_password=True)
    finally:
        release()
        engine.dispose()


def test_a_lock_held_past_the_busy_timeout_is_one_line_and_exit_3(engine: Engine, database_url: str, tmp_path: Path) -> None:
    add_fresh_articles(engine)
    config = config_for(tmp_path / "newsletter.toml", database_url, tmp_path)
    assert cli(config, "subscribers", "add", "reader@example.org").code == 0
    with write_lock_held(database_url) as (url, shown):
        config = config_for(tmp_path / "newsletter.toml", url, tmp_path)
        for args in (["subscribers", "add", VICTIM], ["build"]):
            assert_one_line(cli(config, *args), shown, "locked by another connection")
        assert_debug_traceback(cli(config, "subscribers", "add", VICTIM, debug=True))
    nothing_written(database_url)
    # The lock let go, the same commands go through; a send under the lock plans nothing.
    assert cli(config, "subscribers", "add", VICTIM).code == 0
    assert cli(config, "build").code == 0
    with write_lock_held(database_url) as (url, shown):
        assert_one_line(cli(config_for(tmp_path / "newsletter.toml", url, tmp_path), "send"), shown, "locked by another connection")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM batches")).scalar_one() == 0
        assert conn.execute(text("SELECT status FROM issues")).scalars().all() == ["draft"]
    assert cli(config, "send").code == 0
    assert len(outbox_messages(tmp_path / "outbox")) == 2


def test_a_locked_database_makes_the_web_answer_503_as_a_page_and_as_json(
    engine: Engine, database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = trust_settings(make_settings)
    site = web_client(settings, engine)
    assert site.post("/subscribe", data={"email": VICTIM, "name": "Vic"}).status_code == 200
    token = link_token(outbox_messages(settings.outbox_dir)[-1], "confirm")
    with write_lock_held(database_url) as (url, _):
        short = db.open_engine(url)
        client = web_client(settings, short)
        page = client.get(f"/confirm/{token}")
        assert page.status_code == 503 and page.headers["retry-after"] == "60"
        assert "<h1>Temporarily unavailable</h1>" in page.text and "try again in a few minutes" in page.text
        assert "Traceback" not in page.text and "sqlite" not in page.text and "postgres" not in page.text
        answer = client.get(f"/confirm/{token}", headers={"accept": "application/json"})
        assert answer.status_code == 503
        assert answer.json() == {"error": "This cannot be done right now. Please try again in a few minutes."}
        short.dispose()
    with engine.connect() as conn:
        assert people.get_subscriber(conn, VICTIM).status is people.Status.PENDING
    assert site.get(f"/confirm/{token}").status_code == 200


# Disk full ------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_exit_3_and_nothing_is_half_written(tmp_path: Path) -> None:
    """SQLite's max_page_count stands in for the disk: every connection may not grow the
    file past the pages it has when it opens."""
    url = f"sqlite:///{tmp_path / 'news.db'}"
    engine = db.open_engine(url)
    db.upgrade(engine)
    add_fresh_articles(engine, count=30)
    config = config_for(tmp_path / "newsletter.toml", url, tmp_path)

    def cap(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Pool, "connect", cap)
    try:
        engine.dispose()
        fill_up(engine, lambda conn, n: people.upsert_subscribers(
            conn, [people.NewSubscriber(f"f{n:05}@example.org", ("news",))], now=NOW))
        old = datetime(2020, 1, 1, tzinfo=UTC)
        fill_up(engine, lambda conn, n: store.create_issue(
            conn, slug=f"fill-{n}", window_start=old, window_end=old + timedelta(days=7), blocks=(), now=old))
        with engine.connect() as conn:
            issues_before = conn.execute(text("SELECT count(*) FROM issues")).scalar_one()
        for args in (["subscribers", "add", VICTIM, "--name", "Victoria Timberlake-Smythe"], ["build"]):
            assert_one_line(cli(config, *args), url, "the disk is full")
        import_file = tmp_path / "people.csv"
        import_file.write_text("email\n" + "".join(f"z{i:05}@example.org\n" for i in range(500)))
        assert_one_line(cli(config, "subscribers", "import", str(import_file)), url, "the disk is full")
    finally:
        event.remove(Pool, "connect", cap)
        engine.dispose()
    nothing_written(url, issues_before=issues_before)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(people.subscribers)
                            .where(people.subscribers.c.email.like("z%"))).scalar_one() == 0
    engine.dispose()


def fill_up(engine: Engine, add: Callable[[Any, int], object]) -> None:
    """Add rows, each in its own transaction, until five in a row find no room: the
    table's last pages are then full, and the next row needs a page the cap refuses."""
    refused, n = 0, 0
    while refused < 5:
        n += 1
        try:
            with engine.begin() as conn:
                add(conn, n)
            refused = 0
        except DatabaseUnavailableError as exc:
            assert "the disk is full" in str(exc)
            refused += 1


# Unreachable server ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_postgres_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://newsletter:sekrit-pw@127.0.0.1:{port}/news"
    config = config_for(tmp_path / "newsletter.toml", url, tmp_path)
    shown = f"postgresql+psycopg://newsletter:***@127.0.0.1:{port}/news"
    for args in (["subscribers", "add", VICTIM], ["build"]):
        outcome = cli(config, *args)
        assert_one_line(outcome, shown, "cannot connect to the server (connection failed")
        assert "sekrit-pw" not in outcome.stderr
    debug = cli(config, "subscribers", "add", VICTIM, debug=True)
    assert_debug_traceback(debug)
    assert "sekrit-pw" not in debug.stderr


def test_a_statement_the_database_refuses_is_one_line_without_its_values(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """A table dropped behind the code's back: the driver's first line, exit 3, no
    traceback and not the values of the statement."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE suppressions"))
    config = config_for(tmp_path / "newsletter.toml", database_url, tmp_path)
    outcome = cli(config, "subscribers", "add", VICTIM)
    assert outcome.code == 3 and VICTIM not in outcome.stdout + outcome.stderr
    (line,) = outcome.stderr.strip().splitlines()
    assert line.startswith("error: the database refused a statement (") and "suppressions" in line, line
    nothing_written(database_url)


@needs_postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_broken_constraint_on_postgres_names_no_value(engine: Engine) -> None:
    """PostgreSQL puts the row's values on a DETAIL line (`Key (email)=(…) already
    exists`): the error keeps its class and its first line, its traceback holds no address,
    and the detail stays in `orig.diag` for code that asks."""
    row = {"email": VICTIM, "name": "", "status": "active", "sections": "", "token": "t" * 32,
           "created_at": NOW, "source": "test"}
    with engine.begin() as conn:
        conn.execute(people.subscribers.insert().values(row))
    with pytest.raises(IntegrityError) as caught:
        with engine.begin() as conn:
            conn.execute(people.subscribers.insert().values({**row, "token": "u" * 32}))
    shown = "".join(traceback.format_exception(caught.value))
    assert "duplicate key value violates unique constraint" in shown and VICTIM not in shown
    assert VICTIM in caught.value.orig.diag.message_detail  # type: ignore[union-attr]


# Logs -----------------------------------------------------------------------------------


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger there is at DEBUG, those that set a level of their own included (the
    HTTP client under `sendgrid`, SQLAlchemy's), all captured."""
    caplog.set_level(logging.DEBUG)
    loggers = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield caplog
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.mark.parametrize("transport", ["outbox", "sendgrid"])
def test_logs_at_debug_never_carry_an_address_or_a_token(
    every_logger_at_debug: pytest.LogCaptureFixture, engine: Engine, database_url: str,
    make_settings: Callable[..., Settings], standin: SendGridStandIn, transport: str,
) -> None:
    """A subscribe through the form and its confirmation, a subscriber added by the CLI, a
    send, and storage failures in the CLI (with --debug too) and the web, every logger at
    DEBUG: no captured line holds an address, a token, the API key or the secret key."""
    caplog = every_logger_at_debug
    settings = trust_settings(make_settings)
    config = settings.base_dir / "newsletter.toml"
    client = web_client(settings, engine)
    assert client.post("/subscribe", data={"email": VICTIM, "name": "Vic Tim", "sections": ["drug-development"]}).status_code == 200
    confirm = link_token(outbox_messages(settings.outbox_dir)[-1], "confirm")
    with engine.begin() as conn:
        # Through the use case, not the page: the test's own HTTP client logs the URLs it asks for.
        people.confirm_subscription(conn, confirm, now=NOW, max_age=timedelta(days=2),
                                    origin=people.Origin(ip="203.0.113.50", user_agent="test", form="confirm"))
    shown = [cli(config, "subscribers", "add", "second@example.org", "--name", "Sec Ond")]
    add_articles(engine)
    send_issue(engine, settings if transport == "outbox" else sendgrid_variant(make_settings, standin))
    if transport == "sendgrid":
        assert {p["to"][0]["email"] for r in standin.accepted for p in r.body["personalizations"]} == {VICTIM, "second@example.org"}
    else:
        assert {m["To"] for m in outbox_messages(settings.outbox_dir / "2026-w48")} == {VICTIM, "second@example.org"}

    with write_lock_held(database_url) as (url, _):
        env_config = config_for(settings.base_dir / "locked.toml", url, settings.base_dir)
        shown += [cli(env_config, "subscribers", "add", "third@example.org"),
                  cli(env_config, "subscribers", "add", "third@example.org", debug=True)]
        short = db.open_engine(url)
        assert web_client(settings, short).post("/subscribe", data={"email": "fourth@example.org", "name": "F"}).status_code == 200
        short.dispose()
    assert [o.code for o in shown] == [0, 3, 3]

    with engine.connect() as conn:
        tokens = list(conn.execute(select(people.subscribers.c.token)).scalars())
    secrets = [VICTIM, "second@example.org", "third@example.org", "fourth@example.org", confirm, *tokens, API_KEY, SECRET]
    secrets += [s.replace("@", "%40") for s in secrets if "@" in s]
    formatter = logging.Formatter()
    lines = [formatter.format(record) for record in caplog.records] + [o.stdout + o.stderr for o in shown]
    leaks = [(secret, line) for line in lines for secret in secrets if secret in line]
    assert not leaks, leaks[:3]
    # The capture saw what it had to: SQL statements (their parameters hidden) and the failures.
    assert any("SQL parameters hidden" in line for line in lines)
    assert any("locked by another connection" in line for line in lines if "Traceback" in line)
    # The subscribe stored after the answer failed: one line at ERROR, the traceback at DEBUG.
    failed = [r for r in caplog.records if r.name == "newsletter.web.views" and "could not be stored" in r.getMessage()]
    assert [(r.levelname, r.exc_info is None) for r in failed] == [("ERROR", True)]
    assert "locked by another connection" in failed[0].getMessage()
    assert any(r.name == "newsletter.web.views" and r.levelname == "DEBUG" and r.exc_info for r in caplog.records)
    with engine.connect() as conn:
        stored = set(conn.execute(select(people.subscribers.c.email)).scalars())
    assert stored == {VICTIM, "second@example.org"}  # the failures wrote nothing
