"""The schema: the migrations build exactly the tables the code declares, on SQLite and
PostgreSQL, and `newsletter db upgrade` is safe to run again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app
from newsletter.sending.ledger import ledger_summary
from subscribers import metadata


def test_the_migrations_match_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    assert db.current_revision(engine) == db.head_revision()


def test_upgrading_keeps_every_delivery_and_drops_only_their_foreign_keys(database_url: str) -> None:
    """Migration 0007 rebuilds `deliveries` on SQLite: a ledger written before it reads
    the same after it (batches count the deliveries they skipped), and references the
    old keys would have refused are taken."""
    from alembic import command
    from sqlalchemy import text

    eng = db.open_engine(database_url)
    try:
        command.upgrade(db._alembic_config(eng), "0006")
        now = "2026-11-20 10:00:00+00:00"
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO issues (id, slug, status, subject, preheader, intro, window_start, window_end, "
                              "created_at) VALUES (1, '2026-w47', 'sent', 's', 'p', '', :now, :now, :now)"), {"now": now})
            conn.execute(text("INSERT INTO segments (id, issue_id, key, subject, preheader, html, text) "
                              "VALUES (1, 1, 'news', 's', 'p', 'h', 't')"))
            conn.execute(text("INSERT INTO batches (id, issue_id, segment_id, status, transport, recipients, attempts, "
                              "message_id, status_code, error, updated_at) "
                              "VALUES (1, 1, 1, 'accepted', 'outbox', 2, 1, '', 0, '', :now)"), {"now": now})
            for n in (1, 2):
                conn.execute(text("INSERT INTO subscribers (id, email, name, status, sections, token, created_at, source) "
                                  f"VALUES ({n}, 'r{n}@example.com', '', 'active', 'news', 't{n}', :now, 'test')"), {"now": now})
                conn.execute(text("INSERT INTO deliveries (id, issue_id, subscriber_id, segment_id, batch_id, status, sent_at) "
                                  f"VALUES ({n}, 1, {n}, 1, 1, '{'sent' if n == 1 else 'skipped'}', :now)"), {"now": now})
        assert db.upgrade(eng)
        with eng.begin() as conn:
            rows = conn.execute(text("SELECT id, issue_id, subscriber_id, segment_id, batch_id, status FROM deliveries "
                                     "ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, 1, 1, 1, 1, "sent"), (2, 1, 2, 1, 1, "skipped")]
            # The batch counts the recipient it left out, so the ledger's sums say what the rows say.
            assert conn.execute(text("SELECT skipped FROM batches WHERE id = 1")).scalar_one() == 1
            summary = ledger_summary(conn, 1)
            assert (summary["recipients_sent"], summary["recipients_skipped"], summary["recipients_planned"]) == (1, 1, 0)
            conn.execute(text("INSERT INTO deliveries (id, issue_id, subscriber_id, segment_id, batch_id, status) "
                              "VALUES (3, 99, 99, 99, 99, 'planned')"))
        with eng.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        eng.dispose()


def test_sqlite_commits_reach_the_disk_before_the_next_request(engine: Engine) -> None:
    """A batch is marked in flight and committed before its request: on SQLite that commit
    must survive a power cut (synchronous=FULL in WAL mode), or a resumed send would take
    the batch for planned and mail it again."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"
            return
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL


def test_db_upgrade_twice(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('[database]\nurl = "sqlite:///data/news.db"\n')
    runner = CliRunner()
    first = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    second = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    assert first.exit_code == 0 and "upgraded to revision" in first.output
    assert second.exit_code == 0 and "already at revision" in second.output
    assert (tmp_path / "data" / "news.db").is_file()


def test_bulk_timestamps_are_stored_as_the_column_type_stores_them(engine: Engine) -> None:
    """The webhook's bulk statements format timestamps themselves; what they write must
    be what SQLAlchemy writes, or times would not compare (SQLite keeps text)."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import insert, select

    from newsletter.tables import delivery_events
    from subscribers import UTCDateTime

    times = [datetime(2026, 11, 23, 9, 0, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
             datetime(2026, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
             datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    bulk = UTCDateTime.bulk_processor(engine.dialect)
    with engine.begin() as conn:
        for n, at in enumerate(times):
            conn.execute(insert(delivery_events).values(event_key=f"k{n}", kind="other", provider_event="x",
                                                        known=False, occurred_at=at, received_at=at))
            marks = "%(k)s, 'other', 'x', false, %(t)s, %(t)s" if engine.dialect.name == "postgresql" \
                else ":k, 'other', 'x', 0, :t, :t"
            conn.exec_driver_sql("INSERT INTO delivery_events (event_key, kind, provider_event, known, occurred_at, "
                                 f"received_at, url, reason) VALUES ({marks}, '', '')", {"k": f"b{n}", "t": bulk(at)})
        stored = dict(conn.exec_driver_sql("SELECT event_key, occurred_at FROM delivery_events").all())
        read = dict(conn.execute(select(delivery_events.c.event_key, delivery_events.c.occurred_at)).all())
    for n, at in enumerate(times):
        assert stored[f"b{n}"] == stored[f"k{n}"]
        assert read[f"b{n}"] == at
    with pytest.raises(ValueError, match="naive"):
        bulk(datetime(2026, 1, 1))
