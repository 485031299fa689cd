"""Rendering with real mjml-python: what each segment must contain, the size budget,
template overrides, and errors that name the template and line."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from newsletter import issues, store
from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.models import Article, FeedItem, SectionBlock
from newsletter.render import TAGS, IssueContent, Renderer, builtin_templates
from tests.conftest import NOW

SECTION_NAMES = ["Drug Development", "Manufacturing", "Supply Chain", "Facilities", "Insights", "Events"]


def make_renderer(folder: Path | None = None) -> Renderer:
    return Renderer(site_name="Pharma Weekly", base_url="https://news.example.com", postal_address="1 Example Street, London",
                    zone=ZoneInfo("Europe/London"), template_folder=folder)


def issue_content(per_section: int = 3, sections: int = 6) -> IssueContent:
    blocks = []
    n = 0
    for s in range(sections):
        arts = []
        for _ in range(per_section):
            n += 1
            arts.append(Article(
                n, f"g{n}", f"https://www.pharma-news.example.com/2026/11/{SECTION_NAMES[s].lower().replace(' ', '-')}/a-fairly-long-article-slug-{n}/",
                f"Regulators clear once-daily oral therapy after two Phase III studies, article {n}", "Anna Keller",
                NOW - timedelta(hours=n), (SECTION_NAMES[s],),
                "Regulators cleared the once-daily tablet after two Phase III studies showed mean weight loss of 13.6% at "
                "68 weeks, opening a new front in the incretin market and raising questions about supply and pricing "
                "for payers across Europe and the United States, analysts said on Monday after the decision was announced.",
                f"https://www.pharma-news.example.com/wp-content/uploads/2026/11/image-{n}-1200x675.jpg", "feed"))
        blocks.append(SectionBlock(SECTION_NAMES[s].lower().replace(" ", "-"), SECTION_NAMES[s], tuple(arts)))
    return IssueContent("2026-w48", NOW, tuple(blocks))


def test_a_segment_has_its_sections_links_and_footer() -> None:
    content = issue_content()
    message = make_renderer().render(content, sections=("manufacturing", "events"))
    html, text = message.html, message.text
    assert "Manufacturing</h2>" in html and "Events</h2>" in html and "Drug Development</h2>" not in html
    assert "Manufacturing" in text and "Drug Development" not in text.split("--")[0]
    for link in ("https://news.example.com/archive/2026-w48", TAGS["preferences_url"], TAGS["unsubscribe_url"]):
        assert link in html and link in text
    assert "View in browser" in html and "Manage preferences" in html and "Unsubscribe" in html
    assert "1 Example Street, London" in html and "1 Example Street, London" in text
    assert message.subject == "Pharma Weekly: " + content.blocks[1].articles[0].title
    assert message.preheader in html  # the hidden preview line
    assert not re.search(r"</?mj-", html), "every MJML tag must be compiled"
    images = re.findall(r"<img\b[^>]*>", html)
    assert images and all(re.search(r'\salt="[^"]*"', img) for img in images)
    assert html.count('href="https://www.pharma-news.example.com/') >= 6
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_the_public_version_has_no_personal_links() -> None:
    message = make_renderer().render(issue_content(), public=True)
    assert "%%" not in message.html + message.text
    assert "https://news.example.com/subscribe" in message.html and "Unsubscribe" not in message.html


def test_twenty_articles_stay_well_under_the_gmail_clip() -> None:
    content = issue_content(per_section=4, sections=5)  # 20 articles across 5 sections
    message = make_renderer().render(content)
    assert sum(len(b.articles) for b in content.blocks) == 20
    assert message.html_bytes < 90_000


def test_feed_text_is_escaped_not_executed() -> None:
    content = issue_content(per_section=1, sections=1)
    evil = content.blocks[0].articles[0].__class__(**{**content.blocks[0].articles[0].__dict__, "title": '<script>alert("x")</script> & <b>bold</b>'})
    content = IssueContent(content.slug, content.date, (SectionBlock("drug-development", "Drug Development", (evil,)),))
    html = make_renderer().render(content).html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>bold</b>" not in html


def test_a_users_folder_overrides_the_builtin_templates(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    builtin = (builtin_templates() / "email" / "digest.txt.j2").read_text()
    (tmp_path / "email" / "digest.txt.j2").write_text("CUSTOM TEXT\n" + builtin)
    message = make_renderer(tmp_path).render(issue_content())
    assert message.text.startswith("CUSTOM TEXT") and "<mjml" not in message.html  # HTML still from the built-in


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("<mjml><mj-body>\n{% for x in %}\n</mj-body></mjml>", r"digest\.mjml\.j2, line 2: "),
        ("<mjml><mj-body>\n\n{{ no_such_variable.attr }}</mj-body></mjml>", r"digest\.mjml\.j2, line 3: 'no_such_variable' is undefined"),
        ("<mjml><mj-body>\n<mj-section><mj-column>\n<mj-txt>typo</mj-txt>\n</mj-column></mj-section></mj-body></mjml>",
         r"invalid MJML at line 3: unknown MJML tag <mj-txt>"),
        ("<mjml><mj-body>\n<mj-section><mj-column>\n<mj-text>open\n</mj-column></mj-section></mj-body></mjml>",
         r"invalid MJML at line 4: </mj-column> closes nothing open here; expected </mj-text> \(opened on line 3\)"),
    ],
    ids=["jinja-syntax", "undefined-variable", "unknown-tag", "unclosed-tag"],
)
def test_template_errors_name_the_template_and_line(tmp_path: Path, template: str, expected: str) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.mjml.j2").write_text(template)
    with pytest.raises(RenderError, match=expected):
        make_renderer(tmp_path).render(issue_content())


def test_a_template_error_stops_the_build_and_stores_no_issue(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    (folder / "email").mkdir(parents=True)
    (folder / "email" / "digest.mjml.j2").write_text("<mjml><mj-body>{% if %}</mj-body></mjml>")
    settings = make_settings(templates={"folder": str(folder)})
    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem("g", "https://p.example.com/1", "T", "", NOW - timedelta(days=1), ("Insights",), "", "")], source="t", now=NOW)
    with pytest.raises(RenderError, match="digest.mjml.j2, line 1"):
        issues.build_issue(engine, settings, now=NOW)
    with engine.connect() as conn:
        assert store.latest_issue(conn) is None


def test_the_build_warns_when_the_issue_is_too_large(engine: Engine, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(delivery={"warn_bytes": 10_000})
    with engine.begin() as conn:
        store.upsert_articles(conn, [FeedItem(f"g{n}", f"https://p.example.com/{n}", f"Title {n}", "", NOW - timedelta(hours=n), ("Insights",), "x " * 100, "") for n in range(5)], source="t", now=NOW)
    result = issues.build_issue(engine, settings, now=NOW)
    assert result.warnings and "over 10,000: Gmail clips messages at about 102 KB" in result.warnings[0]


def test_dates_are_shown_in_the_configured_zone() -> None:
    content = issue_content(per_section=1, sections=1)
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    art = content.blocks[0].articles[0].__class__(**{**content.blocks[0].articles[0].__dict__, "published_at": late})
    content = IssueContent(content.slug, late, (SectionBlock("insights", "Insights", (art,)),))
    seoul = Renderer(site_name="S", base_url="https://n.example.com", postal_address="a", zone=ZoneInfo("Asia/Seoul"))
    assert "23 Nov 2026" in seoul.render(content).html
    assert "22 Nov 2026" in make_renderer().render(content).html


def test_the_text_part_is_not_html_escaped() -> None:
    content = issue_content(per_section=1, sections=1)
    art = content.blocks[0].articles[0].__class__(**{**content.blocks[0].articles[0].__dict__, "title": 'R&D <update> "quoted" O\'Brien'})
    content = IssueContent(content.slug, content.date, (SectionBlock("drug-development", "Drug Development", (art,)),))
    message = make_renderer().render(content)
    assert '* R&D <update> "quoted" O\'Brien' in message.text
    assert "R&amp;D &lt;update&gt;" in message.html


def test_a_remembering_renderer_renders_each_segment_once() -> None:
    """A send renders every segment for its preflight and again when it plans: with
    `remember` the second time is the first render, whatever order the sections come in."""
    content = issue_content()
    plain = make_renderer()
    remembering = Renderer(site_name="Pharma Weekly", base_url="https://news.example.com", postal_address="1 Example Street, London",
                           zone=ZoneInfo("Europe/London"), remember=True)
    first = remembering.render(content, sections=["supply-chain", "drug-development"])
    assert remembering.render(content, sections=("drug-development", "supply-chain")) is first
    assert first == plain.render(content, sections=["drug-development", "supply-chain"])
    assert remembering.render(content, sections=["supply-chain", "drug-development"], public=True) is not first
    assert remembering.render(content, sections=["insights"]) != first
    assert plain.render(content, sections=["insights"]) is not plain.render(content, sections=["insights"])


def test_the_text_part_wraps_summaries_as_jinjas_own_wordwrap_would() -> None:
    """The renderer remembers wrapped summaries (one is wrapped again in every segment
    that has its section); what it gives is jinja's `wordwrap`, every time."""
    import jinja2

    renderer = make_renderer()
    plain = jinja2.Environment()
    texts = ["Regulators cleared the once-daily tablet " * 6, "a-very-long-hyphenated-word-" * 5, "short", "",
             "Zoë’s line\nbreaks  and   spaces " * 4]
    for text in texts:
        for args in ({}, {"width": 30}, {"width": 72, "wrapstring": "\n  "}, {"width": 20, "break_long_words": False},
                     {"width": 25, "break_on_hyphens": False}):
            source = "{{ s | wordwrap(**a) }}"
            expected = plain.from_string(source).render(s=text, a=args)
            assert renderer.env.from_string(source).render(s=text, a=args) == expected
            assert renderer.env.from_string(source).render(s=text, a=args) == expected  # remembered
    content = issue_content()
    assert make_renderer().render(content).text == renderer.render(content).text
