"""sponsors: the sponsor's slot of an issue (label, text, link, image, the section it follows)

Revision ID: 0009
Revises: 0007 (the lead chains it after 0008 when both branches meet)
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sponsors",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("text", sa.String(length=600), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("image_url", sa.String(length=2000), nullable=False),
        sa.Column("after_section", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_sponsors_issue_id_issues"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("issue_id", name=op.f("pk_sponsors")),
    )


def downgrade() -> None:
    op.drop_table("sponsors")
