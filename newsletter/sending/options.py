"""What a send is asked to do and what it reports: the options of one run, built from the
settings, and its report.

Owns: `SendOptions`, `SendFlags`, `SendReport`, `SendProgress`, `send_options`. Imports
`config`, `links`, `models` and `transports` (for what the chosen transport can do).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from ..config import Settings
from ..errors import ConfigError
from ..links import list_id
from ..models import Issue
from ..transports import Transport, capabilities


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
    #: `helpers`) when there are at least `BATCHES_PER_PROCESS` batches for each.
    processes: int = 1
    #: Share the issue with other `--worker` processes: leave in-flight batches alone.
    worker: bool = False
    #: 429 answers waited out per batch before it counts as failed.
    max_rate_limit_waits: int = 30
    #: `[delivery] local_time` ("HH:MM"; empty: at once) and the site's zone, for planning.
    local_time: str = ""
    site_zone: str = "UTC"
    #: Set by the scheduled service on SIGTERM: claim nothing more, finish and record the
    #: batches in flight, and leave the rest planned for the next run.
    stop: threading.Event | None = None


@dataclass(frozen=True)
class SendFlags:
    """How `newsletter send` was asked to send: the choices a user makes per run."""

    retry_failed: bool = False
    resend_unknown: bool = False
    sandbox: bool = False
    worker: bool = False


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
    #: Recipients of accepted batches the provider refused for good (an SMTP 5xx).
    recipients_refused: int = 0
    failed_batches: list[tuple[int, str]] = field(default_factory=list)
    unknown_batches: list[int] = field(default_factory=list)
    #: Failed batches in the ledger when the run ended (this run's and earlier ones).
    failed_total: int = 0
    complete: bool = False
    elapsed: float = 0.0
    #: Helper processes that sent with this one, and the batches they sent (included above).
    helpers: int = 0
    helper_batches_sent: int = 0
    #: Local-time delivery: zones whose next local time was beyond the 72-hour horizon
    #: (clamped to it), and subscribers' zones that are not IANA names (the site's used).
    clamped_zones: list[str] = field(default_factory=list)
    unknown_zones: list[str] = field(default_factory=list)


def send_options(settings: Settings, issue: Issue, transport: Transport, flags: SendFlags, stop: threading.Event | None) -> SendOptions:
    """The options of one run sending `issue` through `transport`; `ConfigError` when
    `[delivery] local_time` is set and the transport cannot deliver at a given time."""
    if settings.delivery.local_time and not capabilities(transport.name).send_at:
        raise ConfigError(f"delivery.local_time is set but the {transport.name} transport cannot deliver at a given time; "
                          "leave local_time empty or use sendgrid (or the outbox)")
    return SendOptions(
        base_url=settings.site.base_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        sender_name=settings.sender.name,
        sender_address=settings.sender.address,
        reply_to=settings.sender.reply_to,
        batch_size=settings.delivery.batch_size,
        retry_failed=flags.retry_failed,
        resend_unknown=flags.resend_unknown,
        sandbox=flags.sandbox,
        worker=flags.worker,
        concurrency=capabilities(transport.name).concurrency(settings),
        categories=(settings.site.name[:255], f"issue-{issue.slug}"),
        list_id=list_id(settings.site.name, settings.sender.address),
        processes=settings.delivery.processes,
        local_time=settings.delivery.local_time,
        site_zone=settings.site.timezone,
        stop=stop,
    )
