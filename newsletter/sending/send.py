"""A send from plan to done: plan the issue's batches, start helper processes if the
transport is worth it, run the send loop, and settle the issue's status.

Owns: `send_issue` (the entry: an issue, a transport, options), `send_planned` and
`send_as_helper` (a helper process's work), `Helpers` (the helper processes of one send).
Imports `config`, `db`, `store`, `models`, `errors`, `transports` and this package's
modules. The use case (`issues.send_pending`) runs the preflight and saves the web
version before it calls `send_issue`.

Exactly once: all batches are planned and committed before the first one is sent (see
`run` for a batch's states). With an idempotent transport such as the outbox an in-flight
batch is sent again; otherwise it is reported as unknown and resent only when asked
(`resend_unknown`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from .. import db, store
from ..config import Settings
from ..errors import DeliveryError, IssueError, TransportAuthError
from ..models import BatchStatus, Issue, IssueStatus, RenderedMessage, Segment
from ..transports import Transport, capabilities, make_transport, recalling
from . import ledger
from .helpers import HelperOutcome, HelperPool, concurrency_share, helper_count
from .options import SendFlags, SendOptions, SendProgress, SendReport, send_options
from .planning import plan_issue
from .run import SendLoop

log = logging.getLogger(__name__)


class Helpers:
    """The helper processes of one send, which rebuild their work from `settings`,
    the issue's id and `flags` (a new process shares nothing with this one).

    With `expected_batches`, as many as they are worth are started at once, before the
    preflight and the planning, so that they are ready when the batches are (a new
    process takes about half a second to import what it runs); otherwise they are started
    once the batches are planned. `close` sends away any that were never used."""

    def __init__(self, settings: Settings, issue_id: int, flags: SendFlags, *, expected_batches: int = 0) -> None:
        self.args = (settings, issue_id, flags)
        count = helper_count(settings.delivery.processes, expected_batches)
        self.pool = HelperPool(count, send_as_helper, self.args) if count else None

    def open(self, count: int, loop: SendLoop) -> HelperPool:
        pool = self.pool if self.pool is not None else HelperPool(count, send_as_helper, self.args)
        self.pool = pool
        return pool.open(count, on_advance=loop.advance, stop_when=loop.helpers_must_stop, on_auth_error=loop.helper_refused_key)

    def close(self) -> None:
        if self.pool is not None and not self.pool.opened:
            self.pool.cancel()


def send_issue(
    engine: Engine,
    issue: Issue,
    *,
    transport: Transport,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available_sections: set[str],
    options: SendOptions,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] | None = None,
    progress: SendProgress | None = None,
    helpers: Helpers | None = None,
    after_planning: Callable[[], None] | None = None,
) -> SendReport:
    """Plan and send `issue` to every mailable subscriber who does not have it yet;
    `render(sections)` gives the message of a segment not rendered before.

    With `options.processes` above one and `helpers`, helper processes send alongside
    this one once the batches are planned; their figures are added to the report, and
    the run returns when they are done. A helper's refused API key stops the run like
    this process's own; any other failure of a helper is raised as a `DeliveryError` once
    the rest have finished (its batches in flight stay unknown).

    Up to `options.concurrency` batches are in flight at once; only this thread touches
    the database. Failed batches are recorded, not raised. `TransportAuthError` stops the
    run: nothing more is claimed, the batches it hit go back to planned, the answers of
    the others are recorded, then it is raised. A `KeyboardInterrupt` (Ctrl-C, or SIGTERM
    as the CLI maps it) likewise stops claiming and records what is in flight first.
    `sleep` waits between retries (default: a wait that an interrupt cuts short).
    `after_planning()` runs once the plan is committed, before any batch is claimed: the
    seam where a test changes the world between the two.
    """
    started = time.perf_counter()
    report = SendReport(issue=issue.slug)
    # One connection for the whole run: opening one per transaction costs more than the
    # transaction on SQLite (the last connection to close checkpoints the WAL).
    with _old_objects_frozen(), engine.connect() as conn:
        known = plan_issue(conn, issue, render, available_sections, batch_size=options.batch_size, transport=transport.name,
                           report=report, now=clock(), local_time=options.local_time, site_zone=options.site_zone)
        if after_planning is not None:
            after_planning()
        _send_planned_on(conn, issue, transport, known, options, clock, sleep, progress, report, helpers)
    report.elapsed = time.perf_counter() - started
    return report


def send_planned(
    engine: Engine,
    issue: Issue,
    *,
    transport: Transport,
    options: SendOptions,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: SendProgress | None = None,
) -> SendReport:
    """Send batches of `issue` that are already planned, as a helper of the process that
    planned them: claim, send, record until none is left or `options.stop` is set,
    leaving batches in flight alone (as `options.worker`)."""
    started = time.perf_counter()
    report = SendReport(issue=issue.slug)
    claimable = (BatchStatus.PLANNED, BatchStatus.FAILED) if options.retry_failed else (BatchStatus.PLANNED,)
    with _old_objects_frozen(), engine.connect() as conn, ledger.sending_cache(conn):
        SendLoop(conn, issue, transport, options, report, clock, {}, progress, claimable, None).send_all()
    report.elapsed = time.perf_counter() - started
    return report


def send_as_helper(
    settings: Settings, issue_id: int, flags: SendFlags, *, processes: int, progress: SendProgress, stop: threading.Event
) -> SendReport:
    """The work of a helper process (`helpers.run_helper`), one of `processes` sending
    the issue: send planned batches on a connection and a transport of its own."""
    engine = db.open_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            issue = store.find_issue(conn, issue_id)
        if issue is None:
            raise IssueError(f"issue {issue_id} does not exist")
        transport = make_transport(settings)
        try:
            options = send_options(settings, issue, transport, flags, None)
            options = replace(options, concurrency=concurrency_share(options.concurrency, processes), stop=stop)
            return send_planned(engine, issue, transport=transport, options=options, progress=progress)
        finally:
            transport.close()
    finally:
        engine.dispose()


def _send_planned_on(
    conn: Connection,
    issue: Issue,
    transport: Transport,
    known: dict[int, Segment],
    options: SendOptions,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None] | None,
    progress: SendProgress | None,
    report: SendReport,
    helpers: Helpers | None,
) -> None:
    """Settle the batches a stopped run left in flight, then send every claimable one
    with this process's `SendLoop` and any helpers, and mark the issue sent when all is."""
    claimable = [BatchStatus.PLANNED]
    if options.retry_failed:
        claimable.append(BatchStatus.FAILED)
    with conn.begin():
        # SendGrid's `processed` events (webhook) settle in-flight batches it took.
        ledger.confirm_processed(conn, issue.id, now=clock())
        in_flight = ledger.batches_in(conn, issue.id, BatchStatus.IN_FLIGHT)
        if options.worker:
            # Another worker may be sending these right now: they are not ours to judge.
            pass
        elif transport.idempotent or options.resend_unknown:
            for batch in in_flight:
                ledger.release_batch(conn, batch.id, now=clock())
        else:
            report.unknown_batches = [b.id for b in in_flight]
        todo = ledger.batches_in(conn, issue.id, *claimable)
        wanted = {b.segment_id for b in todo}
        segments = {segment_id: known[segment_id] for segment_id in wanted & known.keys()}
        segments.update(store.segments_by_id(conn, wanted - known.keys()))
    if report.unknown_batches:
        log.warning("issue %s: %d batches in flight when a run stopped; outcome unknown", issue.slug, len(report.unknown_batches))
    if todo:
        issue = _with_provider_batch(conn, issue, transport)
    if progress:
        progress.start(len(todo), sum(b.recipients for b in todo))

    count = helper_count(options.processes, len(todo)) if helpers is not None else 0
    # `concurrency` is what the whole send has in flight: each process takes its share.
    options = replace(options, concurrency=concurrency_share(options.concurrency, count + 1))
    run = SendLoop(conn, issue, transport, options, report, clock, segments, progress, tuple(claimable), sleep)
    pool = helpers.open(count, run) if helpers is not None and count else None
    if pool is not None:
        report.helpers = count
        log.info("issue %s: %d helper processes send with this one", issue.slug, count)
    try:
        with ledger.sending_cache(conn):
            run.send_all()
    except BaseException:
        if pool is not None:
            pool.stop()
            _merge(report, pool.join())
        raise
    if pool is not None:
        if run.helpers_must_stop():
            # This process stopped early (the scheduler's SIGTERM, or a refused key):
            # the helpers stop too rather than send the rest.
            pool.stop()
        outcome = pool.join()
        _merge(report, outcome)
        if outcome.auth_error:
            raise TransportAuthError(outcome.auth_error)
        if outcome.errors:
            raise DeliveryError("a helper process failed: " + "; ".join(outcome.errors))

    with conn.begin():
        summary = ledger.ledger_summary(conn, issue.id)
        done = summary[BatchStatus.ACCEPTED.value] == sum(summary[s.value] for s in BatchStatus)
        if done and summary[BatchStatus.ACCEPTED.value] > 0:
            store.set_issue_status(conn, issue.id, IssueStatus.SENT, now=issue.sent_at or clock())
        report.complete = done
        report.failed_total = summary[BatchStatus.FAILED.value]


def _with_provider_batch(conn: Connection, issue: Issue, transport: Transport) -> Issue:
    """`issue` with the provider's id for its send (SendGrid's `batch_id`), asked for once
    before the first request of a transport that can recall and stored with the issue, so
    that a resumed send, a helper and a worker use the same one. Two workers asking at
    once store the first; the other's id is never used."""
    if not capabilities(transport.name).recall:
        return issue
    with conn.begin():
        stored = store.provider_batch_id(conn, issue.id)
    if not stored:
        made = recalling(transport).open_send()
        if not made:
            return issue
        with conn.begin():
            stored = store.set_provider_batch_id(conn, issue.id, made)
        log.info("issue %s: provider batch id %s", issue.slug, stored)
    return replace(issue, provider_batch_id=stored)


@contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Leave the objects that exist before a send out of the garbage collector's full
    passes while it runs (`gc.freeze`), and hand them back after.

    A send makes and drops millions of small objects (a dict and a few strings per
    recipient), so the collector runs often; now and then it runs a full pass over every
    object of the process, the imported libraries' included: 90 ms each, at 100,000
    objects. Nothing a send makes is frozen, so its own garbage is collected as ever."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _merge(report: SendReport, outcome: HelperOutcome) -> None:
    for other in outcome.reports:
        report.helper_batches_sent += other.batches_sent
        report.batches_sent += other.batches_sent
        report.recipients_sent += other.recipients_sent
        report.recipients_skipped += other.recipients_skipped
        report.recipients_refused += other.recipients_refused
        report.failed_batches += other.failed_batches
