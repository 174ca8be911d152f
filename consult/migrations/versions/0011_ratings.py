"""Ratings of finished visits (issue 12: R40, R41): stars, an optional comment, one edit, and
the doctor's one reply.

Revision ID: 0011_ratings
Revises: 0010_identity_disputes
Create Date: 2026-12-02 04:40:00

One rating per visit (unique ``visit_id``). The comment and the reply are SM4-encrypted
(``*_enc``). The application role may insert and update a rating (the one edit, the reply),
never delete one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_ratings"
down_revision: str | Sequence[str] | None = "0010_identity_disputes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON visit_ratings TO {APP_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "visit_ratings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("rated_by", sa.String(length=32), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("text_enc", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reply_enc", sa.Text(), nullable=True),
        sa.Column("replied_by", sa.String(length=32), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_visit_ratings_stars_range")),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_visit_ratings_visit_id_visits")
        ),
        sa.ForeignKeyConstraint(
            ["rated_by"], ["users.id"], name=op.f("fk_visit_ratings_rated_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["replied_by"], ["users.id"], name=op.f("fk_visit_ratings_replied_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_ratings")),
        sa.UniqueConstraint("visit_id", name=op.f("uq_visit_ratings_visit_id")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    op.drop_table("visit_ratings")
