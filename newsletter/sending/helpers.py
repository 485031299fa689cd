"""Helper processes: more processes sending one issue, started by the one that planned it.

Owns: `HelperPool`, `HelperOutcome`, `run_helper`, and how many helpers a send is worth
(`helper_count`, `process_count`, `concurrency_share`). Imports this package's `options`
(for the report) and `errors`; nothing that knows settings or the database: the caller
hands in the function a helper runs (`send.send_as_helper`) and its arguments.

Why processes: a sending process is bound to one core (Python's GIL): building and
encoding a thousand personalizations, and the `sendgrid` client's work per request, hold
it. Every helper runs the same claim → send → record loop as the parent on a connection
of its own (`send.send_planned`, as a `--worker` does), so the ledger keeps its
promises unchanged: a batch is claimed by one process only, accepted batches are never
sent again, and a batch in flight when a process dies is reported as unknown.

Lifetime: helpers are started with the "spawn" method (a fresh interpreter: no copy of
the parent's connections or threads). A spawned process first runs the parent's main
script again; helpers skip that (see `_without_main_script`) and import only
`send.send_as_helper` and what it needs, so they are ready sooner. On Linux each asks
the kernel to kill it when the parent dies, so `kill -9` of `newsletter send` leaves
nothing sending behind it. Ctrl-C reaches the whole process group, but helpers ignore
SIGINT: they stop when the parent tells them (SIGTERM), so a stop is one orderly request
per process, never two. Told to stop, a helper claims nothing more and records the
answers of its batches in flight.
Progress and each helper's report travel back over one queue.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from .options import SendReport

log = logging.getLogger(__name__)

#: Helpers are started only for this many batches per sending process, or more: starting a
#: process costs about half a second, which a small send would never win back.
BATCHES_PER_PROCESS = 16


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


@dataclass
class HelperOutcome:
    """What helper processes came to: their reports, and why any of them stopped early."""

    reports: list[SendReport] = field(default_factory=list)
    #: The API key was refused in a helper (the message of its `TransportAuthError`).
    auth_error: str = ""
    #: Helpers that failed otherwise, with what they said.
    errors: list[str] = field(default_factory=list)

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


class _ChannelProgress:
    """A helper's progress, sent to the parent."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def start(self, total_batches: int, total_recipients: int) -> None:
        return None

    def advance(self, batches: int, recipients: int) -> None:
        self.channel.put(("advance", batches, recipients))


def run_helper(
    target: Callable[..., SendReport], args: tuple[Any, ...], channel: Any, parent: int, index: int, gate: Any, share: Any,
    stopped: Any,
) -> None:
    """A helper's body (in the new process): wait at `gate` until the parent has planned
    the issue, then, if `share` (the number of sending processes) leaves this helper a
    place and the parent has not said stop (`stopped`), `target(*args, processes=…,
    progress=…, stop=…)` until the work is done or the parent says stop. Its report, or
    why it failed or left, goes to `channel`.

    The parent says stop with SIGTERM, once this helper has said it is ready for it. The
    signal only sets the `stop` event the send loop checks before each claim, exactly as
    the scheduler's SIGTERM does: an exception raised at a random point could leave a
    lock of the thread pool held and the helper stuck."""
    _die_with_parent(parent)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    channel.put(("ready", index))
    # Imported here: the error types of the layers below, to tell the parent what happened.
    from ..errors import NewsletterError, TransportAuthError

    try:
        gate.wait()
        processes = share.value
        if index >= processes - 1 or stopped.is_set() or stop.is_set():
            channel.put(("left", None))
        else:
            channel.put(("report", target(*args, processes=processes, progress=_ChannelProgress(channel), stop=stop)))
    except TransportAuthError as exc:
        channel.put(("auth", str(exc)))
    except NewsletterError as exc:
        channel.put(("error", str(exc)))
    except Exception as exc:  # a helper must say why it died, or the parent cannot tell anyone
        log.debug("helper failed", exc_info=True)
        channel.put(("error", f"{exc.__class__.__name__}: {exc}"))
    channel.close()
    channel.join_thread()
    # Everything is said and the connections are closed: leave now rather than tear the
    # interpreter down module by module (a fifth of a second the parent would wait for).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) is not available; a helper outlives a killed parent")
    if os.getppid() != parent:
        # The parent died before the request above: nothing asked for this helper any more.
        os._exit(1)


@contextmanager
def _without_main_script() -> Iterator[None]:
    """While helpers are started: `__main__` is an empty module.

    A process started by "spawn" first runs the parent's main script again (as
    `__mp_main__`) when that script is a file: the `newsletter` command's whole CLI, or a
    benchmark script, half a second of imports a helper never uses, as the function it
    runs is named by its module. multiprocessing leaves out a main module that has no
    file, which is what it finds in these few milliseconds."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class HelperPool:
    """Up to `count` helper processes for `target(*args)`, started at once and waiting
    until `open` lets them send: the parent can start them before it plans (a new Python
    process needs about half a second to import what it runs) and decide how many it
    needs once it knows the batches. `cancel` sends them all away unused."""

    def __init__(self, count: int, target: Callable[..., SendReport], args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self.channel = context.Queue()
        self.gate = context.Event()
        self.share = context.Value("i", 0)
        #: Set by `stop`: a helper still starting (not ready for SIGTERM, which would
        #: kill it before its handler is in place) sees it at the gate and leaves.
        self.stopped = context.Event()
        self._ready: set[int] = set()
        self._lock = threading.Lock()
        self.outcome = HelperOutcome()
        self.opened = False
        self.on_advance: Callable[[int, int], None] = lambda batches, recipients: None
        self.stop_when: Callable[[], bool] = lambda: False
        self.on_auth_error: Callable[[], None] = lambda: None
        self._answered = 0
        self._stopping = False
        self.processes: list[BaseProcess] = [
            context.Process(target=run_helper,
                            args=(target, args, self.channel, os.getpid(), n, self.gate, self.share, self.stopped),
                            name=f"send-helper-{n}")
            for n in range(count)
        ]
        with _without_main_script():
            for process in self.processes:
                process.start()
        self._listener = threading.Thread(target=self._listen, name="send-helpers", daemon=True)

    def open(
        self,
        count: int,
        *,
        on_advance: Callable[[int, int], None],
        stop_when: Callable[[], bool],
        on_auth_error: Callable[[], None],
    ) -> HelperPool:
        """Let `count` helpers send (the others leave). Their progress is passed to
        `on_advance`; `stop_when` is polled, and once it is true (the scheduler's SIGTERM,
        or the parent's run halting) the helpers are told to stop."""
        self.on_advance, self.stop_when, self.on_auth_error = on_advance, stop_when, on_auth_error
        self.opened = True
        self.share.value = min(count, len(self.processes)) + 1
        self._listener.start()
        self.gate.set()
        return self

    def cancel(self) -> None:
        """Send every helper away unused and wait for them to go."""
        self.share.value = 0
        self.gate.set()
        for process in self.processes:
            process.join()

    def _listen(self) -> None:
        while self._answered < len(self.processes):
            if not self._stopping and self.stop_when():
                self.stop()
            try:
                message = self.channel.get(timeout=0.2)
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes) and self.channel.empty():
                    # A helper that died without a word (killed): nothing more will come.
                    break
                continue
            kind = message[0]
            if kind == "advance":
                self.on_advance(message[1], message[2])
                continue
            if kind == "ready":
                with self._lock:
                    self._ready.add(message[1])
                    late = self._stopping
                if late:
                    self._signal(message[1])
                continue
            self._answered += 1
            if kind == "report" and message[1] is not None:
                self.outcome.reports.append(message[1])
            elif kind == "auth":
                self.outcome.auth_error = self.outcome.auth_error or message[1]
                self.on_auth_error()
                self.stop()
            elif kind == "error":
                self.outcome.errors.append(message[1])

    def stop(self) -> None:
        """Tell every helper still running to claim nothing more and finish."""
        with self._lock:
            self._stopping = True
            ready = sorted(self._ready)
        self.stopped.set()
        for index in ready:
            self._signal(index)

    def _signal(self, index: int) -> None:
        process = self.processes[index]
        if process.is_alive() and process.pid is not None:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def join(self) -> HelperOutcome:
        """Wait for every helper to finish and say what they came to."""
        for process in self.processes:
            process.join()
        self._listener.join()
        lost = len(self.processes) - self._answered
        if lost > 0:
            self.outcome.errors.append(f"{lost} helper process(es) ended without a report (killed?)")
        return self.outcome
