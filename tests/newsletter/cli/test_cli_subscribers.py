"""`newsletter subscribers …` as an administrator uses it: import with a report of
rejected rows, dry runs, export, list, show with the consent history, remove and erase."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

import subscribers as people
from newsletter.cli import app
from newsletter.config import Settings
from tests.conftest import NOW

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
    assert code == 4 and "Would import: 2 new, 0 updated; 0 left out, 2 rejected." in output
    assert "│    3 │ rejected │" in output and "│    5 │ rejected │" in output
    with engine.connect() as conn:
        assert people.count_by_status(conn) == {}

    code, output = run(settings, "import", str(source), *columns, "--json")
    assert code == 4
    report = json.loads(output)
    assert (report["created"], [r["line"] for r in report["rejected"]]) == (2, [3, 5])
    with engine.connect() as conn:
        ann = people.get_subscriber(conn, "ann@example.com")
        cy = people.get_subscriber(conn, "cy@example.com")
    assert (ann.name, ann.sections, ann.status.value) == ("Ann Archer", ("events", "insights"), "active")
    assert cy.sections == ("drug-development", "manufacturing")

    code, output = run(settings, "import", str(source), "--email-column", "email")
    assert code == 2 and "no column 'email'" in output


def test_rejected_rows_exit_4_and_go_to_the_rejects_file_with_their_line_and_reason(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    source = tmp_path / "people.csv"
    source.write_text(CSV + '"=HYPERLINK(""https://evil.example"")",Eve,news,extra cell\nann@example.com,Again,news\n')
    rejects = tmp_path / "rejects.csv"
    columns = ["--email-column", "E-mail", "--name-column", "Full name", "--sections-column", "Topics"]
    code, output = run(settings, "import", str(source), *columns, "--rejects", str(rejects))
    assert code == 4 and "Imported: 2 new, 0 updated; 0 left out, 4 rejected." in output
    assert f"Wrote 4 rejected rows to {rejects}" in output
    with rejects.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["line", "reason", "E-mail", "Full name", "Topics"],
        ["3", "not a valid email address", "not-an-address", "Bob", "insights"],
        ["5", "unknown section 'sports'", "dee@example.com", "Dee", "sports"],
        # A cell that a spreadsheet would run as a formula is written as text.
        ["6", "not a valid email address", "'=HYPERLINK(\"https://evil.example\")", "Eve", "news", "extra cell"],
        ["7", "the same address as line 2", "ann@example.com", "Again", "news"],
    ]
    with engine.connect() as conn:
        assert people.count_by_status(conn) == {people.Status.ACTIVE: 2}

    # Without rejected rows the status is 0, and the rejects file holds its header alone;
    # rows left out on purpose (already subscribed or gone) are not rejections.
    clean = tmp_path / "clean.csv"
    with engine.begin() as conn:
        people.suppress(conn, "gone@example.com", reason="bounce", now=NOW)
    clean.write_text("email\nnew@example.com\ngone@example.com\n")
    code, output = run(settings, "import", str(clean), "--rejects", str(rejects))
    assert code == 0 and "1 left out, 0 rejected" in output
    assert rejects.read_text(encoding="utf-8").splitlines() == ["line,reason,email"]


def test_a_missing_or_unreadable_csv_file_is_named_in_one_line(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    missing = tmp_path / "nowhere" / "people.csv"
    code, output = run(settings, "import", str(missing))
    assert code == 2 and output.strip() == f"error: no such file: {missing}"
    code, output = run(settings, "import", str(tmp_path))
    assert code == 2 and output.strip() == f"error: {tmp_path}: is a folder, not a CSV file"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,name\nzoe@example.com,Zo\xeb\n".encode("latin-1"))
    code, output = run(settings, "import", str(latin))
    assert code == 2 and "not UTF-8 text (byte 30 cannot be read)" in output and "Traceback" not in output
    result = runner.invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "subscribers", "import", "-"],
                           input="email\nzo\xeb@example.com\n".encode("latin-1"))
    assert result.exit_code == 2 and "standard input: not UTF-8 text" in result.output
    source = tmp_path / "people.csv"
    source.write_text(CSV)
    code, output = run(settings, "import", str(source), "--email-column", "E-mail", "--rejects", str(tmp_path / "no" / "r.csv"))
    assert code == 2 and f"--rejects: {tmp_path / 'no' / 'r.csv'} cannot be written: No such file or directory" in output


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
