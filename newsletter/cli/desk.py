"""`newsletter preview` (the editor's desk, and `preview set-password`) and `newsletter
draft log` (every change of the draft, from the desk or the command line)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .common import JsonOpt, _print_json, app, console, database, handled, settings, state
from .draft import draft_app, edited

preview_app = typer.Typer(help="The editor's desk: the draft, its email, its articles and its preflight in a browser.")
app.add_typer(preview_app, name="preview")


@preview_app.callback(invoke_without_command=True)
@handled
def preview(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on [default: preview.port].")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on [default: preview.host]; not localhost needs preview.password_hash.")] = None,
) -> None:
    """Serve the editor's desk: the email in desktop and mobile frames, the articles by
    section to reorder, pin, exclude, move and add to, the texts, the preflight, approval
    and test sends; it stays in step with changes made from the command line."""
    if ctx.invoked_subcommand is not None:
        return
    from ..web.desk import serve_desk

    cfg = settings()
    serve_desk(cfg, host=host, port=port, on_start=lambda url: console.print(f"Preview of the draft on {url}"))


def _read_password() -> str:
    if sys.stdin.isatty():
        first = typer.prompt("New password for the desk", hide_input=True)
        second = typer.prompt("The same password again", hide_input=True)
        if first != second:
            from ..errors import ConfigError

            raise ConfigError("set-password: the two passwords differ; nothing was changed")
        return str(first)
    return sys.stdin.readline().rstrip("\r\n")


@preview_app.command("set-password")
@handled
def set_password() -> None:
    """Set the desk's password: asked twice (or read as one line from stdin) and written,
    as an Argon2 hash, to [preview] password_hash of the configuration file."""
    from ..config import config_file, load_settings
    from ..config.edit import set_value
    from ..errors import ConfigError
    from ..web.desk.auth import hash_password

    path = config_file(state.config)
    try:
        hashed = hash_password(_read_password())
    except ValueError as exc:
        raise ConfigError(f"set-password: {exc}; nothing was changed") from None
    set_value(path, "preview", "password_hash", hashed)
    load_settings(path)
    console.print(f"The desk's password is set in {path} ([preview] password_hash); restart `newsletter preview`.",
                  markup=False, highlight=False)


@draft_app.command("log")
@edited
def draft_log(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many changes, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show every change made to the draft, newest first: what, when, and from where
    (desk: the editor's desk; cli: a `draft` command)."""
    from .. import drafts

    cfg = settings()
    draft, entries = drafts.draft_log(database(cfg), cfg, limit=limit)
    if as_json:
        _print_json({"issue": draft.issue.slug, "version": draft.version, "changes": [
            {"at": e.at.isoformat(), "origin": e.origin, "action": e.action, "detail": e.detail, "version": e.version}
            for e in entries]})
        return
    table = Table(title=f"Changes of draft {draft.issue.slug} (version {draft.version})")
    for column in ("when (UTC)", "from", "change"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        what = f"{entry.action}: {entry.detail}" if entry.detail else entry.action
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.origin, escape(what))
    console.print(table)
    if not entries:
        console.print("No change yet.")
