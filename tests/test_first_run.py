"""The first run as a newcomer meets it: `newsletter demo` ends with an issue sent and the
next one's draft waiting, and every command it suggests works when pasted as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
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
