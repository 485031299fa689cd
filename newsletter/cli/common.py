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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.markup import escape
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
