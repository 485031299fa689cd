"""editors' drafts: the intro of an issue and the editors' choices about its articles

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issues", sa.Column("intro", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "draft_choices",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("section", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_draft_choices_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name=op.f("fk_draft_choices_article_id_articles"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("issue_id", "article_id", name=op.f("pk_draft_choices")),
    )


def downgrade() -> None:
    op.drop_table("draft_choices")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("intro")
