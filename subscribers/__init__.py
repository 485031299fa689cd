"""Everything about people: who subscribed, what they chose, and whether they may be mailed.

`newsletter` imports only what this module exports; `subscribers` never imports `newsletter`.
"""

from .errors import (
    ConfirmationExpiredError,
    InvalidEmailError,
    InvalidSectionError,
    NotAllowedError,
    SubscriberError,
    UnknownSubscriberError,
)
from .models import (
    ConsentAction,
    ConsentRecord,
    NewSubscriber,
    Origin,
    Status,
    Subscriber,
    parse_sections_key,
    sections_key,
)
from .optin import (
    ConfirmationMail,
    ConfirmResult,
    MailKind,
    SendMail,
    confirm_subscription,
    request_subscription,
    resend_confirmation,
)
from .preferences import (
    PAUSE_CHOICES,
    choose_sections,
    load_preferences,
    pause,
    resubscribe,
    resume,
    unsubscribe,
)
from .store import (
    consent_history,
    consent_version,
    count_by_status,
    get_subscriber,
    normalize_email,
    set_status,
    subscriber_by_id,
    subscriber_by_token,
    subscribers_by_id,
    upsert_subscribers,
)
from .suppression import is_suppressed, mailable_clause, suppress
from .tables import UTCDateTime, consents, metadata, subscribers, suppressions
from .tokens import rotate_token

__all__ = [
    "PAUSE_CHOICES",
    "ConfirmResult",
    "ConfirmationExpiredError",
    "ConfirmationMail",
    "ConsentAction",
    "ConsentRecord",
    "InvalidEmailError",
    "InvalidSectionError",
    "MailKind",
    "NewSubscriber",
    "NotAllowedError",
    "Origin",
    "SendMail",
    "Status",
    "Subscriber",
    "SubscriberError",
    "UTCDateTime",
    "UnknownSubscriberError",
    "choose_sections",
    "confirm_subscription",
    "consent_history",
    "consent_version",
    "consents",
    "count_by_status",
    "get_subscriber",
    "is_suppressed",
    "load_preferences",
    "mailable_clause",
    "metadata",
    "normalize_email",
    "parse_sections_key",
    "pause",
    "request_subscription",
    "resend_confirmation",
    "resubscribe",
    "resume",
    "rotate_token",
    "sections_key",
    "set_status",
    "subscriber_by_id",
    "subscriber_by_token",
    "subscribers",
    "subscribers_by_id",
    "suppress",
    "suppressions",
    "unsubscribe",
    "upsert_subscribers",
]
