"""delivery events from the provider's webhook, and the aggregates the statistics read

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("provider_event", sa.String(length=50), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_delivery_events_event_key")),
    )
    op.create_index("ix_delivery_events_received_at", "delivery_events", ["received_at"])
    op.create_index("ix_delivery_events_batch_kind", "delivery_events", ["batch_id", "kind"])
    op.create_index("ix_delivery_events_issue_known", "delivery_events", ["issue_id", "known"])
    op.create_table(
        "recipient_activity",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("complained_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_recipient_activity_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("issue_id", "subscriber_id", name=op.f("pk_recipient_activity")),
    )
    op.create_table(
        "link_clicks",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_link_clicks_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("issue_id", "url", "subscriber_id", name=op.f("pk_link_clicks")),
    )


def downgrade() -> None:
    op.drop_table("link_clicks")
    op.drop_table("recipient_activity")
    op.drop_index("ix_delivery_events_issue_known", table_name="delivery_events")
    op.drop_index("ix_delivery_events_batch_kind", table_name="delivery_events")
    op.drop_index("ix_delivery_events_received_at", table_name="delivery_events")
    op.drop_table("delivery_events")
