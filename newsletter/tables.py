"""SQLAlchemy Core tables of articles, issues and the send ledger, on the shared `MetaData`.

Owns: `articles`, `feed_state`, `issues`, `issue_articles`, `segments`, `batches`,
`deliveries`, `archive`, `scheduled_runs`, `draft_choices`. Imports `subscribers` (for the
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
    Column("attempts", Integer, nullable=False, default=0),
    Column("message_id", String(200), nullable=False, default=""),
    Column("status_code", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_batches_issue_status", "issue_id", "status"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("segment_id", Integer, ForeignKey("segments.id"), nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    Index("ix_deliveries_batch", "batch_id"),
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
