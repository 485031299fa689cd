"""The checks an issue must pass before an editor approves it and before every send.

Owns: `Finding`, `Preflight`, `SegmentSize`, `LinkChecker`, `run_preflight`,
`require_passing`, `sponsor_problems` and one `check_*` function per check. Imports `config`, `errors`,
`models`, `netguard` (every link is asked through its guarded client), `render`, `sending.planning` (the distinct section choices of the subscribers),
`transports.outbox` (to see the headers a message is written with) and what `subscribers`
exports.

An error blocks approval and sending; a warning is shown to the editor and nothing more.

    check                     error                                  warning
    segment HTML size         over `delivery.warn_bytes` (90 KB)     -
    images                    an <img> without an alt attribute      -
    article links             -                                      not answering 2xx/3xx
    sections                  nothing to render                      a chosen section is empty
    subject, preheader        subject empty or over 150 characters   subject over 70, preheader
                                                                     empty or over 140
    unsubscribe               no unsubscribe link in a part          -
    headers                   no List-Unsubscribe(-Post) header      its URL is not https (RFC 8058)
    unresolved                an unknown %%tag%% (ours only)         -
    sponsor                   no label, a link that is not http(s)   link not https, or not answering
    welcome                   -                                      the welcome email of this
                                                                     issue does not render, or
                                                                     lacks its unsubscribe link
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import Literal

import httpx
from sqlalchemy import Engine

import subscribers as people

from . import links, netguard
from .config import Settings
from .errors import AddressRefusedError, DeadlineError, IssueError, RenderError
from .models import ALL_TAGS, TAG_PATTERN, TAGS, Article, Batch, RenderedMessage, Sponsor
from .netguard import NetworkPolicy
from .text import counted
from .render import IssueContent, Renderer
from .sending import planning
from .transports.outbox import MessageTemplate

SUBJECT_MAX = 150
SUBJECT_SHOWN = 70
PREHEADER_SHOWN = 140
Level = Literal["error", "warning"]

_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One thing the preflight found: `check` names it, `message` says what and where."""

    level: Level
    check: str
    message: str


@dataclass(frozen=True)
class SegmentSize:
    """The HTML size of one segment: the subscribers who chose `sections`."""

    key: str
    label: str
    html_bytes: int


@dataclass(frozen=True)
class Preflight:
    """What the checks found, and every segment's size against `limit`."""

    findings: tuple[Finding, ...]
    sizes: tuple[SegmentSize, ...] = ()
    limit: int = 90_000
    links_checked: bool = False

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warning")

    @property
    def passed(self) -> bool:
        return not self.errors


def _error(check: str, message: str) -> Finding:
    return Finding("error", check, message)


def _warning(check: str, message: str) -> Finding:
    return Finding("warning", check, message)


def check_size(message: RenderedMessage, *, limit: int) -> list[Finding]:
    if message.html_bytes <= limit:
        return []
    return [_error("size", f"the HTML is {message.html_bytes:,} bytes, over {limit:,}; Gmail clips messages "
                           "at about 102 KB (exclude articles or shorten the intro)")]


def check_images(message: RenderedMessage) -> list[Finding]:
    """Every image needs an alt attribute: text that stands for it, or `alt=""` for an
    image beside its own headline (decorative: a screen reader would read the title twice)."""
    found = []
    for tag in _IMG.findall(message.html):
        if _ALT.search(tag) is None:
            src = _SRC.search(tag)
            where = next((g for g in src.groups() if g), "") if src else ""
            found.append(_error("images", f"the image {where or tag[:80]} has no alt attribute "
                                          "(alt text, or alt=\"\" when it is decorative)"))
    return found


def check_unsubscribe(message: RenderedMessage) -> list[Finding]:
    tag = TAGS["unsubscribe_url"]
    return [
        _error("unsubscribe", f"the {part} part has no unsubscribe link ({tag} in the template)")
        for part, body in (("HTML", message.html), ("text", message.text))
        if tag not in body
    ]


def check_unresolved(message: RenderedMessage) -> list[Finding]:
    """Substitution tags that nothing fills. Only our own tag syntax is looked for: the
    render neutralizes `%%` in articles and editors' text (`render.neutralize`), so a tag
    found here came from a template, while text such as `{{ 7*7 }}` in an article is
    content, printed as it is."""
    found = []
    known = ALL_TAGS
    for part, body in (("subject", message.subject), ("preheader", message.preheader),
                       ("HTML", message.html), ("text", message.text)):
        for tag in sorted(set(TAG_PATTERN.findall(body)) - known):
            found.append(_error("unresolved", f"the {part} holds the substitution tag {tag}, which "
                                              f"nothing fills (known: {', '.join(sorted(known))})"))
    return found


def check_subject(message: RenderedMessage) -> list[Finding]:
    found = []
    subject, preheader = message.subject.strip(), message.preheader.strip()
    if not subject:
        found.append(_error("subject", "the subject is empty"))
    elif len(subject) > SUBJECT_MAX:
        found.append(_error("subject", f"the subject has {len(subject)} characters, over {SUBJECT_MAX}; "
                                       f"inboxes show about {SUBJECT_SHOWN}"))
    elif len(subject) > SUBJECT_SHOWN:
        found.append(_warning("subject", f"the subject has {len(subject)} characters; inboxes show about "
                                         f"{SUBJECT_SHOWN}, the rest is cut"))
    if not preheader:
        found.append(_warning("preheader", "the preheader is empty: inboxes show the email's first words instead"))
    elif len(preheader) > PREHEADER_SHOWN:
        found.append(_warning("preheader", f"the preheader has {len(preheader)} characters; inboxes show about "
                                           f"{PREHEADER_SHOWN}"))
    return found


def check_headers(settings: Settings, message: RenderedMessage) -> list[Finding]:
    """The List-Unsubscribe headers as the outbox writes them for a sample recipient, and
    whether the one-click URL can work (RFC 8058 asks for https)."""
    base, mailto = settings.site.base_url, settings.unsubscribe_mailto
    recipient = links.recipient(0, "preflight@example.com", "TOKEN", "", base_url=base, mailto=mailto)
    batch = Batch(0, 0, "preflight", 0, message, (recipient,), settings.sender.name, settings.sender.address, "")
    template = MessageTemplate(message, sender=settings.sender.address, reply_to="", domain="example.com")
    headers = BytesParser(policy=policy.default).parsebytes(template.build(recipient, batch=batch, now=_epoch()))
    found = []
    if not headers["List-Unsubscribe"] or "mailto:" not in str(headers["List-Unsubscribe"]):
        found.append(_error("headers", "messages would go out without a List-Unsubscribe header"))
    if headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click":
        found.append(_error("headers", "messages would go out without List-Unsubscribe-Post (one-click)"))
    if not base.startswith("https://"):
        found.append(_warning("headers", f"site.base_url {base} is not https://: mailbox providers ignore a "
                                             "one-click unsubscribe URL that is not https (RFC 8058)"))
    return found


SPONSOR_LABEL_MAX = 60
SPONSOR_TEXT_MAX = 400
_WEB_URL = re.compile(r"https?://[^\s/\"'<>]+[^\s\"'<>]*")


def sponsor_problems(sponsor: Sponsor) -> list[tuple[str, str]]:
    """What is wrong with a sponsor's slot, as (option, problem) pairs; [] when nothing.
    The slot is shown as "Sponsored" with its label: a slot without one would hide who
    pays, and only web links may be followed (no javascript:, data: or mailto:)."""
    found = []
    if not sponsor.label.strip():
        found.append(("label", "a sponsor needs a label (the sponsor's name), shown after \"Sponsored\""))
    elif len(sponsor.label) > SPONSOR_LABEL_MAX:
        found.append(("label", f"{len(sponsor.label)} characters, at most {SPONSOR_LABEL_MAX}"))
    if len(sponsor.text) > SPONSOR_TEXT_MAX:
        found.append(("text", f"{len(sponsor.text)} characters, at most {SPONSOR_TEXT_MAX}"))
    if not _WEB_URL.fullmatch(sponsor.url):
        found.append(("url", f"{sponsor.url!r} is not an http:// or https:// URL"))
    if sponsor.image_url and not (sponsor.image_url.startswith("https://") and _WEB_URL.fullmatch(sponsor.image_url)):
        found.append(("image", f"{sponsor.image_url!r} is not an https:// URL of an image"))
    return found


def check_sponsor(sponsor: Sponsor | None) -> list[Finding]:
    """The sponsor's label and links (its link is asked with the article links)."""
    if sponsor is None:
        return []
    found = [_error("sponsor", f"sponsor {key}: {problem}") for key, problem in sponsor_problems(sponsor)]
    if not found and not sponsor.url.startswith("https://"):
        found.append(_warning("sponsor", f"sponsor url: {sponsor.url} is not https://"))
    return found


def check_welcome(settings: Settings, renderer: Renderer, content: IssueContent, available: Sequence[str]) -> list[Finding]:
    """The welcome new readers will get once this issue is out (`[welcome]`): it renders,
    with its unsubscribe link and no stray tag. Only warnings: the digest does not wait
    for it."""
    if not settings.welcome.enabled:
        return []
    names = settings.section_names()
    try:
        message = renderer.render_welcome(content, sections=available, section_names=[names[s] for s in available],
                                          subject=settings.welcome.subject_for(settings.site.name))
    except RenderError as exc:
        return [_warning("welcome", f"the welcome email cannot be rendered with this issue: {exc}")]
    return [_warning("welcome", f"the welcome email: {f.message}")
            for f in (*check_unsubscribe(message), *check_unresolved(message))]


def _epoch() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def check_sections(settings: Settings, available: Sequence[str], choices: Iterable[str]) -> list[Finding]:
    """Warnings for configured sections without an article that subscribers chose, and for
    subscribers none of whose sections has an article (they get no email)."""
    names = settings.section_names()
    chosen: dict[str, int] = {}
    nothing = 0
    for key in choices:
        sections = people.parse_sections_key(key)
        for slug in sections:
            chosen[slug] = chosen.get(slug, 0) + 1
        if not set(sections) & set(available):
            nothing += 1
    found = [
        _warning("sections", f"the section {names[slug]} has no article this time, and subscribers chose it")
        for slug in names if slug not in available and chosen.get(slug)
    ]
    if nothing:
        found.append(_warning("sections", "subscribers who chose only sections without an article get no email "
                                          f"this time ({nothing} distinct choices)"))
    return found


class LinkChecker:
    """Asks each article link whether it answers: HEAD, then GET when HEAD fails. Results
    are remembered for `ttl` seconds, so a page reloaded while editing does not ask again.

    Links are asked through the network guard: a link to an internal address (loopback,
    private, link-local, ...) outside `policy` is not asked, and reported as refused. Each
    request is over within `timeout` seconds, however slowly the server answers."""

    def __init__(self, *, timeout: float, user_agent: str, policy: NetworkPolicy, ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.policy = policy
        self.user_agent = user_agent
        self.ttl = ttl
        self.clock = clock
        self._seen: dict[str, tuple[float, str]] = {}

    def _probe(self, client: httpx.Client, url: str) -> str:
        """"" when the link answers, else what went wrong."""
        problem = ""
        for method in ("HEAD", "GET"):
            try:
                with netguard.deadline(self.timeout, setting="[preview] link_timeout"), \
                        client.stream(method, url) as response:
                    if response.status_code < 400:
                        return ""
                    problem = f"answered {response.status_code} {response.reason_phrase}".strip()
            except (httpx.TimeoutException, DeadlineError):
                problem = f"did not answer within {self.timeout:g} s"
            except httpx.HTTPError as exc:
                problem = f"cannot be reached ({type(exc).__name__})"
            except AddressRefusedError as exc:
                return f"was not asked ({exc})"
        return problem

    def check(self, articles: Sequence[Article], *, sponsor: Sponsor | None = None) -> list[Finding]:
        """Warnings for the article links (and the sponsor's) that do not answer."""
        titles = {a.url: repr(a.title) for a in articles}
        if sponsor is not None and _WEB_URL.fullmatch(sponsor.url):
            titles[sponsor.url] = f"sponsor {sponsor.label!r}"
        now = self.clock()
        urls = sorted(titles)
        todo = [u for u in urls if u not in self._seen or now - self._seen[u][0] > self.ttl]
        if todo:
            headers = {"user-agent": self.user_agent}
            with netguard.make_client(self.policy, timeout=self.timeout, headers=headers) as client, \
                    ThreadPoolExecutor(max_workers=8) as pool:
                for url, problem in zip(todo, pool.map(lambda u: self._probe(client, u), todo), strict=True):
                    self._seen[url] = (now, problem)
        return [
            _warning("links", f"{titles[url]}: {url} {self._seen[url][1]}")
            for url in urls if self._seen[url][1]
        ]


@dataclass
class _Segments:
    keys: list[tuple[str, ...]] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)


def _segments(engine: Engine, issue_id: int, available: Sequence[str], choices: Iterable[str] | None) -> _Segments:
    """Every section set a subscriber chose (`choices`, or as stored), cut to the sections
    the issue has; the full issue first (the web version, and what the preview shows by
    default)."""
    if choices is None:
        with engine.connect() as conn:
            raw = planning.unplanned_section_keys(conn, issue_id)
    else:
        raw = sorted(choices)
    found = _Segments(keys=[tuple(available)], choices=raw)
    for key in raw:
        picked = set(people.parse_sections_key(key))
        chosen = tuple(s for s in available if s in picked)
        if chosen and chosen not in found.keys:
            found.keys.append(chosen)
    return found


def _where(finding: Finding, labels: list[str], *, every: bool) -> Finding:
    if finding.check in ("subject", "preheader", "headers"):
        return finding
    more = f" (and {len(labels) - 1} more segments)" if len(labels) > 1 else ""
    return Finding(finding.level, finding.check, f"{labels[0]}{more}: {finding.message}")


def segment_label(sections: Sequence[str], settings: Settings, *, every: Sequence[str] = ()) -> str:
    names = settings.section_names()
    if every and list(sections) == list(every):
        return "all sections"
    return "segment " + ", ".join(names.get(s, s) for s in sections)


def run_preflight(
    engine: Engine,
    settings: Settings,
    issue_id: int,
    content: IssueContent,
    *,
    renderer: Renderer,
    links: LinkChecker | None = None,
    choices: Iterable[str] | None = None,
) -> Preflight:
    """Every check on the issue `content` as each segment of today's subscribers would get
    it. Article links are asked only when `links` is given. `choices` are the section
    choices of the subscribers not yet planned for the issue, when the caller has just
    read them (as planning does); otherwise they are read here."""
    limit = settings.delivery.warn_bytes
    available = [b.slug for b in content.blocks if b.articles]
    if not available:
        return Preflight((_error("sections", f"issue {content.slug} has no article left: nothing to send"),), limit=limit)
    segments = _segments(engine, issue_id, available, choices)
    # A problem found in several segments is listed once, naming where it was seen first.
    seen: dict[Finding, list[str]] = {}
    sizes: list[SegmentSize] = []
    for index, sections in enumerate(segments.keys):
        label = segment_label(sections, settings, every=available)
        try:
            message = renderer.render(content, sections=sections)
        except RenderError as exc:
            return Preflight((_error("template", str(exc)),), tuple(sizes), limit)
        sizes.append(SegmentSize(",".join(sections), label, message.html_bytes))
        found = [*check_size(message, limit=limit), *check_images(message), *check_unsubscribe(message),
                 *check_unresolved(message)]
        if index == 0:
            found += [*check_subject(message), *check_headers(settings, message)]
        for finding in found:
            seen.setdefault(finding, []).append(label)
    findings = [_where(finding, labels, every=len(sizes) > 1) for finding, labels in seen.items()]
    findings += check_sections(settings, available, segments.choices)
    findings += check_sponsor(content.sponsor)
    findings += check_welcome(settings, renderer, content, available)
    if links is not None:
        findings += links.check([a for b in content.blocks for a in b.articles], sponsor=content.sponsor)
    order = {"error": 0, "warning": 1}
    findings.sort(key=lambda f: order[f.level])
    return Preflight(tuple(findings), tuple(sizes), limit, links_checked=links is not None)


def require_passing(report: Preflight, slug: str) -> None:
    """Raise `IssueError` listing every error of the preflight, if it found any."""
    if report.errors:
        listed = "; ".join(f.message for f in report.errors)
        raise IssueError(f"issue {slug} fails its preflight ({counted(len(report.errors), 'error')}): {listed}")
