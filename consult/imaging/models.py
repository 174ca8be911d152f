"""Tables of the imaging store: studies (of a patient, attached to a visit) and their instances.

The DICOM files themselves are on disk (``consult.imaging.store``), named by these rows' ids,
never by a value taken from the DICOM data. A study shared with another institution is a second
``ImagingStudy`` row (``source_study_id`` set, ``deidentified`` true) whose instances are the
de-identified copies (R37); the other institution only ever reads that copy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from consult.models import ID_LENGTH, Base
from consult.sqltypes import UtcDateTime, new_id, utc_now

UID_LENGTH = 64
"""The longest DICOM UID (PS3.5 9.1)."""


class ImagingStudy(Base):
    """One DICOM study as one institution holds it."""

    __tablename__ = "imaging_studies"
    __table_args__ = (
        UniqueConstraint(
            "institution_id", "study_uid", name="uq_imaging_studies_institution_id_study_uid"
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    institution_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("institutions.id"), index=True
    )
    patient_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("patients.id"), index=True
    )
    """Our patient record (``patients.id``); ``None`` for a modality's study nobody linked yet."""
    visit_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("visits.id"), index=True
    )
    source_study_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("imaging_studies.id")
    )
    """For a de-identified copy: the study it was made from."""
    recipient_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    """For a copy: the doctor of the other institution it was shared with."""
    deidentified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    source: Mapped[str] = mapped_column(String(16))
    """How it arrived: ``stow``, ``cstore`` or ``share``."""
    created_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utc_now)


class ImagingInstance(Base):
    """One stored SOP instance: where its file is and what a query needs without opening it."""

    __tablename__ = "imaging_instances"
    __table_args__ = (
        UniqueConstraint(
            "study_id", "sop_instance_uid", name="uq_imaging_instances_study_id_sop_instance_uid"
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("imaging_studies.id"), index=True
    )
    series_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    transfer_syntax: Mapped[str] = mapped_column(String(UID_LENGTH))
    modality: Mapped[str] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)
    """Number of frames (0: no pixel data, e.g. a waveform or a structured report)."""
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    burned_in: Mapped[str] = mapped_column(String(8))
    """(0028,0301) Burned In Annotation as stored: ``YES``, ``NO`` or ``""`` (not stated)."""
    pixel_layout: Mapped[str | None] = mapped_column(Text)
    """A native instance's frame offsets and grey rendering parameters, found at ingest
    (``consult.imaging.layout``), so a retrieval need not parse the file's header; None for
    the rest, and for instances stored before it (they parse it)."""
    source_instance_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("imaging_instances.id"), index=True
    )
    """For an instance of a de-identified copy: the original instance it was made from. The
    server alone knows the pairs (the copy's UIDs are a keyed hash nobody can invert): a review
    shared across institutions names each participant's own UIDs through them
    (``consult.imaging.copies``)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utc_now)
