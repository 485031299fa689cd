"""timezones and recall: a subscriber's time zone, each delivery's intended time, and the
provider's batch id of an issue's send (issue 20: local-time delivery and recall)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("provider_batch_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("provider_batch_id")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("send_at")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("timezone")
