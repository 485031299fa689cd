"""SQLAlchemy Core tables of articles, issues and the send ledger, on the shared `MetaData`.

Owns: `articles`, `feed_state`, `issues`, `issue_articles`, `segments`, `batches`,
`deliveries`, `archive`, `scheduled_runs`, `draft_choices`, `draft_log`, `delivery_events`,
`recipient_activity`, `link_clicks`, `sponsors`, `welcomes`, `recalls`. Imports `subscribers` (for the
shared metadata and the subscribers table).

The ledger's guarantees live in constraints: an article is in at most one issue
(`issue_articles.article_id` is unique) and a subscriber gets an issue at most once
(`deliveries` is unique on issue and subscriber).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from subscribers import UTCDateTime, metadata

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("guid", String(1000), nullable=False, unique=True),
    Column("url", String(2000), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("author", String(300), nullable=False, default=""),
    Column("published_at", UTCDateTime(), nullable=False),
    Column("categories", Text, nullable=False, default=""),
    Column("summary", Text, nullable=False, default=""),
    Column("image_url", String(2000), nullable=False, default=""),
    #: The image's pixels when the source gave them (NULL: unknown), and whether that
    #: makes it a thumbnail rather than a full-width image.
    Column("image_width", Integer, nullable=True),
    Column("image_height", Integer, nullable=True),
    Column("image_small", Boolean, nullable=False, default=False, server_default=false()),
    #: JSON: for each category (same order as `categories`), its ancestors nearest first.
    Column("category_ancestors", Text, nullable=False, default="", server_default=""),
    Column("source", String(200), nullable=False, default=""),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_articles_published_at", "published_at"),
)

feed_state = Table(
    "feed_state",
    metadata,
    Column("url", String(2000), primary_key=True),
    Column("etag", String(500), nullable=False, default=""),
    Column("last_modified", String(100), nullable=False, default=""),
    Column("last_fetched_at", UTCDateTime()),
    Column("last_status", String(50), nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(50), nullable=False, unique=True),
    Column("subject", String(300), nullable=False),
    Column("preheader", String(300), nullable=False, default=""),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("window_end", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("intro", Text, nullable=False, default=""),
    #: The provider's id for every request of this issue's send (SendGrid's `batch_id`),
    #: created before the first request and reused by a resumed send, so it can be recalled.
    Column("provider_batch_id", String(200)),
    #: Counts the editors' changes of the draft (the desk's optimistic concurrency).
    Column("version", Integer, nullable=False, default=0, server_default="0"),
)

issue_articles = Table(
    "issue_articles",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id"), primary_key=True),
    Column("section", String(100), nullable=False),
    Column("position", Integer, nullable=False),
    UniqueConstraint("article_id", name="uq_issue_articles_article_id"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("preheader", String(300), nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    UniqueConstraint("issue_id", "key", name="uq_segments_issue_key"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("segment_id", Integer, ForeignKey("segments.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("transport", String(20), nullable=False),
    Column("recipients", Integer, nullable=False),
    #: Of `recipients`, those left out when the batch was claimed (no longer mailable).
    Column("skipped", Integer, nullable=False, default=0, server_default="0"),
    #: Of `recipients`, those whose delivery was recalled before it was due (`recalls`).
    Column("recalled", Integer, nullable=False, default=0, server_default="0"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("message_id", String(200), nullable=False, default=""),
    Column("status_code", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_batches_issue_status", "issue_id", "status"),
)

#: One row per recipient of an issue. No foreign keys: the rows are written only by
#: `ledger.plan_batches`, a million at a time, from rows it has just read or written under
#: the issue's lock, and nothing they point at is ever deleted (an erased subscriber stays
#: as a tombstone; only batches left empty are removed). On PostgreSQL the four checks per
#: row were three quarters of planning (migration 0007).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("segment_id", Integer, nullable=False),
    Column("batch_id", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    #: When the delivery is meant to reach the reader (local-time delivery); NULL: at once.
    Column("send_at", UTCDateTime()),
    UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    Index("ix_deliveries_batch", "batch_id"),
)

#: Each recall, pause or resume of an issue's send (owned by `sending/recall.py`): written
#: "asked" before the provider is asked, "done" with the ledger's update, so a crash in
#: between leaves a row the next `recall` or `send` settles (migration 0012).
recalls = Table(
    "recalls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("provider_batch_id", String(200), nullable=False, default="", server_default=""),
    Column("transport", String(20), nullable=False),
    #: "cancel", "pause" or "resume".
    Column("action", String(20), nullable=False),
    #: "asked" (the provider may have it), "done", or "undone" (a pause since resumed).
    Column("state", String(20), nullable=False),
    #: Deliveries due after this time are recalled; those before it cannot be stopped.
    Column("cutoff", UTCDateTime(), nullable=False),
    Column("recalled", Integer, nullable=False, default=0, server_default="0"),
    Column("due", Integer, nullable=False, default=0, server_default="0"),
    Column("asked_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Index("ix_recalls_issue", "issue_id"),
)

archive = Table(
    "archive",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("slug", String(50), nullable=False, unique=True),
    Column("subject", String(300), nullable=False),
    Column("preheader", String(300), nullable=False),
    Column("published_at", UTCDateTime(), nullable=False),
    Column("sections", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_archive_published_at", "published_at"),
)

scheduled_runs = Table(
    "scheduled_runs",
    metadata,
    Column("job", String(50), primary_key=True),
    Column("slot", UTCDateTime(), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("issue_slug", String(50), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)

# The editors' choices about the articles of a draft, kept when the draft is rebuilt:
# `excluded` keeps an article out; any other row keeps it in, in `section` (empty: the one
# its categories give) at `position` (1-based rank; none: after the ranked ones), pinned
# articles before the rest. Owned by `drafts.py`.
# The sponsor's slot of an issue (at most one), set by `newsletter draft sponsor`.
sponsors = Table(
    "sponsors",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("label", String(100), nullable=False),
    Column("text", String(600), nullable=False, default=""),
    Column("url", String(2000), nullable=False),
    Column("image_url", String(2000), nullable=False, default=""),
    Column("after_section", String(100), nullable=False, default=""),
    Column("updated_at", UTCDateTime(), nullable=False),
)

draft_choices = Table(
    "draft_choices",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("excluded", Boolean, nullable=False, default=False),
    Column("section", String(100), nullable=False, default=""),
    Column("position", Integer),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Every change an editor made to a draft, from the desk or the command line (owned by
# `drafts.journal`).
draft_log = Table(
    "draft_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("origin", String(20), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", String(500), nullable=False, default=""),
    Column("version", Integer, nullable=False),
)

# What the email provider reported after sending (owned by `events.py`). `delivery_events`
# keeps each raw event for `sendgrid.event_retention_days`, unique on the provider's event
# id so a redelivered batch is stored once. Ids of issues, batches and subscribers are
# copied from the event as given, without foreign keys: an event for a message we do not
# know is stored and counted too. The statistics read the two aggregates below, which
# outlive the raw events and stay one row per recipient (or per link clicked) however
# many events arrive.
delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_key", String(100), nullable=False, unique=True),
    Column("kind", String(30), nullable=False),
    Column("provider_event", String(50), nullable=False),
    Column("issue_id", Integer),
    Column("batch_id", Integer),
    Column("subscriber_id", Integer),
    Column("known", Boolean, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("url", Text, nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Index("ix_delivery_events_received_at", "received_at"),
    Index("ix_delivery_events_batch_kind", "batch_id", "kind"),
    Index("ix_delivery_events_issue_known", "issue_id", "known"),
)

# One row per recipient of an issue who has any event: when each thing first happened
# and how often they opened and clicked.
recipient_activity = Table(
    "recipient_activity",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", Integer, primary_key=True),
    Column("delivered_at", UTCDateTime()),
    Column("bounced_at", UTCDateTime()),
    Column("complained_at", UTCDateTime()),
    Column("unsubscribed_at", UTCDateTime()),
    Column("opened_at", UTCDateTime()),
    Column("opens", Integer, nullable=False, default=0),
    Column("clicked_at", UTCDateTime()),
    Column("clicks", Integer, nullable=False, default=0),
)

# One row per recipient and link clicked in an issue: clicks per article, unique clicks.
link_clicks = Table(
    "link_clicks",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("url", String(2000), primary_key=True),
    Column("subscriber_id", Integer, primary_key=True),
    Column("clicks", Integer, nullable=False, default=0),
    Column("first_at", UTCDateTime(), nullable=False),
)

#: One welcome email per subscriber, written when their subscription is confirmed: the
#: unique subscriber id is what makes it "once, never again" (a re-confirmation finds the
#: row). `status` is pending → sending → sent, or failed (tried `attempts` times; the
#: retry job tries again), or skipped (the reader left before it went). `issue_id` is the
#: issue it carried (NULL: the note sent before the first issue).
welcomes = Table(
    "welcomes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("issue_id", Integer),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("claimed_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Index("ix_welcomes_status", "status"),
)
