"""Add leads.marketing_consent, read from a list's consent column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("marketing_consent", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # SQLite before 3.35 cannot drop a column in place; batch mode copies the table.
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("marketing_consent")
