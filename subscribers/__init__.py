"""Everything about people: who subscribed, what they chose, and whether they may be mailed.

`newsletter` imports only what this module exports; `subscribers` never imports `newsletter`.
"""

from .errors import InvalidEmailError, SubscriberError, UnknownSubscriberError
from .models import NewSubscriber, Status, Subscriber, parse_sections_key, sections_key
from .store import (
    count_by_status,
    get_subscriber,
    normalize_email,
    set_status,
    subscribers_by_id,
    upsert_subscribers,
)
from .suppression import is_suppressed, mailable_clause, suppress
from .tables import UTCDateTime, metadata, subscribers, suppressions

__all__ = [
    "InvalidEmailError",
    "NewSubscriber",
    "Status",
    "Subscriber",
    "SubscriberError",
    "UTCDateTime",
    "UnknownSubscriberError",
    "count_by_status",
    "get_subscriber",
    "is_suppressed",
    "mailable_clause",
    "metadata",
    "normalize_email",
    "parse_sections_key",
    "sections_key",
    "set_status",
    "subscribers",
    "subscribers_by_id",
    "suppress",
    "suppressions",
    "upsert_subscribers",
]
