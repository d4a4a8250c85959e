"""Add the suppression list, and the ledger columns for crash-safe resume and deferral backoff.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("address_hash", name="uq_suppressions_address_hash"),
    )
    op.add_column("email_ledger", sa.Column("owner", sa.String(200), nullable=True))
    op.add_column("email_ledger", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_ledger") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("owner")
    op.drop_table("suppressions")
