"""`newsletter subscribers …`: add, count, import, export, list, show, remove and erase people.

The work is done by `subscribers` (importer, store); these commands read arguments and
print tables. Sits on top: may import anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import subscribers as people

from ..errors import ConfigError
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
from .common import _now as now
from .common import _print_json as print_json

#: The exit status of an import that rejected rows (the valid ones are imported). 1 and 2
#: are the CLI's own (a failed run, wrong configuration or input), 3 a database that
#: cannot be used.
EXIT_REJECTED = 4


subscribers_app = typer.Typer(help="Add, import, export, list, show, remove and erase subscribers.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("add")
@handled
def subscribers_add(
    email: Annotated[str, typer.Argument(help="Email address.")],
    sections: Annotated[str, typer.Option("--sections", help="Comma-separated section slugs; default: all.")] = "",
    name: Annotated[str, typer.Option("--name", help="The subscriber's name.")] = "",
    timezone: Annotated[str, typer.Option("--timezone", help="The reader's IANA time zone, such as America/New_York; default: the site's.")] = "",
) -> None:
    """Add an active subscriber (consent obtained elsewhere) or update their sections."""
    cfg = settings()
    zone = _timezone_option(timezone)
    known = list(cfg.section_names())
    chosen = [s.strip() for s in sections.split(",") if s.strip()] or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ConfigError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(known)})")
    address, display = people.normalize_email(email), people.check_name(name)
    engine = database(cfg)
    with engine.begin() as conn:
        if not people.may_create(conn, address, own_consent=False):
            raise people.NotAllowedError(
                "this address is on the suppression list (it bounced, complained, was suppressed or erased); "
                "it is not added. Only the person can subscribe again, through the subscribe form."
            )
        created, _ = people.upsert_subscribers(
            conn, [people.NewSubscriber(address, tuple(chosen), name=display, source="cli", timezone=zone)], now=_now()
        )
    console.print("Added." if created else "Updated.")


@subscribers_app.command("count")
@handled
def subscribers_count(as_json: JsonOpt = False) -> None:
    """Count subscribers by status."""
    engine = database(settings())
    with engine.connect() as conn:
        counts = {k.value: v for k, v in people.count_by_status(conn).items()}
    if as_json:
        _print_json(counts)
        return
    table = Table(title="Subscribers")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in sorted(counts.items()):
        table.add_row(status, f"{count:,}")
    console.print(table)





@subscribers_app.command("import")
@handled
def import_(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row; - reads standard input.")],
    email_column: Annotated[str, typer.Option("--email-column", help="Column with the address.")] = "email",
    name_column: Annotated[str, typer.Option("--name-column", help="Column with the name; empty for none.")] = "",
    sections_column: Annotated[str, typer.Option("--sections-column", help="Column with section slugs or names (separated by , ; or |); empty: --sections for everyone.")] = "",
    sections: Annotated[str, typer.Option("--sections", help="Comma-separated slugs for rows without a sections column [default: all].")] = "",
    timezone_column: Annotated[str, typer.Option("--timezone-column", help="Column with IANA time zones [default: the column named timezone, if any; none: the site's].")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row and report; import nothing.")] = False,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Write the rejected rows, with their line and reason, to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import subscribers whose consent you hold, as active. Every row is checked first;
    rejected rows are listed with their line and why (and written to --rejects), and the
    exit status is then 4. Suppressed, erased and unsubscribed addresses are never
    brought back. All or nothing: one transaction."""
    cfg = settings()
    known = cfg.section_names()
    chosen = [s.strip() for s in sections.split(",") if s.strip()] or list(known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ConfigError(f"--sections: unknown section {unknown[0]!r} (known: {', '.join(known)})")
    engine = database(cfg)
    with _open_csv(file) as (stream, counted, total):
        with _import_progress(console, counted, total, show=not as_json) as progress, engine.begin() as conn:
            report = people.import_csv(
                conn, stream, columns=people.ColumnMap(email_column, name_column, sections_column, timezone_column),
                known_sections=known, default_sections=chosen, now=now(), source=f"import:{file.name}",
                dry_run=dry_run, progress=progress,
            )
    if rejects is not None:
        _write_rejects(report, rejects)
    if as_json:
        print_json({
            "created": report.created, "updated": report.updated, "dry_run": report.dry_run,
            "skipped": [{"line": n, "why": w} for n, w in report.skipped],
            "rejected": [{"line": n, "why": w} for n, w in report.rejected],
        })
    else:
        _print_report(report, console)
        if rejects is not None:
            console.print(f"Wrote {len(report.rejected)} rejected rows to {escape(str(rejects))}", highlight=False)
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)

@subscribers_app.command("export")
@handled
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of standard output.")] = None,
    status: Annotated[str, typer.Option("--status", help="Only this status (active, pending, paused, unsubscribed, bounced, complained).")] = "",
) -> None:
    """Export subscribers as CSV (cells that look like formulas are defused)."""
    cfg = settings()
    statuses = [_status(status)] if status else None
    engine = database(cfg)
    with engine.connect() as conn:
        if out is None:
            count = people.export_csv(conn, sys.stdout, statuses=statuses)
            return
        # Written beside the file and moved over it at the end: a failure part-way
        # leaves the old file, never half a new one.
        partial = out.with_name(f".{out.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as f:
                count = people.export_csv(conn, f, statuses=statuses)
            partial.replace(out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(f"--out: {out} cannot be written: {exc.strerror or exc}") from None
    console.print(f"Wrote {count:,} subscribers to {out}")

@subscribers_app.command("list")
@handled
def list_(
    status: Annotated[str, typer.Option("--status", help="Only this status.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List subscribers in the order they joined."""
    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        found = people.list_subscribers(conn, status=_status(status) if status else None, limit=limit, offset=offset)
    if as_json:
        print_json([{"email": s.email, "name": s.name, "status": s.status.value, "sections": list(s.sections),
                     "timezone": s.timezone or cfg.site.timezone, "created_at": s.created_at} for s in found])
        return
    table = Table(title="Subscribers")
    for column in ("email", "name", "status", "sections", "time zone", "joined"):
        table.add_column(column)
    for s in found:
        table.add_row(escape(s.email), escape(s.name), s.status.value, ", ".join(s.sections),
                      s.timezone or f"{cfg.site.timezone} (site)", f"{s.created_at:%Y-%m-%d}")
    console.print(table)

@subscribers_app.command("show")
@handled
def show(
    email: Annotated[str, typer.Argument(help="Email address.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one subscriber and their consent history."""
    cfg = settings()
    engine = database(cfg)
    with engine.connect() as conn:
        subscriber = people.get_subscriber(conn, email)
        history = people.consent_history(conn, subscriber.id)
    if as_json:
        print_json({
            "email": subscriber.email, "name": subscriber.name, "status": subscriber.status.value,
            "sections": list(subscriber.sections), "created_at": subscriber.created_at,
            "confirmed_at": subscriber.confirmed_at, "unsubscribed_at": subscriber.unsubscribed_at,
            "source": subscriber.source, "timezone": subscriber.timezone or cfg.site.timezone,
            "consents": [{"action": c.action.value, "sections": list(c.sections), "at": c.at, "ip": c.ip,
                          "user_agent": c.user_agent, "form": c.form} for c in history],
        })
        return
    console.print(f"[bold]{escape(subscriber.email)}[/bold] {escape(subscriber.name)} — {subscriber.status.value}; "
                  f"sections: {', '.join(subscriber.sections) or 'none'}; source: {escape(subscriber.source) or '-'}; "
                  f"time zone: {subscriber.timezone or cfg.site.timezone + ' (site)'}")
    table = Table(title="Consent history")
    for column in ("when", "action", "sections", "form", "IP", "user agent"):
        table.add_column(column)
    for c in history:
        table.add_row(f"{c.at:%Y-%m-%d %H:%M}", c.action.value, ", ".join(c.sections), escape(c.form), c.ip, escape(c.user_agent[:40]))
    console.print(table)

@subscribers_app.command("remove")
@handled
def remove(email: Annotated[str, typer.Argument(help="Email address.")]) -> None:
    """Unsubscribe someone who asked by other means (recorded in their consent log)."""
    cfg = settings()
    engine = database(cfg)
    with engine.begin() as conn:
        people.remove(conn, email, now=now())
    console.print("Unsubscribed.")

@subscribers_app.command("erase")
@handled
def erase(
    email: Annotated[str, typer.Argument(help="Email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person's data (GDPR). Only a hash of the address stays, on the
    suppression list, so that no later import brings them back."""
    if not yes and not typer.confirm(f"Erase everything about {email}? This cannot be undone"):
        raise typer.Exit(1)
    cfg = settings()
    engine = database(cfg)
    with engine.begin() as conn:
        people.erase(conn, email, now=now())
    console.print("Erased.")


def _timezone_option(value: str) -> str | None:
    """The IANA name given to --timezone, None for none given (the site's zone)."""
    if not value.strip():
        return None
    try:
        return people.check_timezone(value)
    except people.InvalidTimezoneError as exc:
        raise ConfigError(f"--timezone: {exc}") from None


def _status(value: str) -> people.Status:
    try:
        return people.Status(value.strip().lower())
    except ValueError:
        raise ConfigError(f"--status: expected one of {', '.join(s.value for s in people.Status)}, got {value!r}") from None


class _Counted(io.BufferedIOBase):
    """A binary stream that counts the bytes read from it, so a decoding error can name
    its byte in the file, and a progress bar can show how far the import is."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self.raw.read(-1 if size is None else size)
        self.consumed += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)


@contextlib.contextmanager
def _open_csv(file: Path) -> Iterator[tuple[TextIO, _Counted, int | None]]:
    """The CSV file (standard input for -) as text read as it goes, and its size in bytes
    when known; a file that cannot be read, or is not UTF-8, is one line saying why."""
    where = "standard input" if str(file) == "-" else str(file)
    try:
        raw: BinaryIO = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {file}") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    counted = _Counted(raw)
    total = None if str(file) == "-" else os.fstat(raw.fileno()).st_size
    try:
        text = io.TextIOWrapper(counted, encoding="utf-8-sig", newline="")  # type: ignore[type-var]
        yield text, counted, total
    except UnicodeDecodeError as exc:
        # The decoder was given the bytes up to `consumed`, ending with `exc.object`.
        byte = counted.consumed - len(exc.object) + exc.start + 1
        raise ConfigError(f"{where}: not UTF-8 text (byte {byte} cannot be read); save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


@contextlib.contextmanager
def _import_progress(console: Console, counted: _Counted, total: int | None, *,
                     show: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (the share of the file read, rows, rows per second),
    or nothing for scripts; yields the callback `import_csv` calls after each batch."""
    if not show or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("Importing"), BarColumn(), TextColumn("{task.fields[rows]:,} rows"),
               TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("import", total=total, rows=0, rate=0.0)
        started = time.monotonic()

        def advance(rows: int) -> None:
            elapsed = time.monotonic() - started
            bar.update(task, completed=counted.consumed, rows=rows, rate=rows / elapsed if elapsed else 0.0)

        yield advance


def _write_rejects(report: people.ImportReport, path: Path) -> None:
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            people.write_rejects(report, out)
    except OSError as exc:
        raise ConfigError(f"--rejects: {path} cannot be written: {exc.strerror or exc}") from None


#: Rows of the "Rows not imported" table printed at most; --rejects and --json have all.
SHOWN_ROWS = 50


def _print_report(report: people.ImportReport, console: Any) -> None:
    verb = "Would import" if report.dry_run else "Imported"
    console.print(f"{verb}: {report.created} new, {report.updated} updated; "
                  f"{len(report.skipped)} left out, {len(report.rejected)} rejected.")
    if report.skipped or report.rejected:
        table = Table(title="Rows not imported")
        table.add_column("line", justify="right")
        table.add_column("kind")
        table.add_column("why")
        rows = [(line, "[red]rejected[/red]", why) for line, why in report.rejected]
        rows += [(line, "left out", why) for line, why in report.skipped]
        for line, kind, why in rows[:SHOWN_ROWS]:
            table.add_row(str(line), kind, escape(why))
        console.print(table)
        if len(rows) > SHOWN_ROWS:
            console.print(f"… and {len(rows) - SHOWN_ROWS:,} more rows not imported; --rejects PATH writes every "
                          "rejected row with its line and reason, --json lists them all.", highlight=False)
