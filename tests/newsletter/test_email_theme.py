"""The digest as a reader's client gets it: the theme from `[theme]` (colours, logo,
fonts, social links), CSS written into style attributes, the dark palette, the hidden
preheader, UTM parameters on article links only, and bad settings refused by key."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.issues import make_theme
from newsletter.models import TAGS, SectionBlock
from newsletter.render import IssueContent, Renderer
from newsletter.theme import build_theme
from tests.conftest import NOW, write_config
from tests.newsletter.test_render import issue_content


def wcag_contrast(first: str, second: str) -> float:
    """WCAG 2's contrast ratio, written out here rather than taken from the code."""

    def lum(colour: str) -> float:
        values = []
        for i in (1, 3, 5):
            c = int(colour[i : i + 2], 16) / 255
            values.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * values[0] + 0.7152 * values[1] + 0.0722 * values[2]

    high, low = sorted((lum(first), lum(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def renderer(**theme: Any) -> Renderer:
    utm = theme.pop("utm", None)
    return Renderer(site_name="Pharma Weekly", base_url="https://news.example.com", postal_address="1 Example Street, London",
                    zone=ZoneInfo("Europe/London"), theme=build_theme(**theme), utm=utm)


def attrs(tag: str) -> dict[str, str]:
    """The attributes of one start tag (the inliner may write them in another order)."""
    return dict(re.findall(r'\s([a-z-]+)="([^"]*)"', tag))


def tags(html: str, name: str, **wanted: str) -> list[dict[str, str]]:
    """The attributes of every `<name>` tag that has the `wanted` attribute values."""
    found = [attrs(t) for t in re.findall(rf"<{name}\b[^>]*>", html)]
    return [a for a in found if all(a.get(k.replace("_", "-")) == v for k, v in wanted.items())]


@pytest.mark.parametrize("brand", ["#0b5394", "#ffd700", "#00b2a9", "#111111", "#ff0000"])
def test_every_text_colour_reads_at_4_5_to_1_in_both_palettes(brand: str) -> None:
    theme = build_theme(brand_color=brand, accent_color="#f59e0b")
    for palette in (theme.light, theme.dark):
        pairs = palette.text_pairs()
        assert len(pairs) >= 12
        for name, (fg, bg) in pairs.items():
            assert wcag_contrast(fg, bg) >= 4.5, f"{brand}: {name} {fg} on {bg} is {wcag_contrast(fg, bg):.2f}"


def test_the_css_is_inline_so_it_survives_a_client_that_drops_style() -> None:
    html = renderer().render(issue_content()).html
    theme = build_theme()
    # Headline links keep the theme's colour and lose the underline without any <style>.
    headline_links = re.findall(r"<h3[^>]*>(<a [^>]*>)", html)
    assert len(headline_links) == 18
    for link in headline_links:
        style = attrs(link)["style"].replace(" ", "")
        assert f"color:{theme.light.heading}" in style and "text-decoration:none" in style
    images = re.findall(r"<img\b[^>]*>", html)
    assert images
    for img in images:
        assert re.search(r'\swidth="\d+"', img), img
        style = re.search(r'style="([^"]*)"', img)
        assert style and "max-width:100%" in style.group(1).replace(" ", "") and "height:auto" in style.group(1).replace(" ", "")
    # Text sizes: the body at 16 px, nothing under 13 px anywhere.
    sizes = [int(s) for s in re.findall(r"font-size:\s*(\d+)px", html)]
    assert min(s for s in sizes if s > 1) >= 13
    assert "font-size:16px" in html.replace(" ", "")


def test_dark_mode_is_declared_with_its_own_palette_and_logo() -> None:
    html = renderer(logo_url="https://cdn.example.com/logo.png", dark_logo_url="https://cdn.example.com/logo-dark.png").render(issue_content()).html
    dark = build_theme().dark
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    block = html[html.index("@media (prefers-color-scheme: dark)"):]
    for colour in (dark.page, dark.surface, dark.text, dark.link, dark.heading, dark.muted):
        assert colour in block
    (light,) = tags(html, "img", **{"class": "ll"})
    (dark_logo,) = tags(html, "img", **{"class": "dl"})
    assert light["src"] == "https://cdn.example.com/logo.png" and light["alt"] == "Pharma Weekly" and light["width"] == "180"
    assert dark_logo["src"] == "https://cdn.example.com/logo-dark.png" and dark_logo["alt"] == "Pharma Weekly"
    assert "display:none" in dark_logo["style"].replace(" ", "") and "mso-hide:all" in dark_logo["style"].replace(" ", "")
    assert ".dl { display: block !important;" in block


def test_the_preheader_is_hidden_properly_and_shown_nowhere() -> None:
    content = replace(issue_content(), preheader="Oral GLP-1 approved; a plant in Cork; the week in supply chains")
    message = renderer().render(content)
    html = message.html
    hidden = re.search(r'<div class="ph" style="([^"]*)">(.*?)</div>', html, re.DOTALL)
    assert hidden is not None
    style, inside = hidden.groups()
    for rule in ("display:none", "mso-hide:all", "max-height:0", "opacity:0", "overflow:hidden"):
        assert rule in style
    assert "color" not in style and "#fff" not in style.lower()  # no white-on-grey text of its own
    assert inside.startswith(content.preheader) and inside.count("\u200c") >= 20  # zero-width spacers after it
    assert html.count(content.preheader) == 1  # not printed visibly under the masthead


def test_utm_parameters_go_on_article_links_only_and_keep_their_query() -> None:
    utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "{slug}"}
    content = issue_content(per_section=2, sections=2)
    first = content.blocks[0].articles[0]
    with_query = replace(first, url="https://www.pharma-news.example.com/story?id=7&ref=home#top")
    content = replace(content, blocks=(replace(content.blocks[0], articles=(with_query, *content.blocks[0].articles[1:])), *content.blocks[1:]),
                      sponsor=None)
    message = renderer(utm=utm, social={"linkedin": "https://www.linkedin.com/company/pw"}).render(content)
    expected = "https://www.pharma-news.example.com/story?id=7&ref=home&utm_source=newsletter&utm_medium=email&utm_campaign=2026-w48#top"
    assert expected.replace("&", "&amp;") in message.html and expected in message.text
    article_links = [a.url for b in content.blocks for a in b.articles]
    for url in article_links[1:]:
        assert f"{url}?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=2026-w48" in message.html
    ours = [h for h in re.findall(r'href="([^"]+)"', message.html) if not h.startswith("https://www.pharma-news")]
    assert ours and all("utm_" not in h for h in ours)  # web version, preferences, unsubscribe, subscribe, social
    assert TAGS["unsubscribe_url"] in ours and "https://www.linkedin.com/company/pw" in ours
    assert "utm_" not in renderer().render(content).html  # off by default


def test_one_link_per_article_real_headings_and_decorative_images() -> None:
    content = issue_content(per_section=3, sections=3)
    html = renderer().render(content).html
    for block in content.blocks:
        assert html.count(f">{block.name}</h2>") == 1
        for article in block.articles:
            assert html.count(f'href="{article.url}"') == 1, article.title
    assert html.count("<h3") == 9 and "Read more" not in html
    # Images beside their own headline are decorative; the logo (standalone) is described.
    for img in re.findall(r"<img\b[^>]*>", html):
        assert 'alt=""' in img
    logo = renderer(logo_url="https://cdn.example.com/logo.png").render(content).html
    (img,) = tags(logo, "img", **{"class": "ll"})
    assert img["alt"] == "Pharma Weekly" and img["width"] == "180" and img["src"] == "https://cdn.example.com/logo.png"


def test_the_lead_story_is_the_pinned_article_else_the_newest_of_the_first_section() -> None:
    content = issue_content(per_section=3, sections=2)
    newest = max(content.blocks[0].articles, key=lambda a: a.published_at)
    html = renderer().render(content).html
    lead = re.search(r'<h3 class="lh"[^>]*><a href="([^"]+)"', html)
    assert lead and lead.group(1) == newest.url
    pinned = content.blocks[1].articles[2]
    html = renderer().render(replace(content, lead_id=pinned.id)).html
    lead = re.search(r'<h3 class="lh"[^>]*><a href="([^"]+)"', html)
    assert lead and lead.group(1) == pinned.url
    assert html.count(f'href="{pinned.url}"') == 1  # not repeated in its section
    # The contents count every article of each of the reader's sections, the lead too.
    assert re.search(r"Drug Development <span[^>]*>\(3\)</span>", html) and re.search(r"Manufacturing <span[^>]*>\(3\)</span>", html)


def test_thumbnails_sit_beside_the_text_or_are_left_out() -> None:
    content = issue_content(per_section=3, sections=2)
    with_thumbs = renderer().render(content).html
    assert with_thumbs.count('<td class="th"') == 5  # six articles, one of them leads
    cells = re.findall(r'(<td class="th"[^>]*>)(<img [^>]*>)', with_thumbs)
    assert len(cells) == 5 and all(attrs(td)["width"] == "136" and attrs(img)["width"] == "120" for td, img in cells)
    text_only = renderer(thumbnails=False).render(content).html
    assert '<td class="th"' not in text_only and len(re.findall(r"<img\b", text_only)) == 1  # the lead's image


def test_a_known_image_size_gives_the_height_attribute() -> None:
    content = issue_content(per_section=1, sections=1)
    article = content.blocks[0].articles[0]
    sized = replace(article, image_width=1200, image_height=675)
    html = renderer().render(replace(content, blocks=(SectionBlock("drug-development", "Drug Development", (sized,)),))).html
    (lead,) = tags(html, "img", **{"class": "li"})
    assert lead["width"] == "552" and lead["height"] == "310"
    (unsized,) = tags(renderer().render(content).html, "img", **{"class": "li"})
    assert unsized["width"] == "552" and "height" not in unsized and "height:auto" in unsized["style"].replace(" ", "")


def test_the_footer_has_everything_a_reader_looks_for() -> None:
    message = renderer(social={"linkedin": "https://www.linkedin.com/company/pw", "x": "https://x.com/pw"}).render(
        issue_content(), sections=("manufacturing", "events"))
    footer = message.html[message.html.index('class="ft"'):]
    for text in ("You receive this email because you subscribed to Pharma Weekly: Manufacturing, Events.",
                 "Manage preferences", "Unsubscribe", "Web version", "1 Example Street, London", ">LinkedIn</a>", ">X</a>",
                 "Forwarded this?", 'href="https://news.example.com/subscribe"'):
        assert text in footer, text
    assert "Forwarded this? Subscribe: https://news.example.com/subscribe" in message.text
    assert "LinkedIn: https://www.linkedin.com/company/pw" in message.text


def test_the_text_part_opens_with_the_contents_and_signs_off_with_dash_dash_space() -> None:
    content = issue_content(per_section=2, sections=3)
    text = renderer().render(content).text
    head, _, footer = text.partition("\n-- \n")
    assert footer.startswith("You receive this email") and "Unsubscribe: %%unsubscribe_url%%" in footer
    contents = head.index("IN THIS ISSUE")
    assert contents < head.index(content.blocks[0].articles[1].title)
    assert "- Drug Development (2)\n- Manufacturing (2)\n- Supply Chain (2)" in head
    assert head.count("Anna Keller, 23 Nov 2026") == 6


def test_twenty_articles_fit_60_kb_even_with_every_link_120_bytes_longer() -> None:
    content = issue_content(per_section=4, sections=5)
    message = renderer(logo_url="https://cdn.example.com/logo.png", social={"linkedin": "https://www.linkedin.com/company/pw"},
                       utm={"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "{slug}"}).render(content)
    links = len(re.findall(r'href="', message.html))
    assert links >= 20
    assert message.html_bytes + 120 * links <= 60_000, (message.html_bytes, links)


def test_no_tracking_pixel_anywhere() -> None:
    html = renderer().render(issue_content()).html
    for img in re.findall(r"<img\b[^>]*>", html):
        assert not re.search(r'(width|height)="[01]"', img) and "pixel" not in img


@pytest.mark.parametrize(
    ("table", "values", "expected"),
    [
        ("theme", {"brand_color": "blue"}, "theme.brand_color: expected a colour as #rrggbb, got 'blue'"),
        ("theme", {"accent_color": "#12345"}, "theme.accent_color: expected a colour as #rrggbb"),
        ("theme", {"logo_url": "http://cdn.example.com/logo.png"}, "theme.logo_url: expected an https:// URL"),
        ("theme", {"dark_logo_url": "javascript:alert(1)"}, "theme.dark_logo_url: expected an https:// URL"),
        ("theme", {"font_stack": "Arial; background:url(x)"}, "theme.font_stack: expected font names"),
        ("theme", {"logo_width": 5}, "theme.logo_width"),
        ("theme", {"social": {"linkedin": "http://linkedin.com/x"}}, "theme.social: Value error, linkedin: expected an https:// URL"),
        ("links", {"utm": {"utm_campaign": "{{ issue.slug }}"}}, "links.utm: Value error, utm_campaign: '{{ issue.slug }}' may hold"),
        ("links", {"utm": {"utm_source": "%%first_name%%"}}, "links.utm: Value error, utm_source: '%%first_name%%' may hold"),
        ("links", {"utm": {"utm_term": "{% if x %}"}}, "links.utm: Value error, utm_term"),
        ("links", {"utm": {"source": "newsletter"}}, "links.utm: Value error, 'source': expected a parameter named utm_"),
        ("web", {"brand_color": "#0b5394"}, "web.brand_color: moved: write it as [theme] brand_color"),
    ],
)
def test_bad_theme_and_link_settings_are_refused_by_key(tmp_path: Path, table: str, values: dict[str, Any], expected: str) -> None:
    path = write_config(tmp_path / "newsletter.toml", {table: values})
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert expected.replace("Value error, ", "") in str(caught.value)


def test_social_links_and_utm_can_come_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "newsletter.toml", {}), environ={
        "NEWSLETTER_THEME__SOCIAL": '{"linkedin": "https://www.linkedin.com/company/pw"}',
        "NEWSLETTER_LINKS__UTM": '{"utm_source": "newsletter"}',
        "NEWSLETTER_THEME__BRAND_COLOR": "#ABC",
    })
    assert settings.theme.social == {"linkedin": "https://www.linkedin.com/company/pw"}
    assert settings.links.utm == {"utm_source": "newsletter"} and settings.theme.brand_color == "#aabbcc"


def test_the_public_pages_wear_the_same_theme(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(theme={"brand_color": "#00b2a9", "logo_url": "https://cdn.example.com/logo.png"})
    from newsletter.issues import page_environment

    theme = make_theme(settings)
    page = page_environment(settings).get_template("archive_index.html").render(
        site_name="Pharma Weekly", base_url="https://news.example.com", archive_url="https://news.example.com/archive",
        sections={"news": "News"}, zone=ZoneInfo("Europe/London"), issues=[], page=1, pages=1, root="", articles={})
    # The site's frame (templates/web/base.html, issue 19): the palettes as CSS variables.
    assert f"--link: {theme.light.link};" in page and f"--link: {theme.dark.link};" in page
    assert "--brand: #00b2a9;" in page and "border-top: 5px solid var(--brand)" in page
    assert '<img src="https://cdn.example.com/logo.png" alt="Pharma Weekly">' in page and "max-width: min(180px, 100%)" in page


def test_content_that_looks_like_a_tag_stays_neutral_through_the_inliner() -> None:
    content = issue_content(per_section=1, sections=1)
    article = replace(content.blocks[0].articles[0], title="50%% off %%unsubscribe_url%% </title><script>x</script>",
                      published_at=NOW - timedelta(hours=1))
    content = IssueContent(content.slug, content.date, (SectionBlock("drug-development", "Drug Development", (article,)),))
    message = renderer().render(content)
    assert message.html.count(TAGS["unsubscribe_url"]) == 1  # the footer's own link, not the title's
    assert "<script>" not in message.html and "&lt;/title&gt;&lt;script&gt;" in message.html
