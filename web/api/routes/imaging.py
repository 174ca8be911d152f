"""Imaging outside DICOMweb: sharing a study with another institution (R14, R37).

The study is named by its Study Instance UID (as the viewer knows it); the recipient is a
doctor of another institution, who then reads a de-identified copy over DICOMweb.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from ...keys import IMAGING
from ..call import Call
from ..fields import Id, Input, Output
from ..registry import api

Uid = Annotated[
    str, StringConstraints(pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$", max_length=64)
]


class StudyPath(Input):
    study_uid: Uid


class ShareIn(Input):
    recipient_id: Id


class ShareOut(Output):
    study_uid: str
    copy_study_uid: str
    """The copy's Study Instance UID: the recipient retrieves it under this UID."""
    institution_id: str
    recipient_id: str
    instances: int
    burned_in_flagged: int
    """Instances whose pixels may carry burned-in text (de-identification cannot remove it)."""
    created: bool


@api.operation(
    "POST",
    "/imaging/studies/{study_uid}/shares",
    action="imaging.share",
    tag="imaging",
    status=201,
)
async def share_imaging_study(call: Call, path: StudyPath, body: ShareIn) -> ShareOut:
    """Share a study with a doctor of another institution: a de-identified copy (audited)."""
    from consult.imaging.share import share_study  # pydicom: imported on first use

    result = await share_study(
        call.request.app[IMAGING], call.me, path.study_uid, body.recipient_id
    )
    return ShareOut(
        study_uid=result.study_uid,
        copy_study_uid=result.copy_study_uid,
        institution_id=result.institution_id,
        recipient_id=result.recipient_id,
        instances=result.instances,
        burned_in_flagged=result.burned_in_flagged,
        created=result.created,
    )
