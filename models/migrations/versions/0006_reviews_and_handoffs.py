"""Add lead reviews and sales hand-offs.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lead_reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("framework", sa.String(40), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("rule_decision", sa.String(16), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("lead_id", name="uq_lead_reviews_lead_id"),
    )
    op.create_table(
        "sales_handoffs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner", sa.String(254), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("crm_status", sa.String(16), nullable=False),
        sa.Column("crm_attempts", sa.Integer(), nullable=False),
        sa.Column("crm_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crm_error", sa.String(1000), nullable=True),
        sa.UniqueConstraint("lead_id", name="uq_sales_handoffs_lead_id"),
    )


def downgrade() -> None:
    op.drop_table("sales_handoffs")
    op.drop_table("lead_reviews")
