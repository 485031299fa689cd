"""Bulk work on people: CSV import and export, listing, removal and erasure (GDPR).

Owns: `import_csv`, `ImportReport`, `ColumnMap`, `write_rejects`, `export_csv`,
`list_subscribers`, `remove`, `erase`, `is_erased`. Imports `models`, `errors`, `store`, `suppression`,
`tables`, `tokens` of this package. The CLI turns these into commands.

Rules an import keeps:
- every row is validated (address, sections, duplicates in the file) and each rejected
  row is reported with its line number and why; the valid rows are imported;
- it runs in the caller's transaction, so a failure part-way leaves nothing behind, and
  with `dry_run` it writes nothing at all;
- it never brings back an address that is suppressed, was erased, unsubscribed, bounced
  or complained: those rows are skipped and counted.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection, delete, insert, select

from .errors import ImportFileError, InvalidEmailError, InvalidNameError, SubscriberError
from .models import ConsentAction, Origin, Status, Subscriber, sections_key
from .store import (
    check_name,
    get_subscriber,
    normalize_email,
    record_consent,
    subscribers_by_id,
    update_subscriber,
)
from .suppression import ERASED, erased_key, is_suppressed, may_create, suppress
from .tables import consents, subscribers, suppressions
from .tokens import new_token

log = logging.getLogger(__name__)

GONE = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)
EXPORT_COLUMNS = ("email", "name", "status", "sections", "created_at", "confirmed_at", "unsubscribed_at", "source")


@dataclass(frozen=True)
class ColumnMap:
    """Which CSV column holds what. `sections` may be empty: every row then gets
    `default_sections`. Section cells list slugs or names, separated by , ; or |."""

    email: str = "email"
    name: str = ""
    sections: str = ""


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

    def reject(self, line: int, why: str, row: Mapping[str | None, Any]) -> None:
        self.rejected.append((line, why))
        extra = row.get(None)
        cells = [str(row.get(name) or "") for name in self.columns]
        self.rejected_cells[line] = cells + ([str(c) for c in extra] if isinstance(extra, list) else [])


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


def import_csv(
    conn: Connection,
    rows: TextIO,
    *,
    columns: ColumnMap,
    known_sections: Mapping[str, str],
    default_sections: Collection[str],
    now: datetime,
    source: str = "import",
    dry_run: bool = False,
) -> ImportReport:
    """Import subscribers whose consent was obtained elsewhere, as active.

    `known_sections` maps slug → name. Existing pending, active or paused subscribers get
    the file's name and sections. Raises `ImportFileError` before writing anything when
    the header lacks a mapped column.
    """
    reader = csv.DictReader(rows)
    header = reader.fieldnames or []
    for role, column in (("email", columns.email), ("name", columns.name), ("sections", columns.sections)):
        if column and column not in header:
            raise ImportFileError(
                f"the file has no column {column!r} for {role} (its columns: {', '.join(header) or 'none'})"
            )
    lookup = _section_lookup(known_sections)
    report = ImportReport(dry_run=dry_run, columns=list(header))
    seen: dict[str, int] = {}
    origin = Origin(form=source[:50])
    # A row's line is where it starts: a quoted cell may hold a line break of its own.
    ended = reader.line_num
    for row in reader:
        line, ended = ended + 1, reader.line_num
        try:
            email = normalize_email(row.get(columns.email) or "")
            chosen = (
                _parse_sections(row.get(columns.sections) or "", lookup) if columns.sections else ()
            ) or tuple(sorted(default_sections))
        except InvalidEmailError:
            report.reject(line, "not a valid email address", row)
            continue
        except SubscriberError as exc:
            report.reject(line, str(exc), row)
            continue
        if email in seen:
            report.reject(line, f"the same address as line {seen[email]}", row)
            continue
        seen[email] = line
        try:
            name = check_name(row.get(columns.name) or "") if columns.name else ""
        except InvalidNameError as exc:
            report.reject(line, str(exc), row)
            continue
        if not may_create(conn, email, own_consent=False):
            report.skipped.append((line, "on the suppression list"))
            continue
        existing = conn.execute(select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == email)).first()
        if existing is not None and Status(existing.status) in GONE:
            report.skipped.append((line, f"{existing.status}; only they can subscribe again"))
            continue
        if dry_run:
            report.updated += existing is not None
            report.created += existing is None
            continue
        if existing is not None:
            update_subscriber(conn, existing.id, sections=chosen, **({"name": name} if columns.name else {}))
            report.updated += 1
            continue
        result = conn.execute(
            insert(subscribers).values(
                email=email, name=name, status=Status.ACTIVE.value, sections=sections_key(chosen),
                token=new_token(), created_at=now, confirmed_at=now, source=source[:100],
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        record_consent(conn, int(key[0]), ConsentAction.IMPORTED, sections=chosen, origin=origin, now=now)
        report.created += 1
    log.info(
        "import: %d created, %d updated, %d skipped, %d rejected%s", report.created, report.updated,
        len(report.skipped), len(report.rejected), " (dry run)" if dry_run else "",
    )
    return report


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
    Formula-looking cells are prefixed with ' so a spreadsheet does not run them."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    query = select(*(subscribers.c[name] for name in EXPORT_COLUMNS)).order_by(subscribers.c.id)
    if statuses is not None:
        query = query.where(subscribers.c.status.in_([s.value for s in statuses]))
    count = 0
    for row in conn.execute(query):
        writer.writerow(_defused(_cell(v) for v in row))
        count += 1
    return count


def list_subscribers(
    conn: Connection, *, status: Status | None = None, limit: int = 100, offset: int = 0
) -> list[Subscriber]:
    """Subscribers in id order, optionally of one status."""
    query = select(subscribers.c.id).order_by(subscribers.c.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(subscribers.c.status == status.value)
    return subscribers_by_id(conn, list(conn.execute(query).scalars()))


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
    suppressed = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email == subscriber.email)
    ).scalar_one_or_none()
    if suppressed is not None:
        reason = f"erased:{suppressed}"[:50]
    elif subscriber.status in (Status.BOUNCED, Status.COMPLAINED):
        reason = f"erased:{subscriber.status.value}"
    else:
        reason = ERASED
    conn.execute(delete(consents).where(consents.c.subscriber_id == subscriber.id))
    # The plain address may be on the suppression list too; only the hash stays.
    conn.execute(delete(suppressions).where(suppressions.c.email == subscriber.email))
    conn.execute(delete(suppressions).where(suppressions.c.email == erased_key(subscriber.email)))
    suppress(conn, erased_key(subscriber.email), reason=reason, now=now)
    update_subscriber(
        conn, subscriber.id, email=f"erased-{subscriber.id}@erased.invalid", name="", sections=(),
        status=Status.UNSUBSCRIBED, token=new_token(), unsubscribed_at=now, paused_until=None,
        confirmation_sent_at=None, source="erased",
    )
    log.info("subscriber %s erased", subscriber.id)


