"""The first run as a newcomer meets it: `newsletter demo` ends with an issue sent and the
next one's draft waiting, and every command it suggests works when pasted as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from tests.helpers import free_port, outbox_messages, wait_for_http

runner = CliRunner()
ENV = {"COLUMNS": "80", "NEWSLETTER_CONFIG": ""}
HINT = re.compile(r"(newsletter --config \S+ [^()\n]*?)\s*(?:\(|$)", re.M)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_demo_leaves_a_sent_issue_and_a_draft_and_its_hints_work_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run("demo", "--subscribers", "30")
    assert code == 0, output
    assert len(outbox_messages(tmp_path / "newsletter-demo" / "outbox")) == 30
    hints = [line.strip() for line in HINT.findall(output)]
    # Printed whole at 80 columns: no command is broken over two lines.
    assert len(hints) == 6, output
    servers = [h for h in hints if h.endswith((" preview", " serve"))]
    assert len(servers) == 2
    code, issues_out = run(*shlex.split(hints[-1])[1:])
    assert code == 0 and re.search(r"\b(\d{4}-w\d\d)\s+│ sent\b", issues_out), issues_out
    assert re.search(r"\b\d{4}-w\d\d(-\d)?\s+│ draft\b", issues_out), issues_out
    for hint in hints:
        if hint in servers:
            continue
        code, shown = run(*shlex.split(hint)[1:])
        assert code == 0, f"{hint}\n{shown}"
        if hint.endswith("draft show"):
            # The draft holds the articles published after the sent issue's window.
            assert "Adaptive trial designs are cutting oncology" in shown and "(draft)" in shown
    assert "<html" in (tmp_path / "preview.html").read_text()[:500].lower()

    # The two servers, started as printed; only their ports are moved (by the
    # environment) so that the test does not depend on 8000 and 8100 being free.
    for hint in servers:
        port = free_port()
        env = {**os.environ, "NEWSLETTER_CONFIG": "", "NEWSLETTER_WEB__PORT": str(port), "NEWSLETTER_PREVIEW__PORT": str(port)}
        log = tmp_path / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", *shlex.split(hint)], stdout=sink, stderr=subprocess.STDOUT, env=env)
            try:
                page = wait_for_http(f"http://127.0.0.1:{port}/", process, log)
                assert page.status_code == 200, page.text
                if hint.endswith("preview"):
                    assert "Adaptive trial designs are cutting oncology" in page.text
                else:
                    # The landing page shows the sent issue, and links to it.
                    assert "The latest issue" in page.text and re.search(r'href="/archive/\d{4}-w\d\d"', page.text)
            finally:
                process.terminate()
                process.wait(timeout=10)

    # Run it again: nothing is sent twice, and the draft is kept.
    code, again = run("demo", "--subscribers", "30")
    assert code == 0, again
    assert "recipients sent now" in again and len(outbox_messages(tmp_path / "newsletter-demo" / "outbox")) == 30
    assert "Next issue's draft (4 articles)" in again


LONG = "very.long.address.of.a.reader@pharma-industry-example.com"
DATE_TIME = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b")


def test_listings_read_whole_at_80_columns(tmp_path: Path) -> None:
    """Each listing at COLUMNS=80: no value cut with an ellipsis, no table line wider
    than the terminal, every address and date whole; --wide shows what was left out."""
    config = str(tmp_path / "d" / "newsletter.toml")
    assert run("demo", "--folder", str(tmp_path / "d"), "--subscribers", "30")[0] == 0
    assert run("--config", config, "subscribers", "add", LONG, "--name", "Someone With A Rather Long Name")[0] == 0
    code, listed = run("--config", config, "issues", "--json")
    sent = next(i["slug"] for i in json.loads(listed) if i["status"] == "sent")
    listings: dict[tuple[str, ...], Callable[[str], None]] = {
        # An address too long for its column is wrapped (folded over lines), never cut.
        ("subscribers", "list", "--limit", "100"): lambda out: (
            _assert(len(re.findall(r"\breader000\d\d@example\.com\b", out)) == 30), _assert(LONG in first_column(out))),
        ("subscribers", "show", LONG): lambda out: _assert(LONG in out and "Consent history" in out),
        ("subscribers", "count"): lambda out: _assert(re.search(r"active\s+│\s+31 │", out) is not None),
        ("issues",): lambda out: _assert(len(DATE_TIME.findall(out)) == 5 and sent in out),
        ("sources",): lambda out: _assert(len(DATE_TIME.findall(out)) == 2),
        ("sources", "--categories"): lambda out: _assert("Drug Development" in out and "Clinical Trials" in out),
        ("ingest",): lambda out: _assert(re.search(r"fetched\s+│\s+38 │", out) is not None),
        ("stats",): lambda out: _assert(re.search(r"│ all\s+│\s+30 │", out) is not None and "--wide shows them" in out),
        ("send", "--status", sent): lambda out: _assert(re.search(r"accepted\s+│\s+\d+ │\s+30 │", out) is not None),
        ("draft", "show"): lambda out: _assert(re.search(r"│\s+1 │ Drug Development\s+│ Adaptive trial designs", out) is not None),
        ("schedule", "--list"): lambda out: _assert(len(re.findall(r"\b\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+", out)) >= 9),
    }
    for args, check in listings.items():
        code, out = run("--config", config, *args)
        assert code == 0, (args, out)
        assert "…" not in out, (args, out)
        table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
        assert table_lines and max(len(line) for line in table_lines) <= 80, (args, out)
        try:
            check(out)
        except AssertionError:
            raise AssertionError(f"{args}:\n{out}") from None
    # --wide: every column, the source's location among them.
    code, wide = run("--config", config, "sources", "--wide")
    assert code == 0 and "sample-feed.xml" in wide and "location" in wide
    code, wide = run("--config", config, "stats", "--wide")
    assert code == 0 and "opens (soft)" in wide and "unique clicks" in wide


def first_column(out: str) -> str:
    """The text of a table's first column, its lines joined."""
    return "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))


def _assert(condition: bool) -> None:
    assert condition
