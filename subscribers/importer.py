"""Bulk work on people: CSV import and export, listing, removal and erasure (GDPR).

Owns: `import_csv`, `ImportReport`, `ColumnMap`, `write_rejects`, `export_csv`,
`remove`, `erase`, `is_erased`. Imports `models`, `errors`, `store`, `suppression`,
`tokens`, `bulk` (the import's fast path, which writes SQL of its own), `export` (the
export's, the database writing the CSV) and `fastcheck` of this package; no table (the queries are `store`'s and `suppression`'s). The CLI turns these into commands.

Rules an import keeps:
- every row is validated (address, sections, duplicates in the file) and each rejected
  row is reported with its line number and why; the valid rows are imported;
- it runs in the caller's transaction, so a failure part-way leaves nothing behind, and
  with `dry_run` it writes nothing at all;
- it never brings back an address that is suppressed, was erased, unsubscribed, bounced
  or complained: those rows are skipped and counted.

How a million rows go in at tens of thousands a second, in flat memory: the file is read
as it goes; plain addresses are checked by `fastcheck` (the same decision as
email-validator, which still checks everything else); rows are decided and written a
batch at a time (`bulk`): one query each for the duplicates of earlier batches (a scratch
table of the addresses seen, instead of all of them in memory), the suppression gate
(`suppression.blocked_addresses`) and the existing subscribers, then one statement or
`executemany` each for the updates, the new subscribers and their consent rows.
"""

from __future__ import annotations

import csv
import logging
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection

from . import bulk, export
from .errors import ImportFileError, InvalidEmailError, InvalidNameError, InvalidTimezoneError, SubscriberError
from .fastcheck import quick_normalize
from .models import ConsentAction, Origin, Status, Subscriber, sections_key
from .store import (
    check_name,
    delete_consents,
    get_subscriber,
    normalize_email,
    record_consent,
    subscribers_by_id,
    update_subscriber,
)
from .suppression import ERASED, blocked_addresses, erased_key, is_suppressed, suppress, suppression_reason, unsuppress
from .tokens import new_token
from .zones import check_timezone

log = logging.getLogger(__name__)

GONE = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)
EXPORT_COLUMNS = (
    "email", "name", "status", "sections", "created_at", "confirmed_at", "unsubscribed_at", "source", "timezone",
)
EXPORT_DATES = ("created_at", "confirmed_at", "unsubscribed_at")


@dataclass(frozen=True)
class ColumnMap:
    """Which CSV column holds what. `sections` may be empty: every row then gets
    `default_sections`. Section cells list slugs or names, separated by , ; or |.
    `timezone` empty: the file's column named "timezone", if it has one; its cells are
    IANA names, an empty cell keeping the subscriber's zone (the site's for a new one)."""

    email: str = "email"
    name: str = ""
    sections: str = ""
    timezone: str = ""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    #: Rows left out on purpose: suppressed, erased or gone addresses (line, why).
    skipped: list[tuple[int, str]] = field(default_factory=list)
    #: Rows that are wrong (line, why).
    rejected: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False
    #: The file's header, and the cells of each rejected row by its line (for `write_rejects`).
    columns: list[str] = field(default_factory=list)
    rejected_cells: dict[int, list[str]] = field(default_factory=dict)

    def reject(self, line: int, why: str, cells: list[str]) -> None:
        self.rejected.append((line, why))
        self.rejected_cells[line] = cells


def is_erased(conn: Connection, email: str) -> bool:
    """Whether the (normalized) address belonged to someone who was erased."""
    return is_suppressed(conn, erased_key(email))


def _section_lookup(known: Mapping[str, str]) -> dict[str, str]:
    lookup = {slug.lower(): slug for slug in known}
    lookup.update({name.strip().lower(): slug for slug, name in known.items()})
    return lookup


def _parse_sections(cell: str, lookup: Mapping[str, str]) -> tuple[str, ...]:
    parts = [p.strip() for chunk in cell.replace(";", ",").replace("|", ",").split(",") if (p := chunk.strip())]
    chosen: list[str] = []
    for part in parts:
        slug = lookup.get(part.lower())
        if slug is None:
            raise SubscriberError(f"unknown section {part[:40]!r}")
        chosen.append(slug)
    return tuple(sorted(set(chosen)))


#: Rows checked and written together: big enough that the statements of a batch cost
#: little per row, small enough that a batch's memory does not count (50,000 was no
#: faster and took the peak RSS of a million-row import from 146 to 211 MB).
BATCH_ROWS = 10_000


#: A row whose address and sections are valid, waiting for its batch: (line, email,
#: name, why the name is refused or '' (it only counts when the row is no duplicate),
#: sections key, the row's cells, time zone or None).
_Candidate = tuple[int, str, str, str, str, list[str], str | None]
_ADDRESS = operator.itemgetter(1)

#: The column a file may have for the readers' time zones without being told.
TIMEZONE_COLUMN = "timezone"


def _column_index(header: list[str], name: str) -> int:
    # A header that names a column twice: the last one counts, as with csv.DictReader.
    return len(header) - 1 - header[::-1].index(name) if name else -1


def import_csv(
    conn: Connection,
    rows: Iterable[str],
    *,
    columns: ColumnMap,
    known_sections: Mapping[str, str],
    default_sections: Collection[str],
    now: datetime,
    source: str = "import",
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import subscribers whose consent was obtained elsewhere, as active.

    `known_sections` maps slug → name. Existing pending, active or paused subscribers get
    the file's name and sections. Raises `ImportFileError` before writing anything when
    the header lacks a mapped column. `rows` is read as it goes (a file of any size takes
    the same memory); `progress` is called with the number of rows read after each batch.
    """
    reader = csv.reader(rows)
    header = next(reader, None) or []
    for role, column in (("email", columns.email), ("name", columns.name), ("sections", columns.sections)):
        if column and column not in header:
            raise ImportFileError(
                f"the file has no column {column!r} for {role} (its columns: {', '.join(header) or 'none'})"
            )
    if columns.timezone and columns.timezone not in header:
        raise ImportFileError(
            f"the file has no column {columns.timezone!r} for timezone (its columns: {', '.join(header) or 'none'})"
        )
    zone_column = columns.timezone or (TIMEZONE_COLUMN if TIMEZONE_COLUMN in header else "")
    at_email, at_name, at_sections, at_zone = (
        _column_index(header, c) for c in (columns.email, columns.name, columns.sections, zone_column)
    )
    lookup = _section_lookup(known_sections)
    default = sections_key(tuple(default_sections))
    parsed: dict[str, str | SubscriberError] = {}
    report = ImportReport(dry_run=dry_run, columns=list(header))
    width = len(header)
    writer = bulk.ImportBatch(conn, now=now, source=source[:100], form=source[:50])
    writer.open()
    batch: list[_Candidate] = []
    read = 0
    # A row's line is where it starts: a quoted cell may hold a line break of its own.
    ended = reader.line_num
    for cells in reader:
        line, ended = ended + 1, reader.line_num
        if not cells:
            continue
        read += 1
        cells = cells + [""] * (width - len(cells)) if len(cells) < width else cells
        raw = cells[at_email]
        email = quick_normalize(raw.strip())
        if email is None:
            try:
                email = normalize_email(raw)
            except InvalidEmailError:
                report.reject(line, "not a valid email address", cells)
                continue
        chosen = _sections(cells[at_sections], lookup, parsed) if at_sections >= 0 else ""
        if isinstance(chosen, SubscriberError):
            report.reject(line, str(chosen), cells)
            continue
        zone: str | None = None
        if at_zone >= 0 and cells[at_zone].strip():
            try:
                zone = check_timezone(cells[at_zone])
            except InvalidTimezoneError as exc:
                report.reject(line, f"timezone: {exc}", cells)
                continue
        name, name_error = "", ""
        if at_name >= 0:
            try:
                name = check_name(cells[at_name])
            except InvalidNameError as exc:
                name_error = str(exc)
        batch.append((line, email, name, name_error, chosen or default, cells, zone))
        if len(batch) >= BATCH_ROWS:
            _write_batch(writer, batch, report, names=at_name >= 0)
            batch = []
            if progress is not None:
                progress(read)
    _write_batch(writer, batch, report, names=at_name >= 0)
    writer.close()
    if progress is not None:
        progress(read)
    # Batches are decided in address order; the report lists rows in the file's order.
    report.rejected.sort(key=lambda item: item[0])
    report.skipped.sort(key=lambda item: item[0])
    log.info(
        "import: %d created, %d updated, %d skipped, %d rejected%s", report.created, report.updated,
        len(report.skipped), len(report.rejected), " (dry run)" if dry_run else "",
    )
    return report


def _sections(cell: str, lookup: Mapping[str, str], parsed: dict[str, str | SubscriberError]) -> str | SubscriberError:
    """The sections key of a cell ('' for none), or the error; remembered per cell text,
    since a file holds few different ones (forgotten past 10,000, so memory stays flat)."""
    found = parsed.get(cell)
    if found is None:
        try:
            found = sections_key(_parse_sections(cell, lookup))
        except SubscriberError as exc:
            found = exc
        if len(parsed) >= 10_000:
            parsed.clear()
        parsed[cell] = found
    return found


def _write_batch(writer: bulk.ImportBatch, batch: list[_Candidate], report: ImportReport, *, names: bool) -> None:
    """Decide and write one batch, in the order of the rules a row meets: a duplicate of
    an earlier row, a refused name, the suppression list, a subscriber who left."""
    if not batch:
        return
    # In address order (the sort is stable, so the first of a duplicate in the batch
    # stays first): the scratch table and the subscribers' email index then take the
    # batch's rows at neighbouring places, which saved a fifth of the writes' time.
    batch.sort(key=_ADDRESS)
    earlier = writer.seen_before([c[1] for c in batch])
    firsts: dict[str, _Candidate] = {}
    for c in batch:
        email = c[1]
        first = earlier.get(email) or (firsts[email][0] if email in firsts else None)
        if first is not None:
            report.reject(c[0], f"the same address as line {first}", c[5])
        else:
            firsts[email] = c
    writer.remember([(email, c[0]) for email, c in firsts.items()])
    valid: dict[str, _Candidate] = {}
    for email, c in firsts.items():
        if c[3]:
            report.reject(c[0], c[3], c[5])
        else:
            valid[email] = c
    blocked = blocked_addresses(writer.conn, valid)
    existing = writer.existing([e for e in valid if e not in blocked] if blocked else list(valid))
    updates: list[tuple[int, str, str, str | None]] = []
    creates: list[tuple[str, str, str, str | None]] = []
    for email, (line, _, name, _, sections, _, zone) in valid.items():
        if email in blocked:
            report.skipped.append((line, "on the suppression list"))
            continue
        found = existing.get(email)
        if found is None:
            creates.append((email, name, sections, zone))
        elif Status(found[1]) in GONE:
            report.skipped.append((line, f"{found[1]}; only they can subscribe again"))
        else:
            updates.append((found[0], name, sections, zone))
    report.created += len(creates)
    report.updated += len(updates)
    if not report.dry_run:
        writer.update(updates, names=names)
        writer.create(creates, status=Status.ACTIVE.value, action=ConsentAction.IMPORTED.value)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


def _defused(cells: Iterable[str]) -> list[str]:
    # A spreadsheet runs a cell that starts like a formula; a leading ' makes it text.
    return ["'" + c if c[:1] in ("=", "+", "-", "@") else c for c in cells]


def write_rejects(report: ImportReport, out: TextIO) -> int:
    """Write the rejected rows of an import as CSV: their line in the file, why they were
    rejected, then their cells under the file's own header (formula-looking cells
    defused), ready to be fixed and imported again. Returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(["line", "reason", *report.columns])
    for line, why in report.rejected:
        writer.writerow([str(line), *_defused([why, *report.rejected_cells.get(line, [])])])
    return len(report.rejected)


def export_csv(conn: Connection, out: TextIO, *, statuses: Iterable[Status] | None = None) -> int:
    """Write subscribers as CSV (`EXPORT_COLUMNS`), in id order; returns the row count.
    Formula-looking cells are prefixed with ' so a spreadsheet does not run them.
    Streamed: the database writes the CSV a piece of rows at a time (`export`), whatever
    the number of subscribers."""
    csv.writer(out).writerow(EXPORT_COLUMNS)
    count = 0
    chosen = None if statuses is None else [s.value for s in statuses]
    for text, rows in export.csv_pieces(conn, EXPORT_COLUMNS, statuses=chosen, dates=EXPORT_DATES):
        out.write(text)
        count += rows
    return count


def remove(conn: Connection, email: str, *, now: datetime) -> Subscriber:
    """Unsubscribe someone on their behalf (they asked by other means); the consent log
    records it with the form "admin". Raises `UnknownSubscriberError`."""
    subscriber = get_subscriber(conn, email)
    if subscriber.status not in GONE:
        update_subscriber(conn, subscriber.id, status=Status.UNSUBSCRIBED, unsubscribed_at=now, paused_until=None)
        record_consent(
            conn, subscriber.id, ConsentAction.UNSUBSCRIBED, sections=subscriber.sections,
            origin=Origin(form="admin"), now=now,
        )
    return subscribers_by_id(conn, [subscriber.id])[0]


def erase(conn: Connection, email: str, *, now: datetime) -> None:
    """Erase a person (GDPR): their consent log is deleted and their row becomes a
    tombstone with no address, name or working token (it stays because delivery records
    point at it). A hash of the address goes on the suppression list, so no import brings
    them back. Raises `UnknownSubscriberError` when there is no such subscriber."""
    subscriber = get_subscriber(conn, email)
    # An address that bounced or complained stays suppressed after the erasure: the hash
    # keeps why, so no path creates or mails it again.
    suppressed = suppression_reason(conn, subscriber.email)
    if suppressed is not None:
        reason = f"erased:{suppressed}"[:50]
    elif subscriber.status in (Status.BOUNCED, Status.COMPLAINED):
        reason = f"erased:{subscriber.status.value}"
    else:
        reason = ERASED
    delete_consents(conn, subscriber.id)
    # The plain address may be on the suppression list too; only the hash stays.
    unsuppress(conn, subscriber.email, erased_key(subscriber.email))
    suppress(conn, erased_key(subscriber.email), reason=reason, now=now)
    update_subscriber(
        conn, subscriber.id, email=f"erased-{subscriber.id}@erased.invalid", name="", sections=(),
        status=Status.UNSUBSCRIBED, token=new_token(), unsubscribed_at=now, paused_until=None,
        confirmation_sent_at=None, source="erased",
    )
    log.info("subscriber %s erased", subscriber.id)


