"""The send loop of one run: claim batches, send them on a thread pool, retry what may be
retried, record every answer.

Owns: `SendLoop` (and `backoff`, the wait between two tries). Imports `ledger`,
`store`, `links`, `models`, `errors`, `transports` and this package's `options`. Only the
thread that runs `send_all` touches the database; the pool's threads only send.

Exactly once: a batch is marked in flight (committed) before its request and accepted
(committed; its recipients then count as sent) after, so a run that is killed leaves
every batch planned (to send), accepted (never sent again) or in flight (outcome unknown).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from .. import store
from ..errors import TransportAuthError
from ..links import recipient
from ..models import Batch, BatchStatus, Issue, Outcome, OutcomeKind, Recipient, Segment
from ..transports import Transport
from . import ledger
from .options import SendOptions, SendProgress, SendReport

log = logging.getLogger(__name__)

#: The longest wait between two tries of a batch, in seconds.
MAX_WAIT = 60.0


def backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(MAX_WAIT, max(0.0, retry_after))
    return min(MAX_WAIT, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)


class SendLoop:
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
            send_at: dict[int, datetime] = {}
            with conn.begin():
                # One pass over a thousand rows: this loop is per recipient.
                for delivery_id, subscriber_id, email, name, token, mailable, due in ledger.batch_recipients(conn, row.id):
                    if mailable:
                        recipients.append(recipient(subscriber_id, email, token, name, base_url=base_url, mailto=mailto))
                        if due is not None:
                            send_at[subscriber_id] = ledger.as_utc(due)
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
                send_at=send_at,
                provider_batch_id=self.issue.provider_batch_id or "",
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
                delay = backoff(rate_limited, outcome.retry_after)
            else:
                errors += 1
                if errors >= self.options.max_attempts:
                    return _Attempt(outcome)
                delay = backoff(errors, None)
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
                ledger.refuse_deliveries(conn, batch.id, outcome.refused)
                report.batches_sent += 1
                report.recipients_sent += len(batch.recipients) - len(outcome.refused)
                report.recipients_refused += len(outcome.refused)
                if outcome.refused:
                    log.warning("batch %d of issue %s: %d recipients refused", batch.id, batch.issue_slug, len(outcome.refused))
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
