"""Editors' drafts through the command line, as an editor types them: build, change,
refresh (keeping the changes), approve and reopen, send a test, take screenshots, and one
clear line with exit status 2 for every wrong value."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from newsletter import drafts, issues, store
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.models import FeedItem
from newsletter.screenshots import DEFAULT_CHROMIUM, find_chromium
from newsletter.tables import batches, deliveries
from newsletter.selection import issue_slug
from tests.helpers import outbox_messages, parts

runner = CliRunner()
DAY = timedelta(days=1)
# The command line uses the real clock, so the articles are dated from it.
NOW = datetime.now(UTC) - timedelta(hours=2)
SLUG = issue_slug(datetime.now(UTC), ZoneInfo("Europe/London"))
CHROMIUM = Path("/usr/bin/chromium")


def add(engine: Engine, tag: str, category: str, *, when: object = None, title: str = "") -> None:
    published = when or NOW - DAY
    item = FeedItem(tag, f"https://pharma.example.com/{tag}", title or f"Story {tag}", "", published,  # type: ignore[arg-type]
                    (category,), f"Summary of {tag}.", "")
    with engine.begin() as conn:
        store.upsert_articles(conn, [item], source="test", now=NOW - DAY)


class Editor:
    """Runs `newsletter --config <file> ...` as an editor would."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--config", str(self.config), *args], env={"COLUMNS": "200", "NEWSLETTER_CONFIG": ""})
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.output

    def show(self) -> dict[str, object]:
        code, output = self("draft", "show", "--json")
        assert code == 0, output
        shown: dict[str, object] = json.loads(output)
        return shown


@pytest.fixture
def editor(engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path) -> Editor:
    for n in range(3):
        add(engine, f"dd{n}", "Clinical Trials", when=NOW - (n + 1) * DAY)
    add(engine, "mf0", "Manufacturing")
    make_settings(selection={"per_section_limit": 2}, preview={"test_recipients": ["ed@example.com", "chief@example.com"]})
    return Editor(tmp_path / "newsletter.toml")


def titles(shown: dict[str, object], section: str | None = None) -> list[str]:
    return [a["title"] for a in shown["articles"] if section in (None, a["section"])]  # type: ignore[attr-defined,index]


def test_editors_changes_survive_a_refresh(editor: Editor, engine: Engine, make_settings: Callable[..., Settings]) -> None:
    code, output = editor("draft", "build")
    assert code == 0 and f"Built draft {SLUG}: 3 articles added, 0 removed." in output
    shown = editor.show()
    assert titles(shown, "drug-development") == ["Story dd0", "Story dd1"]
    ids = {a["title"]: a["id"] for a in shown["articles"]}  # type: ignore[attr-defined]
    with engine.connect() as conn:
        dd2 = next(a.id for a in store.articles_between(conn, NOW - 7 * DAY, NOW) if a.title == "Story dd2")

    assert editor("draft", "pin", str(dd2)) == (0, f"Article {dd2} pinned.\n")
    assert editor("draft", "exclude", str(ids["Story dd0"]))[0] == 0
    assert editor("draft", "move", str(ids["Story mf0"]), "--section", "events")[0] == 0
    assert editor("draft", "set-subject", "This week: the trials")[0] == 0
    assert editor("draft", "set-preheader", "Three trials and a plant")[0] == 0
    assert editor("draft", "intro", "Welcome to **this** week's issue")[0] == 0

    # New articles arrive; the refresh takes them and keeps every change.
    add(engine, "dd3", "Clinical Trials", when=NOW + timedelta(hours=1))
    code, output = editor("draft", "build")
    assert code == 0 and f"Refreshed draft {SLUG}: 1 article added, 1 removed." in output
    shown = editor.show()
    assert titles(shown, "drug-development") == ["Story dd2", "Story dd3"]
    assert titles(shown, "events") == ["Story mf0"]
    assert shown["excluded"] == [{"id": ids["Story dd0"], "title": "Story dd0"}]
    assert (shown["subject"], shown["preheader"]) == ("This week: the trials", "Three trials and a plant")
    code, output = editor("draft", "show")
    assert "pinned" in output and "excluded" in output and "Subject: This week: the trials" in output

    # Ranks: dd3 first in its section, then back in with dd0.
    assert editor("draft", "move", str(ids["Story dd1"]), "--position", "1")[0] == 0
    assert editor("draft", "exclude", str(ids["Story dd0"]), "--undo")[0] == 0
    assert titles(editor.show(), "drug-development") == ["Story dd1", "Story dd2", "Story dd0"]


def test_the_email_shows_the_intro_sanitized_and_the_editors_item(editor: Editor, engine: Engine, tmp_path: Path) -> None:
    assert editor("draft", "build")[0] == 0
    intro = tmp_path / "intro.md"
    intro.write_text("Hello **readers**, see [our site](https://pharma.example.com).\n\n<script>alert(1)</script>"
                     " [bad](javascript:alert(1))", encoding="utf-8")
    assert editor("draft", "intro", "--file", str(intro))[0] == 0
    code, output = editor("draft", "add-item", "--title", "Join our <b>webinar</b>", "--link", "https://events.example.com/w",
                          "--section", "events", "--summary", "On <i>Annex 1</i>, Tuesday.", "--image",
                          "https://img.example.com/w.png")
    assert code == 0 and "to events." in output
    settings = drafts.current_draft(engine, _settings(editor))
    message = issues.render_issue(engine, _settings(editor), settings.issue)
    # The theme's CSS is in style attributes: read the markup without them.
    html = re.sub(r' style="[^"]*"', "", message.html)
    assert '<p>Hello <strong>readers</strong>, see <a href="https://pharma.example.com" rel="noopener">our site</a>.</p>' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html.replace("[bad](javascript:alert(1))", "")
    assert 'href="https://events.example.com/w">Join our webinar</a>' in html
    # The editor's item is pinned, so it leads: its image sits beside its headline (alt="").
    assert "On Annex 1, Tuesday." in html and 'src="https://img.example.com/w.png" alt=""' in html
    assert "Hello **readers**" in message.text and "- Events (" in message.text


def _settings(editor: Editor) -> Settings:
    from newsletter.config import load_settings

    return load_settings(editor.config, environ={})


def test_approve_freezes_the_draft_and_reopen_unfreezes_it(editor: Editor) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "approve", "--no-links")
    assert code == 0 and f"Issue {SLUG} approved." in output and "all sections:" in output
    article = editor.show()["articles"][0]["id"]  # type: ignore[index]
    code, output = editor("draft", "pin", str(article))
    assert code == 1 and f"error: issue {SLUG} is approved and frozen: `newsletter draft reopen` to change it" in output
    assert editor("draft", "build")[0] == 1
    assert editor("draft", "reopen") == (0, f"Issue {SLUG} reopened as a draft.\n")
    assert editor("draft", "pin", str(article))[0] == 0
    code, output = editor("draft", "reopen")
    assert code == 1 and "is draft, not approved: nothing to reopen" in output


def test_approval_is_refused_while_the_preflight_finds_an_error(editor: Editor) -> None:
    assert editor("draft", "build")[0] == 0
    assert editor("draft", "set-subject", "x" * 151)[0] == 0
    code, output = editor("draft", "check", "--no-links")
    assert code == 1 and "error: [subject] the subject has 151 characters, over 150" in output
    code, output = editor("draft", "approve", "--no-links")
    assert code == 1 and "fails its preflight (1 error): the subject has 151 characters" in output
    assert editor.show()["status"] == "draft"


def test_a_test_send_goes_to_the_editors_and_never_counts_as_delivery(editor: Editor, engine: Engine) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "test")
    assert code == 0 and "Test sent to ed@example.com, chief@example.com." in output
    code, output = editor("draft", "test", "--to", "other@example.com", "--sections", "manufacturing")
    assert code == 0
    sent = outbox_messages(_settings(editor).outbox_dir)
    assert sorted(m["To"] for m in sent) == ["chief@example.com", "ed@example.com", "other@example.com"]
    subjects = {m["To"]: str(m["Subject"]) for m in sent}
    assert subjects["ed@example.com"] == "[TEST] Pharma Weekly: Story dd0"
    assert subjects["other@example.com"] == "[TEST] Pharma Weekly: Story mf0"
    assert {m["List-Id"] for m in sent} == {"Pharma Weekly <pharma-weekly.example.com>"}
    _, html = parts(next(m for m in sent if m["To"] == "other@example.com"))
    assert "Story mf0" in html and "Story dd0" not in html and "Hello Editor," in html
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(batches)).scalar_one() == 0
    assert editor.show()["status"] == "draft"


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("draft", "pin", "999"), "error: article 999: no such article (see `newsletter draft show`)"),
        (("draft", "move", "1", "--section", "sport"), "error: section 'sport': no such section (known: drug-development"),
        (("draft", "move", "1", "--position", "0"), "error: position 0: expected a rank from 1 (first) to 1000"),
        (("draft", "move", "1"), "error: move: give --section, --position or both"),
        (("draft", "add-item", "--title", "T", "--link", "ftp://x", "--section", "news"),
         "error: link 'ftp://x': expected an http:// or https:// URL"),
        (("draft", "add-item", "--title", "T", "--link", "https://pharma.example.com/dd0", "--section", "news"),
         "already the link of article"),
        (("draft", "intro"), "error: intro: give the text or --file, one of them"),
        (("draft", "intro", "--file", "/nonexistent/intro.md"), "error: --file /nonexistent/intro.md: cannot be read"),
        (("draft", "set-subject", "s" * 301), "error: subject: 301 characters, at most 300 are allowed"),
        (("draft", "test", "--sections", "sport"), "error: --sections: unknown section 'sport'"),
    ],
)
def test_wrong_values_get_one_clear_line_and_exit_status_2(editor: Editor, args: tuple[str, ...], message: str) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor(*args)
    assert code == 2 and message in output and "Traceback" not in output, output


def test_no_draft_is_one_clear_line(editor: Editor) -> None:
    code, output = editor("draft", "show")
    assert code == 1 and "error: there is no draft: run `newsletter draft build` to build the coming issue" in output


@SQLITE_ONLY
def test_without_chromium_the_screenshot_says_which_command_installs_it(
    editor: Editor, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    missing = tmp_path / "bin" / "chromium"
    make_settings(preview={"chromium": str(missing)})
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "screenshot", "--out", str(tmp_path / "shots"))
    assert code == 2, output
    assert output.strip() == (
        f"error: preview.chromium: no Chromium at {missing}; install it with `sudo apt-get install chromium` "
        "(Debian, Ubuntu), or set preview.chromium to the browser's path"
    )
    assert not (tmp_path / "shots").exists()
    # The default path, absent, is looked for on PATH too; a PATH without one gives the same line.
    (tmp_path / "bin").mkdir()
    with pytest.raises(ConfigError, match="install it with `sudo apt-get install chromium`"):
        find_chromium(Path("/nonexistent/chromium"), path=str(tmp_path / "bin"))
    if not DEFAULT_CHROMIUM.is_file():
        with pytest.raises(ConfigError, match="install it with `sudo apt-get install chromium`"):
            find_chromium(DEFAULT_CHROMIUM, path=str(tmp_path / "bin"))
    fake = tmp_path / "bin" / "chromium-browser"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium(DEFAULT_CHROMIUM, path=str(tmp_path / "bin")) in (DEFAULT_CHROMIUM, fake)


@SQLITE_ONLY
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_screenshots_are_pngs_of_desktop_and_mobile_width(editor: Editor, tmp_path: Path) -> None:
    assert editor("draft", "build")[0] == 0
    code, output = editor("draft", "screenshot", "--out", str(tmp_path / "shots"))
    assert code == 0, output
    widths = {}
    for name in ("desktop", "mobile"):
        png = (tmp_path / "shots" / f"{SLUG}-{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and f"Wrote {tmp_path / 'shots'}" in output.replace("\n", "")
        widths[name], height = struct.unpack(">II", png[16:24])
        assert height > 600
    assert widths == {"desktop": 600, "mobile": 375}
