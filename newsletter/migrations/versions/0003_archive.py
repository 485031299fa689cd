"""the public archive of sent issues

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("preheader", sa.String(length=300), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_archive_issue_id_issues"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("issue_id", name=op.f("pk_archive")),
        sa.UniqueConstraint("slug", name=op.f("uq_archive_slug")),
    )
    op.create_index("ix_archive_published_at", "archive", ["published_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_archive_published_at", table_name="archive")
    op.drop_table("archive")
