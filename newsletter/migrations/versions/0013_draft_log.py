"""draft log: every change an editor makes to a draft (what, when, from the desk or the
command line), and the draft's version number the desk's concurrent edits are checked
against (issue 19: the editor's desk)

Revision ID: 0013
Revises: 0012 (written on 0010; chained after 0012 when main was merged in)
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "draft_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_draft_log_issue_id_issues"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft_log")),
    )
    op.create_index(op.f("ix_draft_log_issue_id"), "draft_log", ["issue_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_draft_log_issue_id"), table_name="draft_log")
    op.drop_table("draft_log")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("version")
