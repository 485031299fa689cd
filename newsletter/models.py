"""Value types passed between the layers of `newsletter`.

Owns: `Article`, `FeedItem`, `ImageSize`, `IssueStatus`, `Issue`, `Segment`, `RenderedMessage`,
`Sponsor`, `Recipient`, `Batch`, `BatchStatus`, `Outcome`, `OutcomeKind`, `EventKind`, `DeliveryEvent`,
and the substitution tags (`TAGS`, `TEXT_TAGS`, `ALL_TAGS`, `TAG_PATTERN`): the renderer writes them, the transports
fill them for each recipient. Imports nothing of ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

#: The per-recipient values a rendered segment leaves as tags (`%%unsubscribe_url%%`).
TAG_NAMES = ("greeting", "first_name", "preferences_url", "unsubscribe_url")
#: The tags of the HTML part, whose values are HTML-escaped (`links.substitutions`).
TAGS = {name: f"%%{name}%%" for name in TAG_NAMES}
#: The tags of the plain-text part, whose values are as typed. The URLs are the same in
#: both parts, so they share the HTML part's tags (see `links`).
TEXT_TAGS = {
    "greeting": "%%text_greeting%%",
    "first_name": "%%text_first_name%%",
    "preferences_url": TAGS["preferences_url"],
    "unsubscribe_url": TAGS["unsubscribe_url"],
}
#: Every tag a transport fills.
ALL_TAGS = frozenset(TAGS.values()) | frozenset(TEXT_TAGS.values())
TAG_PATTERN = re.compile(r"%%[a-z_]+%%")


@dataclass(frozen=True)
class Article:
    """One article as stored: plain-text title and summary, http(s) links only."""

    id: int
    guid: str
    url: str
    title: str
    author: str
    published_at: datetime
    categories: tuple[str, ...]
    summary: str
    image_url: str
    source: str
    #: The image's size in pixels when its source gave it (None: unknown).
    image_width: int | None = None
    image_height: int | None = None
    #: The image is known to be narrower than `images.min_hero_width`: a thumbnail, never
    #: a full-width image. False when its size is unknown.
    image_small: bool = False
    #: For each of `categories`, its parent categories nearest first (WordPress sources);
    #: empty when the source gives names only.
    category_ancestors: tuple[tuple[str, ...], ...] = ()

    @property
    def image_hero(self) -> bool:
        """The image is known to be wide enough for a full-width slot."""
        return bool(self.image_url and self.image_width and not self.image_small)


@dataclass(frozen=True)
class ImageSize:
    """One size of an image a source offers, with its pixels when the source says."""

    url: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FeedItem:
    """One article as a source delivers it, already cleaned, before it is stored."""

    guid: str
    url: str
    title: str
    author: str
    published_at: datetime | None
    categories: tuple[str, ...]
    summary: str
    image_url: str
    image_width: int | None = None
    image_height: int | None = None
    image_small: bool = False
    #: Every size of the item's image the source offered; ingest keeps the one that fits.
    image_sizes: tuple[ImageSize, ...] = ()
    category_ancestors: tuple[tuple[str, ...], ...] = ()
    #: Boilerplate, a "Continue reading" link or the excerpt marker was taken out of the
    #: summary, or it came from the content.
    summary_cleaned: bool = False


class IssueStatus(StrEnum):
    DRAFT = "draft"
    #: An editor approved the draft after its preflight passed; it is frozen until reopened.
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"


@dataclass(frozen=True)
class Issue:
    id: int
    slug: str
    subject: str
    preheader: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    status: IssueStatus
    sent_at: datetime | None
    #: The editors' introduction, in Markdown (rendered and sanitized by `render`).
    intro: str = ""
    #: The provider's id for every request of this issue's send (SendGrid's `batch_id`),
    #: which a recall names; None before the send asked for one.
    provider_batch_id: str | None = None


@dataclass(frozen=True)
class SectionBlock:
    """A section of an issue with its articles in the order they appear."""

    slug: str
    name: str
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class Sponsor:
    """The sponsor's slot of an issue, shown as "Sponsored" after the section `after`
    (empty: after the first section). Plain text; http(s) links only."""

    label: str
    text: str
    url: str
    image_url: str = ""
    after: str = ""


@dataclass(frozen=True)
class RenderedMessage:
    """One segment's email, rendered once: substitution tags such as `%%unsubscribe_url%%`
    stand where each recipient's own values go."""

    subject: str
    preheader: str
    html: str
    text: str

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True)
class Segment:
    """The recipients who chose the same sections get the same rendered message."""

    id: int
    issue_id: int
    key: str
    message: RenderedMessage


class Recipient(NamedTuple):
    """One addressee of a batch with the values of their substitution tags. A tuple: a
    send builds a million of them, and a tuple is made in a third of a frozen dataclass's
    time."""

    subscriber_id: int
    email: str
    substitutions: dict[str, str]
    unsubscribe_url: str
    unsubscribe_mailto: str


@dataclass(frozen=True)
class Batch:
    """Up to 1,000 recipients of one segment, handed to a transport in one go."""

    id: int
    issue_id: int
    issue_slug: str
    segment_id: int
    message: RenderedMessage
    recipients: tuple[Recipient, ...]
    sender_name: str
    sender_address: str
    reply_to: str
    categories: tuple[str, ...] = ()
    sandbox: bool = False
    #: The List-Id header's value (`links.list_id`); empty for mail that is not an issue.
    list_id: str = ""
    #: When each recipient's copy is to be delivered, by subscriber id (local-time
    #: delivery, `[delivery] local_time`); a recipient not in it gets it at once.
    send_at: Mapping[int, datetime] = field(default_factory=dict)
    #: The provider's id shared by every request of the issue's send, so it can be recalled.
    provider_batch_id: str = ""


class BatchStatus(StrEnum):
    PLANNED = "planned"
    IN_FLIGHT = "in_flight"
    ACCEPTED = "accepted"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """A recipient's row in the send ledger (`deliveries`): planned into a batch, skipped
    (no longer mailable when the batch went out), or sent (rows written before an
    accepted batch stood for its planned rows)."""

    PLANNED = "planned"
    SKIPPED = "skipped"
    SENT = "sent"
    RECALLED = "recalled"


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Outcome:
    """What a transport says of one batch. It never retries; the ledger decides."""

    kind: OutcomeKind
    message_id: str = ""
    status_code: int = 0
    error: str = ""
    retry_after: float | None = None
    #: Recipients of an accepted batch that the provider refused for good (an SMTP 5xx
    #: for that address alone): their subscriber ids with its answer. Recorded per
    #: recipient in the ledger; the rest of the batch counts as sent.
    refused: tuple[tuple[int, str], ...] = ()


class EventKind(StrEnum):
    """What the email provider reports about a message after it left, in our words."""

    PROCESSED = "processed"  # the provider took the message (confirms a batch)
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # temporarily refused; the provider retries
    BOUNCED = "bounced"  # a hard bounce, or a drop because the address bounced or is invalid
    SOFT_BOUNCE = "soft_bounce"  # blocked or dropped for a reason that may pass
    COMPLAINED = "complained"  # marked as spam
    UNSUBSCRIBED = "unsubscribed"  # through the provider's own unsubscribe link or group
    RESUBSCRIBED = "resubscribed"  # back into the unsubscribe group
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"  # an event we do not act on; stored and counted


@dataclass(frozen=True)
class DeliveryEvent:
    """One provider event, translated from the provider's JSON. `key` is the provider's
    unique event id; the ids come from the message's custom arguments (None when absent
    or not numbers); `email` is used only to check that the subscriber id fits."""

    key: str
    kind: EventKind
    provider_event: str
    occurred_at: datetime
    issue_id: int | None
    batch_id: int | None
    subscriber_id: int | None
    email: str = ""
    url: str = ""
    reason: str = ""
