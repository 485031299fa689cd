"""Sending an issue: plan its batches, then claim, send, retry and record each one.

Owns: `send_issue`, `SendOptions`, `SendReport`, `SendProgress`.
Imports `ledger`, `store`, `models`, `errors`, `transports` and what `subscribers` exports.

Exactly once: all batches are planned and committed before the first one is sent. A batch
is marked in flight (committed) before its request and accepted (committed; its
recipients then count as sent) after, so a run that is killed leaves every batch planned (to
send), accepted (never sent again) or in flight (outcome unknown). With an idempotent
transport such as the outbox an in-flight batch is sent again; otherwise it is reported as
unknown and resent only when asked (`resend_unknown`).
"""

from __future__ import annotations

import gc
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine

from subscribers import parse_sections_key

from . import ledger, store
from .errors import DeliveryError, TransportAuthError
from .links import recipient
from .models import Batch, BatchStatus, Issue, IssueStatus, Outcome, OutcomeKind, Recipient, RenderedMessage, Segment
from .transports import Transport

log = logging.getLogger(__name__)

#: The longest wait between two tries of a batch, in seconds.
MAX_WAIT = 60.0


class SendProgress(Protocol):
    def start(self, total_batches: int, total_recipients: int) -> None: ...

    def advance(self, batches: int, recipients: int) -> None: ...


@dataclass(frozen=True)
class SendOptions:
    base_url: str
    unsubscribe_mailto: str
    sender_name: str
    sender_address: str
    reply_to: str = ""
    batch_size: int = 1000
    max_attempts: int = 5
    retry_failed: bool = False
    resend_unknown: bool = False
    sandbox: bool = False
    categories: tuple[str, ...] = ()
    #: The List-Id header of every message (`links.list_id`).
    list_id: str = ""
    #: Batches in flight at once, shared out among the sending processes.
    concurrency: int = 1
    #: Processes sending the issue together: this one and helpers it starts (see
    #: `workers`) when there are at least `BATCHES_PER_PROCESS` batches for each.
    processes: int = 1
    #: Share the issue with other `--worker` processes: leave in-flight batches alone.
    worker: bool = False
    #: 429 answers waited out per batch before it counts as failed.
    max_rate_limit_waits: int = 30
    #: Set by the scheduled service on SIGTERM: claim nothing more, finish and record the
    #: batches in flight, and leave the rest planned for the next run.
    stop: threading.Event | None = None


@dataclass
class SendReport:
    """What a run of `send_issue` did; `segments` maps a section key to its HTML bytes."""

    issue: str
    segments: dict[str, int] = field(default_factory=dict)
    planned_recipients: int = 0
    unsegmented: int = 0
    batches_sent: int = 0
    recipients_sent: int = 0
    recipients_skipped: int = 0
    failed_batches: list[tuple[int, str]] = field(default_factory=list)
    unknown_batches: list[int] = field(default_factory=list)
    #: Failed batches in the ledger when the run ended (this run's and earlier ones).
    failed_total: int = 0
    complete: bool = False
    elapsed: float = 0.0
    #: Helper processes that sent with this one, and the batches they sent (included above).
    helpers: int = 0
    helper_batches_sent: int = 0


@dataclass
class HelperOutcome:
    """What helper processes came to: their reports, and why any of them stopped early."""

    reports: list[SendReport] = field(default_factory=list)
    #: The API key was refused in a helper (the message of its `TransportAuthError`).
    auth_error: str = ""
    #: Helpers that failed otherwise, with what they said.
    errors: list[str] = field(default_factory=list)


class HelperGroup(Protocol):
    """Helper processes sending the same issue (`workers.HelperPool`)."""

    def stop(self) -> None: ...

    def join(self) -> HelperOutcome: ...


#: Starts `count` helpers running `send_planned` on the issue, given where their progress
#: goes (batches, recipients), a poll that says when they must stop, and what to do when
#: one of them finds the API key refused.
StartHelpers = Callable[[int, Callable[[int, int], None], Callable[[], bool], Callable[[], None]], HelperGroup]

#: Helpers are started only for this many batches per sending process, or more: starting a
#: process costs about half a second, which a small send would never win back.
BATCHES_PER_PROCESS = 16


#: Called in the planning's transaction, once the issue is locked, with the section
#: choices about to be planned (see `send_issue`).
BeforePlanning = Callable[[Connection, list[str]], None]


def _plan(
    conn: Connection,
    issue: Issue,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available: set[str],
    options: SendOptions,
    transport: str,
    report: SendReport,
    now: datetime,
    before_planning: BeforePlanning | None = None,
) -> dict[int, Segment]:
    """Render each new segment once and plan batches for everyone not yet planned.
    Returns the issue's segments, by id."""
    by_raw_key: dict[str, int | None] = {}
    with conn.begin():
        ledger.lock_issue(conn, issue.id)
        choices = ledger.unplanned_choices(conn, issue.id)
        if before_planning is not None:
            before_planning(conn, sorted(choices))
        stored = store.issue_segments(conn, issue.id)
        key_of: dict[str, str] = {}
        new: dict[str, RenderedMessage] = {}
        for raw in choices:
            chosen = tuple(s for s in parse_sections_key(raw) if s in available)
            if not chosen:
                by_raw_key[raw] = None
                continue
            key = key_of[raw] = ",".join(chosen)
            if key not in stored and key not in new:
                new[key] = render(chosen)
        stored.update(store.save_segments(conn, issue.id, new))
        for raw, key in key_of.items():
            by_raw_key[raw] = stored[key].id
            report.segments[key] = stored[key].message.html_bytes
        # A subscriber who joined since the query above has a choice `by_raw_key` does
        # not know; they wait for the next run rather than holding this transaction for
        # a render.
        counts = ledger.plan_batches(
            conn, issue.id, segment_for=by_raw_key, batch_size=options.batch_size, transport=transport, now=now,
            choices=choices,
        )
        if issue.status not in (IssueStatus.SENDING, IssueStatus.SENT):
            store.set_issue_status(conn, issue.id, IssueStatus.SENDING)
    report.planned_recipients = counts.recipients
    report.unsegmented = counts.unsegmented
    log.info("issue %s planned: %d batches, %d recipients", issue.slug, counts.batches, counts.recipients)
    return {segment.id: segment for segment in stored.values()}


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(MAX_WAIT, max(0.0, retry_after))
    return min(MAX_WAIT, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)


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
    start_helpers: StartHelpers | None = None,
    before_planning: BeforePlanning | None = None,
) -> SendReport:
    """Plan and send `issue` to every mailable subscriber who does not have it yet.

    `before_planning(conn, choices)` runs in the planning's transaction, on its
    connection, with the section choices of everyone about to be planned: what it raises
    stops the run with nothing planned (the use case's preflight), and what it writes is
    committed with the plan.

    With `options.processes` above one and `start_helpers`, helper processes send
    alongside this one once the batches are planned; their figures are added to the
    report, and the run returns when they are done. A helper's refused API key stops
    the run like this process's own; any other failure of a helper is raised as a
    `DeliveryError` once the rest have finished (its batches in flight stay unknown).

    Up to `options.concurrency` batches are in flight at once; only this thread touches
    the database. Failed batches are recorded, not raised. `TransportAuthError` stops the
    run: nothing more is claimed, the batches it hit go back to planned, the answers of
    the others are recorded, then it is raised. A `KeyboardInterrupt` (Ctrl-C, or SIGTERM
    as the CLI maps it) likewise stops claiming and records what is in flight first.
    `sleep` waits between retries (default: a wait that an interrupt cuts short).
    """
    started = time.perf_counter()
    report = SendReport(issue=issue.slug)
    # One connection for the whole run: opening one per transaction costs more than the
    # transaction on SQLite (the last connection to close checkpoints the WAL).
    with _old_objects_frozen(), engine.connect() as conn:
        _send_on(conn, issue, transport, render, available_sections, options, clock, sleep, progress, report, start_helpers,
                 before_planning)
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
        _Run(conn, issue, transport, options, report, clock, {}, progress, claimable, None).send_all()
    report.elapsed = time.perf_counter() - started
    return report


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


def concurrency_share(concurrency: int, processes: int) -> int:
    """Requests in flight from each of `processes` sending processes, out of `concurrency`
    for the whole send (at least one each)."""
    return max(1, -(-concurrency // processes))


def process_count(configured: int) -> int:
    """Sending processes for `[delivery] processes` (0: one per CPU)."""
    return configured if configured > 0 else (os.cpu_count() or 1)


def helper_count(processes: int, batches: int) -> int:
    """Helper processes worth starting for `batches` with `[delivery] processes` set to
    `processes`: one sending process per `BATCHES_PER_PROCESS` batches at the most."""
    return max(0, min(process_count(processes), batches // BATCHES_PER_PROCESS) - 1)


def _merge(report: SendReport, outcome: HelperOutcome) -> None:
    for other in outcome.reports:
        report.helper_batches_sent += other.batches_sent
        report.batches_sent += other.batches_sent
        report.recipients_sent += other.recipients_sent
        report.recipients_skipped += other.recipients_skipped
        report.failed_batches += other.failed_batches


def _send_on(
    conn: Connection,
    issue: Issue,
    transport: Transport,
    render: Callable[[tuple[str, ...]], RenderedMessage],
    available_sections: set[str],
    options: SendOptions,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None] | None,
    progress: SendProgress | None,
    report: SendReport,
    start_helpers: StartHelpers | None = None,
    before_planning: BeforePlanning | None = None,
) -> None:
    known = _plan(conn, issue, render, available_sections, options, transport.name, report, clock(), before_planning)

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
    if progress:
        progress.start(len(todo), sum(b.recipients for b in todo))

    count = helper_count(options.processes, len(todo)) if start_helpers else 0
    # `concurrency` is what the whole send has in flight: each process takes its share.
    options = replace(options, concurrency=concurrency_share(options.concurrency, count + 1))
    run = _Run(conn, issue, transport, options, report, clock, segments, progress, tuple(claimable), sleep)
    helpers = start_helpers(count, run.advance, run.helpers_must_stop, run.helper_refused_key) if start_helpers and count else None
    if helpers is not None:
        report.helpers = count
        log.info("issue %s: %d helper processes send with this one", issue.slug, count)
    try:
        with ledger.sending_cache(conn):
            run.send_all()
    except BaseException:
        if helpers is not None:
            helpers.stop()
            _merge(report, helpers.join())
        raise
    if helpers is not None:
        if run.helpers_must_stop():
            # This process stopped early (the scheduler's SIGTERM, or a refused key):
            # the helpers stop too rather than send the rest.
            helpers.stop()
        outcome = helpers.join()
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


class _Run:
    """One run's send loop: claim batches, hand them to a thread pool, record answers."""

    def __init__(
        self,
        conn: Connection,
        issue: Issue,
        transport: Transport,
        options: SendOptions,
        report: SendReport,
        clock: Callable[[], datetime],
        segments: dict[int, Segment],
        progress: SendProgress | None,
        claimable: tuple[BatchStatus, ...],
        sleep: Callable[[float], None] | None,
    ) -> None:
        self.conn = conn
        self.issue = issue
        self.transport = transport
        self.options = options
        self.report = report
        self.clock = clock
        self.segments = segments
        self.progress = progress
        self.claimable = claimable
        # Set when the run must stop early (an interrupt, or the API key refused); a
        # retry waiting on it gives up at once and its batch goes back to planned.
        self.halt = threading.Event()
        self.sleep = sleep or self._wait
        self.auth_error: TransportAuthError | None = None
        #: The deliveries of each batch in flight whose recipient was no longer mailable.
        self.dropped: dict[int, list[int]] = {}

    def send_all(self) -> None:
        pending: dict[Future[_Attempt], Batch] = {}
        exhausted = False
        with ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="send") as pool:
            try:
                while True:
                    while len(pending) < self.options.concurrency and not (exhausted or self._must_stop()):
                        batch = self._claim()
                        if batch is None:
                            exhausted = True
                            break
                        pending[pool.submit(self._attempt, batch)] = batch
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._record(pending.pop(future), future)
            except BaseException:
                # Interrupted: claim nothing more, and write down every answer still due,
                # so that only a second interrupt can leave a batch's outcome unknown.
                self.halt.set()
                for future in as_completed(list(pending)):
                    self._record(pending.pop(future), future)
                raise
        if self.auth_error is not None:
            raise self.auth_error

    def _claim(self) -> Batch | None:
        """The next claimed batch with its recipients; batches left empty by unsubscribes
        are closed on the way.

        The claim is a transaction of its own, and the recipients are read after it: a
        claimed batch is this run's alone, and the write lock (SQLite has one for the
        whole database) is held for a fraction of a millisecond rather than for the read
        of a thousand rows. Who is no longer mailable is written down when the batch's
        answer is (`_record`)."""
        options = self.options
        base_url = options.base_url
        mailto = options.unsubscribe_mailto
        conn = self.conn
        while True:
            with conn.begin():
                row = ledger.claim_batch(conn, self.issue.id, self.claimable, now=self.clock())
            if row is None:
                return None
            recipients: list[Recipient] = []
            drop: list[int] = []
            with conn.begin():
                # One pass over a thousand rows: this loop is per recipient.
                for delivery_id, subscriber_id, email, name, token, mailable in ledger.batch_recipients(conn, row.id):
                    if mailable:
                        recipients.append(recipient(subscriber_id, email, token, name, base_url=base_url, mailto=mailto))
                    else:
                        drop.append(delivery_id)
                if row.segment_id not in self.segments:
                    self.segments.update(store.segments_by_id(conn, [row.segment_id]))
            self.report.recipients_skipped += len(drop)
            if not recipients:
                with conn.begin():
                    ledger.skip_deliveries(conn, row.id, drop)
                    ledger.mark_accepted(conn, row.id, message_id="", status_code=0, now=self.clock())
                self.advance(1, row.recipients)
                continue
            self.dropped[row.id] = drop
            return Batch(
                id=row.id,
                issue_id=self.issue.id,
                issue_slug=self.issue.slug,
                segment_id=row.segment_id,
                message=self.segments[row.segment_id].message,
                recipients=tuple(recipients),
                sender_name=options.sender_name,
                sender_address=options.sender_address,
                reply_to=options.reply_to,
                categories=options.categories,
                sandbox=options.sandbox,
                list_id=options.list_id,
            )

    def _attempt(self, batch: Batch) -> _Attempt:
        """Send one batch, retrying what may be retried. Runs in a pool thread."""
        errors = rate_limited = 0
        while True:
            outcome = self.transport.send(batch)
            if outcome.kind is not OutcomeKind.RETRYABLE:
                return _Attempt(outcome)
            if outcome.status_code == 429 and rate_limited < self.options.max_rate_limit_waits:
                rate_limited += 1
                delay = _backoff(rate_limited, outcome.retry_after)
            else:
                errors += 1
                if errors >= self.options.max_attempts:
                    return _Attempt(outcome)
                delay = _backoff(errors, None)
            # A run that halts or is asked to stop does not wait to retry: the batch goes
            # back to planned, for the next run.
            if self._must_stop():
                return _Attempt(outcome, released=True)
            log.warning("batch %d: %s; retrying in %.1fs", batch.id, outcome.error or outcome.status_code, delay)
            self.sleep(delay)
            if self._must_stop():
                return _Attempt(outcome, released=True)

    def advance(self, batches: int, recipients: int) -> None:
        """Progress made, here or by a helper process."""
        if self.progress:
            self.progress.advance(batches, recipients)

    def helpers_must_stop(self) -> bool:
        return self._must_stop()

    def helper_refused_key(self) -> None:
        """A helper's API key was refused: claim nothing more here either."""
        self.halt.set()

    def _must_stop(self) -> bool:
        """The run halts (an interrupt, a refused key) or was asked to stop (`options.stop`)."""
        stop = self.options.stop
        return self.halt.is_set() or (stop is not None and stop.is_set())

    def _wait(self, seconds: float) -> None:
        """Wait before a retry, cut short when the run halts or is asked to stop (a
        rate limit's reset may be a minute away)."""
        deadline = time.monotonic() + seconds
        while not self._must_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.halt.wait(min(left, 0.1))

    def _record(self, batch: Batch, future: Future[_Attempt]) -> None:
        report = self.report
        try:
            result = future.result()
        except TransportAuthError as exc:
            self.auth_error = self.auth_error or exc
            self.halt.set()
            result = _Attempt(None, released=True)
        conn = self.conn
        with conn.begin():
            # Those found unmailable when the batch was claimed are left out for good.
            ledger.skip_deliveries(conn, batch.id, self.dropped.pop(batch.id, []))
            outcome = result.outcome
            if result.released or outcome is None:
                # Refused or never answered before the run stopped: it may be sent again.
                ledger.release_batch(conn, batch.id, now=self.clock())
                return
            if outcome.kind is OutcomeKind.ACCEPTED:
                ledger.mark_accepted(conn, batch.id, message_id=outcome.message_id, status_code=outcome.status_code, now=self.clock())
                report.batches_sent += 1
                report.recipients_sent += len(batch.recipients)
            else:
                ledger.mark_failed(conn, batch.id, status_code=outcome.status_code, error=outcome.error, now=self.clock())
                report.failed_batches.append((batch.id, outcome.error or f"status {outcome.status_code}"))
                log.error("batch %d of issue %s failed: %s", batch.id, batch.issue_slug, outcome.error)
        self.advance(1, len(batch.recipients))


@dataclass(frozen=True)
class _Attempt:
    """What sending one batch came to: an outcome, or released back to planned."""

    outcome: Outcome | None
    released: bool = False
