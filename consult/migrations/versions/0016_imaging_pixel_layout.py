"""Each native instance keeps where its frames are and how a grey frame renders (issue 15).

Revision ID: 0016_imaging_pixel_layout
Revises: 0015_imaging_copy_sources
Create Date: 2026-12-06 13:20:00

The ingest parser writes the pixel data's offset in the stored file, a frame's size and the
grey rendering parameters (bits, sign, photometric, rescale, first window) into
``imaging_instances.pixel_layout`` (``consult.imaging.layout``), so that a rendering or a
WADO-RS frame reads the frame at its offset without parsing the file's header first. Instances
stored before this revision have none and keep being served through their header (correct,
slower) until ``teleconsult imaging fill-layouts`` writes theirs: a migration does not read the
imaging files, which live where the configuration says.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_imaging_pixel_layout"
down_revision: str | Sequence[str] | None = "0015_imaging_copy_sources"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("imaging_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pixel_layout", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imaging_instances", schema=None) as batch_op:
        batch_op.drop_column("pixel_layout")
