"""The digest checked by tools nobody here wrote: Debian's SpamAssassin scores three demo
messages and a confirmation email (no points from rules the sender controls), and doiuse-email (caniemail data)
finds no error type in the issue that a minimal MJML email does not have for Gmail,
Apple Mail, Outlook and Yahoo. `.ci/run` installs both; without them these tests skip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.config import Settings
from tests.helpers import outbox_messages, parts

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is tests/newsletter/…)
NODE_MODULES = ROOT / "node_modules"

#: Rules that describe the way a message travelled (no Received headers: it was read from
#: a file) or what only the sending service adds (DKIM), not what the sender wrote.
PATH_RULES = {"NO_RECEIVED", "NO_RELAYS", "DKIM_SIGNED", "DKIM_VALID", "DKIM_VALID_AU", "DKIM_VALID_EF",
              "SPF_HELO_NONE", "SPF_NONE", "RCVD_IN_DNSWL_NONE", "MISSING_MID"}
_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.MULTILINE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo (`newsletter demo`): sample articles and subscribers, an issue sent to the outbox."""
    folder = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "newsletter", "demo", "--folder", str(folder), "--subscribers", "40", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def three_segments(folder: Path) -> list[Path]:
    """Three .eml files of the demo's outbox, each of another segment (another choice of sections)."""
    chosen: dict[str, Path] = {}
    for path in sorted((folder / "outbox").rglob("*.eml")):
        # A batch holds the recipients of one segment.
        chosen.setdefault(path.parent.name, path)
    picked = list(chosen.values())[:3]
    assert len(picked) == 3
    return picked


needs_spamassassin = pytest.mark.skipif(shutil.which("spamassassin") is None,
                                        reason="Debian's spamassassin is not installed (.ci/run installs it)")


def assert_no_sender_points(path: Path, prefs: Path) -> None:
    """SpamAssassin's report on one message: no points from a rule the sender controls."""
    done = subprocess.run(["spamassassin", "-t", "-L", "-p", str(prefs)], input=path.read_bytes(), capture_output=True, timeout=120)
    report = done.stdout.decode("utf-8", "replace")
    assert "Content analysis details" in report, done.stderr
    fired = {name: float(points) for points, name in _RULE.findall(report[report.index("Content analysis details"):])}
    ours = {name: points for name, points in fired.items() if name not in PATH_RULES}
    assert sum(p for p in ours.values() if p > 0) <= 0.0, f"{path.name}: rules that fired: {fired}"
    assert "HTML_FONT_LOW_CONTRAST" not in fired and "HTML_IMAGE_ONLY" not in " ".join(fired)


@needs_spamassassin
def test_spamassassin_gives_the_demo_messages_no_points_the_sender_controls(demo: Path, tmp_path: Path) -> None:
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")
    for path in three_segments(demo):
        assert_no_sender_points(path, prefs)


@needs_spamassassin
def test_spamassassin_gives_the_confirmation_email_no_points_either(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    import subscribers as people
    from newsletter.web.mail import ConfirmationMailer

    settings = make_settings()
    mail = people.ConfirmationMail(people.MailKind.CONFIRM, 7, "ann@example.com", "Ann", "tok-123", ("events",))
    ConfirmationMailer(settings).send([mail])
    (path,) = sorted(settings.outbox_dir.rglob("*.eml"))
    _, html = parts(outbox_messages(path.parent)[0])
    assert "One click and you are subscribed." in html and "#ffffff" not in html.split("One click")[0][-300:]
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")
    assert_no_sender_points(path, prefs)


DOIUSE = """
const {doIUseEmail} = require('doiuse-email');
const fs = require('fs');
const clients = ['gmail.*', 'apple-mail.*', 'outlook.*', 'yahoo.*'];
const out = {};
for (const file of process.argv.slice(2)) {
  const result = doIUseEmail(fs.readFileSync(file, 'utf8'), {emailClients: clients});
  out[file] = result.errors || [];
}
console.log(JSON.stringify(out));
"""

MINIMAL = """
const mjml = require('mjml');
process.stdout.write(mjml('<mjml><mj-head><mj-title>Hello</mj-title><mj-preview>The week in brief</mj-preview></mj-head>'
  + '<mj-body><mj-section><mj-column><mj-text>Hello</mj-text>'
  + '<mj-image src="https://img.example.com/a.png" alt="A" /></mj-column></mj-section></mj-body></mjml>').html);
"""


def error_types(errors: list[str]) -> set[str]:
    """What an error is about, without the client list and counts that vary with the email."""
    return {re.sub(r"\s*\(.*$|^`[^`]*` is not supported by ", "", e.split(" is not supported by")[0]).strip() for e in errors}


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_MODULES / "doiuse-email").is_dir() or not (NODE_MODULES / "mjml").is_dir(),
                    reason="node and npm's doiuse-email and mjml are not installed (.ci/run installs them)")
def test_doiuse_email_finds_nothing_a_minimal_mjml_email_does_not_have(demo: Path, tmp_path: Path) -> None:
    minimal = tmp_path / "minimal.html"
    built = subprocess.run(["node", "-e", MINIMAL], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    minimal.write_text(built.stdout)
    issue = tmp_path / "issue.html"
    _, html = parts(outbox_messages(three_segments(demo)[0].parent)[0])
    issue.write_text(html)
    script = tmp_path / "doiuse.js"
    script.write_text(DOIUSE)
    done = subprocess.run(["node", str(script), str(issue), str(minimal)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found[str(minimal)], "the minimal email draws MJML's own boilerplate errors"
    extra = error_types(found[str(issue)]) - error_types(found[str(minimal)])
    assert not extra, "\n".join(e for e in found[str(issue)] if any(x in e for x in extra))
