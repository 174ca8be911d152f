"""What storing one arrival writes, built once for both ingest paths.

An arrival is written either through the async session (:meth:`.store.ImagingStore._insert_tx`,
PostgreSQL) or in a worker thread on a plain SQLite connection
(:meth:`.ingest_sqlite.SqliteIngest._insert`). Both write the same study row, instance row and
audit events in the same order; the values come from here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consult.actor import Actor

    from .parse import ParsedInstance
    from .store import Destination


def study_fields(
    parsed: ParsedInstance,
    dest: Destination,
    actor: Actor | None,
    *,
    patient_id: str | None,
    visit_id: str | None,
) -> dict[str, Any]:
    """A new study's columns (beside its id and creation time)."""
    return {
        "study_uid": parsed.study_uid,
        "institution_id": dest.institution_id,
        "patient_id": patient_id,
        "visit_id": visit_id,
        "source": dest.source,
        "created_by": actor.user_id if actor else None,
    }


def instance_fields(parsed: ParsedInstance, size: int) -> dict[str, Any]:
    """A stored instance's columns from what its parse found (beside its id, its study's id
    and its creation time)."""
    return {
        "series_uid": parsed.series_uid,
        "sop_instance_uid": parsed.sop_instance_uid,
        "sop_class_uid": parsed.sop_class_uid,
        "transfer_syntax": parsed.transfer_syntax,
        "modality": parsed.modality,
        "series_number": parsed.series_number,
        "instance_number": parsed.instance_number,
        "frames": parsed.frames,
        "rows": parsed.rows,
        "columns": parsed.columns,
        "size": size,
        "burned_in": parsed.burned_in,
        "pixel_layout": parsed.pixel_layout,
    }


def _by(dest: Destination, actor: Actor | None) -> dict[str, Any]:
    """Who an ingest event is by: the signed-in user, or the modality (its AE title)."""
    return {
        "actor": actor,
        "actor_role": None if actor else "modality",
        "source_ip": None if actor else dest.calling_ae,
    }


def study_created_event(
    dest: Destination, actor: Actor | None, study_id: str, visit_id: str | None
) -> dict[str, Any]:
    """The ``imaging.study_created`` event's fields (the keywords of ``record``)."""
    return {
        **_by(dest, actor),
        "object_type": "imaging_study",
        "object_id": study_id,
        "details": {"source": dest.source, "visit_id": visit_id},
    }


def store_event(
    dest: Destination,
    actor: Actor | None,
    study_id: str,
    instance_id: str,
    parsed: ParsedInstance,
    size: int,
) -> dict[str, Any]:
    """The ``imaging.store`` event's fields (the keywords of ``record``)."""
    return {
        **_by(dest, actor),
        "object_type": "imaging_study",
        "object_id": study_id,
        "details": {
            "instance_id": instance_id,
            "source": dest.source,
            "sop_class_uid": parsed.sop_class_uid,
            "size": size,
        },
    }
