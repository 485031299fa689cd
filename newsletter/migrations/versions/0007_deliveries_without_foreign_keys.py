"""deliveries: no foreign keys, no sent_at; batches count their skipped recipients

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Planning an issue writes one delivery per recipient in one INSERT … SELECT, from rows it
has just read or written under the issue's lock; nothing a delivery points at is ever
deleted (an erased subscriber stays as a tombstone, issues and segments stay, and only
batches left empty are removed). On PostgreSQL the four foreign-key checks per row were
three quarters of planning: 1.4 s of 1.9 s for 100,000 deliveries. SQLite already
planned with its checks off. `sent_at` has not been written since a delivery of an
accepted batch counts as sent.

`batches.skipped` counts the recipients a batch left out when it was claimed, so that an
issue's figures (sent, skipped, planned) are sums over its batches: counting a million
deliveries joined to their batches took 0.5 s on SQLite and 30 s on PostgreSQL at the
end of every send. It is filled from the deliveries already skipped.

On SQLite the deliveries table is rebuilt (a copy of every row): about 2 s per million.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FOREIGN_KEYS = (
    ("fk_deliveries_batch_id_batches", "batches", ["batch_id"], None),
    ("fk_deliveries_issue_id_issues", "issues", ["issue_id"], "CASCADE"),
    ("fk_deliveries_segment_id_segments", "segments", ["segment_id"], None),
    ("fk_deliveries_subscriber_id_subscribers", "subscribers", ["subscriber_id"], None),
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name, _table, _columns, _ondelete in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.drop_column("sent_at")
    op.add_column("batches", sa.Column("skipped", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE batches SET skipped = (SELECT count(*) FROM deliveries "
        "WHERE deliveries.batch_id = batches.id AND deliveries.status = 'skipped')"
    )


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("skipped")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        for name, table, columns, ondelete in FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, columns, ["id"], ondelete=ondelete)
