"""Fixtures shared by every test: databases (SQLite always, PostgreSQL when
NEWSLETTER_TEST_POSTGRES_URL is set), a local HTTP server, configuration files, and the
SendGrid stand-in with a feed to build issues from (`standin`, `feed_server`; the helpers
that go with them are in `tests/sendgrid_helpers.py`).

The test files mirror the packages: `tests/newsletter/` (with `sending/`, `transports/`,
`web/`, `cli/`, `sources/`) and `tests/subscribers/`; what they share stays here at the
root (`helpers.py`, `servers.py`, `sendgrid_standin.py`, `sendgrid_helpers.py`,
`readers.py`, `sendgrid_scheduled.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from newsletter import db
from newsletter.config import Settings, load_settings
from tests.sendgrid_standin import SendGridStandIn
from tests.servers import LocalServer, Route

import os

POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(not POSTGRES_URL, reason="NEWSLETTER_TEST_POSTGRES_URL not set"))]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _pg(url: str) -> str:
    return url if "+psycopg" in url else url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = db.open_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield _pg(POSTGRES_URL) + f"{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database with the schema applied."""
    eng = db.open_engine(database_url)
    db.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    """The SendGrid stand-in, taking `sendgrid_helpers.API_KEY`."""
    from tests.sendgrid_helpers import API_KEY

    srv = SendGridStandIn(API_KEY)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def feed_server(server: LocalServer) -> str:
    """The URL of a feed of three articles (`sendgrid_helpers.feed`) on the local server."""
    from tests.sendgrid_helpers import feed

    server.routes["/feed.xml"] = Route(body=feed(), headers={"content-type": "application/rss+xml"})
    return f"{server.url}/feed.xml"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_config(path: Path, tables: dict[str, Any]) -> Path:
    """Write a newsletter.toml from {table: {key: value}} and {array: [{...}]}."""
    lines: list[str] = []
    for name, value in tables.items():
        if isinstance(value, list):
            for entry in value:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# What a test that reads from the local `server` fixture needs in `[ingest] allow_networks`:
# the network guard refuses loopback addresses by default (see newsletter/netguard.py).
LOCAL_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for a test: the test's database, an outbox in tmp_path, and any tables given.

    Only a test that uses the local `server` fixture is allowed to reach 127.0.0.1
    (`[ingest] allow_networks`); every other test keeps the default, which refuses it."""

    def make(**tables: Any) -> Settings:
        base: dict[str, Any] = {
            "site": {"name": "Pharma Weekly", "base_url": "https://news.example.com", "timezone": "Europe/London"},
            "sender": {"name": "Pharma Weekly", "address": "news@example.com"},
            "database": {"url": database_url},
            "delivery": {"outbox_dir": str(tmp_path / "outbox")},
        }
        if "server" in request.fixturenames:
            base["ingest"] = {"allow_networks": LOCAL_NETWORKS}
        for key, value in tables.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        return load_settings(write_config(tmp_path / "newsletter.toml", base), environ={})

    return make
