"""The schema: the migrations build exactly the tables the code declares, on SQLite and
PostgreSQL, and `newsletter db upgrade` is safe to run again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
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
