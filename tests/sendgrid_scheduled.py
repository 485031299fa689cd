"""SendGrid's batch ids and scheduled sends, as the stand-in plays them (see
`sendgrid_standin`): `POST /v3/mail/batch`, `GET /v3/mail/batch/{id}` and
`GET/POST/PATCH/DELETE /v3/user/scheduled_sends[/{id}]`, with SendGrid's rules, and what
became of every copy a Mail Send accepted.

Rules (https://www.twilio.com/docs/sendgrid/api-reference/cancel-scheduled-sends): an
unknown batch id is refused; a cancel or pause is refused when no pending copy of the
batch is due more than 10 minutes later; at most 10 batches are cancelled or paused at
once; a cancelled copy is discarded at its time, a paused one held until the pause is
deleted.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def sendgrid_errors(*messages: tuple[str | None, str]) -> bytes:
    """An error body shaped like SendGrid's: {"errors": [{"message", "field", "help"}]}."""
    return json.dumps({"errors": [{"message": m, "field": f, "help": None} for f, m in messages]}).encode()

#: SendGrid refuses to cancel or pause a batch later than this before a `send_at`.
CANCEL_MARGIN = timedelta(minutes=10)
#: At most this many batches may be cancelled or paused at once.
MAX_HELD_BATCHES = 10


@dataclass
class Copy:
    """One recipient's copy of an accepted Mail Send request."""

    email: str
    subject: str
    batch_id: str
    #: Due at (None: at once, i.e. when accepted).
    send_at: datetime | None
    accepted_at: datetime


@dataclass
class Hold:
    """A batch's cancel or pause: since when, and (a resumed pause) until when."""

    status: str
    since: datetime
    released_at: datetime | None = None




class ScheduledSends:
    """The stand-in's batch ids, holds and copies; its callers hold the stand-in's lock."""

    def __init__(self) -> None:
        self.batch_ids: set[str] = set()
        #: Every batch's cancel or pause (a resumed pause stays, with `released_at`).
        self.holds: dict[str, Hold] = {}
        self.copies: list[Copy] = []


    def route(self, method: str, path: str, payload: Any, now: datetime) -> tuple[int, bytes]:
        if payload is None or not isinstance(payload, dict):
            return 400, sendgrid_errors((None, "The request body must be a JSON object."))
        if method == "POST" and path == "/v3/mail/batch":
            batch_id = uuid.uuid4().hex + uuid.uuid4().hex[:12]
            self.batch_ids.add(batch_id)
            return 201, json.dumps({"batch_id": batch_id}).encode()
        if method == "GET" and path.startswith("/v3/mail/batch/"):
            batch_id = path.rsplit("/", 1)[1]
            if batch_id not in self.batch_ids:
                return 400, sendgrid_errors(("batch_id", "invalid batch id"))
            return 200, json.dumps({"batch_id": batch_id}).encode()
        if path == "/v3/user/scheduled_sends":
            if method == "GET":
                return 200, json.dumps([{"batch_id": b, "status": h.status} for b, h in self.holds.items() if not h.released_at]).encode()
            if method == "POST":
                return self.hold(str(payload.get("batch_id", "")), payload.get("status"), now, new=True)
        if path.startswith("/v3/user/scheduled_sends/"):
            batch_id = path.rsplit("/", 1)[1]
            hold = self.holds.get(batch_id)
            if hold is None or hold.released_at is not None:
                return 404, sendgrid_errors(("batch_id", "no cancel or pause for this batch id"))
            if method == "GET":
                return 200, json.dumps([{"batch_id": batch_id, "status": hold.status}]).encode()
            if method == "PATCH":
                return self.hold(batch_id, payload.get("status"), now, new=False)
            if method == "DELETE":
                hold.released_at = now
                return 204, b""
        return 404, sendgrid_errors((None, f"no route {method} {path}"))

    def hold(self, batch_id: str, status: Any, now: datetime, *, new: bool) -> tuple[int, bytes]:
        if status not in ("cancel", "pause"):
            return 400, sendgrid_errors(("status", "status must be either cancel or pause"))
        if batch_id not in self.batch_ids:
            return 400, sendgrid_errors(("batch_id", "invalid batch id"))
        current = self.holds.get(batch_id)
        if new and current is not None and current.released_at is None:
            return 400, sendgrid_errors(("batch_id", "this batch id is already cancelled or paused; PATCH to change it"))
        held = sum(1 for b, h in self.holds.items() if h.released_at is None and b != batch_id)
        if new and held >= MAX_HELD_BATCHES:
            return 400, sendgrid_errors((None, f"You can't pause or cancel more than {MAX_HELD_BATCHES} different batches at one time."))
        mine = [c for c in self.copies if c.batch_id == batch_id]
        if mine and not any(c.send_at is not None and c.send_at > now + CANCEL_MARGIN for c in mine):
            return 400, sendgrid_errors((None, "You can't pause or cancel a batch later than 10 minutes before its scheduled send_at."))
        if new or current is None:
            self.holds[batch_id] = Hold(status, now)
        else:
            current.status = status
        return (201, json.dumps({"batch_id": batch_id, "status": status}).encode()) if new else (204, b"")

    def fate(self, copy: Copy, now: datetime) -> str:
        """What became of a copy by `now` (the clock's): delivered, scheduled, cancelled
        or paused. A copy is held by its batch's cancel or pause when it was due more than
        10 minutes after the hold began; a resumed pause lets it go then."""
        due = copy.send_at or copy.accepted_at
        hold = self.holds.get(copy.batch_id) if copy.batch_id else None
        if hold is not None and due > hold.since + CANCEL_MARGIN:
            if hold.released_at is None:
                return "cancelled" if hold.status == "cancel" else "paused"
            if hold.status == "cancel":
                return "cancelled"
            due = max(due, hold.released_at)
        return "delivered" if due <= now else "scheduled"

    def keep_copies(self, body: dict[str, Any], now: datetime) -> None:
        """Remember each copy of an accepted request."""
        batch_id = str(body.get("batch_id", ""))
        top = body.get("send_at")
        for p in body.get("personalizations", []):
            at = p.get("send_at", top)
            when = datetime.fromtimestamp(at, UTC) if isinstance(at, int) else None
            for to in p.get("to", []):
                self.copies.append(Copy(to["email"], str(p.get("subject", body.get("subject", ""))), batch_id, when, now))

