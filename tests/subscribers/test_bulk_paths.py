"""The roads the bulk import takes past SQLAlchemy's statements keep every value and
every rule: lists sent to PostgreSQL as one text (awkward names: backslashes, quotes,
braces, non-ASCII; control characters refused), writes left running at the server
(their errors raised as SQLAlchemy raises them, without the row's values; a rollback or
a commit waiting for them), and the filter of the addresses seen. On SQLite and
PostgreSQL."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

import subscribers as people
import subscribers.importer
from subscribers import bulk
from subscribers.pipeline import SEPARATORS, integers, texts
from tests.conftest import NOW
from tests.helpers import AWKWARD_NAMES, as_csv

SECTIONS = {"drug-development": "Drug Development", "manufacturing": "Manufacturing", "news": "News"}


def postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's path")


def import_text(engine: Engine, body: str) -> people.ImportReport:
    with engine.begin() as conn:
        return people.import_csv(
            conn, io.StringIO(body), columns=people.ColumnMap("email", "name", "sections"), known_sections=SECTIONS,
            default_sections=tuple(SECTIONS), now=NOW, source="import:awkward.csv",
        )


def test_an_import_keeps_awkward_names_and_time_zones_exactly_and_refuses_control_characters(engine: Engine) -> None:
    rows = [["email", "name", "sections", "timezone"]]
    rows += [[f"r{n}@example.com", name, "news" if n % 2 else "news;Manufacturing", "Europe/London" if n % 3 else ""]
             for n, name in enumerate(AWKWARD_NAMES)]
    # Each separator the import may send a list with, and a tab, in a name: refused.
    rows += [[f"bad{n}@example.com", f"Bad{c}Name", "news", ""] for n, c in enumerate([*SEPARATORS, "\t"])]
    report = import_text(engine, as_csv(rows))
    first_bad = len(AWKWARD_NAMES) + 2
    assert report.rejected == [(first_bad + n, f"the name holds a control character (U+{ord(c):04X}); write it on one line")
                               for n, c in enumerate([*SEPARATORS, "\t"])]
    assert (report.created, report.updated) == (len(AWKWARD_NAMES), 0)
    with engine.connect() as conn:
        found = {s.email: (s.name, s.sections, s.timezone) for s in people.list_subscribers(conn)}
    assert found == {
        f"r{n}@example.com": (" ".join(name.split()), ("news",) if n % 2 else ("manufacturing", "news"),
                              "Europe/London" if n % 3 else None)
        for n, name in enumerate(AWKWARD_NAMES)
    }

    # Again, some rows changed: the names, sections and zones the file gives are written,
    # an empty zone cell keeps the zone, the unchanged rows stay as they were.
    again = [rows[0]] + [[e, name + " Jr" if n % 4 == 0 else name, "manufacturing" if n % 5 == 0 else sections,
                          "Asia/Tokyo" if n % 7 == 0 else ""]
                         for n, (e, name, sections, _) in enumerate(rows[1:len(AWKWARD_NAMES) + 1])]
    report = import_text(engine, as_csv(again))
    assert (report.created, report.updated, report.rejected) == (0, len(AWKWARD_NAMES), [])
    with engine.connect() as conn:
        found = {s.email: (s.name, s.sections, s.timezone) for s in people.list_subscribers(conn)}
    assert found == {
        f"r{n}@example.com": (
            " ".join((name + " Jr" if n % 4 == 0 else name).split()),
            ("manufacturing",) if n % 5 == 0 else ("news",) if n % 2 else ("manufacturing", "news"),
            "Asia/Tokyo" if n % 7 == 0 else "Europe/London" if n % 3 else None,
        )
        for n, name in enumerate(AWKWARD_NAMES)
    }


def test_a_list_sent_as_one_text_comes_back_as_it_went(engine: Engine) -> None:
    postgres_only(engine)
    lists: list[list[str | None]] = [
        ["a", "b"], ["only"], [""], ["", ""], ["", None], [None, None, "x"], ["a\x1fb", "c"],
        ["\x1f", "\x1e", "\x1d", "\x1c"], list(AWKWARD_NAMES), ["tab\there", "line\nbreak", "cr\rhere", "{a,\"b\"}"],
        [f"many {n}" for n in range(5000)],
    ]
    with engine.connect() as conn:
        for values in lists:
            params: dict[str, object] = {}
            sql = texts("v", values, params)
            back = [v for v, in conn.exec_driver_sql(f"SELECT v FROM unnest({sql}) WITH ORDINALITY AS t(v, n) ORDER BY n",
                                                       params)]
            assert back == values
        params = {}
        sql = integers("v", [3, 1, 2_000_000_000, -5], params)
        assert [v for v, in conn.exec_driver_sql(f"SELECT v FROM unnest({sql}) WITH ORDINALITY AS t(v, n) ORDER BY n",
                                                  params)] == [3, 1, 2_000_000_000, -5]


def test_the_seen_filter_keeps_every_address_it_was_given_and_drops_most_others() -> None:
    seen = bulk.SeenFilter(bits=1 << 20)
    given = [f"reader.{n}@example.com" for n in range(3000)]
    seen.add(given)
    assert seen.maybe(given) == given
    others = [f"someone.{n}@example.org" for n in range(10_000)]
    assert len(seen.maybe(others)) < 20
    with pytest.raises(ValueError):
        bulk.SeenFilter(bits=1000)


def test_addresses_the_filter_lets_through_are_looked_up_and_name_their_first_line(engine: Engine) -> None:
    with engine.begin() as conn:
        batch = bulk.ImportBatch(conn, now=NOW, source="import", form="import")
        batch.open()
        if batch.seen is not None:
            # Eight bits: every address passes the filter and is looked up.
            batch.seen = bulk.SeenFilter(bits=8)
        assert batch.seen_before(["a@example.com", "b@example.com"]) == {}
        batch.remember([("a@example.com", 2), ("b@example.com", 3)])
        batch.create([("a@example.com", "A", "news", None)], status="active", action="imported")
        batch.remember([("c@example.com", 9)])
        assert batch.seen_before(["c@example.com", "b@example.com", "d@example.com"]) == {
            "b@example.com": 3, "c@example.com": 9}
        batch.close()
        assert [s.email for s in people.list_subscribers(conn)] == ["a@example.com"]


def test_a_write_that_fails_at_the_server_is_raised_without_the_address_and_leaves_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("taken@example.com", ("news",))], now=NOW)
    with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
        batch = bulk.ImportBatch(conn, now=NOW, source="import", form="import")
        batch.open()
        batch.create([("new@example.com", "New", "news", None), ("taken@example.com", "Taken", "news", None)],
                     status="active", action="imported")
        batch.close()
    assert "taken@example.com" not in str(raised.value)
    with engine.connect() as conn:
        assert [s.email for s in people.list_subscribers(conn)] == ["taken@example.com"]


def test_the_end_of_the_transaction_waits_for_writes_still_going(engine: Engine) -> None:
    # An error elsewhere part-way: the rollback waits for the writes sent, and the
    # connection goes back to the pool fit for use.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        batch = bulk.ImportBatch(conn, now=NOW, source="import", form="import")
        batch.open()
        batch.create([("gone@example.com", "Gone", "news", None)], status="active", action="imported")
        raise RuntimeError("the file could not be read")
    # A failed write and no `close`: the commit raises it, and nothing is kept.
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("taken@example.com", ("news",))], now=NOW)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        batch = bulk.ImportBatch(conn, now=NOW, source="import", form="import")
        batch.open()
        batch.create([("taken@example.com", "Taken", "news", None)], status="active", action="imported")
    with engine.connect() as conn:
        assert [s.email for s in people.list_subscribers(conn)] == ["taken@example.com"]
        assert conn.execute(select(text("1"))).scalar_one() == 1


def test_a_dry_run_finds_a_duplicate_a_batch_later_and_writes_nothing(engine: Engine) -> None:
    rows = [["email", "name", "sections"]] + [[f"r{n}@example.com", f"R {n}", "news"]
                                              for n in range(subscribers.importer.BATCH_ROWS + 10)]
    rows.append(["R5@Example.com", "Again", "news"])
    with engine.begin() as conn:
        report = people.import_csv(
            conn, io.StringIO(as_csv(rows)), columns=people.ColumnMap("email", "name", "sections"),
            known_sections=SECTIONS, default_sections=tuple(SECTIONS), now=NOW, dry_run=True,
        )
    assert report.rejected == [(len(rows), "the same address as line 7")]
    assert (report.created, report.updated) == (subscribers.importer.BATCH_ROWS + 10, 0)
    with engine.connect() as conn:
        assert people.list_subscribers(conn) == []
