"""CSV import and export, removal and erasure, on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import Engine, select

import subscribers as people
from tests.conftest import NOW

SECTIONS = {"drug-development": "Drug Development", "manufacturing": "Manufacturing", "news": "News"}
ALL = tuple(SECTIONS)
COLUMNS = people.ColumnMap(email="E-mail", name="Full name", sections="Interests")

CSV = """E-mail,Full name,Interests
ann@example.com,Ann Example,Manufacturing; news
BOB@Example.com,  Bob   Example ,
not-an-address,Nobody,news
carol@example.com,Carol,Sports
ann@EXAMPLE.com,Ann Again,news
dave@example.com,Dave,drug-development|manufacturing
gone@example.com,Gone,news
suppressed@example.com,Suppressed,news
"""


def run_import(engine: Engine, text: str = CSV, *, dry_run: bool = False) -> people.ImportReport:
    with engine.begin() as conn:
        return people.import_csv(
            conn, io.StringIO(text), columns=COLUMNS, known_sections=SECTIONS, default_sections=ALL,
            now=NOW, dry_run=dry_run,
        )


def addresses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(people.subscribers.c.email, people.subscribers.c.status)).all()
    return {row.email: row.status for row in rows}


@pytest.fixture
def prepared(engine: Engine) -> Engine:
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("gone@example.com", ("news",))], now=NOW)
        people.set_status(conn, people.get_subscriber(conn, "gone@example.com").id, people.Status.UNSUBSCRIBED, now=NOW)
        people.suppress(conn, "suppressed@example.com", reason="complaint", now=NOW)
    return engine


def test_an_import_reports_every_rejected_row_and_never_resurrects_anyone(prepared: Engine) -> None:
    report = run_import(prepared)
    assert (report.created, report.updated) == (3, 0)
    assert report.rejected == [
        (4, "not a valid email address"),
        (5, "unknown section 'Sports'"),
        (6, "the same address as line 2"),
    ]
    assert report.skipped == [(8, "unsubscribed; only they can subscribe again"), (9, "on the suppression list")]
    with prepared.connect() as conn:
        ann = people.get_subscriber(conn, "ann@example.com")
        bob = people.get_subscriber(conn, "bob@example.com")
        dave = people.get_subscriber(conn, "dave@example.com")
        history = people.consent_history(conn, ann.id)
    assert ann.status is people.Status.ACTIVE and ann.sections == ("manufacturing", "news") and ann.name == "Ann Example"
    assert bob.sections == ALL and bob.name == "Bob Example"
    assert dave.sections == ("drug-development", "manufacturing")
    assert [(c.action, c.form) for c in history] == [(people.ConsentAction.IMPORTED, "import")]
    assert addresses(prepared)["gone@example.com"] == "unsubscribed"
    assert "suppressed@example.com" not in addresses(prepared)

    again = run_import(prepared)
    assert (again.created, again.updated) == (0, 3)


def test_a_dry_run_writes_nothing_but_reports_the_same(prepared: Engine) -> None:
    before = addresses(prepared)
    report = run_import(prepared, dry_run=True)
    assert report.dry_run and (report.created, len(report.rejected), len(report.skipped)) == (3, 3, 2)
    assert addresses(prepared) == before


def test_a_missing_column_stops_the_import_before_anything_is_written(engine: Engine) -> None:
    with pytest.raises(people.ImportFileError, match="no column 'Interests' for sections"):
        run_import(engine, "E-mail,Full name\nann@example.com,Ann\n")
    assert addresses(engine) == {}


def test_a_failure_part_way_leaves_no_half_finished_import(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        people.import_csv(
            conn, io.StringIO(CSV), columns=COLUMNS, known_sections=SECTIONS, default_sections=ALL, now=NOW
        )
        raise RuntimeError("the disk filled up")
    assert addresses(engine) == {}


def test_export_writes_every_subscriber_and_defuses_formulas(prepared: Engine) -> None:
    run_import(prepared, CSV + "eve@example.com,=SUM(1+1),news\n")
    out = io.StringIO()
    with prepared.connect() as conn:
        count = people.export_csv(conn, out, statuses=[people.Status.ACTIVE])
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 4
    assert [r["email"] for r in rows] == ["ann@example.com", "bob@example.com", "dave@example.com", "eve@example.com"]
    assert rows[3]["name"] == "'=SUM(1+1)"
    assert rows[0]["sections"] == "manufacturing,news" and rows[0]["status"] == "active"
    assert rows[0]["created_at"].startswith("2026-11-23T09:00:00")


def test_remove_unsubscribes_on_their_behalf_and_logs_it(prepared: Engine) -> None:
    run_import(prepared)
    with prepared.begin() as conn:
        removed = people.remove(conn, "Ann@example.com", now=NOW)
        assert removed.status is people.Status.UNSUBSCRIBED
        assert people.consent_history(conn, removed.id)[-1].form == "admin"
        with pytest.raises(people.UnknownSubscriberError):
            people.remove(conn, "nobody@example.com", now=NOW)
        listed = people.list_subscribers(conn, status=people.Status.ACTIVE)
    assert [s.email for s in listed] == ["bob@example.com", "dave@example.com"]


def test_erase_keeps_only_a_hash_so_no_import_brings_them_back(prepared: Engine) -> None:
    run_import(prepared)
    with prepared.begin() as conn:
        ann = people.get_subscriber(conn, "ann@example.com")
        people.erase(conn, "ann@example.com", now=NOW)
        assert people.consent_history(conn, ann.id) == []
        assert people.is_erased(conn, "ann@example.com")
        with pytest.raises(people.UnknownSubscriberError):
            people.subscriber_by_token(conn, ann.token)
        stored = conn.execute(select(people.suppressions.c.email)).scalars().all()
    assert not any("ann" in value for value in stored)
    assert "ann@example.com" not in addresses(prepared)
    report = run_import(prepared, "E-mail,Full name,Interests\nann@example.com,Ann,news\n")
    assert report.created == 0 and report.skipped == [(2, "on the suppression list")]
