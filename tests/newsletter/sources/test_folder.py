"""Editors' own items: a real folder of Markdown files with YAML front matter, good and bad.
Bad files are reported by name and line and skipped; the rest are stored, and an item's
explicit section is where it lands in a built issue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter import issues, store
from newsletter.config import Settings
from newsletter.ingest import SourceReport, ingest_sources
from newsletter.models import Article
from tests.conftest import NOW

DAY = timedelta(days=1)

GOOD = {
    "cphi.md": """---
title: CPHI Milan &amp; the &quot;bioprocessing&quot; zone
url: https://www.cphi.com/europe/?utm_source=newsletter
section: events
date: 2026-11-20 09:30
image: https://img.example.com/cphi.jpg
summary: Three days, 2,500 exhibitors.
---
Body text that is not the summary.
""",
    "partners/webinar.md": """---
title: "Partner webinar: sterile filling"
url: https://partner.example.com/webinar
section: Drug Development
date: 2026-11-21
---
# Join us

Learn **how** sterile filling works, with [our experts](https://partner.example.com/experts).

A second paragraph.
""",
    "note.md": """---
title: An announcement with no section or date
url: https://pharma.example.com/announcement
---
""",
    "company.md": """---
title: Company news, filed under the fallback section
url: https://pharma.example.com/company
section: news
date: 2026-11-22T08:00:00+00:00
---
""",
}

BAD = {
    "broken-yaml.md": "---\ntitle: Fine\nurl: https://x.example.com/1\nsummary: a: b: c\n---\n",
    "typo.md": "---\ntitle: Fine\nurl: https://x.example.com/2\ntilte: Oops\n---\n",
    "no-title.md": "---\nurl: https://x.example.com/3\nsection: events\n---\n",
    "bad-url.md": "---\ntitle: Fine\n\nurl: javascript:alert(1)\n---\n",
    "no-front-matter.md": "# Just Markdown\n\nNo front matter here.\n",
    "unclosed.md": "---\ntitle: Fine\nurl: https://x.example.com/4\n",
    "sports.md": "---\ntitle: Fine\nurl: https://x.example.com/5\nsection: sports\n---\n",
    "bad-date.md": "---\ntitle: Fine\nurl: https://x.example.com/6\ndate: next tuesday\n---\n",
    "list.md": "- just\n- a list\n",
    "same-url.md": "---\ntitle: Same link as cphi.md\nurl: https://www.cphi.com/europe/\n---\n",
    # Only plain YAML is read: a Python tag is refused, never run.
    "tagged.md": "---\ntitle: !!python/object/apply:os.system ['touch pwned']\nurl: https://x.example.com/8\n---\n",
}


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def stored(engine: Engine) -> dict[str, Article]:
    with engine.connect() as conn:
        return {a.url: a for a in store.articles_between(conn, NOW - 400 * DAY, NOW + 30 * DAY)}


def run(engine: Engine, settings: Settings) -> list[SourceReport]:
    return ingest_sources(engine, settings, clock=lambda: NOW)


@pytest.fixture
def items(tmp_path: Path) -> Path:
    folder = tmp_path / "items"
    write(folder, GOOD)
    return folder


@pytest.fixture
def folder_settings(make_settings: Callable[..., Settings]) -> Settings:
    # A relative path is relative to the config file's folder (tmp_path).
    return make_settings(folders=[{"name": "Editors", "path": "items"}])


def test_good_items_are_stored(engine: Engine, folder_settings: Settings, items: Path) -> None:
    [report] = run(engine, folder_settings)
    assert (report.kind, report.status, report.new, report.skipped) == ("folder", "fetched", 4, ())
    assert report.url == str(items)
    found = stored(engine)
    cphi = found["https://www.cphi.com/europe/"]
    assert cphi.title == 'CPHI Milan & the "bioprocessing" zone'
    assert cphi.summary == "Three days, 2,500 exhibitors."
    assert cphi.image_url == "https://img.example.com/cphi.jpg" and cphi.source == "Editors"
    # A date without an offset is the site's local time (Europe/London, GMT in November).
    assert cphi.published_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    webinar = found["https://partner.example.com/webinar"]
    assert webinar.title == "Partner webinar: sterile filling"
    assert webinar.summary == "Join us"
    assert webinar.published_at == datetime(2026, 11, 21, tzinfo=UTC)
    # Without a date, an item is dated when it was first seen.
    assert found["https://pharma.example.com/announcement"].published_at == NOW
    assert found["https://pharma.example.com/company"].published_at == datetime(2026, 11, 22, 8, tzinfo=UTC)

    # Reading the folder again changes nothing.
    [again] = run(engine, folder_settings)
    assert (again.new, again.updated, again.items) == (0, 0, 4)


def test_bad_files_are_reported_by_name_and_line_and_skipped(
    engine: Engine, folder_settings: Settings, items: Path
) -> None:
    write(items, BAD)
    (items / "latin1.md").write_bytes("---\ntitle: Caf\xe9\nurl: https://x.example.com/7\n---\n".encode("latin-1"))
    (items / ".draft.md").write_text("not even front matter")
    (items / "readme.txt").write_text("not Markdown, not read")
    [report] = run(engine, folder_settings)
    assert (report.status, report.new) == ("fetched", 4)
    assert sorted(stored(engine)) == sorted(
        ["https://www.cphi.com/europe/", "https://partner.example.com/webinar",
         "https://pharma.example.com/announcement", "https://pharma.example.com/company"]
    )
    assert report.skipped == (
        "bad-date.md, line 4: date: expected a date such as 2026-11-20 or 2026-11-20 09:00, got 'next tuesday': left out",
        "bad-url.md, line 4: url: expected an http(s) URL, got 'javascript:alert(1)': left out",
        "broken-yaml.md, line 4: front matter is not valid YAML: mapping values are not allowed here: left out",
        "latin1.md: not UTF-8 text: left out",
        "list.md, line 1: no front matter: the file must start with a line '---': left out",
        "no-front-matter.md, line 1: no front matter: the file must start with a line '---': left out",
        "no-title.md, line 2: title: missing; every item needs a title: left out",
        "same-url.md: left out because cphi.md has the same url",
        "sports.md, line 4: section: 'sports' is not a configured section "
        "(known: drug-development, events, facilities, insights, manufacturing, news, supply-chain): left out",
        "tagged.md, line 2: front matter is not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system': left out",
        "typo.md, line 4: unknown key 'tilte' (known: title, url, section, date, image, summary): left out",
        "unclosed.md, line 3: the front matter is not closed by a line '---': left out",
    )


def test_a_missing_folder_fails_alone(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path, items: Path
) -> None:
    settings = make_settings(folders=[{"name": "Gone", "path": "nowhere"}, {"name": "Editors", "path": str(items)}])
    gone, editors = run(engine, settings)
    assert (gone.status, gone.error) == ("failed", f"folder {tmp_path / 'nowhere'} does not exist")
    assert (editors.status, editors.new) == ("fetched", 4)


def test_an_explicit_section_decides_where_the_item_lands(
    engine: Engine, folder_settings: Settings, items: Path
) -> None:
    run(engine, folder_settings)
    found = stored(engine)
    # The section is carried as the first category of that section no earlier section lists.
    assert found["https://www.cphi.com/europe/"].categories == ("Events",)
    assert found["https://partner.example.com/webinar"].categories == ("Drug Development",)
    assert found["https://pharma.example.com/company"].categories == ()

    # The undated item is dated NOW (first seen), so the issue is built a little later.
    built = issues.build_issue(engine, folder_settings, now=NOW + timedelta(hours=1))
    assert [(b.slug, [a.url for a in b.articles]) for b in built.blocks] == [
        ("drug-development", ["https://partner.example.com/webinar"]),
        ("events", ["https://www.cphi.com/europe/"]),
        ("news", ["https://pharma.example.com/announcement", "https://pharma.example.com/company"]),
    ]


def test_a_section_no_category_reaches_is_refused_by_name(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    sections = [
        {"name": "Manufacturing", "slug": "manufacturing", "categories": ["Manufacturing", "Plants"]},
        {"name": "Plants", "slug": "plants", "categories": ["Plants"]},
        {"name": "Other", "slug": "other", "categories": []},
    ]
    settings = make_settings(sections=sections, selection={"fallback_section": ""}, folders=[{"name": "E", "path": "e"}])
    write(tmp_path / "e", {
        "a.md": "---\ntitle: A\nurl: https://x.example.com/a\nsection: plants\n---\n",
        "b.md": "---\ntitle: B\nurl: https://x.example.com/b\nsection: Other\n---\n",
    })
    [report] = run(engine, settings)
    assert report.new == 0
    assert report.skipped == (
        "a.md, line 4: section: 'plants' lists no category of its own to reach it by; add one to its categories: left out",
        "b.md, line 4: section: 'Other' lists no category of its own to reach it by; add one to its categories: left out",
    )
