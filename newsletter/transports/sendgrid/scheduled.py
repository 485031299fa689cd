"""SendGrid's batch ids and scheduled sends: what makes a send recallable.

Owns: `ScheduledSends`, and `errors_of` and `key_refused` (SendGrid's answers, read for
every endpoint). Imports `errors` and the `sendgrid` package's HTTP client
(through the client the transport made); the transport's `open_send`, `recall` and
`resume` (the registry's `Recalling`) call it.

SendGrid's rules (https://www.twilio.com/docs/sendgrid/api-reference/cancel-scheduled-sends):
one `batch_id` (`POST /v3/mail/batch`) names every request of a send; `POST
/v3/user/scheduled_sends` with `{"batch_id", "status": "cancel" | "pause"}` stops or holds
the copies not yet due, no later than 10 minutes before a `send_at`; at most 10 batches
may be cancelled or paused at once; `PATCH` changes the status, `DELETE` undoes it (a
paused batch is then delivered). A cancel is asked only when SendGrid does not already
hold it, so asking again after a crash does what asking once did.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
from collections.abc import Callable
from typing import Any

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from ...errors import DeliveryError, RecallRefusedError, TransportAuthError


def errors_of(body: bytes) -> str:
    """SendGrid's error messages from a response body, as one line."""
    try:
        data = json.loads(body.decode("utf-8"))
        messages = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message", ""))
            for e in data.get("errors", [])
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError, TypeError):
        messages = []
    if messages:
        return "; ".join(messages)[:2000]
    return body.decode("utf-8", "replace").strip()[:500]


def key_refused(api_host: str, exc: http_errors.HTTPError) -> TransportAuthError:
    """The error of a refused API key (401, 403), naming the host and SendGrid's reason."""
    return TransportAuthError(
        f"SendGrid at {api_host} refused the API key ({exc.status_code}: {errors_of(exc.body)}); "
        "check SENDGRID_API_KEY and that the key may send mail"
    )


class ScheduledSends:
    """The batch-id and scheduled-sends endpoints of one SendGrid account."""

    def __init__(self, client: SendGridAPIClient, api_host: str) -> None:
        self.client = client.client
        self.api_host = api_host

    def create_batch_id(self) -> str:
        """A new batch id for one send."""
        response = self._call("create a batch id", lambda: self.client.mail.batch.post())
        try:
            return str(json.loads(response.body)["batch_id"])
        except (ValueError, KeyError, TypeError):
            raise DeliveryError(f"SendGrid at {self.api_host} answered POST /v3/mail/batch without a batch_id") from None

    def status(self, batch_id: str) -> str | None:
        """"cancel" or "pause" when SendGrid holds that for the batch, else None."""
        try:
            response = self._call("read a scheduled send", lambda: self.client.user.scheduled_sends._(batch_id).get())
        except RecallRefusedError:
            # SendGrid answers 404 for a batch id with no cancel or pause.
            return None
        try:
            entries: Any = json.loads(response.body or b"[]")
        except ValueError:
            return None
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and entry.get("batch_id") == batch_id:
                return str(entry.get("status"))
        return None

    def hold(self, batch_id: str, action: str) -> bool:
        """Cancel or pause the batch, unless SendGrid holds exactly that already (True)."""
        current = self.status(batch_id)
        if current == action:
            return True
        if current is None:
            body = json.dumps({"batch_id": batch_id, "status": action})
            self._call(f"{action} the send", lambda: self.client.user.scheduled_sends.post(request_body=body))
        else:
            body = json.dumps({"status": action})
            self._call(f"{action} the send", lambda: self.client.user.scheduled_sends._(batch_id).patch(request_body=body))
        return False

    def release(self, batch_id: str) -> None:
        """Undo the batch's pause: SendGrid delivers its copies (at once when due). Nothing
        is asked when SendGrid holds nothing for it (undone before a crash)."""
        if self.status(batch_id) is None:
            return
        self._call("resume the send", lambda: self.client.user.scheduled_sends._(batch_id).delete())

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except (http_errors.UnauthorizedError, http_errors.ForbiddenError) as exc:
            raise key_refused(self.api_host, exc) from None
        except http_errors.HTTPError as exc:
            status = int(exc.status_code)
            message = f"SendGrid refused to {what} ({status}: {errors_of(exc.body)})"
            if status >= 500 or status == 429:
                raise DeliveryError(message + "; try again") from None
            raise RecallRefusedError(message) from None
        except (TimeoutError, socket.timeout, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"cannot reach SendGrid at {self.api_host} to {what}: {reason}") from None
