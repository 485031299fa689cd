"""`newsletter subscribers …` as an administrator uses it: import with a report of
rejected rows, dry runs, export, list, show with the consent history, remove and erase."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

import subscribers as people
from newsletter.cli import app
from newsletter.config import Settings

runner = CliRunner()
CSV = (
    "E-mail,Full name,Topics\n"
    "ann@example.com,Ann Archer,Insights;Events\n"
    "not-an-address,Bob,insights\n"
    "cy@example.com,,Manufacturing|drug-development\n"
    "dee@example.com,Dee,sports\n"
)


def run(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "subscribers", *args],
                           input=stdin, env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_import_reports_rejected_rows_and_a_dry_run_imports_nothing(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    source = tmp_path / "people.csv"
    source.write_text(CSV)
    columns = ["--email-column", "E-mail", "--name-column", "Full name", "--sections-column", "Topics"]
    code, output = run(settings, "import", str(source), *columns, "--dry-run")
    assert code == 0 and "Would import: 2 new, 0 updated; 0 left out, 2 rejected." in output
    assert "│    3 │ rejected │" in output and "│    5 │ rejected │" in output
    with engine.connect() as conn:
        assert people.count_by_status(conn) == {}

    code, output = run(settings, "import", str(source), *columns, "--json")
    report = json.loads(output)
    assert (report["created"], [r["line"] for r in report["rejected"]]) == (2, [3, 5])
    with engine.connect() as conn:
        ann = people.get_subscriber(conn, "ann@example.com")
        cy = people.get_subscriber(conn, "cy@example.com")
    assert (ann.name, ann.sections, ann.status.value) == ("Ann Archer", ("events", "insights"), "active")
    assert cy.sections == ("drug-development", "manufacturing")

    code, output = run(settings, "import", str(source), "--email-column", "email")
    assert code == 2 and "no column 'email'" in output


def test_export_list_show_remove_and_erase(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    code, _ = run(settings, "import", "-", "--sections", "insights", stdin="email,name\nann@example.com,Ann\nbo@example.com,Bo\n")
    assert code == 0
    out = tmp_path / "export.csv"
    code, output = run(settings, "export", "--out", str(out))
    assert code == 0 and "Wrote 2 subscribers" in output
    assert out.read_text().splitlines()[0].startswith("email,name,status,sections")

    code, output = run(settings, "list", "--json")
    assert [s["email"] for s in json.loads(output)] == ["ann@example.com", "bo@example.com"]

    code, output = run(settings, "remove", "ann@example.com")
    assert code == 0 and "Unsubscribed." in output
    code, output = run(settings, "show", "ann@example.com", "--json")
    shown = json.loads(output)
    assert shown["status"] == "unsubscribed" and [c["form"] for c in shown["consents"]][-1] == "admin"

    code, output = run(settings, "erase", "bo@example.com", "--yes")
    assert code == 0 and "Erased." in output
    code, output = run(settings, "show", "bo@example.com")
    assert code == 2 and "no subscriber" in output
    # Neither the unsubscribed nor the erased address comes back with an import.
    code, output = run(settings, "import", "-", stdin="email\nann@example.com\nbo@example.com\n")
    assert code == 0 and "0 new, 0 updated; 2 left out" in output

    code, output = run(settings, "list", "--status", "gone")
    assert code == 2 and "--status: expected one of" in output
