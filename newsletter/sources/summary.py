"""Summaries as a WordPress site writes them, cleaned of what does not belong in an email.

Owns: `clean_summary`, `Summary`. Imports `sources.clean`.

The description is read with the standard library's HTML parser into paragraphs of text
and their links; what `script`, `style` and the like hold is never text.

WordPress and its plugins put three habits into every excerpt, in every language:
- an SEO plugin's closing paragraph ("The post <a>Title</a> appeared first on <a>Site</a>.",
  "Der Beitrag … erschien zuerst auf …", "… 글이 …에 처음 등장했습니다."). It is found by its
  structure, not its words: the last paragraph links to the post itself and to the site's
  home page, with little text of its own. Where a feed flattened it to text, the closing
  sentence that names the post's title and then the site's name is dropped instead.
- a "Continue reading" link: a final link to the post itself with a short text.
- the excerpt marker `[…]` (`[&hellip;]`, `[...]`) at the very end. One in the middle of a
  sentence is text and stays.
A summary that is empty once these are gone is taken from the post's content (its first
paragraph with text). A summary cut short (by WordPress or by `shorten`) ends with one `…`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from .clean import fold_text, shorten

#: Elements whose content is never text a reader sees.
_HIDDEN = frozenset("script style noscript template iframe object svg math head title".split())
_BLOCKS = frozenset("p div li h1 h2 h3 h4 h5 h6 blockquote tr td section article figure figcaption".split())
_MARKER = re.compile(r"\s*\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]\s*$")
_BARE_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.)\s*$")
_SENTENCE_END = re.compile(r"[.!?。！？…»”\"')\]]$")
_SENTENCE_BREAK = re.compile(r"(?:[.!?。！？…\]]\s)|(?:\n)")
#: Words of its own a boilerplate paragraph may have besides its two links ("The post",
#: "appeared first on", "erschien zuerst auf", "글이 … 에 처음 등장했습니다").
_OWN_TEXT = 80
#: Longest text of a "Continue reading" link beyond the title it may repeat.
_MORE_TEXT = 40


@dataclass
class _Paragraph:
    text: list[str] = field(default_factory=list)
    #: (href, link text) of each link in the paragraph.
    links: list[tuple[str, str]] = field(default_factory=list)
    #: The paragraph's text after its last link (what follows a "Continue reading").
    after_last_link: list[str] = field(default_factory=list)

    @property
    def plain(self) -> str:
        return " ".join("".join(self.text).split())


class _Splitter(HTMLParser):
    """Some sanitized HTML as paragraphs of text with their links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[_Paragraph] = [_Paragraph()]
        self._href: str | None = None
        self._link_text: list[str] = []
        self._hidden = 0

    def _close(self) -> None:
        if self.paragraphs[-1].plain or self.paragraphs[-1].links:
            self.paragraphs.append(_Paragraph())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS or tag == "br":
            self._close()
        elif tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "a" and self._href is not None:
            self.paragraphs[-1].links.append((self._href, " ".join("".join(self._link_text).split())))
            self.paragraphs[-1].after_last_link = []
            self._href = None
        elif tag in _BLOCKS:
            self._close()

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        paragraph = self.paragraphs[-1]
        paragraph.text.append(data)
        if self._href is not None:
            self._link_text.append(data)
        else:
            paragraph.after_last_link.append(data)


def _paragraphs(markup: str) -> list[_Paragraph]:
    splitter = _Splitter()
    splitter.feed(markup or "")
    splitter.close()
    return [p for p in splitter.paragraphs if p.plain]


def _same_page(href: str, url: str) -> bool:
    a, b = urlsplit(href.strip()), urlsplit(url)
    return a.netloc.lower() == b.netloc.lower() and a.path.rstrip("/") == b.path.rstrip("/") and bool(a.netloc)


def _home_page(href: str, post_url: str, site_url: str) -> bool:
    """A link to the site itself: its feed's channel link, or the root of the post's host
    (a site in a subfolder links to that folder)."""
    if site_url and _same_page(href, site_url):
        return True
    a, b = urlsplit(href.strip()), urlsplit(post_url)
    home = a.path.rstrip("/")
    return (
        bool(a.netloc) and a.netloc.lower() == b.netloc.lower() and not _same_page(href, post_url)
        and (b.path.rstrip("/") + "/").startswith(home + "/") and home.count("/") <= 1
    )


def _is_boilerplate(paragraph: _Paragraph, post_url: str, site_url: str) -> bool:
    """The SEO plugin's closing paragraph: links to the post and to the site, little else."""
    to_post = any(_same_page(href, post_url) for href, _ in paragraph.links)
    to_site = any(_home_page(href, post_url, site_url) for href, _ in paragraph.links)
    own = len(paragraph.plain) - sum(len(text) for _, text in paragraph.links)
    return to_post and to_site and own <= _OWN_TEXT


def _is_more_link(paragraph: _Paragraph, post_url: str, title: str) -> bool:
    """The paragraph is nothing but a link to the post ("Continue reading", "Weiterlesen")."""
    if len(paragraph.links) != 1 or not _same_page(paragraph.links[0][0], post_url):
        return False
    text = paragraph.links[0][1]
    return paragraph.plain == text and len(text.replace(title, "")) <= _MORE_TEXT


def _drop_more_link(paragraph: _Paragraph, post_url: str, title: str) -> str | None:
    """The paragraph's text without a "Continue reading" link that ends it, or None."""
    if not paragraph.links or "".join(paragraph.after_last_link).strip(" .…»›→") or len(paragraph.links) > 2:
        return None
    href, text = paragraph.links[-1]
    if not _same_page(href, post_url) or len(text.replace(title, "")) > _MORE_TEXT:
        return None
    plain = paragraph.plain
    cut = plain.rfind(text) if text else -1
    return plain[:cut].rstrip() if cut > 0 else None


def _drop_flat_boilerplate(text: str, title: str, site_name: str) -> str | None:
    """The text without a closing sentence naming the post's title and then the site, as a
    feed that flattened the plugin's paragraph carries it; None when there is none."""
    # A short title ("AI") could be any word of the text: only a distinctive one counts.
    if len(title) < 6 or not site_name:
        return None
    at = text.rfind(title)
    site_at = text.find(site_name, at + len(title)) if at >= 0 else -1
    if site_at < 0 or len(text) - (site_at + len(site_name)) > _OWN_TEXT // 2:
        return None
    if not _whole(text, at, len(title)) or not _whole(text, site_at, len(site_name)):
        return None
    breaks = [m.end() for m in _SENTENCE_BREAK.finditer(text, 0, at)]
    start = breaks[-1] if breaks else 0
    if at - start > _OWN_TEXT // 2:
        return None
    return text[:start].rstrip()


def _whole(text: str, at: int, length: int) -> bool:
    """`text[at:at + length]` is not part of a longer Latin word. (Korean particles join
    the word before them: "…에 처음 등장했습니다" follows the site's name directly.)"""
    before = text[at - 1] if at > 0 else " "
    after = text[at + length] if at + length < len(text) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


@dataclass(frozen=True)
class Summary:
    """A cleaned summary, and whether anything was taken out of it (or it came from the
    content because the description had nothing else)."""

    text: str
    cleaned: bool


def _clean_text(markup: str, *, post_url: str, site_url: str, title: str, site_name: str) -> tuple[str, bool, bool]:
    """(text, cleaned, cut short) of one piece of HTML."""
    paragraphs = _paragraphs(markup)
    cleaned = cut_short = False
    while paragraphs:
        if _is_boilerplate(paragraphs[-1], post_url, site_url):
            paragraphs.pop()
        elif _is_more_link(paragraphs[-1], post_url, title):
            # A "Continue reading" link says the text before it was cut short.
            paragraphs.pop()
            cut_short = True
        else:
            break
        cleaned = True
    texts = [p.plain for p in paragraphs]
    if paragraphs:
        without_link = _drop_more_link(paragraphs[-1], post_url, title)
        if without_link is not None:
            texts[-1], cleaned, cut_short = without_link, True, True
    text = fold_text(" ".join(texts))
    flat = _drop_flat_boilerplate(text, title, site_name)
    if flat is not None:
        text, cleaned = flat, True
    marker = _MARKER.search(text) or _BARE_ELLIPSIS.search(text)
    if marker:
        text, cleaned, cut_short = text[: marker.start()].rstrip(), cleaned or "[" in marker.group(0), True
    return text, cleaned, cut_short


def clean_summary(
    markup: str,
    *,
    limit: int,
    post_url: str = "",
    title: str = "",
    site_url: str = "",
    site_name: str = "",
    content: str = "",
) -> Summary:
    """The summary of a post from its description `markup` (sanitized HTML or text): the
    plugin's closing paragraph, a final "Continue reading" link and the trailing excerpt
    marker taken out; from the first paragraph of `content` when nothing else is left;
    cut on a word boundary to `limit` characters. Text cut short ends with one `…`."""
    text, cleaned, cut_short = _clean_text(markup, post_url=post_url, site_url=site_url, title=title, site_name=site_name)
    if not text and content:
        for paragraph in _paragraphs(content):
            first, _, short = _clean_text(
                f"<p>{_escape(paragraph.plain)}</p>", post_url=post_url, site_url=site_url, title=title, site_name=site_name
            )
            if first and not _is_boilerplate(paragraph, post_url, site_url) and not _is_more_link(paragraph, post_url, title):
                text, cut_short = first, short
                cleaned = cleaned or bool(markup.strip())
                break
    if cut_short and text and not _SENTENCE_END.search(text):
        text += "…"
    return Summary(shorten(text, limit), cleaned)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
