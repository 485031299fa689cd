"""The scheduler's record of its runs: which job ran for which slot, and how it ended.

Owns: reading and writing `scheduled_runs` (`slot_ran`, `claim_slot`, `finish_slot`).
Imports `tables`. Each function is one transaction of its own, on the engine it is given:
the claim must be committed before the job's work starts, so that exactly one process
wins a slot however many schedulers run (the primary key refuses the second).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from .tables import scheduled_runs


def slot_ran(engine: Engine, job: str, slot: datetime) -> bool:
    """Whether `job` was claimed for `slot` (run, running, or skipped)."""
    with engine.connect() as conn:
        return conn.execute(
            select(scheduled_runs.c.job).where(scheduled_runs.c.job == job, scheduled_runs.c.slot == slot)
        ).first() is not None


def claim_slot(engine: Engine, job: str, slot: datetime, *, now: datetime, status: str = "running") -> bool:
    """Record that this process runs `job` for `slot`; False when another already did."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(scheduled_runs).values(
                    job=job, slot=slot, status=status, started_at=now, finished_at=None, issue_slug="", detail=""
                )
            )
    except IntegrityError:
        return False
    return True


def finish_slot(engine: Engine, job: str, slot: datetime, *, status: str, issue_slug: str, detail: str, now: datetime) -> None:
    """Record how the run of `job` for `slot` ended (the detail cut to 4,000 characters)."""
    with engine.begin() as conn:
        conn.execute(
            update(scheduled_runs)
            .where(scheduled_runs.c.job == job, scheduled_runs.c.slot == slot)
            .values(status=status, issue_slug=issue_slug, detail=detail[:4000], finished_at=now)
        )
