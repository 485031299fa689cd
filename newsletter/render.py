"""Jinja2 → MJML → HTML, and the plain-text part; once per segment.

Owns: `Renderer` (the digest's segments and the welcome email), `IssueContent`,
`builtin_templates`, `intro_html`, `compile_mjml`, `inline_css`, `add_parameters`. Imports `models` (where the substitution `TAGS` are
defined, for the transports too), `errors`, `theme`.

After MJML, the digest's own CSS (`email/digest.css.j2`) is written into style attributes
(css-inline), because Gmail for other accounts and Yahoo's Android app drop `<style>`;
what cannot be inline (the mobile layout, the dark palette) stays in `<style>`.

Per-recipient values never enter a render: the templates write substitution tags such as
`%%unsubscribe_url%%` (see `TAGS`, and `TEXT_TAGS` in the text part), which the transport
fills for each recipient with values encoded for the part (`links`). That is what makes
one render per segment possible. Content never becomes a tag: every value a template
prints goes through `neutralize`, which breaks up `%%` in anything but our own tags.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from urllib.parse import quote, urlsplit, urlunsplit

import css_inline
import jinja2
import mjml
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from .errors import RenderError
from .models import TAGS, TEXT_TAGS, Article, RenderedMessage, SectionBlock, Sponsor
from .theme import Theme, build_theme


class Tag(str):
    """A substitution tag a template writes on purpose (`tags.greeting`): the only text
    `neutralize` lets through with its `%%` intact."""

    __slots__ = ()


_HTML_TAGS = {name: Tag(tag) for name, tag in TAGS.items()}
_TEXT_TAGS = {name: Tag(tag) for name, tag in TEXT_TAGS.items()}
_DOUBLE_PERCENT = re.compile(r"%(?=%)")
#: What stands for the first `%` of `%%` in content: an entity in HTML (the reader sees
#: `%%`, a substitution never matches), a zero-width space after it in plain text.
_HTML_PERCENT = "&#37;"
_TEXT_PERCENT = "%\u200b"


def neutralize(text: str, *, html: bool) -> str:
    """Content (an article's title, an editor's subject) with every `%%` broken up, so
    that no transport's substitution can take it for a tag: content is printed, never
    expanded. Jinja never expands it either: values are data, not template source."""
    if "%%" not in text:
        return text
    return _DOUBLE_PERCENT.sub(_HTML_PERCENT if html else _TEXT_PERCENT, text)


@jinja2.pass_eval_context
def _finalize(eval_ctx: jinja2.nodes.EvalContext, value: Any) -> Any:
    """Every `{{ … }}` of every template goes through here: text with `%%` is content
    (an article, an editor's text) and is neutralized, unless it is one of our `Tag`s."""
    if not isinstance(value, str) or isinstance(value, Tag) or "%%" not in value:
        return value
    if not eval_ctx.autoescape:
        return neutralize(value, html=False)
    # Escape first (a Markup value stays as it is), then break up the `%%`.
    return Markup(neutralize(str(escape(value)), html=True))

# Every MJML tag MRML knows; anything else named mj-* is a typo that MRML would print raw.
MJML_TAGS = frozenset(
    "mjml mj-head mj-body mj-attributes mj-all mj-class mj-breakpoint mj-font mj-preview mj-style mj-title "
    "mj-include mj-raw mj-section mj-column mj-group mj-wrapper mj-hero mj-text mj-image mj-button mj-divider "
    "mj-spacer mj-table mj-social mj-social-element mj-navbar mj-navbar-link mj-carousel mj-carousel-image "
    "mj-accordion mj-accordion-element mj-accordion-title mj-accordion-text".split()
)
_MJ_TAG = re.compile(r"<(/?)(mj(?:ml|-[a-z-]+))\b[^>]*?(/?)>")


# What an editor's Markdown intro may become: text formatting and links, nothing that runs,
# loads or restyles (no raw HTML, no images, no style attributes).
INTRO_TAGS = {"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "code", "h3", "h4"}
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable("image")


def intro_html(markdown: str) -> Markup:
    """An editor's Markdown as sanitized HTML: raw HTML in it is shown as text, and only
    `INTRO_TAGS` with http(s) and mailto links survive."""
    if not markdown.strip():
        return Markup("")
    html = _MARKDOWN.render(markdown)
    clean = nh3.clean(
        html, tags=INTRO_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"}, link_rel="noopener"
    )
    return Markup(clean.strip())


def builtin_templates() -> Path:
    """The templates shipped with the package (a wheel carries them inside `newsletter/`)."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


@dataclass(frozen=True)
class IssueContent:
    """What a render needs of an issue, independent of who receives it."""

    slug: str
    date: datetime
    blocks: tuple[SectionBlock, ...]
    subject: str = ""
    preheader: str = ""
    intro: str = ""
    #: The issue's number in the masthead (0: none shown).
    number: int = 0
    #: The editors' lead story (the pinned article); None: the newest of the first section.
    lead_id: int | None = None
    sponsor: Sponsor | None = None


def _template_line(exc: BaseException) -> tuple[str, int | None]:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or exc.name or "?", exc.lineno
    tb = exc.__traceback__
    found: tuple[str, int | None] = ("?", None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename.endswith(".html"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def check_mjml(source: str) -> tuple[int, str] | None:
    """The first line of generated MJML with an unknown `mj-` tag or a tag closed out of
    order, and what is wrong there; None when none is found. MRML itself neither
    validates nor says where a parse error is."""
    stack: list[tuple[str, int]] = []
    line = 1
    position = 0
    for match in _MJ_TAG.finditer(source):
        closing, name, selfclosing = match.groups()
        # Count newlines incrementally: once through the text, not once per tag.
        line += source.count("\n", position, match.start())
        position = match.start()
        if name not in MJML_TAGS:
            return line, f"unknown MJML tag <{name}>"
        if selfclosing:
            continue
        if closing:
            if not stack or stack[-1][0] != name:
                expected = f"</{stack[-1][0]}> (opened on line {stack[-1][1]})" if stack else "nothing"
                return line, f"</{name}> closes nothing open here; expected {expected}"
            stack.pop()
        elif name not in ("mj-all", "mj-class", "mj-breakpoint", "mj-font", "mj-include"):
            stack.append((name, line))
    if stack:
        return stack[-1][1], f"<{stack[-1][0]}> is never closed"
    return None


def compile_mjml(source: str, template: str) -> str:
    """HTML from MJML that `template` produced; `RenderError` naming the template (and the
    line, where `check_mjml` finds one) when the MJML is wrong."""
    problem = check_mjml(source)
    if problem:
        raise RenderError(f"{template} produced invalid MJML at line {problem[0]}: {problem[1]}")
    try:
        html: str = mjml.mjml2html(source, disable_comments=True)
    except ValueError as exc:
        raise RenderError(f"{template} produced MJML that MRML cannot parse: {exc}") from None
    return html


#: What follows the hidden preheader: zero-width and thin characters that fill the inbox
#: preview, so that it does not run on into the email's first words ("View in browser").
PREHEADER_SPACER = Markup("&#847;&zwnj;&nbsp;" * 40)
_SCHEME_META = '<meta name="color-scheme" content="light dark"><meta name="supported-color-schemes" content="light dark">'


#: Entities that css-inline, which parses the document and writes it again, would write
#: back as characters: `&#37;` (how `neutralize` breaks up `%%` in content: `%%` again
#: would be a tag), `&lt;` and `&gt;` (HTML5 leaves them as they are in attributes and in
#: `<title>`, where a reader with a lesser parser could take content for markup). Each
#: stands as a private-use character while the inliner works.
_KEPT_ENTITIES = {"&#37;": "\ue025", "&lt;": "\ue026", "&gt;": "\ue027"}
_MARKS = re.compile("[\ue025-\ue027]")


def inline_css(html: str, css: str) -> str:
    """`html` with the rules of `css` written into the style attributes of the elements
    they select (an element's own style attribute wins). `<style>` elements are left as
    they are, neither inlined nor removed: they hold what only works there. The entities
    of `_KEPT_ENTITIES` stay entities."""
    marked = _MARKS.sub("", html)
    for entity, mark in _KEPT_ENTITIES.items():
        marked = marked.replace(entity, mark)
    inliner = css_inline.CSSInliner(
        inline_style_tags=False, keep_style_tags=True, keep_link_tags=True, load_remote_stylesheets=False, extra_css=css
    )
    inlined: str = inliner.inline(marked)
    for entity, mark in _KEPT_ENTITIES.items():
        inlined = inlined.replace(mark, entity)
    return inlined


def add_parameters(url: str, parameters: Mapping[str, str]) -> str:
    """`url` with `parameters` added to its query string, after what is there; a parameter
    the URL already has keeps its value. Only for http(s) URLs; others are returned."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parameters:
        return url
    present = {pair.split("=", 1)[0] for pair in parts.query.split("&") if pair}
    added = "&".join(f"{quote(k)}={quote(v)}" for k, v in parameters.items() if k not in present)
    if not added:
        return url
    return urlunsplit(parts._replace(query=f"{parts.query}&{added}" if parts.query else added))


def image_height(article: Article, width: int) -> int | None:
    """The height of `article`'s image shown `width` pixels wide, when its size is known."""
    known_width, known_height = getattr(article, "image_width", 0) or 0, getattr(article, "image_height", 0) or 0
    if known_width <= 0 or known_height <= 0:
        return None
    return max(1, round(width * known_height / known_width))


def _lead(blocks: Sequence[SectionBlock], lead_id: int | None) -> tuple[Article, SectionBlock]:
    """The lead story of a segment: the editors' pinned article when the segment has it,
    else the newest article of its first section."""
    for block in blocks:
        for article in block.articles:
            if article.id == lead_id:
                return article, block
    first = next(b for b in blocks if b.articles)
    return max(first.articles, key=lambda a: a.published_at), first


class Renderer:
    """Renders issues with the built-in templates, or a user's folder that overrides them."""

    def __init__(
        self,
        *,
        site_name: str,
        base_url: str,
        postal_address: str,
        zone: ZoneInfo,
        template_folder: Path | None = None,
        remember: bool = False,
        theme: Theme | None = None,
        utm: Mapping[str, str] | None = None,
    ) -> None:
        #: With `remember`, each render is kept and given again for the same content,
        #: sections and audience: a send renders every segment for its preflight and
        #: again when it plans (64 segments: a quarter of a second each time). Only for
        #: a renderer that lives as long as one use case, as templates may change.
        self._remembered: dict[tuple[IssueContent, frozenset[str] | None, bool], RenderedMessage] | None = (
            {} if remember else None
        )
        folders = [str(template_folder)] if template_folder else []
        folders.append(str(builtin_templates()))
        self.site = {"name": site_name, "base_url": base_url, "postal_address": postal_address}
        self.base_url = base_url
        self.zone = zone
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            # MJML and HTML templates are escaped; the plain-text part must not be
            # ("R&D" stays "R&D"). select_autoescape would match "digest.txt.j2" as ".j2".
            autoescape=lambda name: bool(name) and not str(name).endswith(".txt.j2"),
            undefined=jinja2.StrictUndefined,
            trim_blocks=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        self.env.filters["localdate"] = self._localdate
        self.env.filters["wordwrap"] = self._wordwrap()
        self.theme = theme or build_theme()
        self.utm = dict(utm or {})
        self._css: str | None = None

    def css(self) -> str:
        """The digest's CSS for this theme, written into style attributes after MJML."""
        if self._css is None:
            self._css = self._render("email/digest.css.j2", {"theme": self.theme})
        return self._css

    def article_link(self, slug: str) -> Any:
        """The function templates call for an article's link: its URL with the UTM
        parameters of `[links] utm` ({slug} is the issue), never on our own links."""
        parameters = {k: v.replace("{slug}", slug) for k, v in self.utm.items()}

        def link(article: Article) -> str:
            return add_parameters(article.url, parameters)

        return link
    def _wordwrap(self) -> Any:
        """Jinja's `wordwrap`, remembering what it wrapped: an article's summary is wrapped
        again in every segment that has its section, and `textwrap` took two fifths of
        the time of rendering 64 segments."""
        env = self.env

        @functools.lru_cache(maxsize=4096)
        def wrapped(text: str, width: int, break_long_words: bool, wrapstring: str | None, break_on_hyphens: bool) -> str:
            return str(jinja2.filters.do_wordwrap(env, text, width, break_long_words, wrapstring, break_on_hyphens))

        @jinja2.pass_environment
        def wordwrap(_env: jinja2.Environment, s: str, width: int = 79, break_long_words: bool = True,
                     wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
            return wrapped(str(s), width, break_long_words, wrapstring, break_on_hyphens)

        return wordwrap

    def _localdate(self, value: datetime) -> str:
        local = value.astimezone(self.zone)
        return f"{local.day} {local:%b %Y}"

    def web_url(self, slug: str) -> str:
        """The public web version of an issue; the "View in browser" link points here."""
        return f"{self.base_url}/archive/{slug}"

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"template {exc.name} not found in {', '.join(self.env.loader.searchpath)}") from None  # type: ignore[union-attr]
        except jinja2.TemplateError as exc:
            where, line = _template_line(exc)
            raise RenderError(f"{where}, line {line}: {exc.message or exc}") from None

    def render(
        self,
        content: IssueContent,
        *,
        sections: Sequence[str] | None = None,
        public: bool = False,
    ) -> RenderedMessage:
        """The email for the recipients who chose `sections` (None: every section).

        `public` renders the web version: no personal links, a subscribe link instead.
        Raises `RenderError` naming the template and line when a template or its MJML is
        wrong.
        """
        if self._remembered is None:
            return self._render_message(content, sections, public)
        key = (content, None if sections is None else frozenset(sections), public)
        message = self._remembered.get(key)
        if message is None:
            message = self._remembered[key] = self._render_message(content, sections, public)
        return message

    def mjml_source(self, content: IssueContent, *, sections: Sequence[str] | None = None, public: bool = False) -> str:
        """The MJML the digest template writes for a segment, before MRML (for comparisons
        such as `bench/bench_render.py`'s with JS mjml)."""
        return self._render("email/digest.mjml.j2", self._context(content, sections, public))

    def _fixed_context(self, *, public: bool) -> dict[str, Any]:
        """What every email's context holds, whatever its content."""
        return {
            "theme": self.theme,
            "image_height": image_height,
            "spacer": PREHEADER_SPACER,
            "site": self.site,
            "subscribe_url": f"{self.base_url}/subscribe",
            "tags": _HTML_TAGS,
            "public": public,
        }

    def _context(self, content: IssueContent, sections: Sequence[str] | None, public: bool) -> dict[str, Any]:
        blocks = [b for b in content.blocks if sections is None or b.slug in sections]
        articles = [a for b in blocks for a in b.articles]
        if not articles:
            raise RenderError(f"issue {content.slug}: nothing to render for sections {', '.join(sections or [])}")
        lead, lead_block = _lead(blocks, content.lead_id)
        rest = [a for a in articles if a is not lead]
        subject = content.subject or f"{self.site['name']}: {lead.title}"
        preheader = content.preheader or " · ".join(a.title for a in rest[:2]) or lead.summary
        sponsor = content.sponsor
        visible = [b.slug for b in blocks]
        others = [SectionBlock(b.slug, b.name, tuple(a for a in b.articles if a is not lead)) for b in blocks]
        return self._fixed_context(public=public) | {
            "number": content.number,
            "lead": lead,
            "lead_section": lead_block.name,
            "contents": [(b.name, len(b.articles)) for b in blocks],
            "sponsor": sponsor,
            "sponsor_after": (sponsor.after if sponsor and sponsor.after in visible else visible[0]) if sponsor else "",
            "link": self.article_link(content.slug),
            "subject": subject,
            "preheader": preheader,
            "intro": content.intro,
            "intro_html": intro_html(content.intro),
            "date": self._localdate(content.date),
            "blocks": others,
            "section_names": [b.name for b in blocks],
            "web_url": self.web_url(content.slug),
        }

    def render_welcome(
        self, content: IssueContent | None, *, sections: Sequence[str], section_names: Sequence[str], subject: str
    ) -> RenderedMessage:
        """The welcome email of a reader of `sections` (whose headings are
        `section_names`): `content`, the latest issue, as their segment of it, in the
        templates `email/welcome.*.j2` (which extend the digest's), without its sponsor
        (who bought that issue's send). With no issue yet, or none of its articles in
        their sections, the short note that the first is on its way. The per-recipient
        values are the same substitution tags as a digest's."""
        latest = content is not None and any(b.articles for b in content.blocks if b.slug in sections)
        if content is not None and latest:
            context = self._context(replace(content, sponsor=None), sections, False)
            preheader = "No need to wait for the next issue: here is the latest, made of your sections."
        else:
            context = self._fixed_context(public=False) | {
                "number": 0, "lead": None, "lead_section": "", "contents": [], "sponsor": None, "sponsor_after": "",
                "link": self.article_link(""), "intro": "", "intro_html": Markup(""), "date": "", "blocks": [],
                "web_url": f"{self.base_url}/archive/",
            }
            preheader = "Your subscription is confirmed; the first issue is on its way."
        context |= {"subject": subject, "preheader": preheader, "section_names": list(section_names), "latest": latest}
        return self._message("email/welcome", context)

    def _render_message(self, content: IssueContent, sections: Sequence[str] | None, public: bool) -> RenderedMessage:
        return self._message("email/digest", self._context(content, sections, public))

    def _message(self, stem: str, context: dict[str, Any]) -> RenderedMessage:
        """The email of the templates `<stem>.mjml.j2` and `<stem>.txt.j2` for `context`."""
        subject, preheader = context["subject"], context["preheader"]
        html = compile_mjml(self._render(f"{stem}.mjml.j2", context), f"{stem}.mjml.j2")
        html = inline_css(html, self.css()).replace("<head>", "<head>" + _SCHEME_META, 1)
        # Each part has its own tags, so each gets its values encoded for it (`links`).
        text = self._render(f"{stem}.txt.j2", {**context, "tags": _TEXT_TAGS})
        # The subject is a header and the preheader inbox text: content, neutralized as
        # plain text (in the parts, `_finalize` did it for each part).
        return RenderedMessage(
            subject=neutralize(subject, html=False), preheader=neutralize(preheader, html=False), html=html, text=text
        )
