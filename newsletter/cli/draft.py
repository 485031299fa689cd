"""`newsletter draft …`: the editors' draft of the coming issue, from the terminal."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .. import issues
from ..config import Settings
from ..text import counted
from .common import (
    F,
    JsonOpt,
    _fail,
    _now,
    _print_json,
    app,
    console,
    database,
    err,
    handled,
    settings,
)

draft_app = typer.Typer(help="The draft of the coming issue: build, change, check, approve.", no_args_is_help=True)
app.add_typer(draft_app, name="draft")
ArticleArg = Annotated[int, typer.Argument(help="Article id, as `newsletter draft show` lists it.")]


def edited(func: F) -> F:
    """`handled`, with a wrong value given by an editor (unknown article or section, a
    value too long) answered as bad input: exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import EditError

        try:
            return func(*args, **kwargs)
        except EditError as exc:
            _fail(exc, str(exc), 2)

    return handled(wrapper)  # type: ignore[return-value]


def _draft_table(draft: Any) -> Table:
    from ..drafts import Draft

    assert isinstance(draft, Draft)
    issue = draft.issue
    table = Table(title=f"Draft {issue.slug} ({issue.status.value})")
    for column in ("id", "section", "title", "notes"):
        table.add_column(column, justify="right" if column == "id" else "left")
    names = {b.slug: b.name for b in draft.blocks}
    for item in draft.articles:
        notes = [n for n, on in (("pinned", item.pinned), ("editor's item", item.editor_item),
                                 (f"rank {item.position}", item.position is not None)) if on]
        table.add_row(str(item.article.id), escape(names.get(item.section, item.section)), escape(item.article.title),
                      ", ".join(notes))
    for article in draft.excluded:
        table.add_row(str(article.id), "", escape(article.title), "[yellow]excluded[/yellow]")
    return table


def _draft_dict(draft: Any) -> dict[str, Any]:
    issue = draft.issue
    return {
        "issue": issue.slug, "status": issue.status.value, "subject": issue.subject, "preheader": issue.preheader,
        "intro": issue.intro,
        "articles": [{"id": a.article.id, "section": a.section, "title": a.article.title, "url": a.article.url,
                      "pinned": a.pinned, "position": a.position, "editor_item": a.editor_item} for a in draft.articles],
        "excluded": [{"id": a.id, "title": a.title} for a in draft.excluded],
    }


def _show_draft(draft: Any, as_json: bool) -> None:
    if as_json:
        _print_json(_draft_dict(draft))
        return
    issue = draft.issue
    console.print(_draft_table(draft))
    console.print(f"Subject: {issue.subject or '(default: site name and first headline)'}", markup=False, highlight=False)
    console.print(f"Preheader: {issue.preheader or '(default: the next headlines)'}", markup=False, highlight=False)
    if issue.intro:
        console.print(f"Intro: {issue.intro}", markup=False, highlight=False)


def _print_preflight(report: Any) -> None:
    for size in report.sizes:
        console.print(f"{size.label}: {size.html_bytes:,} of {report.limit:,} bytes", markup=False, highlight=False)
    for finding in report.findings:
        colour = "red" if finding.level == "error" else "yellow"
        err.print(f"[{colour}]{finding.level}:[/{colour}] {escape(f'[{finding.check}]')} {escape(finding.message)}",
                  highlight=False)
    if report.passed:
        console.print(f"Preflight passed with {counted(len(report.warnings), 'warning')}.")


@draft_app.command("build")
@edited
def draft_build(
    force: Annotated[bool, typer.Option("--force", help="With no new article in the window, build from older unused ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the draft of the coming issue, or refresh it with new articles keeping the
    editors' changes (subject, preheader, intro, pinned, excluded and moved articles)."""
    from .. import drafts

    cfg = settings()
    result = drafts.build_draft(database(cfg), cfg, now=_now(), force=force)
    if as_json:
        _print_json({**_draft_dict(result.draft), "created": result.created, "added": list(result.added),
                     "removed": list(result.removed), "warnings": list(result.warnings)})
        return
    _show_draft(result.draft, False)
    console.print(f"{'Built' if result.created else 'Refreshed'} draft {result.draft.issue.slug}: "
                  f"{counted(len(result.added), 'article')} added, {len(result.removed):,} removed.", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}")


@draft_app.command("show")
@edited
def draft_show(as_json: JsonOpt = False) -> None:
    """Show the draft: its articles by section with their ids, subject, preheader and intro."""
    from .. import drafts

    cfg = settings()
    _show_draft(drafts.current_draft(database(cfg), cfg), as_json)


@draft_app.command("set-subject")
@edited
def draft_set_subject(subject: Annotated[str, typer.Argument(help="The subject line; \"\" for the default.")]) -> None:
    """Set the draft's subject line."""
    from .. import drafts

    issue = drafts.set_subject(database(settings()), subject)
    console.print(f"Subject of {issue.slug}: {issue.subject or '(default)'}", markup=False, highlight=False)


@draft_app.command("set-preheader")
@edited
def draft_set_preheader(preheader: Annotated[str, typer.Argument(help="The preheader; \"\" for the default.")]) -> None:
    """Set the draft's preheader, the line an inbox shows after the subject."""
    from .. import drafts

    issue = drafts.set_preheader(database(settings()), preheader)
    console.print(f"Preheader of {issue.slug}: {issue.preheader or '(default)'}", markup=False, highlight=False)


@draft_app.command("intro")
@edited
def draft_intro(
    text: Annotated[str | None, typer.Argument(help="The introduction in Markdown; \"\" removes it.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the Markdown from this file.")] = None,
) -> None:
    """Set the draft's introduction, written in Markdown (links, emphasis, lists)."""
    from .. import drafts
    from ..errors import EditError

    if (text is None) == (file is None):
        raise EditError("intro: give the text or --file, one of them")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EditError(f"--file {file}: cannot be read ({exc})") from None
    issue = drafts.set_intro(database(settings()), text or "")
    console.print(f"Intro of {issue.slug}: {len(issue.intro)} characters.")


@draft_app.command("pin")
@edited
def draft_pin(
    article: ArticleArg,
    undo: Annotated[bool, typer.Option("--undo", help="Unpin the article.")] = False,
) -> None:
    """Keep an article in the draft, first in its section, whatever the selection says."""
    from .. import drafts

    cfg = settings()
    drafts.pin(database(cfg), cfg, article, on=not undo, now=_now())
    console.print(f"Article {article} {'unpinned' if undo else 'pinned'}.")


@draft_app.command("exclude")
@edited
def draft_exclude(
    article: ArticleArg,
    undo: Annotated[bool, typer.Option("--undo", help="Bring the article back in.")] = False,
) -> None:
    """Keep an article out of the draft (and out of every refresh of it)."""
    from .. import drafts

    cfg = settings()
    drafts.exclude(database(cfg), cfg, article, on=not undo, now=_now())
    console.print(f"Article {article} {'back in' if undo else 'excluded'}.")


@draft_app.command("move")
@edited
def draft_move(
    article: ArticleArg,
    section: Annotated[str | None, typer.Option("--section", help="Slug of the section to move it to.")] = None,
    position: Annotated[int | None, typer.Option("--position", help="Its rank in the section, 1 = first.")] = None,
) -> None:
    """Move an article to another section and/or another place in its section."""
    from .. import drafts
    from ..errors import EditError

    if section is None and position is None:
        raise EditError("move: give --section, --position or both")
    cfg = settings()
    drafts.move(database(cfg), cfg, article, section=section, position=position, now=_now())
    console.print(f"Article {article} moved.")


@draft_app.command("add-item")
@edited
def draft_add_item(
    title: Annotated[str, typer.Option("--title", help="The item's headline.")],
    link: Annotated[str, typer.Option("--link", help="Where the headline links to (http or https).")],
    section: Annotated[str, typer.Option("--section", help="Slug of the section it goes in.")],
    summary: Annotated[str, typer.Option("--summary", help="A short text under the headline.")] = "",
    image: Annotated[str, typer.Option("--image", help="URL of an image (shown when the item leads its section).")] = "",
) -> None:
    """Add an item that is not on the site (an event, a partner's report) to the draft."""
    from .. import drafts

    cfg = settings()
    draft = drafts.add_item(database(cfg), cfg, title=title, link=link, section=section, summary=summary,
                            image_url=image, now=_now())
    added = next(a for a in draft.articles if a.article.url == link.strip())
    console.print(f"Added article {added.article.id} to {section}.")


@draft_app.command("sponsor")
@edited
def draft_sponsor(
    label: Annotated[str, typer.Option("--label", help="The sponsor's name, shown after \"Sponsored\" and linked.")] = "",
    text: Annotated[str, typer.Option("--text", help="A sentence or two about the offer (plain text).")] = "",
    url: Annotated[str, typer.Option("--url", help="Where the sponsor's name links to (http or https).")] = "",
    image: Annotated[str, typer.Option("--image", help="An https:// URL of the sponsor's image (optional).")] = "",
    after: Annotated[str, typer.Option("--after", help="Slug of the section the slot follows; default: the first.")] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Take the sponsor's slot out of the draft.")] = False,
) -> None:
    """Put a sponsor's slot in the draft, shown as "Sponsored" after a section (one per
    issue; a second call replaces it). No tracking pixel is ever added."""
    from .. import drafts
    from ..models import Sponsor

    cfg = settings()
    sponsor = None if remove else Sponsor(label=label, text=text, url=url, image_url=image, after=after)
    drafts.set_sponsor(database(cfg), cfg, sponsor, now=_now())
    console.print("Sponsor removed." if remove else f"Sponsor {label.strip()} set.", markup=False, highlight=False)


def _checker(cfg: Settings, skip_links: bool) -> Any:
    from .. import drafts

    return None if skip_links else drafts.link_checker(cfg)


NoLinks = Annotated[bool, typer.Option("--no-links", help="Do not ask the article links whether they answer.")]


@draft_app.command("check")
@edited
def draft_check(no_links: NoLinks = False, as_json: JsonOpt = False) -> None:
    """Run the preflight on the draft: sizes, images, links, sections, subject and
    preheader, unsubscribe links and headers, leftover template variables.
    Exit status 1 when it finds an error."""
    from .. import drafts

    cfg = settings()
    _, report = drafts.check_draft(database(cfg), cfg, links=_checker(cfg, no_links))
    if as_json:
        _print_json({"passed": report.passed, "limit": report.limit,
                     "sizes": [s.__dict__ for s in report.sizes], "findings": [f.__dict__ for f in report.findings]})
    else:
        _print_preflight(report)
    if not report.passed:
        raise typer.Exit(1)


@draft_app.command("approve")
@edited
def draft_approve(no_links: NoLinks = False) -> None:
    """Approve the draft once its preflight finds no error; it is frozen and the scheduled
    send (schedule.auto_send = false) sends it."""
    from .. import drafts

    cfg = settings()
    engine = database(cfg)
    _, report = drafts.check_draft(engine, cfg, links=_checker(cfg, no_links))
    _print_preflight(report)
    issue, _ = drafts.approve(engine, cfg, links=None)
    console.print(f"Issue {issue.slug} approved.")


@draft_app.command("reopen")
@edited
def draft_reopen() -> None:
    """Unfreeze the approved draft so that it can be changed again."""
    from .. import drafts

    issue = drafts.reopen(database(settings()))
    console.print(f"Issue {issue.slug} reopened as a draft.")


@draft_app.command("test")
@edited
def draft_test(
    to: Annotated[list[str] | None, typer.Option("--to", help="Send to this address instead of preview.test_recipients (repeatable).")] = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section slugs of the segment; default: all.")] = None,
    welcome_email: Annotated[bool, typer.Option("--welcome", help="Send the welcome email a new reader gets now (the latest issue sent, in those sections) instead of the draft.")] = False,
) -> None:
    """Send the draft to the editors with "[TEST]" before its subject, through the
    configured transport. It never counts as the issue's delivery. --welcome sends the
    welcome email instead."""
    from .. import drafts, welcome

    cfg = settings()
    chosen = _sections_option(cfg, sections)
    transport = issues.make_transport(cfg)
    try:
        if welcome_email:
            sent = welcome.send_test(database(cfg), cfg, transport=transport, sections=chosen, to=tuple(to or ()),
                                     clock=_now)
        else:
            sent = drafts.send_test(database(cfg), cfg, transport=transport, sections=chosen, to=tuple(to or ()),
                                    clock=_now)
    finally:
        transport.close()
    console.print(f"Test sent to {', '.join(sent)}.", markup=False, highlight=False)


def _sections_option(cfg: Settings, sections: str | None) -> tuple[str, ...] | None:
    from ..errors import EditError

    chosen = tuple(s.strip() for s in sections.split(",") if s.strip()) if sections else None
    unknown = sorted(set(chosen or ()) - set(cfg.section_names()))
    if unknown:
        raise EditError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(cfg.section_names())})")
    return chosen


@draft_app.command("screenshot")
@edited
def draft_screenshot(
    folder: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the PNGs to.")] = Path("."),
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section slugs of the segment; default: all.")] = None,
    dark: Annotated[bool, typer.Option("--dark", help="As a reader with dark mode sees it (<slug>-desktop-dark.png, …).")] = False,
    welcome_email: Annotated[bool, typer.Option("--welcome", help="The welcome email a new reader gets now instead of the draft (welcome-desktop.png, …).")] = False,
) -> None:
    """Write PNGs of the draft as desktop (600 px) and mobile (375 px) readers see it,
    taken with headless Chromium; --dark as with the system's dark mode on; --welcome of
    the welcome email instead."""
    from .. import drafts, welcome
    from ..netguard import NetworkPolicy
    from ..screenshots import take_screenshots

    cfg = settings()
    engine = database(cfg)
    chosen = _sections_option(cfg, sections)
    if welcome_email:
        with engine.connect() as conn:
            content = welcome.latest_content(conn, cfg)
        stem = welcome.WELCOME_FOLDER
        message = welcome.welcome_message(issues.make_renderer(cfg), cfg, content, chosen or tuple(cfg.section_names()))
    else:
        draft = drafts.current_draft(engine, cfg)
        stem = draft.issue.slug
        message = issues.render_issue(engine, cfg, draft.issue, sections=chosen)
    shots = take_screenshots(
        drafts.sample_message(message, cfg).html, folder, stem=stem, chromium=cfg.path(cfg.preview.chromium),
        policy=NetworkPolicy.from_cidrs(cfg.ingest.allow_networks), user_agent=cfg.ingest.user_agent, dark=dark,
    )
    for path in shots:
        console.print(f"Wrote {path}", highlight=False)


