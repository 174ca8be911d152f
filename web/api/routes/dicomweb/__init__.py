"""DICOMweb (PS3.18) for the subset viewers use: STOW-RS, QIDO-RS, WADO-RS (R20, R21, R24).

Base URL ``/api/v1/dicomweb``; a visit's STOW-RS endpoint is
``/api/v1/dicomweb/visits/{visit_id}/studies`` (the study joins that visit and its patient).
The routes take the same bearer session as the REST API; they are plain aiohttp handlers
(multipart bodies and answers do not fit the JSON registry). Every retrieval goes through
:func:`consult.imaging.access.readable_study` and is audited; a refusal is a 403, audited.
Reference: ``docs/imaging.md``.

The package: ``common`` (what the handlers share), ``stow`` (uploads), ``qido``, ``wado`` (and
the ECG viewer's JSON), ``routes`` (the table and its OpenAPI document). The DICOM modules
(pydicom, numpy) are imported inside the handlers, on first use: importing them costs a second
or more, which every server start (and every test that starts one) would otherwise pay.
"""

from .routes import ROUTES, DicomwebRoute, openapi_paths, setup_dicomweb

__all__ = ["ROUTES", "DicomwebRoute", "openapi_paths", "setup_dicomweb"]
