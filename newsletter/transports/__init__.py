"""Transports deliver one batch and say what happened; they never retry or keep a ledger.

Owns: the `Transport` protocol, `personalize`. Imports `models`. The two implementations
are `outbox.OutboxTransport` (files on disk) and `sendgrid.SendGridTransport`.
"""

from __future__ import annotations

from typing import Protocol

from ..models import Batch, Outcome


class Transport(Protocol):
    """Delivers batches: up to 1,000 recipients of one segment and its rendered message."""

    #: Short name recorded in the ledger ("outbox", "sendgrid").
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
