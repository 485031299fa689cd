"""Transports deliver one batch and say what happened; they never retry or keep a ledger.

Owns: the `Transport` and `Recalling` protocols, `RecallTarget`, `recalling`, `personalize`, and the registry of transports
(`Capabilities`, `capabilities`, `make_transport`): what each one can do, so that no code
outside this package asks for a transport by its name. Imports `models`, `errors`,
`config` and, when one is chosen, that transport's module (`outbox`, `sendgrid`, `smtp`):
each brings its own libraries, which a process that does not use it never imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast

from ..config import Settings
from ..errors import ConfigError, DeliveryError
from ..models import Batch, Outcome


class Transport(Protocol):
    """Delivers batches: up to 1,000 recipients of one segment and its rendered message."""

    #: Short name recorded in the ledger ("outbox", "sendgrid", "smtp").
    name: str
    #: True when sending the same batch twice delivers it once (so an in-flight batch whose
    #: outcome is unknown may simply be sent again).
    idempotent: bool

    def send(self, batch: Batch) -> Outcome:
        """Deliver the batch. Returns accepted / retryable / permanent; raises only
        `TransportAuthError` when nothing more can be sent."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@dataclass(frozen=True)
class RecallTarget:
    """What a recall names: the issue, the provider's batch id of its send (SendGrid's
    `batch_id`; empty for the outbox) and the cutoff: copies due after it are stopped."""

    issue_slug: str
    provider_batch_id: str
    cutoff: datetime


class Recalling(Protocol):
    """A transport whose sent copies can be stopped until they are due (the registry's
    `recall`). Every method may be called again with the same values after a crash, with
    the same effect as once."""

    def open_send(self) -> str:
        """The provider's id for the requests of one send (SendGrid: `POST /v3/mail/batch`),
        which its recall names. Raises `DeliveryError` when it cannot have one."""
        ...

    def recall(self, target: RecallTarget, action: str) -> bool:
        """Stop ("cancel") or hold ("pause") the copies of `target` due after its cutoff;
        True when the provider held exactly that already (asked before a crash). Raises
        `RecallRefusedError` with the provider's reason when it refuses."""
        ...

    def resume(self, target: RecallTarget) -> None:
        """Undo a pause: the held copies are delivered (at once, when already due). Nothing
        happens when nothing is held."""
        ...


def recalling(transport: Transport) -> Recalling:
    """`transport` as a `Recalling` one; `DeliveryError` when its registry entry says it
    cannot recall."""
    if not capabilities(transport.name).recall:
        raise DeliveryError(f"the {transport.name} transport cannot recall a sent message")
    return cast(Recalling, transport)


def personalize(text: str, substitutions: dict[str, str]) -> str:
    """`text` with every substitution tag replaced by the recipient's value."""
    for tag, value in substitutions.items():
        text = text.replace(tag, value)
    return text


def _one(settings: Settings) -> int:
    return 1


@dataclass(frozen=True)
class Capabilities:
    """What a transport can do, declared once here (see `REGISTRY`)."""

    name: str
    #: Builds the transport from the settings (importing its module only then); raises
    #: `ConfigError` when its settings are incomplete.
    make: Callable[[Settings], Transport]
    #: Sending the same batch twice delivers it once (the transport's own `idempotent`).
    idempotent: bool
    #: Worth sending from several processes (`[delivery] processes`): the work per batch
    #: is the client's, bound to one core per process.
    helper_processes: bool = False
    #: Batches in flight at once for one send, from its settings.
    concurrency: Callable[[Settings], int] = _one
    #: Has a sandbox mode (`newsletter send --sandbox`).
    sandbox: bool = False
    #: Reports delivery events to `POST /webhooks/<name>` (its parser and signature check
    #: live in the transport's package, `webhook`).
    event_webhook: bool = False
    #: Writes the messages as files (`delivery.outbox_dir`) rather than handing them on.
    writes_files: bool = False
    #: Delivers each copy at its own time (`Batch.send_at`, `[delivery] local_time`).
    send_at: bool = False
    #: Can stop copies not yet due (`Recalling`: `newsletter recall`), and hold them.
    recall: bool = False
    pause: bool = False
    #: Copies due within this long of a recall cannot be stopped any more.
    recall_margin: timedelta = timedelta(0)


def _outbox(settings: Settings) -> Transport:
    from .outbox import OutboxTransport

    return OutboxTransport(settings.outbox_dir)


def _sendgrid(settings: Settings) -> Transport:
    key = settings.sendgrid.api_key.get_secret_value() if settings.sendgrid.api_key else ""
    if not key.strip():
        raise ConfigError("delivery.transport is \"sendgrid\" but no API key is set: export SENDGRID_API_KEY")
    from .sendgrid import SendGridTransport

    return SendGridTransport(
        api_key=key.strip(),
        api_host=settings.sendgrid.api_host,
        asm_group_id=settings.sendgrid.asm_group_id,
        timeout=settings.sendgrid.timeout,
    )


def _smtp(settings: Settings) -> Transport:
    config = settings.smtp
    if config.username and config.password is None:
        raise ConfigError("smtp.username is set but no password: export NEWSLETTER_SMTP__PASSWORD")
    from .smtp import SmtpTransport

    return SmtpTransport(
        host=config.host, port=config.port, username=config.username,
        password=config.password.get_secret_value() if config.password else "", tls=config.tls,
        connections=config.connections,
    )


#: Every transport, by the name `[delivery] transport` gives.
REGISTRY: dict[str, Capabilities] = {
    c.name: c
    for c in (
        # The outbox plays a provider that delivers each file at its time: a recall moves
        # the files not yet due to `recalled/`.
        Capabilities("outbox", _outbox, idempotent=True, writes_files=True, send_at=True, recall=True),
        Capabilities(
            "sendgrid", _sendgrid, idempotent=False, helper_processes=True,
            concurrency=lambda settings: settings.sendgrid.concurrency, sandbox=True, event_webhook=True,
            # SendGrid cannot cancel or pause a batch later than 10 minutes before a send_at.
            send_at=True, recall=True, pause=True, recall_margin=timedelta(minutes=10),
        ),
        Capabilities("smtp", _smtp, idempotent=False, concurrency=lambda settings: settings.smtp.connections),
    )
}


def capabilities(name: str) -> Capabilities:
    """What the transport called `name` can do."""
    try:
        return REGISTRY[name]
    except KeyError:
        choices = ", ".join(f'"{n}"' for n in REGISTRY)
        raise ConfigError(f"delivery.transport: {name!r} is not a transport; use one of {choices}") from None


def make_transport(settings: Settings) -> Transport:
    """The transport the configuration names."""
    return capabilities(settings.delivery.transport).make(settings)
