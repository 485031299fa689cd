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
from subscribers import metadata


def test_the_migrations_match_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    assert db.current_revision(engine) == db.head_revision()


def test_db_upgrade_twice(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('[database]\nurl = "sqlite:///data/news.db"\n')
    runner = CliRunner()
    first = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    second = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    assert first.exit_code == 0 and "upgraded to revision" in first.output
    assert second.exit_code == 0 and "already at revision" in second.output
    assert (tmp_path / "data" / "news.db").is_file()


def test_foreign_keys_are_unchecked_only_inside_the_block(engine: Engine) -> None:
    """Planning inserts a million references it has just read, without SQLite's checks;
    the checks are back afterwards, on that connection, even when the block fails."""
    orphan = "INSERT INTO segments (issue_id, key, subject, preheader, html, text) VALUES (424242, 'k', 's', 'p', 'h', 't')"
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with db.foreign_keys_unchecked(conn), conn.begin():
                assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1  # nothing changes elsewhere
            return
        with db.foreign_keys_unchecked(conn), conn.begin():
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 0
            conn.exec_driver_sql(orphan)
            conn.exec_driver_sql("DELETE FROM segments WHERE issue_id = 424242")
        try:
            with db.foreign_keys_unchecked(conn), conn.begin():
                raise RuntimeError("planning failed")
        except RuntimeError:
            pass
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        conn.commit()
        with pytest.raises(IntegrityError), conn.begin():
            conn.exec_driver_sql(orphan)
