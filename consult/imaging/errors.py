"""Errors of the imaging store, each with a stable code (``docs/imaging.md``)."""

from __future__ import annotations

from consult.errors import Conflict, InvalidInput, NotFound, PermissionDenied


class DicomRejected(InvalidInput):
    """An instance the store refuses: what is wrong is in ``code``, never a value of the data."""

    code = "dicom_invalid"
    default_message = "The DICOM data is not acceptable."


class DicomMalformed(DicomRejected):
    """Not parseable as DICOM Part 10: truncated, wrong or impossible lengths, bad encoding."""

    code = "dicom_malformed"
    default_message = "The data is not a well-formed DICOM file."


class DicomMissingAttribute(DicomRejected):
    """A required attribute (the UIDs, the SOP class, the transfer syntax) is absent or empty."""

    code = "dicom_missing_attribute"
    default_message = "A required DICOM attribute is missing."


class DicomInvalidUid(DicomRejected):
    """A UID that is not a UID (PS3.5 9.1): digits and dots, at most 64 characters."""

    code = "dicom_invalid_uid"
    default_message = "A DICOM UID is malformed."


class DicomUnsupportedSyntax(DicomRejected):
    """A transfer syntax the store does not accept."""

    code = "dicom_unsupported_transfer_syntax"
    default_message = "The transfer syntax is not supported."


class DicomPixelDataInvalid(DicomRejected):
    """Pixel data whose length does not match rows x columns x frames x samples x bits."""

    code = "dicom_pixel_data_invalid"
    default_message = "The pixel data does not match the image description."


class DicomTooLarge(DicomRejected):
    """An instance or a request body over the store's bound."""

    code = "dicom_too_large"
    default_message = "The DICOM data is too large."


class DicomStudyMismatch(DicomRejected):
    """STOW-RS to ``/studies/{uid}`` with an instance of another study."""

    code = "dicom_study_mismatch"
    default_message = "The instance belongs to another study."


class StudyNotFound(NotFound):
    """No study (or series, instance, frame) with this id that the caller may know of."""

    code = "study_not_found"
    default_message = "The study does not exist."


class StudyAccessDenied(PermissionDenied):
    """The caller has no relationship to the study's patient or visit (audited)."""

    code = "forbidden"
    default_message = "You may not see this study."


class StudyNotLinked(Conflict):
    """The study is not linked to a patient and visit yet: it cannot be shared."""

    code = "study_not_linked"
    default_message = "The study is not attached to a visit."


class FrameNotRenderable(DicomRejected):
    """The frame cannot be decoded or rendered (unsupported photometric, broken codestream)."""

    code = "frame_not_renderable"
    default_message = "The frame cannot be rendered."


class InstanceNotFound(NotFound):
    """No such series or instance in the study."""

    code = "instance_not_found"
    default_message = "The image does not exist."


class NothingToSave(Conflict):
    """A review's save with no measurement to save."""

    code = "nothing_to_save"
    default_message = "There is no measurement to save."


class AnnotationNotMeasurable(InvalidInput):
    """A measurement that cannot be put into DICOM: not on an image, not on its plane, outside
    it, or on an image without pixel spacing."""

    code = "annotation_not_measurable"
    default_message = "The measurement cannot be saved on its image."


class CopyNotMapped(Conflict):
    """A de-identified copy made before its instances named their originals: a review cannot
    show it beside the original (``consult.imaging.copies``)."""

    code = "review_unavailable"
    default_message = "This copy cannot be reviewed together with its original; share it again."


class ImagingUnavailable(Exception):
    """A worker process of the imaging store stopped while doing the work (it is restarted):
    the request may be tried again. Not a refusal of the request (a :class:`ConsultError` is
    always 4xx): the DICOMweb routes answer it ``503 busy``."""

    code = "busy"
    default_message = "The server is busy, please wait."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.default_message)
