"""Remote consultation between institutions (issue 14): agreements, consult centres, requests,
attachments, invitations, versioned opinion reports, their SM2 signatures, signing credentials.

Revision ID: 0008_consultations
Revises: 0007_rooms
Create Date: 2026-12-02 00:31:57

Signatures and attachments are never changed once written (R24): the application role may only
insert them; a report version is superseded by a new row, never edited after its first signature.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_consultations"
down_revision: str | Sequence[str] | None = "0007_rooms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON cooperation_agreements, consult_centres, consultations,
            consultation_invitations, opinion_reports, signing_credentials TO {APP_ROLE};
        GRANT SELECT, INSERT ON consultation_attachments, report_signatures TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "consult_centres",
        sa.Column("institution_id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_consult_centres_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_consult_centres_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("institution_id", name=op.f("pk_consult_centres")),
    )
    with op.batch_alter_table("consult_centres", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consult_centres_department_id"), ["department_id"], unique=False
        )

    op.create_table(
        "cooperation_agreements",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("inviter_institution_id", sa.String(length=32), nullable=False),
        sa.Column("invitee_institution_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_cooperation_agreements_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["invitee_institution_id"],
            ["institutions.id"],
            name=op.f("fk_cooperation_agreements_invitee_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["inviter_institution_id"],
            ["institutions.id"],
            name=op.f("fk_cooperation_agreements_inviter_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cooperation_agreements")),
        sa.UniqueConstraint(
            "inviter_institution_id",
            "invitee_institution_id",
            name="uq_cooperation_agreements_inviter_invitee",
        ),
    )
    with op.batch_alter_table("cooperation_agreements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cooperation_agreements_invitee_institution_id"),
            ["invitee_institution_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_cooperation_agreements_inviter_institution_id"),
            ["inviter_institution_id"],
            unique=False,
        )

    op.create_table(
        "signing_credentials",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("key_enc", sa.Text(), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_signing_credentials_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_signing_credentials")),
    )
    op.create_table(
        "consultations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("institution_id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("patient_account_id", sa.String(length=32), nullable=True),
        sa.Column("target_institution_id", sa.String(length=32), nullable=False),
        sa.Column("target_department_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("purpose", sa.String(length=1000), nullable=False),
        sa.Column("specialty", sa.String(length=128), nullable=False),
        sa.Column("min_title", sa.String(length=32), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("description_enc", sa.Text(), nullable=False),
        sa.Column("history_enc", sa.Text(), nullable=False),
        sa.Column("summary_enc", sa.Text(), nullable=False),
        sa.Column("proposed_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proposed_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("room_id", sa.String(length=32), nullable=True),
        sa.Column("decision_enc", sa.Text(), nullable=True),
        sa.Column("return_reason", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('consultation', 'imaging', 'ecg', 'pathology', 'ultrasound')",
            name=op.f("ck_consultations_kind_allowed"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'submitted', 'approved', 'sent', 'accepted', 'in_session', "
            "'reported', 'decided', 'declined', 'cancelled')",
            name=op.f("ck_consultations_status_allowed"),
        ),
        sa.CheckConstraint(
            "urgency IN ('routine', 'urgent')", name=op.f("ck_consultations_urgency_allowed")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_consultations_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_consultations_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_account_id"],
            ["users.id"],
            name=op.f("fk_consultations_patient_account_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_consultations_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_consultations_requested_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["target_department_id"],
            ["departments.id"],
            name=op.f("fk_consultations_target_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["target_institution_id"],
            ["institutions.id"],
            name=op.f("fk_consultations_target_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultations")),
    )
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultations_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_patient_account_id"), ["patient_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_requested_by"), ["requested_by"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consultations_room_id"), ["room_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_consultations_target_department_id"),
            ["target_department_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_target_institution_id"),
            ["target_institution_id"],
            unique=False,
        )

    op.create_table(
        "consultation_attachments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("uploaded_by", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("data_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_attachments_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_consultation_attachments_uploaded_by_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_attachments")),
    )
    with op.batch_alter_table("consultation_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_attachments_consultation_id"),
            ["consultation_id"],
            unique=False,
        )

    op.create_table(
        "consultation_invitations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.String(length=32), nullable=False),
        sa.Column("expert_id", sa.String(length=32), nullable=False),
        sa.Column("assigned_by", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decline_reason", sa.String(length=1000), nullable=True),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('invited', 'accepted', 'declined', 'expired', 'withdrawn')",
            name=op.f("ck_consultation_invitations_status_allowed"),
        ),
        sa.ForeignKeyConstraint(
            ["assigned_by"],
            ["users.id"],
            name=op.f("fk_consultation_invitations_assigned_by_users"),
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_invitations_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["users.id"], name=op.f("fk_consultation_invitations_expert_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_consultation_invitations_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_invitations")),
        sa.UniqueConstraint(
            "consultation_id", "expert_id", name="uq_consultation_invitations_consultation_expert"
        ),
    )
    with op.batch_alter_table("consultation_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_invitations_consultation_id"),
            ["consultation_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_consultation_invitations_expert_id"), ["expert_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultation_invitations_institution_id"),
            ["institution_id"],
            unique=False,
        )

    op.create_table(
        "opinion_reports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_enc", sa.Text(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'signing', 'issued', 'superseded')",
            name=op.f("ck_opinion_reports_status_allowed"),
        ),
        sa.CheckConstraint("version > 0", name=op.f("ck_opinion_reports_version_positive")),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_opinion_reports_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_opinion_reports_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["opinion_reports.id"],
            name=op.f("fk_opinion_reports_supersedes_id_opinion_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opinion_reports")),
        sa.UniqueConstraint("consultation_id", "version", name="uq_opinion_reports_version"),
    )
    with op.batch_alter_table("opinion_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_opinion_reports_consultation_id"), ["consultation_id"], unique=False
        )

    op.create_table(
        "report_signatures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("signer_id", sa.String(length=32), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("signature_b64", sa.Text(), nullable=False),
        sa.Column("timestamp_b64", sa.Text(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["opinion_reports.id"],
            name=op.f("fk_report_signatures_report_id_opinion_reports"),
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["users.id"], name=op.f("fk_report_signatures_signer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_signatures")),
        sa.UniqueConstraint("report_id", "signer_id", name="uq_report_signatures_report_signer"),
    )
    with op.batch_alter_table("report_signatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_signatures_report_id"), ["report_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    with op.batch_alter_table("report_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_signatures_report_id"))

    op.drop_table("report_signatures")
    with op.batch_alter_table("opinion_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_opinion_reports_consultation_id"))

    op.drop_table("opinion_reports")
    with op.batch_alter_table("consultation_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_invitations_institution_id"))
        batch_op.drop_index(batch_op.f("ix_consultation_invitations_expert_id"))
        batch_op.drop_index(batch_op.f("ix_consultation_invitations_consultation_id"))

    op.drop_table("consultation_invitations")
    with op.batch_alter_table("consultation_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_attachments_consultation_id"))

    op.drop_table("consultation_attachments")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultations_target_institution_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_target_department_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_room_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_requested_by"))
        batch_op.drop_index(batch_op.f("ix_consultations_patient_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_patient_account_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_institution_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_department_id"))

    op.drop_table("consultations")
    op.drop_table("signing_credentials")
    with op.batch_alter_table("cooperation_agreements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cooperation_agreements_inviter_institution_id"))
        batch_op.drop_index(batch_op.f("ix_cooperation_agreements_invitee_institution_id"))

    op.drop_table("cooperation_agreements")
    with op.batch_alter_table("consult_centres", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consult_centres_department_id"))

    op.drop_table("consult_centres")
