"""The editors' changes of a draft: its texts, its articles (pin, exclude, move, add an
item of their own) and its sponsor's slot. The desk and the `draft` commands call these
same functions.

Owns: `set_subject`, `set_preheader`, `set_intro`, `set_texts`, `pin`, `exclude`, `move`,
`add_item`, `set_sponsor`. Imports `config`, `errors`, `models`, `store` (which writes the
issue's rows),
`preflight` (the sponsor's checks), `drafts.compose` and `drafts.journal`.

Every change is one transaction that refuses an approved or sending draft (with the
reason), logs the change with where it came from (`origin`: "desk" or "cli") and steps
the draft's version; with `expect`, a change made against an older version is refused
(`ConflictError`) and nothing is written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import nh3
from sqlalchemy import Connection, Engine

from .. import store
from ..config import Settings
from ..errors import EditError
from ..models import Article, Issue, Sponsor
from ..preflight import sponsor_problems
from . import journal
from .compose import EDITOR_SOURCE, Choice, Draft, choices_of, editable, load_draft, recompose, save_choice

_URL = re.compile(r"^https?://[^\s/]+[^\s]*$")
SUBJECT_LIMIT = 300
PREHEADER_LIMIT = 300
INTRO_LIMIT = 10_000


def _one_line(value: str, what: str, *, limit: int) -> str:
    text = " ".join(value.split())
    if len(text) > limit:
        raise EditError(f"{what}: {len(text)} characters, at most {limit} are allowed")
    return text


def _intro(markdown: str) -> str:
    if len(markdown) > INTRO_LIMIT:
        raise EditError(f"intro: {len(markdown):,} characters, at most {INTRO_LIMIT:,} are allowed")
    return markdown.strip()


def _quote(text: str, *, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit - 1] + "…") if text else "(default)"


def _update_issue(engine: Engine, values: dict[str, str], *, origin: str, expect: int | None,
                  now: datetime | None) -> Issue:
    with engine.begin() as conn:
        issue = editable(conn)
        changed = {k: v for k, v in values.items() if getattr(issue, k) != v}
        details = [f"{len(v):,} characters" if k == "intro" else _quote(v) for k, v in changed.items()]
        if len(changed) > 1:
            details = [f"{k}: {d}" for k, d in zip(changed, details, strict=True)]
        action = f"{next(iter(changed))} set" if len(changed) == 1 else "texts set"
        journal.record(conn, issue.id, origin=origin, action=action, detail="; ".join(details) or "unchanged",
                       now=now or datetime.now(UTC), expect=expect)
        store.edit_issue(conn, issue.id, subject=values.get("subject"), preheader=values.get("preheader"),
                         intro=values.get("intro"))
        found = store.find_issue(conn, issue.id)
    assert found is not None
    return found


def set_subject(engine: Engine, subject: str, *, origin: str = "cli", expect: int | None = None,
                now: datetime | None = None) -> Issue:
    """Set the subject line; empty gives back the default (site name and first headline)."""
    return _update_issue(engine, {"subject": _one_line(subject, "subject", limit=SUBJECT_LIMIT)},
                         origin=origin, expect=expect, now=now)


def set_preheader(engine: Engine, preheader: str, *, origin: str = "cli", expect: int | None = None,
                  now: datetime | None = None) -> Issue:
    """Set the preheader, the line inboxes show after the subject; empty gives the default."""
    return _update_issue(engine, {"preheader": _one_line(preheader, "preheader", limit=PREHEADER_LIMIT)},
                         origin=origin, expect=expect, now=now)


def set_intro(engine: Engine, markdown: str, *, origin: str = "cli", expect: int | None = None,
              now: datetime | None = None) -> Issue:
    """Set the introduction, in Markdown (rendered and sanitized when the issue is)."""
    return _update_issue(engine, {"intro": _intro(markdown)}, origin=origin, expect=expect, now=now)


def set_texts(engine: Engine, *, subject: str, preheader: str, intro: str, origin: str = "cli",
              expect: int | None = None, now: datetime | None = None) -> Issue:
    """Set subject, preheader and intro together: one change, one version step."""
    values = {"subject": _one_line(subject, "subject", limit=SUBJECT_LIMIT),
              "preheader": _one_line(preheader, "preheader", limit=PREHEADER_LIMIT), "intro": _intro(intro)}
    return _update_issue(engine, values, origin=origin, expect=expect, now=now)


def _article_in_play(conn: Connection, issue: Issue, article_id: int) -> Article:
    found = store.articles_by_id(conn, [article_id]).get(article_id)
    if found is None:
        raise EditError(f"article {article_id}: no such article (see `newsletter draft show`)")
    taken = store.article_issue(conn, article_id)
    if taken is not None and taken != issue.id:
        raise EditError(f"article {article_id}: already in another issue")
    return found


def _change(engine: Engine, settings: Settings, article_id: int, edit: Callable[[Choice], Choice], *,
            action: str, now: datetime, origin: str, expect: int | None) -> Draft:
    with engine.begin() as conn:
        issue = editable(conn)
        article = _article_in_play(conn, issue, article_id)
        journal.record(conn, issue.id, origin=origin, action=action, detail=f"{article_id} {_quote(article.title)}",
                       now=now, expect=expect)
        choice = edit(choices_of(conn, issue.id).get(article_id, Choice()))
        save_choice(conn, issue.id, article_id, choice, now=now)
        recompose(conn, settings, issue, end=issue.window_end)
        return load_draft(conn, settings, issue)


def pin(engine: Engine, settings: Settings, article_id: int, *, on: bool = True, now: datetime,
        origin: str = "cli", expect: int | None = None) -> Draft:
    """Keep an article in the draft whatever the selection says; the first pinned article
    leads the issue. `on=False` unpins it (it stays in while the selection keeps it)."""
    return _change(engine, settings, article_id, lambda c: Choice(on, False, c.section, c.position),
                   action="pinned" if on else "unpinned", now=now, origin=origin, expect=expect)


def exclude(engine: Engine, settings: Settings, article_id: int, *, on: bool = True, now: datetime,
            origin: str = "cli", expect: int | None = None) -> Draft:
    """Keep an article out of the draft; `on=False` brings it back in."""
    return _change(engine, settings, article_id,
                   lambda c: Choice(False, True) if on else Choice(c.pinned, False, c.section, c.position),
                   action="excluded" if on else "included", now=now, origin=origin, expect=expect)


def _check_section(settings: Settings, section: str) -> None:
    if section not in settings.section_names():
        raise EditError(f"section {section!r}: no such section (known: {', '.join(settings.section_names())})")


def move(engine: Engine, settings: Settings, article_id: int, *, section: str | None = None,
         position: int | None = None, now: datetime, origin: str = "cli", expect: int | None = None) -> Draft:
    """Put an article in another section and/or at a rank (1 = first) in its section. With
    a rank, the whole section's order is fixed as it then stands, so that the rank holds
    after every refresh."""
    if section is not None:
        _check_section(settings, section)
    if position is not None and not 1 <= position <= 1000:
        raise EditError(f"position {position}: expected a rank from 1 (first) to 1000")
    with engine.begin() as conn:
        issue = editable(conn)
        article = _article_in_play(conn, issue, article_id)
        draft = load_draft(conn, settings, issue)
        here = next((a.section for a in draft.articles if a.article.id == article_id), "")
        target = section or here
        choices = choices_of(conn, issue.id)
        mine = choices.get(article_id, Choice())
        where = [f"to {target}"] if section is not None and section != here else []
        if position is not None:
            order = [a.article.id for a in draft.articles if a.section == target and a.article.id != article_id]
            order.insert(min(position, len(order) + 1) - 1, article_id)
            for rank, other in enumerate(order, start=1):
                if other != article_id:
                    kept = choices.get(other, Choice())
                    save_choice(conn, issue.id, other, Choice(kept.pinned, False, target, rank), now=now)
            save_choice(conn, issue.id, article_id, Choice(mine.pinned, False, target, order.index(article_id) + 1),
                        now=now)
            where.append(f"rank {order.index(article_id) + 1}")
        else:
            moved = target != here
            save_choice(conn, issue.id, article_id,
                        Choice(mine.pinned, False, target, None if moved else mine.position), now=now)
        journal.record(conn, issue.id, origin=origin, action="moved",
                       detail=f"{article_id} {_quote(article.title)} {', '.join(where) or 'in place'}", now=now,
                       expect=expect)
        recompose(conn, settings, issue, end=issue.window_end)
        return load_draft(conn, settings, issue)


def add_item(engine: Engine, settings: Settings, *, title: str, link: str, section: str, summary: str = "",
             image_url: str = "", now: datetime, origin: str = "cli", expect: int | None = None) -> Draft:
    """Add an editor's own item (not on the site) to a section of the draft, stored as an
    article of the `editor` source like a Markdown item. Title and summary are kept as
    plain text; links must be http(s)."""
    clean_title = _one_line(nh3.clean(title, tags=set()), "title", limit=300)
    if not clean_title:
        raise EditError("title: an item needs a title")
    if not _URL.match(link.strip()):
        raise EditError(f"link {link[:200]!r}: expected an http:// or https:// URL")
    if image_url and not _URL.match(image_url.strip()):
        raise EditError(f"image {image_url[:200]!r}: expected an http:// or https:// URL of an image")
    _check_section(settings, section)
    clean_summary = _one_line(nh3.clean(summary, tags=set()), "summary", limit=2000)
    with engine.begin() as conn:
        issue = editable(conn)
        existing = store.article_id_by_url(conn, link.strip())
        if existing is not None:
            raise EditError(f"link {link.strip()}: already the link of article {existing}; pin that article instead")
        journal.record(conn, issue.id, origin=origin, action="item added",
                       detail=f"{_quote(clean_title)} in {section}", now=now, expect=expect)
        article_id = store.add_article(
            conn, guid=f"editor:{issue.slug}:{uuid.uuid4().hex[:12]}", url=link.strip(), title=clean_title,
            summary=clean_summary, image_url=image_url.strip(), source=EDITOR_SOURCE, now=now,
        )
        save_choice(conn, issue.id, article_id, Choice(pinned=True, section=section), now=now)
        recompose(conn, settings, issue, end=issue.window_end)
        return load_draft(conn, settings, issue)


def set_sponsor(engine: Engine, settings: Settings, sponsor: Sponsor | None, *, now: datetime,
                origin: str = "cli", expect: int | None = None) -> Draft:
    """Put a sponsor's slot in the draft (None removes it). Label and text are kept as
    plain text; the link must be http(s), the image https, `after` a configured section
    (empty: after the first section). `EditError` names the option that is wrong."""
    if sponsor is not None:
        sponsor = Sponsor(
            label=_one_line(nh3.clean(sponsor.label, tags=set()), "--label", limit=200),
            text=_one_line(nh3.clean(sponsor.text, tags=set()), "--text", limit=2000),
            url=sponsor.url.strip(), image_url=sponsor.image_url.strip(), after=sponsor.after.strip(),
        )
        problems = sponsor_problems(sponsor)
        if problems:
            raise EditError("; ".join(f"--{key}: {problem}" for key, problem in problems))
        if sponsor.after and sponsor.after not in settings.section_names():
            raise EditError(f"--after: no section {sponsor.after!r} (known: {', '.join(settings.section_names())})")
    with engine.begin() as conn:
        issue = editable(conn)
        journal.record(conn, issue.id, origin=origin, action="sponsor removed" if sponsor is None else "sponsor set",
                       detail="" if sponsor is None else _quote(sponsor.label), now=now, expect=expect)
        store.save_sponsor(conn, issue.id, sponsor, now=now)
        return load_draft(conn, settings, issue)

