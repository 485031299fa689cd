"""The scheduled service: APScheduler jobs that call the use cases, and nothing else.

Owns: the triggers (`digest_trigger`, `crontab_trigger`), slot arithmetic (`last_slot`,
`next_fire_times`), the missed-run policy (`missed_run`), the slot guard
(`runs.claim_slot`), the jobs (`run_digest`, `run_refresh`, `run_retry`, `run_welcomes`,
`run_prune`) and `run_service`. Imports `config`, `issues` (the use cases, the editors'
reminder among them), `welcome`, `ingest`, `events`, `store`, `runs` (the record of
`scheduled_runs`), `errors`, `models`. No SQL and no mail of its own.

Never twice: every digest run first inserts (job, slot) into `scheduled_runs` in its own
transaction; the primary key lets exactly one process win, however many schedulers run by
mistake. The issue a run builds is derived from its slot (its window ends at the slot), so
a late catch-up builds the same issue the missed run would have built. At start-up the
service looks at the database, not the job store, to decide whether the last slot ran:
re-adding jobs with `replace_existing` would otherwise silently drop a missed run.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from . import issues, store, welcome
from .config import Settings, load_settings
from .errors import ConfigError, EmptyIssueError, NewsletterError
from .events import prune_events
from .ingest import ingest_sources
from .models import IssueStatus
from .runs import claim_slot, finish_slot, slot_ran

log = logging.getLogger("newsletter.schedule")

DIGEST_JOB = "weekly-digest"
REFRESH_JOB = "refresh-sources"
RETRY_JOB = "retry-failed"
PRUNE_JOB = "prune-events"
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Set by SIGTERM or Ctrl-C: a send in progress stops after the batch in flight.
STOP = threading.Event()


def _weekday(field: str) -> str:
    """A crontab weekday field (Sunday = 0 or 7) in APScheduler's names, whose numbers
    would otherwise mean something else (APScheduler 3 counts Monday as 0)."""

    def one(token: str) -> str:
        return _DAYS[int(token)] if token.isdigit() and int(token) <= 7 else token.lower()

    parts = []
    for item in field.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            parts.append(item)
            continue
        start, _, end = base.partition("-")
        converted = one(start) + (f"-{one(end)}" if end else "")
        parts.append(converted + (f"/{step}" if step else ""))
    return ",".join(parts)


def crontab_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger from a crontab line with standard weekday numbers; six fields put
    seconds first. Raises `ConfigError` naming the setting when the line is wrong."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ConfigError(f"schedule.digest_cron: expected 5 or 6 fields, got {expression!r}")
    second, minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday(weekday), timezone=zone
        )
    except ValueError as exc:
        raise ConfigError(f"schedule.digest_cron: {expression!r} is not a valid crontab line: {exc}") from None


def digest_trigger(settings: Settings) -> CronTrigger:
    """When the weekly digest goes out, in the site's time zone."""
    zone = settings.site.zone
    if settings.schedule.digest_cron:
        return crontab_trigger(settings.schedule.digest_cron, zone)
    hour, minute = settings.schedule.digest_time.split(":")
    return CronTrigger(day_of_week=settings.schedule.digest_day, hour=int(hour), minute=int(minute), timezone=zone)


def next_fire_times(trigger: Any, now: datetime, count: int) -> list[datetime]:
    """The next `count` fire times after `now`."""
    times: list[datetime] = []
    previous = None
    current = now
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None:
            break
        times.append(fire)
        previous, current = fire, fire + timedelta(microseconds=1)
    return times


def last_slot(trigger: CronTrigger, now: datetime, *, horizon: timedelta = timedelta(days=8)) -> datetime | None:
    """The latest fire time at or before `now` (within `horizon`).

    A binary search on the start of the look-up: the first fire time at or after a start
    only grows with the start, so about forty look-ups find the answer even for a trigger
    that fires every second.
    """
    def first_from(start: datetime) -> datetime | None:
        fire: datetime | None = trigger.get_next_fire_time(None, start)
        return fire

    low, high = now - horizon, now
    found = first_from(low)
    if found is None or found > now:
        return None
    while high - low > timedelta(milliseconds=1):
        middle = low + (high - low) / 2
        fire = first_from(middle)
        if fire is not None and fire <= now:
            low, found = middle, fire
        else:
            high = middle
    return found


@dataclass(frozen=True)
class Decision:
    action: Literal["run", "skip", "none"]
    slot: datetime | None
    reason: str


def missed_run(trigger: CronTrigger, *, now: datetime, grace: timedelta, already_ran: Callable[[datetime], bool]) -> Decision:
    """What to do at start-up about the last slot: run it now (missed, within the grace
    period), skip it (missed, too late), or nothing (it ran, or there was none)."""
    slot = last_slot(trigger, now)
    if slot is None:
        return Decision("none", None, "no slot in the last eight days")
    if already_ran(slot):
        return Decision("none", slot, "the last slot already ran")
    late = now - slot
    if late <= grace:
        return Decision("run", slot, f"missed by {late}; inside the grace period of {grace}")
    return Decision("skip", slot, f"missed by {late}; past the grace period of {grace}")


def _logfmt(**fields: Any) -> str:
    def value(v: Any) -> str:
        text = v.isoformat() if isinstance(v, datetime) else str(v)
        return f'"{text}"' if " " in text or not text else text

    return " ".join(f"{k}={value(v)}" for k, v in fields.items())


@dataclass(frozen=True)
class DigestResult:
    status: str
    issue: str = ""
    articles_new: int = 0
    segments: int = 0
    recipients: int = 0
    failed_batches: int = 0
    detail: str = ""


def _remind_editors(settings: Settings, slug: str, now: datetime) -> None:
    """Have the editors reminded that a draft waits for approval, and log how it went."""
    outcome = issues.remind_editors(settings, slug, now=now)
    if outcome is None:
        log.warning("%s", _logfmt(event="reminder_skipped", issue=slug, reason="no schedule.editors configured"))
        return
    log.info("%s", _logfmt(event="reminder_sent", issue=slug, editors=len(settings.schedule.editors),
                           outcome=outcome.kind.value))


def run_digest(
    engine: Engine,
    settings: Settings,
    slot: datetime,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DigestResult:
    """The weekly job for `slot`: ingest, build the slot's issue, send it; at most once
    per slot across every process sharing the database."""
    started = time.perf_counter()
    if not claim_slot(engine, DIGEST_JOB, slot, now=clock()):
        log.info("%s", _logfmt(event="digest_skipped", slot=slot, reason="this slot already ran"))
        return DigestResult("already_ran")
    result = DigestResult("failed")
    try:
        result = _digest(engine, settings, slot, clock)
    except NewsletterError as exc:
        result = DigestResult("failed", detail=str(exc))
        log.error("%s", _logfmt(event="digest_failed", slot=slot, error=exc))
    finally:
        finish_slot(engine, DIGEST_JOB, slot, status=result.status, issue_slug=result.issue, detail=result.detail, now=clock())
        log.info("%s", _logfmt(
            event="digest", slot=slot, status=result.status, issue=result.issue or "-", articles_new=result.articles_new,
            segments=result.segments, recipients=result.recipients, failed_batches=result.failed_batches,
            duration=f"{time.perf_counter() - started:.2f}s", detail=result.detail or "-",
        ))
    return result


def _digest(engine: Engine, settings: Settings, slot: datetime, clock: Callable[[], datetime]) -> DigestResult:
    reports = ingest_sources(engine, settings, clock=clock)
    new = sum(r.new for r in reports)
    with engine.connect() as conn:
        latest = store.latest_issue(conn)
    if latest is not None and latest.status is not IssueStatus.SENT:
        issue = latest  # a draft built by hand, or a send that stopped halfway
    else:
        try:
            issue = issues.build_issue(engine, settings, now=slot).issue
        except EmptyIssueError as exc:
            return DigestResult("empty", articles_new=new, detail=str(exc))
    approved = issue.status.value in ("approved", "sending")
    if not settings.schedule.auto_send and not approved:
        _remind_editors(settings, issue.slug, clock())
        return DigestResult("awaiting_approval", issue=issue.slug, articles_new=new, detail="draft not approved; editors reminded")
    transport = issues.make_transport(settings)
    try:
        report = issues.send_pending(engine, settings, issue, transport=transport, clock=clock, stop=STOP)
    finally:
        transport.close()
    status = "sent" if report.complete else "incomplete"
    return DigestResult(
        status, issue=issue.slug, articles_new=new, segments=len(report.segments), recipients=report.recipients_sent,
        failed_batches=len(report.failed_batches),
    )


def digest_job(config_path: str) -> None:
    """The weekly job as APScheduler calls it: the slot is the one this firing belongs to."""
    settings = load_settings(config_path or None)
    engine = issues.open_database(settings)
    try:
        slot = last_slot(digest_trigger(settings), datetime.now(UTC))
        if slot is not None:
            run_digest(engine, settings, slot)
    finally:
        engine.dispose()


def refresh_job(config_path: str) -> None:
    """Ingest every configured source."""
    settings = load_settings(config_path or None)
    engine = issues.open_database(settings)
    try:
        reports = ingest_sources(engine, settings)
        log.info("%s", _logfmt(event="refresh", sources=len(reports), new=sum(r.new for r in reports),
                               failed=sum(r.status == "failed" for r in reports)))
    finally:
        engine.dispose()


def run_welcomes(engine: Engine, settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> welcome.WelcomeReport:
    """Send the welcome emails still due: recorded but never sent (the web app's send was
    lost), or failed fewer than `welcome.MAX_ATTEMPTS` times."""
    transport = issues.make_transport(settings)
    try:
        report = welcome.send_welcomes(engine, settings, transport=transport, clock=clock)
    finally:
        transport.close()
    if report.sent or report.failed or report.skipped:
        log.info("%s", _logfmt(event="welcomes", sent=report.sent, failed=report.failed, skipped=report.skipped))
    return report


def retry_job(config_path: str) -> None:
    """Send the welcome emails still due, and retry failed batches of the newest issue
    that is not completely sent."""
    settings = load_settings(config_path or None)
    engine = issues.open_database(settings)
    try:
        try:
            run_welcomes(engine, settings)
        except NewsletterError as exc:
            log.error("%s", _logfmt(event="welcomes_failed", error=exc))
        with engine.connect() as conn:
            latest = store.latest_issue(conn)
        if latest is None or latest.status is not IssueStatus.SENDING:
            return
        transport = issues.make_transport(settings)
        try:
            report = issues.send_pending(
                engine, settings, latest, transport=transport, flags=issues.SendFlags(retry_failed=True), stop=STOP
            )
        finally:
            transport.close()
        log.info("%s", _logfmt(event="retry", issue=latest.slug, recipients=report.recipients_sent, failed_batches=len(report.failed_batches)))
    finally:
        engine.dispose()


def run_prune(engine: Engine, settings: Settings, *, now: datetime) -> int:
    """Delete raw webhook events older than `sendgrid.event_retention_days`; the
    statistics keep their aggregates. Returns how many were deleted."""
    before = now - timedelta(days=settings.sendgrid.event_retention_days)
    with engine.begin() as conn:
        deleted = prune_events(conn, before=before)
    log.info("%s", _logfmt(event="prune", deleted=deleted, before=before))
    return deleted


def prune_job(config_path: str) -> None:
    """Prune old raw events, as APScheduler calls it."""
    settings = load_settings(config_path or None)
    engine = issues.open_database(settings)
    try:
        run_prune(engine, settings, now=datetime.now(UTC))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class JobInfo:
    id: str
    description: str
    next_times: tuple[datetime, ...]


def planned_jobs(settings: Settings, *, now: datetime, count: int = 3) -> list[JobInfo]:
    """The service's jobs and their next fire times (for `newsletter schedule --list`)."""
    s = settings.schedule
    digest = digest_trigger(settings)
    refresh = IntervalTrigger(minutes=s.refresh_minutes, start_date=now, timezone=settings.site.zone)
    retry = IntervalTrigger(minutes=s.retry_minutes, start_date=now, timezone=settings.site.zone)
    prune = IntervalTrigger(hours=s.prune_hours, start_date=now, timezone=settings.site.zone)
    when = s.digest_cron or f"{s.digest_day} {s.digest_time}"
    return [
        JobInfo(DIGEST_JOB, f"build and send the digest ({when}, {settings.site.timezone}; "
                            f"{'auto-send' if s.auto_send else 'approved drafts only'})", tuple(next_fire_times(digest, now, count))),
        JobInfo(REFRESH_JOB, f"ingest the sources every {s.refresh_minutes:g} min", tuple(next_fire_times(refresh, now, count))),
        JobInfo(RETRY_JOB, f"retry failed batches and welcome emails every {s.retry_minutes:g} min", tuple(next_fire_times(retry, now, count))),
        JobInfo(PRUNE_JOB, f"delete webhook events older than {settings.sendgrid.event_retention_days} days "
                           f"every {s.prune_hours:g} h", tuple(next_fire_times(prune, now, count))),
    ]


def catch_up(engine: Engine, settings: Settings, *, now: datetime) -> Decision:
    """At start-up: run the last digest slot once if it was missed within the grace
    period; record it as skipped (with a log line) if it is too late."""
    decision = missed_run(
        digest_trigger(settings), now=now, grace=timedelta(hours=settings.schedule.grace_hours),
        already_ran=lambda slot: slot_ran(engine, DIGEST_JOB, slot),
    )
    if decision.action == "run" and decision.slot is not None:
        log.warning("%s", _logfmt(event="catch_up", slot=decision.slot, reason=decision.reason))
        run_digest(engine, settings, decision.slot)
    elif decision.action == "skip" and decision.slot is not None:
        if claim_slot(engine, DIGEST_JOB, decision.slot, now=now, status="skipped"):
            finish_slot(engine, DIGEST_JOB, decision.slot, status="skipped", issue_slug="", detail=decision.reason, now=now)
        log.warning("%s", _logfmt(event="missed_run_skipped", slot=decision.slot, reason=decision.reason))
    return decision


class _StoppableScheduler(BlockingScheduler):
    """APScheduler 3's blocking scheduler whose loop also ends when `STOP` is set, and
    only between two rounds of handing due jobs to the executor; `run_service` then
    shuts it down from the same thread."""

    def _main_loop(self) -> None:
        wait_seconds: float = threading.TIMEOUT_MAX
        while self.state != STATE_STOPPED and not STOP.is_set():
            self._event.wait(wait_seconds)
            self._event.clear()
            if STOP.is_set():
                return
            wait_seconds = self._process_jobs()


def run_service(settings: Settings, config_path: str, *, now: datetime | None = None) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C; jobs live in the database."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    engine = issues.open_database(settings)
    digest = digest_trigger(settings)
    zone = settings.site.zone
    scheduler = _StoppableScheduler(
        timezone=zone,
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(settings.schedule.grace_hours * 3600) or 1},
    )

    def stop(signum: int, _frame: Any) -> None:
        # Only a mark and a wake-up: the handler runs in the main thread, which may be in
        # the middle of handing a job to the executor; shutting the executor down from
        # here made that hand-over fail with a traceback in the log (seen under load).
        log.warning("%s", _logfmt(event="stopping", signal=signal.Signals(signum).name))
        STOP.set()
        if scheduler.running:
            scheduler.wakeup()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    catch_up(engine, settings, now=now or datetime.now(UTC))
    if STOP.is_set():
        return
    kwargs = {"config_path": config_path}
    scheduler.add_job(digest_job, digest, id=DIGEST_JOB, replace_existing=True, kwargs=kwargs)
    scheduler.add_job(refresh_job, IntervalTrigger(minutes=settings.schedule.refresh_minutes, timezone=zone),
                      id=REFRESH_JOB, replace_existing=True, kwargs=kwargs)
    scheduler.add_job(retry_job, IntervalTrigger(minutes=settings.schedule.retry_minutes, timezone=zone),
                      id=RETRY_JOB, replace_existing=True, kwargs=kwargs)
    scheduler.add_job(prune_job, IntervalTrigger(hours=settings.schedule.prune_hours, timezone=zone),
                      id=PRUNE_JOB, replace_existing=True, kwargs=kwargs)
    log.info("%s", _logfmt(event="started", jobs=4, next_digest=next_fire_times(digest, datetime.now(UTC), 1)[0]))
    scheduler.start()  # returns once STOP is set, between two rounds of jobs
    # Wait for the jobs running now (a send stops after its batches in flight), so the
    # executor is closed before the interpreter exits.
    scheduler.shutdown(wait=True)
    log.info("%s", _logfmt(event="stopped"))
