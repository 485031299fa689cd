"""The CSV export the database writes (PostgreSQL's COPY, SQLite's lines built in SQL) is
byte for byte what `csv.writer` wrote from the rows, with awkward values (tabs,
backslashes, quotes, line breaks, non-ASCII, text that looks like a formula), in one
piece or many, and its errors are raised as SQLAlchemy raises them. On SQLite and
PostgreSQL."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError

import subscribers as people
import subscribers.importer
from subscribers import export
from tests.conftest import NOW
from tests.helpers import AWKWARD_NAMES, as_csv


def cell(value: object) -> str:
    """A cell as the plain export wrote it: `isoformat` for a timestamp, formula-looking
    text with a leading '."""
    txt = value.isoformat() if isinstance(value, datetime) else "" if value is None else str(value)
    return "'" + txt if txt[:1] in ("=", "+", "-", "@") else txt


def test_the_csv_the_database_writes_is_what_csv_writer_writes_for_awkward_values(engine: Engine) -> None:
    names = [*AWKWARD_NAMES, "tab\there", "line\nbreak", "cr\rhere", "crlf\r\nhere", "\"", ",", "'quoted'"]
    with engine.begin() as conn:
        people.upsert_subscribers(
            conn, [people.NewSubscriber(f"r{n}@example.com", ("news",) if n % 2 else ("manufacturing", "news"),
                                        timezone="Europe/London" if n % 3 else None)
                   for n in range(len(names))],
            now=NOW.replace(microsecond=0),
        )
        people.upsert_subscribers(conn, [people.NewSubscriber("+plus@example.com", ("news",))],
                                  now=NOW.replace(microsecond=5))
        for n, name in enumerate(names):
            # Written directly, as older versions could: the export still quotes and defuses.
            conn.execute(update(people.subscribers).where(people.subscribers.c.email == f"r{n}@example.com")
                         .values(name=name, source="import:a,b.csv" if n % 4 == 0 else "web"))
        gone = people.get_subscriber(conn, "r1@example.com")
        people.set_status(conn, gone.id, people.Status.UNSUBSCRIBED, now=NOW.replace(microsecond=120))
        expected = people.list_subscribers(conn)
        out = io.StringIO()
        count = people.export_csv(conn, out)
    assert count == len(names) + 1
    assert out.getvalue() == as_csv([list(subscribers.importer.EXPORT_COLUMNS)] + [
        [cell(s.email), cell(s.name), cell(s.status.value), cell(",".join(s.sections)), cell(s.created_at),
         cell(s.confirmed_at), cell(s.unsubscribed_at), cell(s.source), cell(s.timezone)]
        for s in expected
    ])


def test_the_export_in_small_pieces_is_the_export_in_one(engine: Engine) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber(f"r{n}@example.com", ("news",), name=f"R, {n}")
                                         for n in range(23)], now=NOW)
        for n in (4, 11, 17):
            person = people.get_subscriber(conn, f"r{n}@example.com")
            people.set_status(conn, person.id, people.Status.BOUNCED, now=NOW)
    columns, dates = subscribers.importer.EXPORT_COLUMNS, subscribers.importer.EXPORT_DATES
    with engine.connect() as conn:
        for statuses, count in ((None, 23), (["bounced"], 3), (["active", "bounced"], 23), ([], 0)):
            whole = list(export.csv_pieces(conn, columns, statuses=statuses, dates=dates))
            pieces = list(export.csv_pieces(conn, columns, statuses=statuses, dates=dates, chunk=2))
            assert "".join(t for t, _ in pieces) == "".join(t for t, _ in whole)
            assert sum(n for _, n in pieces) == sum(n for _, n in whole) == count
            assert all(n <= 2 for _, n in pieces) and len(whole) == (1 if count else 0)


def test_an_export_statement_that_fails_is_raised_as_sqlalchemy_raises_one(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(DBAPIError):
        list(export.csv_pieces(conn, ["no_such_column"], statuses=None, dates=()))
