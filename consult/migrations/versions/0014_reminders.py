"""Reminders (issue 14, R11): in-app and webhook (SMS/WeChat) reminders, each made once.

Revision ID: 0014_reminders
Revises: 0013_referrals
Create Date: 2026-12-02 13:00:00

One row per (subject, kind, recipient, moment), unique: two processes or a restart never make
the same reminder twice. The application role may insert, update (read, delivery state) and
delete (old ones are purged) reminders.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reminders"
down_revision: str | Sequence[str] | None = "0013_referrals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON reminders TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=True),
        sa.Column("recipient_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_state", sa.String(length=16), nullable=False),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.Column("webhook_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_error", sa.String(length=200), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "webhook_state IN ('off', 'pending', 'delivered', 'failed')",
            name=op.f("ck_reminders_webhook_state_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["users.id"], name=op.f("fk_reminders_recipient_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
        sa.UniqueConstraint(
            "subject_type", "subject_id", "kind", "recipient_id", "at", name="uq_reminders_key"
        ),
    )
    op.create_index("ix_reminders_recipient_created", "reminders", ["recipient_id", "created_at"])
    op.create_index("ix_reminders_webhook_due", "reminders", ["webhook_state", "webhook_next_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    op.drop_index("ix_reminders_webhook_due", table_name="reminders")
    op.drop_index("ix_reminders_recipient_created", table_name="reminders")
    op.drop_table("reminders")
