"""Delivery as the settings ask for it: the transport, the send options, and the work of a
helper process.

Owns: `make_transport`, `SendFlags`, `send_options`, `send_as_helper`. Imports `config`,
`db`, `store`, `dispatch` and, when one is chosen, that transport's module; nothing that
renders, fetches or builds pages. A helper process (`workers`) imports this module and
what it needs, not the use cases of `issues`: a new process pays for every module it
imports, and sending starts when the last helper is ready.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from . import db, store
from .config import Settings
from .dispatch import SendOptions, SendProgress, SendReport, concurrency_share, send_planned
from .errors import ConfigError, IssueError
from .links import list_id
from .models import Issue
from .transports import Transport


def make_transport(settings: Settings) -> Transport:
    """The transport the configuration names. Each transport's module is imported when it
    is chosen (the SendGrid one brings the `sendgrid` package and its cryptography; the
    outbox one the renderer's tag pattern)."""
    if settings.delivery.transport == "outbox":
        from .transports.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir)
    if settings.delivery.transport == "sendgrid":
        key = settings.sendgrid.api_key.get_secret_value() if settings.sendgrid.api_key else ""
        if not key.strip():
            raise ConfigError("delivery.transport is \"sendgrid\" but no API key is set: export SENDGRID_API_KEY")
        from .transports.sendgrid import SendGridTransport

        return SendGridTransport(
            api_key=key.strip(),
            api_host=settings.sendgrid.api_host,
            asm_group_id=settings.sendgrid.asm_group_id,
            timeout=settings.sendgrid.timeout,
        )
    raise ConfigError(f"delivery.transport: {settings.delivery.transport!r} is not a transport; use \"outbox\" or \"sendgrid\"")


@dataclass(frozen=True)
class SendFlags:
    """How `newsletter send` was asked to send: the choices a user makes per run."""

    retry_failed: bool = False
    resend_unknown: bool = False
    sandbox: bool = False
    worker: bool = False


def send_options(settings: Settings, issue: Issue, transport: Transport, flags: SendFlags, stop: threading.Event | None) -> SendOptions:
    """The options of one run sending `issue` through `transport`."""
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
        concurrency=settings.sendgrid.concurrency if transport.name == "sendgrid" else 1,
        categories=(settings.site.name[:255], f"issue-{issue.slug}"),
        list_id=list_id(settings.site.name, settings.sender.address),
        processes=settings.delivery.processes,
        stop=stop,
    )


def send_as_helper(
    settings: Settings, issue_id: int, flags: SendFlags, *, processes: int, progress: SendProgress, stop: threading.Event
) -> SendReport:
    """The work of a helper process (`workers.run_helper`), one of `processes` sending
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
