"""The draft log and the draft's version number: every change an editor makes to a draft is
one row (what, when, from where: the desk or the command line), and one step of the
issue's `version`.

Owns: `Entry`, `record`, `entries`, `version_of`, `ORIGINS`. Imports `errors`, `tables`.

The version is what the desk's optimistic concurrency checks: a page carries the version
it was drawn from, and a change made against an older one is refused with the entry that
came first (`ConflictError`). The check and the step are one conditional UPDATE of the
issue's row, so two changes made at the same moment cannot both pass it, on SQLite
(one writer at a time) as on PostgreSQL (the row is locked until the transaction ends,
and the second UPDATE sees the first one's version).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from ..errors import ConflictError
from ..tables import draft_log, issues

#: Where a change comes from: the editor's desk (the web page), the command line, or the
#: scheduled service (a refresh of the draft before its slot).
ORIGINS = ("desk", "cli", "schedule")
_WHERE = {"desk": "on the desk", "cli": "from the command line", "schedule": "by the scheduler"}


@dataclass(frozen=True)
class Entry:
    """One change of a draft; `version` is the draft's version after it."""

    id: int
    at: datetime
    origin: str
    action: str
    detail: str
    version: int

    def describe(self) -> str:
        """"subject set (…) on the desk at 16:03:12 UTC"."""
        what = f"{self.action} ({self.detail})" if self.detail else self.action
        return f"{what} {_WHERE.get(self.origin, 'from ' + self.origin)} at {self.at:%H:%M:%S} UTC"


def version_of(conn: Connection, issue_id: int) -> int:
    """The draft's version: how many changes it has had."""
    return int(conn.execute(select(issues.c.version).where(issues.c.id == issue_id)).scalar_one())


def _entry(row: object) -> Entry:
    return Entry(row.id, row.at, row.origin, row.action, row.detail, row.version)  # type: ignore[attr-defined]


def entries(conn: Connection, issue_id: int, *, limit: int = 200) -> list[Entry]:
    """The draft's changes, newest first."""
    rows = conn.execute(select(draft_log).where(draft_log.c.issue_id == issue_id)
                        .order_by(draft_log.c.id.desc()).limit(limit)).all()
    return [_entry(r) for r in rows]


def _refusal(conn: Connection, issue_id: int, expect: int) -> ConflictError:
    newer = conn.execute(select(draft_log).where(draft_log.c.issue_id == issue_id, draft_log.c.version > expect)
                         .order_by(draft_log.c.id)).all()
    current = version_of(conn, issue_id)
    if not newer:
        return ConflictError(f"the draft is at version {current}, not {expect}: it changed since your page was "
                             "drawn; this change was not made")
    first = _entry(newer[0])
    more = f" and {len(newer) - 1} more change{'s' if len(newer) > 2 else ''}" if len(newer) > 1 else ""
    return ConflictError(f"the draft changed after your page was drawn (version {expect}, now {current}): "
                         f"{first.describe()}{more} came first and stays; this change was not made")


def record(conn: Connection, issue_id: int, *, origin: str, action: str, detail: str = "", now: datetime,
           expect: int | None = None, step: bool = True) -> int:
    """Log a change of the draft in the caller's transaction and step its version; returns
    the new version. With `expect`, the change is refused (`ConflictError`, and the
    caller's transaction rolls back) unless the draft is still at that version. `step`
    False logs without changing the version (a test send changes nothing of the draft)."""
    if origin not in ORIGINS:
        raise ValueError(f"origin {origin!r}: expected one of {', '.join(ORIGINS)}")
    if step:
        change = update(issues).where(issues.c.id == issue_id).values(version=issues.c.version + 1)
        if expect is not None:
            change = change.where(issues.c.version == expect)
        if conn.execute(change).rowcount == 0:
            raise _refusal(conn, issue_id, expect if expect is not None else -1)
    elif expect is not None and version_of(conn, issue_id) != expect:
        raise _refusal(conn, issue_id, expect)
    version = version_of(conn, issue_id)
    conn.execute(insert(draft_log).values(issue_id=issue_id, at=now, origin=origin, action=action[:40],
                                          detail=" ".join(detail.split())[:500], version=version))
    return version


def last_change(conn: Connection, issue_id: int) -> int:
    """The id of the draft's newest log entry (0 for none): part of the page's fingerprint."""
    return int(conn.execute(select(func.coalesce(func.max(draft_log.c.id), 0))
                            .where(draft_log.c.issue_id == issue_id)).scalar_one())
