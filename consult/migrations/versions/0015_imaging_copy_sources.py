"""Each instance of a de-identified copy names the original instance it was made from (issue 15).

Revision ID: 0015_imaging_copy_sources
Revises: 0014_reminders
Create Date: 2026-12-03 14:00:00

A study shared with another institution is a copy whose UIDs are a keyed hash of the original's
(R37): nobody can go from one to the other, and until now the server could not either. A review
in a consultation room shares one study across both institutions, each participant reading its
own copy, so the shared view's UIDs are translated per participant through these pairs
(``consult.imaging.copies``). Copies made before this revision have no pairs: such a copy is
not shared in a room's review (``review_unavailable``) until it is made again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_imaging_copy_sources"
down_revision: str | Sequence[str] | None = "0014_reminders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("imaging_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_instance_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_imaging_instances_source_instance_id_imaging_instances"),
            "imaging_instances",
            ["source_instance_id"],
            ["id"],
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_instances_source_instance_id"),
            ["source_instance_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("imaging_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_instances_source_instance_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_imaging_instances_source_instance_id_imaging_instances"),
            type_="foreignkey",
        )
        batch_op.drop_column("source_instance_id")
