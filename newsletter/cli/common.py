"""What every command of the `newsletter` command line shares: the Typer app, the consoles,
the global options, the settings and database of a run, and the one place where errors
become messages and exit codes (`handled`). Sits on top: may import anything.

Exit codes:
1 for a failed run (a bad feed, a failed batch), 2 for wrong configuration or input,
3 for a database that cannot be used now (read-only, locked, full, unreachable) or that
refused a statement. The traceback is printed only with `--debug`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.markup import escape
from rich.cells import cell_len
from rich.table import Column, Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

import subscribers as people

from .. import issues
from ..config import Settings, load_settings
from ..errors import (
    ConfigError,
    DatabaseUnavailableError,
    NewsletterError,
    NothingToDoError,
)

app = typer.Typer(
    help="A weekly email digest for news publishers: feeds in, MJML emails out, each subscriber once.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

console = Console()
err = Console(stderr=True)
log = logging.getLogger("newsletter.cli")
F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Show every column, however wide the terminal (without it the table fits the terminal, leaving out its least useful columns).")
]
#: Below this width a listing leaves out its least useful columns unless --wide asks for them.
WIDE_COLUMNS = 120


class _State:
    config: Path | None = None
    context: Any = None
    debug: bool = False


state = _State()


def database(cfg: Settings) -> Any:
    """The configured database, migrated, and closed when the command ends."""
    engine = issues.open_database(cfg)
    if state.context is not None:
        state.context.call_on_close(engine.dispose)
    return engine


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="NEWSLETTER_CONFIG", help="Configuration file [default: ./newsletter.toml]."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens to stderr.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an error after its one line (statement parameters stay hidden).")
    ] = False,
) -> None:
    """A weekly email digest for news publishers."""
    state.config = config
    state.context = ctx
    state.debug = debug
    # Rich does not always see COLUMNS when output is not a terminal (under pytest-xdist,
    # for one); scripts that set it get tables as wide as they asked.
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        console.width = err.width = int(columns)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def handled(func: F) -> F:
    """Turn our errors into one clear line on stderr and an exit code (2 input, 3 the
    database, 1 the rest), never a traceback unless --debug asks for it. Nothing to do
    (`NothingToDoError`) is said on stdout, with exit status 0."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NothingToDoError as exc:
            # Not a failure: an idle cron run must not look like one.
            if kwargs.get("as_json"):
                _print_json({"status": "nothing-to-do", "reason": str(exc)})
            else:
                console.print(f"Nothing to do: {escape(str(exc))}", highlight=False, soft_wrap=True)
            return None
        except (ConfigError, people.SubscriberError) as exc:
            _fail(exc, str(exc), 2)
        except DatabaseUnavailableError as exc:
            _fail(exc, str(exc), 3)
        except SQLAlchemyError as exc:
            # A statement the database refused for a reason of its own (a constraint, a
            # schema it does not have). Only the driver's first line: the rest can hold values.
            detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines() or [""]
            _fail(exc, f"the database refused a statement ({type(exc).__name__}: {detail[0]})", 3)
        except NewsletterError as exc:
            _fail(exc, str(exc), 1)

    return wrapper  # type: ignore[return-value]


def _fail(exc: BaseException, message: str, code: int) -> NoReturn:
    """One line on stderr (the traceback before it with --debug), then exit with `code`.
    Engines hide statement parameters, so not even the traceback holds an address."""
    log.debug("command failed with exit status %d: %s", code, type(exc).__name__)
    if state.debug:
        err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False, soft_wrap=True, end="")
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def listing(title: str, columns: Sequence[tuple[str, str]]) -> Table:
    """A table whose columns say how their values may be laid out at any width:
    "whole" (addresses, dates, slugs, states: never cut or broken), "number" (the same,
    right-aligned), "text" (titles, names, lists: wrapped, a long word folded, never cut
    with an ellipsis). Rich narrows only the text columns to fit the terminal."""
    table = Table(title=title)
    for header, kind in columns:
        if kind == "text":
            table.add_column(header, overflow="fold")
        else:
            table.add_column(header, no_wrap=True, justify="right" if kind == "number" else "left")
    return table


def narrow(wide: bool) -> bool:
    """Whether a listing should leave out its least useful columns: the terminal is
    narrower than `WIDE_COLUMNS` and --wide was not given."""
    return not wide and console.width < WIDE_COLUMNS


def _natural(column: Column) -> int:
    """The width `column` needs for its longest line, header included."""
    lines = [str(column.header), *(line for cell in column.cells if isinstance(cell, str)
                                   for line in Text.from_markup(cell).plain.splitlines())]
    return max(cell_len(line) for line in lines)


def _fit(table: Table, width: int) -> None:
    """When the whole columns alone do not fit in `width` (an address of 60 characters),
    the widest one is wrapped (folded over two lines) rather than cutting every column."""
    whole = [c for c in table.columns if c.no_wrap]
    if not whole:
        return
    borders = 3 * len(table.columns) + 1
    need = sum(_natural(c) for c in whole) + 6 * (len(table.columns) - len(whole)) + borders
    if need > width:
        widest = max(whole, key=_natural)
        widest.no_wrap, widest.overflow = False, "fold"
        widest.width = max(12, _natural(widest) - (need - width))


def print_table(table: Table, *, wide: bool = False) -> None:
    """Print a `listing`: fitted to the terminal, or with `wide` at its natural width,
    whatever the terminal's (which then wraps the lines)."""
    if not wide:
        _fit(table, console.width)
        console.print(table)
        return
    # Rich never prints wider than the console: it is widened for this table alone.
    width = console.width
    try:
        console.width = max(width, console.measure(table, options=console.options.update_width(10_000)).maximum)
        console.print(table)
    finally:
        console.width = width


def settings() -> Settings:
    return load_settings(state.config)


def _now() -> datetime:
    return datetime.now(UTC)


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))



def hours_table(hours: dict[datetime, dict[str, int]], zone: Any, *, title: str = "Deliveries by hour") -> Table:
    """Local-time delivery: how many deliveries fall in each UTC hour (and the site's local
    time), by state."""
    states = [s for s in ("sent", "recalled", "planned", "skipped", "refused") if any(s in h for h in hours.values())]
    table = Table(title=title)
    table.add_column("due (UTC)")
    table.add_column("site time")
    for state in states:
        table.add_column(state, justify="right")
    for hour, counts in sorted(hours.items()):
        table.add_row(f"{hour:%Y-%m-%d %H:%M} UTC", f"{hour.astimezone(zone):%a %H:%M}", *(f"{counts.get(s, 0):,}" for s in states))
    return table


def hours_json(hours: dict[datetime, dict[str, int]]) -> list[dict[str, Any]]:
    return [{"hour": hour.isoformat(), **counts} for hour, counts in sorted(hours.items())]
