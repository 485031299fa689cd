"""Sources as a user configures and watches them: `[[wordpress]]` and `[[folders]]` in
newsletter.toml with errors naming the key, `newsletter ingest` reporting every source, and
`newsletter sources` listing last fetch, status and article counts (table and JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from tests.conftest import NOW, write_config
from tests.helpers import Item, rss
from tests.servers import LocalServer, Route
from tests.newsletter.sources.test_folder import BAD, GOOD, write
from tests.wordpress_site import WordPressSite, post, three_pages

runner = CliRunner()


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(config), *args], env={"COLUMNS": "250", "NEWSLETTER_CONFIG": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"wordpress": [{"name": "Site", "url": "https://x.example.com", "per_page": 50}]},
         "wordpress.0.per_page: unknown key"),
        ({"wordpress": [{"url": "https://x.example.com"}]}, "wordpress.0.name: missing: this key is required"),
        ({"wordpress": [{"name": "Site", "url": "x.example.com"}]},
         "wordpress.0.url: expected the site's http:// or https:// base URL"),
        ({"wordpress": [{"name": "Site", "url": "https://x.example.com", "first_days": 0}]}, "wordpress.0.first_days"),
        ({"folders": [{"name": "Editors"}]}, "folders.0.path: missing: this key is required"),
        ({"folders": [{"name": "Editors", "folder": "items"}]}, "folders.0.folder: unknown key"),
        ({"feeds": [{"name": "Trade", "url": "https://x.example.com/feed/"}],
          "wordpress": [{"name": "Trade", "url": "https://x.example.com"}]},
         "wordpress.0.name: 'Trade' is already the name of feeds.0.name; source names must differ"),
        ({"ingest": {"retries": -1}}, "ingest.retries"),
    ],
)
def test_source_settings_are_checked_and_named(tmp_path: Path, tables: dict[str, Any], expected: str) -> None:
    path = write_config(tmp_path / "newsletter.toml", tables)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)


def test_sources_read_well_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        '[[feeds]]\nname = "Trade feed"\nurl = "https://news.example.com/feed/"\n\n'
        '[[wordpress]]\nname = "Trade site"\nurl = "https://news.example.com/"\n\n'
        '[[folders]]\nname = "Editors"\npath = "items"\n',
        encoding="utf-8",
    )
    settings = load_settings(path, environ={})
    assert settings.wordpress[0].url == "https://news.example.com"
    assert (settings.wordpress[0].first_days, settings.wordpress[0].overlap_hours) == (30, 24.0)
    assert settings.path(settings.folders[0].path) == tmp_path / "items"


def test_ingest_and_sources_commands_report_every_source(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, tmp_path: Path
) -> None:
    WordPressSite(server, three_pages())
    server.routes["/feed/"] = Route(body=rss([Item("From the feed", f"{server.url}/f1/", NOW, ["Insights"], guid="f1")]),
                                    headers={"content-type": "application/rss+xml"})
    write(tmp_path / "items", {**GOOD, **BAD})
    settings = make_settings(
        feeds=[{"name": "Trade feed", "url": f"{server.url}/feed/"}],
        wordpress=[{"name": "Trade site", "url": server.url}, {"name": "No API", "url": f"{server.url}/blog"}],
        folders=[{"name": "Editors", "path": "items"}],
        ingest={"retry_backoff": 0},
    )
    config = tmp_path / "newsletter.toml"

    code, output = invoke(config, "sources")
    assert code == 0, output
    assert "never" in output and "Trade site" in output and str(tmp_path / "items") in output

    code, output = invoke(config, "ingest")
    # A failed source makes the run fail; the others are stored all the same.
    assert code == 1, output
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 5}
    assert "fetched" in rows["Trade site"] and "wordpress" in rows["Trade site"]
    assert "failed" in rows["No API"] and f"no WordPress REST API at {server.url}/blog/wp-json/" in output
    # Brackets in messages are shown as they are, not taken for markup.
    assert "site's RSS feed with [[feeds]]" in output
    assert "folder" in rows["Editors"]
    # Every bad file is named with its line, under the table.
    assert "Editors: typo.md, line 4: unknown key 'tilte'" in output
    assert "Editors: unclosed.md, line 3: the front matter is not closed" in output
    assert "Traceback" not in output

    code, output = invoke(config, "sources", "--json")
    assert code == 0, output
    listed = {s["name"]: s for s in json.loads(output)}
    assert list(listed) == ["Trade feed", "Trade site", "No API", "Editors"]
    assert {k: listed["Trade site"][k] for k in ("kind", "location", "status", "articles")} == {
        "kind": "wordpress", "location": server.url, "status": "fetched", "articles": 4,
    }
    assert (listed["Trade feed"]["status"], listed["Trade feed"]["articles"]) == ("fetched", 1)
    assert (listed["No API"]["status"], listed["No API"]["articles"]) == ("failed", 0)
    assert listed["No API"]["error"].startswith("no WordPress REST API")
    assert (listed["Editors"]["kind"], listed["Editors"]["status"], listed["Editors"]["articles"]) == ("folder", "fetched", 4)
    assert listed["Trade site"]["last_fetched_at"] is not None and listed["Trade site"]["newest"] is not None

    code, output = invoke(config, "sources")
    assert code == 0
    table = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 5}
    assert "failed" in table["No API"] and "no WordPress REST API" in table["No API"]
    assert "4" in table["Editors"].split("│")[6]


def test_ingest_with_only_other_sources_needs_no_feeds(
    engine: Engine, make_settings: Callable[..., Settings], server: LocalServer, tmp_path: Path
) -> None:
    WordPressSite(server, [[post(1, "Only from the API")]])
    make_settings(wordpress=[{"name": "Trade site", "url": server.url}])
    code, output = invoke(tmp_path / "newsletter.toml", "ingest", "--json")
    assert code == 0, output
    [report] = json.loads(output)
    assert (report["name"], report["kind"], report["status"], report["new"]) == ("Trade site", "wordpress", "fetched", 1)


def test_without_any_source_ingest_says_what_to_add(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n')
    code, output = invoke(path, "ingest")
    assert code == 2
    assert "no feeds configured, nor any other source: add a feeds (name, url), wordpress (name, url) or folders" in output
    code, output = invoke(path, "sources", "--json")
    assert (code, json.loads(output)) == (0, [])
