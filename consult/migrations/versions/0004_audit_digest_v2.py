"""The audit digest form is versioned per event; version 2 covers ``seq`` (issue 13).

Revision ID: 0004_audit_digest_v2
Revises: 0003_chat
Create Date: 2026-12-01 21:40:00

Existing events keep their digests: they get ``digest_version = 1`` (the form without ``seq``)
and go on verifying as they are, so no event is rewritten and no chain re-hashed. Events
appended from now on are version 2. ``consult.audit_verify.verify_chain`` refuses a version that goes
back along the chain, so a version-2 event cannot be passed off as version 1.

Downgrading is refused once a version-2 event exists: without the column they would no longer
verify.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_audit_digest_v2"
down_revision: str | Sequence[str] | None = "0003_chat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "audit_events",
        sa.Column("digest_version", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    newer = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM audit_events WHERE digest_version > 1")
    )
    if newer:
        raise RuntimeError(
            f"{newer} audit events use digest version 2: downgrading would make them unverifiable"
        )
    op.drop_column("audit_events", "digest_version")
