"""recalls: each recall, pause or resume of an issue's send, and the recipients each batch
lost to a recall (issue 20, part 3)

`recalls` holds one row per request made to the provider, written (state "asked") before
the request and finished (state "done") in the same transaction that marks the recalled
deliveries: a crash between the provider's answer and our update leaves an "asked" row,
which the next `newsletter recall` or `newsletter send` settles. `batches.recalled`
counts the recipients of a batch whose delivery was recalled, so an issue's figures stay
sums over its batches (sent = recipients - skipped - recalled of the accepted ones).

Revision ID: 0012
Revises: 0011 (written after 0010; chained after 0011 when the branches met)
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("recalled", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "recalls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
        sa.Column("provider_batch_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("transport", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recalled", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("due", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Index("ix_recalls_issue", "issue_id"),
    )


def downgrade() -> None:
    op.drop_table("recalls")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("recalled")
