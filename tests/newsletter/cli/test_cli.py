"""The command line as a user meets it: help texts, the demo (twice), and one clear
line with a non-zero exit for every mistake — never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest.mock import ANY

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from tests.helpers import outbox_messages

runner = CliRunner()
ENV = {"COLUMNS": "200", "NEWSLETTER_CONFIG": ""}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={**ENV, **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def commands() -> list[list[str]]:
    found: list[list[str]] = []
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        found.append([name])
        for sub in getattr(command, "commands", {}):
            found.append([name, sub])
    return found


def test_every_command_explains_itself() -> None:
    code, output = invoke("--help")
    assert code == 0 and "--config" in output and "NEWSLETTER_CONFIG" in output
    names = commands()
    assert ["demo"] in names and ["ingest"] in names and ["send"] in names and ["db", "upgrade"] in names
    for name in names:
        code, output = invoke(*name, "--help")
        assert code == 0, name
        assert "Usage:" in output and len(output.splitlines()) > 3, name


def test_the_demo_delivers_once_and_says_where_to_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = invoke("demo")
    assert code == 0, output
    folder = tmp_path / "newsletter-demo"
    assert (folder / "newsletter.toml").is_file() and (folder / "newsletter.db").is_file()
    for heading in ("section: Drug Development", "segments (distinct section choices)", "recipients sent now", "HTML bytes per segment", "elapsed"):
        assert heading in output
    assert str(folder / "outbox") in output and "web/2026-w" in output and "render" in output
    messages = outbox_messages(folder / "outbox")
    first_count = len(messages)
    assert 700 < first_count <= 1000
    web = next((folder / "web").glob("*.html")).read_text()
    assert "Subscribe to Pharma Industry Weekly" in web and "%%" not in web

    code, output = invoke("demo", "--json")
    assert code == 0
    summary = json.loads(output)
    assert summary["recipients"] == 0 and summary["new_issue"] is False and summary["new_subscribers"] == 0
    recipients = Counter(m["To"] for m in outbox_messages(folder / "outbox"))
    assert len(recipients) == first_count and set(recipients.values()) == {1}


def test_demo_links_point_at_the_local_web_app(tmp_path: Path) -> None:
    code, _ = invoke("demo", "--folder", str(tmp_path / "d"), "--subscribers", "5")
    assert code == 0
    message = outbox_messages(tmp_path / "d" / "outbox")[0]
    assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")


@pytest.mark.parametrize(
    ("config", "args", "code", "expected"),
    [
        ('[delivery]\ntransport = "pigeon"\n', ["build"], 2, "delivery.transport: expected 'outbox', 'sendgrid' or 'smtp'"),
        ("[selection]\nper_section_limit = [1]\n", ["send"], 2, "selection.per_section_limit"),
        ("", ["ingest"], 2, "no feeds configured"),
        ("", ["render", "--sections", "sports"], 1, "no issue has been built yet"),
        ("", ["subscribers", "add", "not-an-address"], 2, "'not-an-address' is not a valid email address"),
        ("", ["subscribers", "add", "a@example.com", "--sections", "sports"], 2, "--sections: unknown section 'sports'"),
        ('[database]\nurl = "nosuchdb://x"\n', ["build"], 1, "database URL cannot be used (nosuchdb)"),
    ],
)
def test_mistakes_get_one_clear_line(tmp_path: Path, config: str, args: list[str], code: int, expected: str) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(config)
    exit_code, output = invoke("--config", str(path), *args)
    assert exit_code == code, output
    assert expected in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["send"], "nothing to send: no issue has been built yet"),
        (["build"], "no new articles between"),
        (["draft", "build"], "no new articles between"),
    ],
)
def test_nothing_to_do_is_not_an_error(tmp_path: Path, args: list[str], reason: str) -> None:
    """An unattended run that finds nothing new exits 0 and says so, without `error:`;
    with --json it reports `"status": "nothing-to-do"`."""
    path = tmp_path / "newsletter.toml"
    path.write_text("")
    code, output = invoke("--config", str(path), *args)
    assert code == 0, output
    assert output.startswith("Nothing to do: ") and reason in output and "error" not in output
    code, output = invoke("--config", str(path), *args, "--json")
    assert code == 0 and json.loads(output) == {"status": "nothing-to-do", "reason": ANY} and reason in output


def test_bracketed_text_in_an_error_is_printed_as_is(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text('delivery = "outbox"\n')
    code, output = invoke("--config", str(path), "build", env={"NEWSLETTER_DELIVERY__TRANSPORT": "outbox"})
    assert code == 2 and "delivery: expected a table [delivery]" in output


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site]\ntimezone = 'Nowhere/Land'\n")
    done = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(bad), "build"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "site.timezone" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_counts_take_the_right_plural() -> None:
    from newsletter.text import counted

    assert [counted(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert counted(1, "batch", "batches") == "1 batch" and counted(1200, "batch", "batches") == "1,200 batches"
