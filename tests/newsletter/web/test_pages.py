"""The public pages a publisher can show, in-process over ASGI: the landing page at /
(kept with the archive's pages, renewed when an issue is published), the privacy
notice, one frame with the emails' theme on every page and in the static export, and
the subscribe form `newsletter embed` prints."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter import issues
from newsletter.archive import export_archive
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.web import create_app
from newsletter.web.archive import CHECK_SECONDS
from tests.newsletter.test_archive import send_later_issue, send_weeks
from tests.newsletter.web.test_web import Client

SECRET = {"secret_key": "pages-test-secret-0123456789"}
BASE = "https://news.example.com"
SITE = {"base_url": BASE, "description": "The week in pharma, for people who make medicines."}
THEME = {"brand_color": "#7a1f5c", "logo_url": "https://cdn.example.com/logo.png"}


def client_for(settings: Settings, engine: Engine, seconds: list[float] | None = None) -> Client:
    clock = seconds if seconds is not None else [0.0]
    return Client(create_app(settings, engine=engine, monotonic=lambda: clock[0]), base_url=BASE)


def test_the_landing_page_shows_the_site_a_form_and_the_latest_issue(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(site=SITE, security=SECRET, theme=THEME)
    seconds = [0.0]
    client = client_for(settings, engine, seconds)
    empty = client.get("/")
    assert empty.status_code == 200 and empty.headers["etag"]
    assert "<h1>Pharma Weekly</h1>" in empty.text and SITE["description"] in empty.text
    assert '<img src="https://cdn.example.com/logo.png" alt="Pharma Weekly">' in empty.text
    assert 'action="/subscribe"' in empty.text
    for slug, name in settings.section_names().items():
        assert f'value="{slug}" checked> {name}</label>' in empty.text
    assert "The first issue is on its way" in empty.text and 'href="/archive/"' in empty.text
    assert 'href="/privacy">Privacy notice</a>' in empty.text

    slug = send_weeks(engine, settings, 1)[0]
    # Kept for the second after the last check of the archive, then built again.
    assert client.get("/").content == empty.content
    seconds[0] += CHECK_SECONDS
    page = client.get("/")
    assert page.headers["etag"] != empty.headers["etag"]
    assert f'href="/archive/{slug}"' in page.text and "The latest issue" in page.text
    assert "Insight &lt;0&gt; &amp; more" in page.text and "Drug news 0" in page.text
    # Sections in the configured order, each with its articles.
    assert page.text.index("<h3>Drug Development</h3>") < page.text.index("<h3>Insights</h3>")
    assert client.get("/", headers={"if-none-match": page.headers["etag"]}).status_code == 304

    # A second issue, published by another process, replaces it on the next check.
    later = send_later_issue(engine, settings)
    seconds[0] += CHECK_SECONDS
    newer = client.get("/")
    assert f'href="/archive/{later}"' in newer.text and "A later story" in newer.text
    assert "Drug news 0" not in newer.text


def test_the_privacy_notice_comes_from_the_config_a_file_or_the_default(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(security=SECRET, sender={"reply_to": "privacy@example.com"})
    default = client_for(settings, engine).get("/privacy")
    assert default.status_code == 200 and "<h1>Privacy notice</h1>" in default.text
    assert "When you subscribe to Pharma Weekly we keep your email address" in default.text
    assert '<a href="mailto:privacy@example.com"' in default.text

    text = "## Our promise\n\nWe keep *nothing* we do not need.\n\n<script>alert(1)</script>\n"
    settings = make_settings(security=SECRET, site={"privacy": text})
    own = client_for(settings, engine).get("/privacy")
    assert "<h2>Our promise</h2>" in own.text and "<em>nothing</em>" in own.text
    assert "<script>" not in own.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in own.text

    (tmp_path / "privacy.md").write_text("## From a file\n\nAsk the [editors](https://example.com/contact).\n", encoding="utf-8")
    settings = make_settings(security=SECRET, site={"privacy_file": "privacy.md"})
    from_file = client_for(settings, engine).get("/privacy")
    assert "<h2>From a file</h2>" in from_file.text and 'href="https://example.com/contact"' in from_file.text

    settings = make_settings(security=SECRET, site={"privacy_file": "missing.md"})
    with pytest.raises(ConfigError, match=r"^site.privacy_file: .*missing.md cannot be read \(No such file or directory\)$"):
        create_app(settings, engine=engine)


class Frame(HTMLParser):
    """What the shared frame puts on a page: the header, the footer's links, the style."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: set[str] = set()
        self.links: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.classes.update((values.get("class") or "").split())
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def frame(html: str) -> Frame:
    parser = Frame()
    parser.feed(html)
    return parser


def test_every_public_page_and_the_export_share_the_frame_and_theme(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(site=SITE, security=SECRET, theme=THEME)
    slug = send_weeks(engine, settings, 1)[0]
    client = client_for(settings, engine)
    pages = {
        "landing": client.get("/"),
        "privacy": client.get("/privacy"),
        "subscribe": client.get("/subscribe"),
        "check your inbox": client.post("/subscribe", data={"email": "new@example.com", "sections": ["news"]}),
        "refused": client.post("/subscribe", data={"email": "not an address"}),
        "invalid link": client.get("/preferences/not-a-token"),
        "not found": client.get("/no-such-page"),
        "archive": client.get("/archive/"),
        "issue": client.get(f"/archive/{slug}"),
    }
    assert [p.status_code for p in pages.values()] == [200, 200, 200, 200, 422, 404, 404, 200, 200]
    assert "Check your inbox" in pages["check your inbox"].text
    assert 'aria-invalid="true"' in pages["refused"].text
    for name, page in pages.items():
        found = frame(page.text)
        assert {"site-header", "site-footer", "site-name"} <= found.classes, name
        assert "--brand: #7a1f5c" in found.style and "prefers-color-scheme: dark" in found.style, name
        privacy = [link for link in found.links if link.endswith("/privacy")]
        assert privacy and set(privacy) <= {"/privacy", f"{BASE}/privacy"}, name
    # The issue page is the stored email inside the frame: its content and its own styles.
    issue = pages["issue"].text
    assert "Drug news 0" in issue and ".mj-column-per-100" in issue and "<!--[if mso]>" not in issue.split("<body>")[0]

    with engine.connect() as conn:
        report = export_archive(conn, issues.archive_pages(settings), tmp_path / "site")
    assert "index.html" in report.written
    for relative in ("index.html", f"{slug}/index.html"):
        exported = (tmp_path / "site" / relative).read_text(encoding="utf-8")
        found = frame(exported)
        assert {"site-header", "site-footer"} <= found.classes and "--brand: #7a1f5c" in found.style
        # Hosted anywhere, the export links to the web app by its address.
        assert f"{BASE}/privacy" in found.links and f"{BASE}/subscribe" in found.links, relative


def test_embed_prints_a_form_that_subscribes_without_javascript(
    engine: Engine, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(site=SITE, security=SECRET)
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "newsletter.toml"), "embed"], env={"NEWSLETTER_CONFIG": ""})
    assert result.exit_code == 0, result.output
    form = result.output
    assert "<script" not in form and 'method="post"' in form
    assert re.search(rf'<form method="post" action="{BASE}/subscribe"', form)
    fields = re.findall(r'<input type="(\w+)" (?:id="[\w-]+" )?name="(\w+)"(?: value="([\w-]+)")?', form)
    names = {name for _, name, _ in fields}
    assert names == {"email", "sections", "website"}
    assert [value for _, name, value in fields if name == "sections"] == list(settings.section_names())

    # The form's fields, posted as a browser would from another site: the same pages answer.
    client = client_for(settings, engine)
    answer = client.post("/subscribe", data={"email": "reader@example.org", "sections": ["news", "events"], "website": ""},
                         headers={"origin": "https://www.publisher.example", "referer": "https://www.publisher.example/"})
    assert answer.status_code == 200 and "<h1>Check your inbox</h1>" in answer.text

    bare = CliRunner().invoke(app, ["--config", str(tmp_path / "newsletter.toml"), "embed", "--no-sections"], env={"NEWSLETTER_CONFIG": ""})
    assert bare.exit_code == 0 and 'name="sections"' not in bare.output and 'name="email"' in bare.output
