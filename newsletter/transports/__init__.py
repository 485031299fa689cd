"""Transports deliver one batch and say what happened; they never retry or keep a ledger.

Owns: the `Transport` protocol, `personalize`, and the registry of transports
(`Capabilities`, `capabilities`, `make_transport`): what each one can do, so that no code
outside this package asks for a transport by its name. Imports `models`, `errors`,
`config` and, when one is chosen, that transport's module (`outbox`, `sendgrid`, `smtp`):
each brings its own libraries, which a process that does not use it never imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..config import Settings
from ..errors import ConfigError
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
        Capabilities("outbox", _outbox, idempotent=True, writes_files=True),
        Capabilities(
            "sendgrid", _sendgrid, idempotent=False, helper_processes=True,
            concurrency=lambda settings: settings.sendgrid.concurrency, sandbox=True, event_webhook=True,
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
