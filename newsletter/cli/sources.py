"""`newsletter ingest` and `newsletter sources`: read the sources, list them and their categories."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..errors import (
    ConfigError,
)
from ..ingest import (
    FeedReport,
    category_placements,
    configured_sources,
    ingest_sources,
    source_statuses,
)
from .common import (
    JsonOpt,
    _now,
    _print_json,
    app,
    console,
    database,
    handled,
    settings,
)


def _feed_table(reports: list[FeedReport]) -> Table:
    table = Table(title="Sources")
    numbers = ("items", "new", "updated", "cleaned", "small images", "left out")
    for column in ("source", "type", "status", *numbers, "why"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for r in reports:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}[r.status]
        notes = [*r.warnings, *r.skipped]
        why = r.error or ("; ".join(notes[:3]) + (" …" if len(notes) > 3 else ""))
        table.add_row(
            escape(r.name), r.kind, f"[{colour}]{r.status}[/{colour}]", str(r.items), str(r.new), str(r.updated),
            str(r.cleaned), str(r.small_images), str(len(r.skipped)), escape(why),
        )
    return table


def _print_notes(reports: list[FeedReport]) -> None:
    """Every warning and left-out item the table had to cut short, one line each."""
    for r in reports:
        notes = [*r.warnings, *r.skipped]
        if len(notes) > 3:
            for note in notes:
                console.print(f"{r.name}: {note}", markup=False, highlight=False)


def _run_ingest(engine: Any, cfg: Settings, quiet: bool) -> list[FeedReport]:
    if not configured_sources(cfg):
        # No brackets here: the error line is printed with Rich markup, which would eat "[[feeds]]".
        raise ConfigError(
            "no feeds configured, nor any other source: add a feeds (name, url), wordpress (name, url) "
            "or folders (name, path) array of tables to the configuration (see docs/sources.md)"
        )
    with console.status("Reading sources…", spinner="dots") if not quiet else nullcontext():
        return ingest_sources(engine, cfg, clock=_now)


@app.command()
@handled
def ingest(as_json: JsonOpt = False) -> None:
    """Read every configured source (feeds, WordPress sites, folders) and store new and changed articles."""
    cfg = settings()
    engine = database(cfg)
    reports = _run_ingest(engine, cfg, as_json)
    if as_json:
        _print_json([r.__dict__ for r in reports])
    else:
        console.print(_feed_table(reports))
        _print_notes(reports)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


@app.command("sources")
@handled
def list_sources(
    as_json: JsonOpt = False,
    categories: Annotated[
        bool, typer.Option("--categories", help="List the categories seen on stored articles and the section each lands in.")
    ] = False,
) -> None:
    """List the configured sources with their last fetch, its status and their stored articles."""
    cfg = settings()
    engine = database(cfg)
    if categories:
        _list_categories(engine, cfg, as_json)
        return
    found = source_statuses(engine, cfg)
    if as_json:
        _print_json([s.__dict__ for s in found])
        return
    zone = cfg.site.zone
    table = Table(title="Sources")
    for column in ("source", "type", "location", "last fetch", "status", "articles", "newest article", "error"):
        table.add_column(column, justify="right" if column == "articles" else "left")
    for s in found:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}.get(s.status, "yellow")
        table.add_row(
            escape(s.name), s.kind, escape(s.location),
            f"{s.last_fetched_at.astimezone(zone):%Y-%m-%d %H:%M}" if s.last_fetched_at else "",
            f"[{colour}]{s.status}[/{colour}]", f"{s.articles:,}",
            f"{s.newest.astimezone(zone):%Y-%m-%d %H:%M}" if s.newest else "", escape(s.error),
        )
    console.print(table)


def _list_categories(engine: Any, cfg: Settings, as_json: bool) -> None:
    found = category_placements(engine, cfg)
    if as_json:
        _print_json([p.__dict__ for p in found])
        return
    names = cfg.section_names()
    table = Table(title="Categories and their sections")
    for column in ("source", "category", "parents", "section", "articles"):
        table.add_column(column, justify="right" if column == "articles" else "left")
    for p in found:
        section = escape(names.get(p.section, p.section)) if p.section else "left out"
        if p.fallback:
            section = f"[yellow]{section} (fallback)[/yellow]"
        table.add_row(escape(p.source), escape(p.category), escape(" › ".join(p.ancestors)), section, f"{p.articles:,}")
    console.print(table)
    falling = sum(p.fallback for p in found)
    if falling:
        console.print(f"{falling} categor{'y falls' if falling == 1 else 'ies fall'} to the fallback section: "
                      "list them (or a parent) in a section's categories.", markup=False, highlight=False)


