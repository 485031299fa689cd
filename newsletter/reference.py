"""The configuration and CLI references of the documentation site, generated from the code.

Owns: `config_reference`, `cli_reference`, `expand`. Imports `config` and `cli`.
The MkDocs hook (`docs/hooks/reference.py`) calls `expand` on every page, which replaces
the blocks `<!-- config-reference -->` … `<!-- /config-reference -->` and `<!-- cli-reference
-->` … `<!-- /cli-reference -->` with the references as they are in the code at build time: a new setting (with its help text in `newsletter/config/`) or a new
command appears in the site without anyone writing it down. `python -m newsletter.reference
config` (or `cli`) prints one of them as Markdown.
"""

from __future__ import annotations

import re
import sys
import typing

import typer.main
from pydantic import BaseModel

from .config import Settings

# Settings read from variables of their own (config.SPECIAL_ENV), not NEWSLETTER_<TABLE>__<KEY>.
_SPECIAL_ENV = {"sendgrid.api_key": "SENDGRID_API_KEY", "database.url": "NEWSLETTER_DATABASE_URL",
                "security.secret_key": "NEWSLETTER_SECRET_KEY"}


# Where the guide explains each table (links relative to docs/; `mkdocs build --strict` fails
# on one that leads nowhere). A table missing here is listed all the same, without a link.
_GUIDE = {
    "sender": "[Sending](sending.md)",
    "sections": "[How it works](index.md#how-it-works), step 2",
    "feeds": "[Sources](sources.md#feeds)",
    "wordpress": "[Sources](sources.md#wordpress)",
    "folders": "[Sources](sources.md#folders)",
    "ingest": "[Sources](sources.md#reaching-only-the-public-internet)",
    "images": "[What WordPress sites put in their feeds](sources.md#what-wordpress-sites-put-in-their-feeds)",
    "selection": "[How it works](index.md#how-it-works), step 3",
    "database": "[Operations](operations.md#postgresql)",
    "delivery": "[Sending](sending.md#transports)",
    "templates": "[The preference center](subscribers.md#the-preference-center)",
    "sendgrid": "[Sending](sending.md#transports) and [Events and statistics](events.md)",
    "smtp": "[Sending through your own SMTP relay](sending.md#sending-through-your-own-smtp-relay)",
    "security": "[Running the web app](subscribers.md#running-the-web-app)",
    "web": "[Running the web app](subscribers.md#running-the-web-app) and [Several web workers](operations.md#several-web-workers)",
    "theme": "[The email](email.md#the-theme-theme)",
    "links": "[The email](email.md#utm-parameters-links-utm)",
    "schedule": "[Scheduling](scheduling.md)",
    "preview": "[The editor's desk](desk.md)",
}


def _text(value: str) -> str:
    """Help text as Markdown that shows it as written: one line, and outside `code` the
    characters Markdown would read as markup (`<slug>`, a `|` in a table, `*`) escaped."""
    pieces = re.split(r"(`[^`]*`)", " ".join(value.split()))
    out = []
    for piece in pieces:
        if piece.startswith("`"):
            out.append(piece.replace("|", "\\|"))
        else:
            out.append(piece.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                       .replace("|", "\\|").replace("*", "\\*").replace("_", "\\_"))
    return "".join(out)


def _default(field: typing.Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None or field.default in (None, ""):
        return ""
    return f"`{field.default!r}`".replace("'", '"')


def _tables() -> typing.Iterator[tuple[str, str, type[BaseModel]]]:
    """(table, how it is written in TOML, its model) for every table of the settings."""
    for table, field in Settings.model_fields.items():
        if table == "base_dir":
            continue
        model = field.annotation
        is_list = typing.get_origin(model) is list
        if is_list:
            model = typing.get_args(model)[0]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        yield table, f"[[{table}]]" if is_list else f"[{table}]", model


def config_reference() -> str:
    """Markdown: a heading per table, then its keys with default, help and environment variable."""
    blocks = []
    for table, name, model in _tables():
        is_list = name.startswith("[[")
        lines = [f"### `{name}` {{#{table}}}", ""]
        if table in _GUIDE:
            lines += [f"Explained in {_GUIDE[table]}.", ""]
        if is_list:
            lines += ["An array of tables: give it once per entry. Its keys cannot be set from the environment.", ""]
        lines += ["| key | default | meaning |", "|---|---|---|"]
        for key, sub in model.model_fields.items():
            env = "" if is_list else _SPECIAL_ENV.get(f"{table}.{key}", f"NEWSLETTER_{table.upper()}__{key.upper()}")
            meaning = _text(sub.description or "") + (f"<br>Environment: `{env}`" if env else "")
            lines.append(f"| `{key}` | {_default(sub)} | {meaning} |")
        blocks.append("\n".join(lines))
    # The classes let the stylesheet keep keys and defaults whole (docs/extra.css).
    return '<div class="reference settings" markdown>\n\n' + "\n\n".join(blocks) + "\n\n</div>"


def _commands(group: typing.Any, prefix: str) -> typing.Iterator[tuple[str, typing.Any]]:
    """(path, command or group) for every command under `group`, groups before their commands."""
    # Typer ships its own copy of click, so commands are recognised by shape, not class.
    for name in sorted(group.commands):
        command = group.commands[name]
        yield f"{prefix} {name}", command
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix} {name}")


def _help(command: typing.Any) -> list[str]:
    """The command's help as Markdown paragraphs, each on one line."""
    return [_text(paragraph) for paragraph in (command.help or "").strip().split("\n\n") if paragraph.strip()]


def _parameters(command: typing.Any, ctx: typing.Any) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or "--help" in param.opts:
            continue
        name, help_text = record
        rows.append(f"| `{name.replace('|', '/')}` | {_text(help_text)} |")
    return ["| argument or option | meaning |", "|---|---|", *rows] if rows else []


def _slug(path: str) -> str:
    return path.replace(" ", "-")


def cli_reference() -> str:
    """Markdown: a heading per command and group, its help, usage and every parameter."""
    from .cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="newsletter")
    usage = root.get_usage(ctx).removeprefix("Usage: ")
    blocks = ["\n".join([f"### `newsletter` {{#newsletter}}", "", f"    {usage}", "", *_help(root), "",
                         "Options of every command, given before it:", "", *_parameters(root, ctx)])]
    for path, command in _commands(root, "newsletter"):
        level = "#" * (path.count(" ") + 2)
        lines = [f"{level} `{path}` {{#{_slug(path)}}}", ""]
        ctx = command.context_class(command, info_name=path)
        if hasattr(command, "commands"):
            lines += _help(command)
            # A group that also runs by itself (`newsletter preview`) has its own options.
            if getattr(command, "invoke_without_command", False):
                lines += ["", f"    {command.get_usage(ctx).removeprefix('Usage: ')}", "", *_parameters(command, ctx)]
            lines += ["", "Commands: " + ", ".join(f"[`{path} {name}`](#{_slug(f'{path} {name}')})"
                                                   for name in sorted(command.commands))]
        else:
            lines += [f"    {command.get_usage(ctx).removeprefix('Usage: ')}", ""]
            for paragraph in _help(command):
                lines += [paragraph, ""]
            lines += _parameters(command, ctx)
        blocks.append("\n".join(lines).rstrip())
    return '<div class="reference" markdown>\n\n' + "\n\n".join(blocks) + "\n\n</div>"


def expand(markdown: str) -> str:
    """Replace each `<!-- marker -->` … `<!-- /marker -->` block of a page (what stands
    between them is for readers of the Markdown source) with the reference it names."""
    makers = {"config-reference": config_reference, "cli-reference": cli_reference}
    for marker, make in makers.items():
        block = re.compile(rf"<!-- {marker} -->.*?<!-- /{marker} -->", re.S)
        if block.search(markdown):
            markdown = block.sub(lambda _: make(), markdown)
    return markdown


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("config", "cli"):
        print("usage: python -m newsletter.reference config|cli", file=sys.stderr)
        sys.exit(2)
    print(config_reference() if which == "config" else cli_reference())
