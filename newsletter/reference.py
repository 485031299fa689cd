"""The configuration and CLI references in README.md, generated from the code itself.

Owns: `config_reference`, `cli_reference`, `update_readme`. Imports `config` and `cli`.
`python -m newsletter.reference` rewrites the two marked blocks of README.md; a test fails
when they are out of date, so no setting or command goes undocumented.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typer.main
from pydantic import BaseModel

from .config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _default(field: typing.Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "see below" if field.default_factory.__name__ == "default_sections" else ""
    if field.default in (None, ""):
        return ""
    return f"`{field.default!r}`".replace("'", '"')


def config_reference() -> str:
    """A Markdown table of every setting: table, key, default, environment variable, help."""
    lines = [
        "| table | key | default | environment variable | meaning |",
        "|---|---|---|---|---|",
    ]
    special = {"sendgrid.api_key": "SENDGRID_API_KEY", "database.url": "NEWSLETTER_DATABASE_URL", "security.secret_key": "NEWSLETTER_SECRET_KEY"}
    for table, field in Settings.model_fields.items():
        if table == "base_dir":
            continue
        model = field.annotation
        is_list = typing.get_origin(model) is list
        if is_list:
            model = typing.get_args(model)[0]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        name = f"[[{table}]]" if is_list else f"[{table}]"
        for key, sub in model.model_fields.items():
            env = "" if is_list else special.get(f"{table}.{key}", f"NEWSLETTER_{table.upper()}__{key.upper()}")
            lines.append(f"| `{name}` | `{key}` | {_default(sub)} | {f'`{env}`' if env else ''} | {sub.description or ''} |")
    return "\n".join(lines)


def _commands(group: typing.Any, prefix: str) -> typing.Iterator[tuple[str, typing.Any]]:
    # Typer ships its own copy of click, so commands are recognised by shape, not class.
    for name in sorted(group.commands):
        command = group.commands[name]
        if hasattr(command, "commands"):
            # A group that also runs by itself (`newsletter preview`) is a command too.
            if getattr(command, "invoke_without_command", False):
                yield f"{prefix} {name}", command
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def cli_reference() -> str:
    """A Markdown list of every command with its arguments and options."""
    from .cli import app

    root = typer.main.get_command(app)
    lines = []
    for path, command in _commands(root, "newsletter"):
        # The first paragraph of the help, on one line.
        summary = " ".join((command.help or "").strip().split("\n\n")[0].split())
        params = []
        for param in command.params:
            if param.param_type_name == "argument":
                params.append(f"`{str(param.name).upper()}`")
            elif param.param_type_name == "option" and param.name != "help":
                params.append(f"`{'/'.join(param.opts)}`")
        lines.append(f"- `{path}` — {summary}" + (f" ({', '.join(params)})" if params else ""))
    return "\n".join(lines)


def _replace(text: str, marker: str, body: str) -> str:
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text:
        raise SystemExit(f"README.md has no {start} marker")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end) if end in rest else ("", "", rest)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(path: Path = README) -> bool:
    """Rewrite the generated blocks of README.md; True when anything changed."""
    text = path.read_text(encoding="utf-8")
    new = _replace(_replace(text, "config-reference", config_reference()), "cli-reference", cli_reference())
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = update_readme()
    print("README.md updated" if changed else "README.md already up to date")
    sys.exit(0)
