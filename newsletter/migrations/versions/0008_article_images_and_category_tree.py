"""articles keep their image's size and their categories' ancestors

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added columns with server defaults: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("articles", sa.Column("image_width", sa.Integer(), nullable=True))
    op.add_column("articles", sa.Column("image_height", sa.Integer(), nullable=True))
    op.add_column("articles", sa.Column("image_small", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("articles", sa.Column("category_ancestors", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("category_ancestors")
        batch.drop_column("image_small")
        batch.drop_column("image_height")
        batch.drop_column("image_width")
