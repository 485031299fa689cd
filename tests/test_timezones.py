"""A reader's time zone, everywhere it comes in: the preference page, the JSON subscribe
body, the CSV import, `subscribers add`; and where it goes out: the listing, `show`, the
export. An unknown zone is refused in each, naming the field, line or option."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

import subscribers as people
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.demo import demo_subscribers
from tests.conftest import NOW
from tests.test_web import ALLOWED_ORIGIN, Site, link_token, make_site, page_text, site  # noqa: F401

runner = CliRunner()
SECTIONS = {"news": "News", "events": "Events"}


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(settings.base_dir / "newsletter.toml"), "subscribers", *args],
                           env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_preference_page_offers_every_iana_zone_and_keeps_the_choice(site: Site) -> None:
    token = site.confirmed("ann@example.com")
    page = site.client.get(f"/preferences/{token}")
    options = re.findall(r"<option( selected)?>([^<]+)</option>", page.text.split('id="timezone"')[1].split("</select>")[0])
    assert len(options) == len(people.timezone_names()) > 300
    # No zone chosen yet: the site's is selected.
    assert [name for selected, name in options if selected] == ["Europe/London"]
    assert '<label for="timezone">Your time zone</label>' in page.text and "<script" not in page.text

    answer = site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "timezone",
                                                             "timezone": "Asia/Seoul"})
    assert answer.status_code == 303
    assert site.subscriber("ann@example.com").timezone == "Asia/Seoul"
    shown = site.client.get(answer.headers["location"])
    assert "Your time zone is saved." in shown.text and "<option selected>Asia/Seoul</option>" in shown.text
    # Not a matter of consent: the consent log holds only the request and the confirmation.
    assert len(site.consents("ann@example.com")) == 2


def test_an_unknown_zone_on_the_form_shows_the_page_again_saying_why(site: Site) -> None:
    token = site.confirmed("ann@example.com")
    answer = site.client.post(f"/preferences/{token}", data={"csrf": site.csrf(token), "action": "timezone",
                                                             "timezone": "Mars/Olympus_Mons"})
    assert answer.status_code == 400
    text = html.unescape(page_text(answer.text))
    assert "Your time zone was not saved: 'Mars/Olympus_Mons' is not a known time zone" in text
    assert "Your Pharma Weekly preferences" in text and 'role="alert"' in answer.text
    assert site.subscriber("ann@example.com").timezone is None


def test_the_json_body_carries_the_zone_and_an_unknown_one_is_a_400_naming_the_field(site: Site) -> None:
    headers = {"Origin": ALLOWED_ORIGIN, "Accept": "application/json"}
    answer = site.client.post("/subscribe", json={"email": "bo@example.com", "timezone": "america/new_york"},
                              headers=headers)
    assert answer.status_code == 202
    assert site.subscriber("bo@example.com").timezone == "America/New_York"

    bad = site.client.post("/subscribe", json={"email": "cy@example.com", "timezone": "Europe/Atlantis"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"].startswith('"timezone": \'Europe/Atlantis\' is not a known time zone')
    wrong_type = site.client.post("/subscribe", json={"email": "cy@example.com", "timezone": 5}, headers=headers)
    assert wrong_type.status_code == 400 and '"timezone" must be a string' in wrong_type.json()["error"]
    with site.engine.connect() as conn:
        assert [s.email for s in people.list_subscribers(conn)] == ["bo@example.com"]


def test_the_csv_import_reads_a_timezone_column_and_rejects_an_unknown_zone_by_line(engine: Engine) -> None:
    text = ("email,timezone\n"
            "ann@example.com,Europe/Zurich\n"
            "bo@example.com,\n"
            "cy@example.com,Moon/Tranquility\n"
            "dee@example.com, asia/seoul \n")
    with engine.begin() as conn:
        people.upsert_subscribers(conn, [people.NewSubscriber("bo@example.com", ("news",), timezone="Asia/Seoul")],
                                  now=NOW)
        report = people.import_csv(conn, io.StringIO(text), columns=people.ColumnMap(), known_sections=SECTIONS,
                                   default_sections=tuple(SECTIONS), now=NOW)
    assert (report.created, report.updated) == (2, 1)
    assert report.rejected == [(4, "timezone: 'Moon/Tranquility' is not a known time zone; use an IANA name "
                                   "such as Europe/London or America/New_York")]
    with engine.connect() as conn:
        zones = {s.email: s.timezone for s in people.list_subscribers(conn)}
    # An empty cell keeps what the subscriber had.
    assert zones == {"ann@example.com": "Europe/Zurich", "bo@example.com": "Asia/Seoul",
                     "dee@example.com": "Asia/Seoul"}


def test_a_named_timezone_column_must_exist(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(people.ImportFileError, match="no column 'zone' for timezone"):
        people.import_csv(conn, io.StringIO("email\nann@example.com\n"), columns=people.ColumnMap(timezone="zone"),
                          known_sections=SECTIONS, default_sections=tuple(SECTIONS), now=NOW)


def test_the_cli_takes_a_zone_refuses_an_unknown_one_and_shows_it_in_list_show_and_export(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    code, output = cli(settings, "add", "ann@example.com", "--timezone", "Europe/Zurich")
    assert code == 0 and "Added." in output
    code, output = cli(settings, "add", "bo@example.com")
    assert code == 0
    code, output = cli(settings, "add", "cy@example.com", "--timezone", "Atlantis/Capital")
    assert code == 2 and "--timezone: 'Atlantis/Capital' is not a known time zone" in output
    assert "Traceback" not in output

    code, output = cli(settings, "list")
    assert "Europe/Zurich" in output and "Europe/London (site)" in output and "cy@example.com" not in output
    code, output = cli(settings, "list", "--json")
    assert {r["email"]: r["timezone"] for r in json.loads(output)} == {
        "ann@example.com": "Europe/Zurich", "bo@example.com": "Europe/London"}
    code, output = cli(settings, "show", "ann@example.com")
    assert "time zone: Europe/Zurich" in output

    out = tmp_path / "export.csv"
    code, output = cli(settings, "export", "--out", str(out))
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["email"]: r["timezone"] for r in rows} == {"ann@example.com": "Europe/Zurich", "bo@example.com": ""}

    # What the export wrote imports again with the same zones.
    code, output = cli(settings, "import", str(out))
    assert code == 0 and "0 new, 2 updated" in output


def test_the_demo_readers_are_spread_over_four_zones() -> None:
    zones = [s.timezone for s in demo_subscribers(["news", "events"], 1000)]
    counts = {zone: zones.count(zone) for zone in set(zones)}
    assert set(counts) == {"Europe/London", "America/New_York", "Europe/Zurich", "Asia/Seoul"}
    assert min(counts.values()) >= 100
