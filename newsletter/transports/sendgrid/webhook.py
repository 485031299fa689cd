"""SendGrid's Event Webhook: what SendGrid reports after sending, signed with its private key.

Owns: `WebhookVerifier` (the signature over timestamp and body), `SignatureProblem`, the
header names, and `read_events` (its events in our words). Imports `models` and the
`sendgrid` package's `EventWebhook` with `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from ...models import DeliveryEvent, EventKind

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SignatureProblem(StrEnum):
    """Why a webhook request is refused: no signature at all, or one that does not hold."""

    MISSING = "missing"
    INVALID = "invalid"
    STALE = "stale"
    FUTURE = "future"


class WebhookVerifier:
    """Checks the Signed Event Webhook: ECDSA P-256 over the timestamp header followed by
    the raw body. The key is read by the `sendgrid` package's `EventWebhook`; the check
    itself runs on the bytes received (that helper takes text, which a body that is not
    UTF-8 is not), so a signed body that cannot be used is the caller's 400, not a 403.

    `public_key` is the verification key as SendGrid shows it (base64 DER); `ValueError`
    when it is not a P-256 public key, so a wrong key stops the app at start-up.
    """

    def __init__(self, public_key: str, *, max_age: float) -> None:
        try:
            self._webhook = EventWebhook(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a public key in base64 DER ({exc.__class__.__name__})") from None
        key = self._webhook.public_key
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("not an ECDSA P-256 public key, which is what SendGrid signs with")
        self._key = key
        self.max_age = max_age

    def problem(self, body: bytes, signature: str | None, timestamp: str | None, *, now: float) -> SignatureProblem | None:
        """None when the request is SendGrid's and fresh, else what is wrong with it."""
        if not signature or not timestamp:
            return SignatureProblem.MISSING
        # The signature covers the raw bytes, whatever they are: whether they make a
        # usable body is for the caller to say after this (400, not 403).
        try:
            self._key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode("utf-8") + body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, ValueError, TypeError):
            return SignatureProblem.INVALID
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return SignatureProblem.STALE
        age = now - int(timestamp)
        if age > self.max_age:
            return SignatureProblem.STALE
        if -age > self.max_age:
            return SignatureProblem.FUTURE
        return None


_KINDS: dict[str, EventKind] = {
    "processed": EventKind.PROCESSED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "group_resubscribe": EventKind.RESUBSCRIBED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
}
#: The reasons of a `dropped` event that mean the address itself is dead.
_DEAD_ADDRESS = ("bounced address", "invalid")


def _number(value: Any) -> int | None:
    kind = type(value)
    if kind is str:
        return int(value) if value.isdigit() and len(value) < 10 else None
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if 0 < value < 2**31 else None
    return None


def _kind(name: str, item: dict[str, Any]) -> EventKind:
    if name == "bounce":
        # SendGrid reports a block (a refusal that may pass) as a bounce of type "blocked".
        return EventKind.SOFT_BOUNCE if str(item.get("type", "bounce")).lower() == "blocked" else EventKind.BOUNCED
    if name == "dropped":
        reason = str(item.get("reason", "")).strip().lower()
        return EventKind.BOUNCED if reason in _DEAD_ADDRESS else EventKind.SOFT_BOUNCE
    return _KINDS.get(name, EventKind.OTHER)


def read_events(data: Any, *, received_at: datetime) -> list[DeliveryEvent]:
    """The events of one Event Webhook request (a JSON array of objects). `ValueError`
    naming the problem when it is not one. An event without a timestamp counts as
    happening when it arrived; one without `sg_event_id` is keyed by a hash of its
    content, so that its redelivery is recognised too."""
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of events")
    events: list[DeliveryEvent] = []
    append = events.append
    # Names bound once: this loop runs for every event (thousands in one request).
    number, kinds, kind_of, from_stamp = _number, _KINDS, _kind, datetime.fromtimestamp
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"event {index}: expected a JSON object")
        get = item.get
        name = get("event", "")
        name = (name if type(name) is str else str(name))[:50]
        key = get("sg_event_id")
        if type(key) is not str or not key or len(key) > 100:
            digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode("utf-8")).hexdigest()
            key = "sha256:" + digest[:64]
        stamp: Any = get("timestamp")
        occurred = received_at
        if type(stamp) in (int, float) and 0 < stamp < 10**11:
            occurred = from_stamp(int(stamp), UTC)
        url = get("url")
        reason = get("reason") or get("response") or ""
        email = get("email") or ""
        kind = kinds.get(name)
        append(DeliveryEvent(
            key=key,
            kind=kind if kind is not None else kind_of(name, item),
            provider_event=name,
            occurred_at=occurred,
            issue_id=number(get("issue_id")),
            batch_id=number(get("batch_id")),
            subscriber_id=number(get("subscriber_id")),
            email=(email if type(email) is str else str(email))[:320],
            url=url[:2000] if isinstance(url, str) else "",
            reason=(reason if type(reason) is str else str(reason))[:500],
        ))
    return events
