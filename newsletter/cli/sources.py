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
    WideOpt,
    _now,
    _print_json,
    app,
    console,
    database,
    handled,
    listing,
    narrow,
    print_table,
    settings,
)


def _feed_table(reports: list[FeedReport], *, wide: bool = False) -> Table:
    """What an ingest did per source. Narrow, without the type and the counts of cleaned
    summaries and small images (`--wide` shows them)."""
    short = narrow(wide)
    columns = [("source", "text"), ("type", "whole"), ("status", "whole"), ("items", "number"), ("new", "number"),
               ("updated", "number"), ("cleaned", "number"), ("small images", "number"), ("left out", "number"), ("why", "text")]
    dropped = {"type", "cleaned", "small images"} if short else set()
    table = listing("Sources", [c for c in columns if c[0] not in dropped])
    for r in reports:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}[r.status]
        notes = [*r.warnings, *r.skipped]
        why = r.error or ("; ".join(notes[:3]) + (" …" if len(notes) > 3 else ""))
        values = {
            "source": escape(r.name), "type": r.kind, "status": f"[{colour}]{r.status}[/{colour}]", "items": str(r.items),
            "new": str(r.new), "updated": str(r.updated), "cleaned": str(r.cleaned), "small images": str(r.small_images),
            "left out": str(len(r.skipped)), "why": escape(why),
        }
        table.add_row(*(v for k, v in values.items() if k not in dropped))
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
def ingest(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Read every configured source (feeds, WordPress sites, folders) and store new and changed articles."""
    cfg = settings()
    engine = database(cfg)
    reports = _run_ingest(engine, cfg, as_json)
    if as_json:
        _print_json([r.__dict__ for r in reports])
    else:
        print_table(_feed_table(reports, wide=wide), wide=wide)
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
    wide: WideOpt = False,
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
    # Narrow, the type and location are left out (`--wide` shows them): the name says which source it is.
    dropped = {"type", "location"} if narrow(wide) else set()
    columns = [("source", "text"), ("type", "whole"), ("location", "text"), ("last fetch", "whole"), ("status", "whole"),
               ("articles", "number"), ("newest article", "whole"), ("error", "text")]
    table = listing("Sources", [c for c in columns if c[0] not in dropped])
    for s in found:
        colour = {"fetched": "green", "not_modified": "cyan", "failed": "red"}.get(s.status, "yellow")
        values = {
            "source": escape(s.name), "type": s.kind, "location": escape(s.location),
            "last fetch": f"{s.last_fetched_at.astimezone(zone):%Y-%m-%d %H:%M}" if s.last_fetched_at else "",
            "status": f"[{colour}]{s.status}[/{colour}]", "articles": f"{s.articles:,}",
            "newest article": f"{s.newest.astimezone(zone):%Y-%m-%d %H:%M}" if s.newest else "", "error": escape(s.error),
        }
        table.add_row(*(v for k, v in values.items() if k not in dropped))
    print_table(table, wide=wide)


def _list_categories(engine: Any, cfg: Settings, as_json: bool) -> None:
    found = category_placements(engine, cfg)
    if as_json:
        _print_json([p.__dict__ for p in found])
        return
    names = cfg.section_names()
    table = listing("Categories and their sections", [
        ("source", "text"), ("category", "text"), ("parents", "text"), ("section", "text"), ("articles", "number"),
    ])
    for p in found:
        section = escape(names.get(p.section, p.section)) if p.section else "left out"
        if p.fallback:
            section = f"[yellow]{section} (fallback)[/yellow]"
        table.add_row(escape(p.source), escape(p.category), escape(" › ".join(p.ancestors)), section, f"{p.articles:,}")
    print_table(table)
    falling = sum(p.fallback for p in found)
    if falling:
        console.print(f"{falling} categor{'y falls' if falling == 1 else 'ies fall'} to the fallback section: "
                      "list them (or a parent) in a section's categories.", markup=False, highlight=False)


