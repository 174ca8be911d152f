"""Identity registration (issue 13 item 3): guardian links verified by staff, identity disputes.

Revision ID: 0010_identity_disputes
Revises: 0009_hardening
Create Date: 2026-12-02 04:40:00

- ``patients.guardian_verified_at`` / ``guardian_verified_by``: a guardian acts for a ward only
  once staff have verified the relation. Existing wards that staff registered count as verified
  (staff saw the family at the desk); those a patient account registered become pending.
- ``patients.id_number_index`` may be NULL: a *provisional* record, made when a patient
  registers a number already on file (the answer does not tell them); its dispute is an
  ``identity_disputes`` row that staff resolve.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_identity_disputes"
down_revision: str | Sequence[str] | None = "0009_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON identity_disputes TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.alter_column("id_number_index", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(
            sa.Column("guardian_verified_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("guardian_verified_by", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            op.f("fk_patients_guardian_verified_by_users"),
            "users",
            ["guardian_verified_by"],
            ["id"],
        )
    op.execute(
        "UPDATE patients SET guardian_verified_at = created_at, guardian_verified_by = created_by "
        "WHERE guardian_id IS NOT NULL AND created_by IN "
        "(SELECT id FROM users WHERE role <> 'patient')"
    )
    op.create_table(
        "identity_disputes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("claim_patient_id", sa.String(length=32), nullable=True),
        sa.Column("existing_patient_id", sa.String(length=32), nullable=False),
        sa.Column("claimant_user_id", sa.String(length=32), nullable=False),
        sa.Column("as_ward", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("resolved_by", sa.String(length=32), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('open', 'merged', 'rejected')",
            name=op.f("ck_identity_disputes_state_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["claim_patient_id"],
            ["patients.id"],
            name=op.f("fk_identity_disputes_claim_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["existing_patient_id"],
            ["patients.id"],
            name=op.f("fk_identity_disputes_existing_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["claimant_user_id"],
            ["users.id"],
            name=op.f("fk_identity_disputes_claimant_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["users.id"], name=op.f("fk_identity_disputes_resolved_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_disputes")),
    )
    for column in ("claim_patient_id", "existing_patient_id", "state"):
        op.create_index(
            op.f(f"ix_identity_disputes_{column}"), "identity_disputes", [column], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    for column in ("claim_patient_id", "existing_patient_id", "state"):
        op.drop_index(op.f(f"ix_identity_disputes_{column}"), table_name="identity_disputes")
    op.drop_table("identity_disputes")
    op.execute("DELETE FROM patients WHERE id_number_index IS NULL")
    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint(op.f("fk_patients_guardian_verified_by_users"), type_="foreignkey")
        batch.drop_column("guardian_verified_by")
        batch.drop_column("guardian_verified_at")
        batch.alter_column("id_number_index", existing_type=sa.String(length=64), nullable=False)
