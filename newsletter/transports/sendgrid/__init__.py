"""SendGrid: the transport (`transport`), its kept connections (`connections`) and its
Event Webhook (`webhook`).

Owns nothing itself; exports what the registry, the webhook route and the tests use.
"""

from .transport import SendGridTransport, mail_body, mail_body_json
from .webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureProblem, WebhookVerifier, read_events

__all__ = [
    "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SendGridTransport", "SignatureProblem", "WebhookVerifier", "mail_body",
    "mail_body_json", "read_events",
]
