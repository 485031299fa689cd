"""SQLAlchemy Core tables about people, and the `MetaData` every table of the project shares.

Owns: `metadata`, `subscribers`, `suppressions`, `consents`. Imports nothing of ours.

A subscriber's chosen sections are kept as one canonical text key (sorted slugs joined by
commas, see `models.sections_key`). The sender groups recipients by that key to render once
per segment; a text key lets the database group a million rows without a join.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime.

    SQLite keeps no time zone, PostgreSQL does; this type makes both behave the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @staticmethod
    def bulk_processor(dialect: Dialect) -> Callable[[datetime], Any]:
        """What to send the database driver for an aware datetime, for statements that
        bypass SQLAlchemy's own processing (a thousand rows at a time): the same value
        this type binds, made several times faster on SQLite, which keeps text in
        SQLAlchemy's format (`YYYY-MM-DD HH:MM:SS.ffffff`, in UTC)."""
        return _sqlite_text if dialect.name == "sqlite" else _utc


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given; pass an aware datetime")
    return value.astimezone(UTC)


def _sqlite_text(value: datetime) -> str:
    # "2026-11-23 09:00:00.000000+00:00" without the offset.
    return (value if value.tzinfo is UTC else _utc(value)).isoformat(" ", "microseconds")[:-6]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(20), nullable=False),
    Column("sections", Text, nullable=False, default=""),
    Column("token", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime()),
    Column("unsubscribed_at", UTCDateTime()),
    Column("source", String(100), nullable=False, default=""),
    # A paused subscriber is mailed again from this time on (see `suppression.mailable_clause`).
    Column("paused_until", UTCDateTime()),
    # When the last confirmation email went out; a confirmation link expires after it.
    Column("confirmation_sent_at", UTCDateTime()),
    # The reader's IANA time zone (local-time delivery); NULL: the site's.
    Column("timezone", String(64)),
    Index("ix_subscribers_status_sections", "status", "sections"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(50), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The consent log: one row per agreement or withdrawal, kept as long as the subscriber is.
# Erasing a person deletes their rows with them (a hash stays on the suppression list).
consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("action", String(20), nullable=False),
    Column("sections", Text, nullable=False, default=""),
    Column("at", UTCDateTime(), nullable=False),
    Column("ip", String(45), nullable=False, default=""),
    Column("user_agent", String(300), nullable=False, default=""),
    Column("form", String(50), nullable=False, default=""),
)
