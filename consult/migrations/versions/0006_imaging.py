"""Imaging: DICOM studies and their instances (issue 15).

Revision ID: 0006_imaging
Revises: 0004_audit_digest_v2
Create Date: 2026-12-01 22:00:00

The files are on disk under ``<data_dir>/imaging``, named by these rows' ids. Instances are never
changed once stored; a study row may get its visit or patient link later (a modality's study
linked by staff), so the application role may update ``imaging_studies`` but not instances.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_imaging"
down_revision: str | Sequence[str] | None = "0004_audit_digest_v2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON imaging_studies TO {APP_ROLE};
        GRANT SELECT, INSERT ON imaging_instances TO {APP_ROLE};
    END IF;
END
$$
"""


def _fk(column: str, table: str, source: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_{source}_{column}_{table}")
    )


def upgrade() -> None:
    op.create_table(
        "imaging_studies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=True),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        sa.Column("source_study_id", sa.String(length=32), nullable=True),
        sa.Column("recipient_id", sa.String(length=32), nullable=True),
        sa.Column("deidentified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("institution_id", "institutions", "imaging_studies"),
        _fk("patient_id", "patients", "imaging_studies"),
        _fk("visit_id", "visits", "imaging_studies"),
        _fk("source_study_id", "imaging_studies", "imaging_studies"),
        _fk("recipient_id", "users", "imaging_studies"),
        _fk("created_by", "users", "imaging_studies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_studies")),
        sa.UniqueConstraint(
            "institution_id", "study_uid", name="uq_imaging_studies_institution_id_study_uid"
        ),
    )
    for column in ("study_uid", "institution_id", "patient_id", "visit_id"):
        op.create_index(
            op.f(f"ix_imaging_studies_{column}"), "imaging_studies", [column], unique=False
        )
    op.create_table(
        "imaging_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("burned_in", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("study_id", "imaging_studies", "imaging_instances"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_instances")),
        sa.UniqueConstraint(
            "study_id",
            "sop_instance_uid",
            name="uq_imaging_instances_study_id_sop_instance_uid",
        ),
    )
    for column in ("study_id", "series_uid"):
        op.create_index(
            op.f(f"ix_imaging_instances_{column}"), "imaging_instances", [column], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    for column in ("study_id", "series_uid"):
        op.drop_index(op.f(f"ix_imaging_instances_{column}"), table_name="imaging_instances")
    op.drop_table("imaging_instances")
    for column in ("study_uid", "institution_id", "patient_id", "visit_id"):
        op.drop_index(op.f(f"ix_imaging_studies_{column}"), table_name="imaging_studies")
    op.drop_table("imaging_studies")
