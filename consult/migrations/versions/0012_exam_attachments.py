"""Exams attached to remote diagnosis requests (issue 14 item 6: R14, R19, R37).

Revision ID: 0012_exam_attachments
Revises: 0011_ratings
Create Date: 2026-12-02 13:00:00

An attachment may reference a stored study instead of holding bytes: ``study_id`` (the
requesting institution's study) and ``copy_study_id`` (its de-identified copy for the invited
institution, made when the request is sent). The consultation keeps who recorded the inviter's
decision and when (its part of the joint liability of a read, R14).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_exam_attachments"
down_revision: str | Sequence[str] | None = "0011_ratings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consultation_attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("copy_study_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_consultation_attachments_study_id_imaging_studies"),
            "imaging_studies",
            ["study_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_consultation_attachments_copy_study_id_imaging_studies"),
            "imaging_studies",
            ["copy_study_id"],
            ["id"],
        )
        batch_op.create_index(
            batch_op.f("ix_consultation_attachments_study_id"), ["study_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultation_attachments_copy_study_id"),
            ["copy_study_id"],
            unique=False,
        )
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_consultations_decided_by_users"), "users", ["decided_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_consultations_decided_by_users"), type_="foreignkey"
        )
        batch_op.drop_column("decided_at")
        batch_op.drop_column("decided_by")
    with op.batch_alter_table("consultation_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_attachments_copy_study_id"))
        batch_op.drop_index(batch_op.f("ix_consultation_attachments_study_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_consultation_attachments_copy_study_id_imaging_studies"),
            type_="foreignkey",
        )
        batch_op.drop_constraint(
            batch_op.f("fk_consultation_attachments_study_id_imaging_studies"),
            type_="foreignkey",
        )
        batch_op.drop_column("copy_study_id")
        batch_op.drop_column("study_id")
