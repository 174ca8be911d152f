"""Sign-in hardening (issue 13): failures under unknown usernames, one-time enrolment links.

Revision ID: 0009_hardening
Revises: 0008_consultations
Create Date: 2026-12-02 00:50:00

``sign_in_failures`` counts failed sign-ins under usernames without an account (keyed by an
HMAC-SM3 reference, never the name), so that they lock like accounts do and lockout does not
reveal which usernames exist. ``enrolment_links`` holds the digests of the one-time links with
which a person sets their own password after an admin reset (R34: the admin never knows it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_hardening"
down_revision: str | Sequence[str] | None = "0008_consultations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON sign_in_failures TO {APP_ROLE};
        GRANT SELECT, INSERT, UPDATE ON enrolment_links TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("username_ref", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username_ref", name=op.f("pk_sign_in_failures")),
    )
    op.create_table(
        "enrolment_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("issued_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_enrolment_links_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["issued_by"], ["users.id"], name=op.f("fk_enrolment_links_issued_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_links")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_enrolment_links_token_digest")),
    )
    op.create_index(
        op.f("ix_enrolment_links_user_id"), "enrolment_links", ["user_id"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    op.drop_index(op.f("ix_enrolment_links_user_id"), table_name="enrolment_links")
    op.drop_table("enrolment_links")
    op.drop_table("sign_in_failures")
