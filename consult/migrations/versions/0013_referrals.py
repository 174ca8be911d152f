"""After the report (issue 14 item 7, R17, R18): online referrals to the invited institution and
report interpretation requests.

Revision ID: 0013_referrals
Revises: 0011_ratings
Create Date: 2026-12-02 12:37:19

The interpretation's question and answer are SM4-encrypted (``*_enc``). The application role may
insert and update both tables (their machines move them), never delete a row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_referrals"
down_revision: str | Sequence[str] | None = "0011_ratings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON consultation_referrals, report_interpretations
            TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "consultation_referrals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("target_institution_id", sa.String(length=32), nullable=False),
        sa.Column("target_department_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("proposed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_note", sa.String(length=1000), nullable=True),
        sa.Column("decline_reason", sa.String(length=1000), nullable=True),
        sa.Column("answered_by", sa.String(length=32), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'accepted', 'declined', 'cancelled')",
            name=op.f("ck_consultation_referrals_status_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["answered_by"], ["users.id"], name=op.f("fk_consultation_referrals_answered_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_referrals_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["opinion_reports.id"],
            name=op.f("fk_consultation_referrals_report_id_opinion_reports"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_consultation_referrals_requested_by_users"),
        ),
        sa.ForeignKeyConstraint(
            ["target_department_id"],
            ["departments.id"],
            name=op.f("fk_consultation_referrals_target_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["target_institution_id"],
            ["institutions.id"],
            name=op.f("fk_consultation_referrals_target_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_referrals")),
    )
    with op.batch_alter_table("consultation_referrals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_referrals_consultation_id"),
            ["consultation_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_consultation_referrals_target_institution_id"),
            ["target_institution_id"],
            unique=False,
        )

    op.create_table(
        "report_interpretations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("asked_by", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.String(length=32), nullable=False),
        sa.Column("expert_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("question_enc", sa.Text(), nullable=False),
        sa.Column("answer_enc", sa.Text(), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("room_id", sa.String(length=32), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "mode IN ('text', 'voice', 'video')",
            name=op.f("ck_report_interpretations_mode_allowed"),
        ),
        sa.CheckConstraint(
            "status IN ('asked', 'scheduled', 'answered', 'cancelled')",
            name=op.f("ck_report_interpretations_status_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["asked_by"], ["users.id"], name=op.f("fk_report_interpretations_asked_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_report_interpretations_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["users.id"], name=op.f("fk_report_interpretations_expert_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_report_interpretations_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["opinion_reports.id"],
            name=op.f("fk_report_interpretations_report_id_opinion_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_interpretations")),
    )
    with op.batch_alter_table("report_interpretations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_interpretations_consultation_id"),
            ["consultation_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_report_interpretations_expert_id"), ["expert_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_report_interpretations_institution_id"), ["institution_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    with op.batch_alter_table("report_interpretations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_interpretations_institution_id"))
        batch_op.drop_index(batch_op.f("ix_report_interpretations_expert_id"))
        batch_op.drop_index(batch_op.f("ix_report_interpretations_consultation_id"))

    op.drop_table("report_interpretations")
    with op.batch_alter_table("consultation_referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_referrals_target_institution_id"))
        batch_op.drop_index(batch_op.f("ix_consultation_referrals_consultation_id"))

    op.drop_table("consultation_referrals")
