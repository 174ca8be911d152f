"""HL7 aECG (Annotated ECG, HL7 v3 XML) into the imaging store, as a DICOM General ECG waveform
(R19, R20): the same ECG view, review and record as a modality's DICOM ECG.

The document is parsed by ecgdatakit (Apache-2.0; its XML goes through defusedxml, so entity
expansion and external entities are refused): the rhythm series' leads (``value = origin +
scale x digit``, the time increment giving the sampling rate), the device's filters, global
measurements (RR, PR, QRS, QT, QTc, heart rate, axes) and interpretation statements. They become
one General ECG Waveform Storage instance:

- one multiplex group ``RHYTHM``: each lead a channel (its SCP-ECG lead code, as a 12-lead
  device writes them), 16-bit signed samples. When every digit is an integer that fits, the
  digits are stored as they are with Channel Sensitivity = the scale and Channel Baseline =
  origin / scale, so the calibrated values are exactly the document's; otherwise the values are
  quantised to 1 uV;
- the measurements and statements as the Waveform Annotation Sequence, with the codes a device
  uses (pydicom's ``waveform_ecg.dcm``), so the viewer shows them as the device's own;
- UIDs made from the document's id (a keyed hash, ``2.25.<128-bit>``): the same document sent
  twice is the same instance (kept once, as a STOW-RS duplicate is). Patient ID is our record
  id (the visit's patient); no name or identifier of the document is copied (R37, minimum).

Refusals, each with a stable code and never a value of the document: ``aecg_malformed`` (not
well-formed XML, not an AnnotatedECG, entities, no rhythm leads, digits or a time base that do
not parse), ``aecg_uncalibrated`` (a lead without scale units in V, mV, uV or nV, or values out
of range), ``aecg_too_large``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import DicomRejected

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

GENERAL_ECG: Final = "1.2.840.10008.5.1.4.1.1.9.1.2"
MAX_AECG_BYTES: Final = 64 * 1024 * 1024
MAX_SAMPLES: Final = 12 * 1_000_000
TO_MICROVOLT: Final = {"nV": 0.001, "uV": 1.0, "mV": 1000.0, "V": 1_000_000.0}

# SCP-ECG lead codes (DICOM CID 3001), as a 12-lead device writes them
LEADS: Final = {
    "I": ("5.6.3-9-1", "Lead I (Einthoven)"),
    "II": ("5.6.3-9-2", "Lead II"),
    "V1": ("5.6.3-9-3", "Lead V1"),
    "V2": ("5.6.3-9-4", "Lead V2"),
    "V3": ("5.6.3-9-5", "Lead V3"),
    "V4": ("5.6.3-9-6", "Lead V4"),
    "V5": ("5.6.3-9-7", "Lead V5"),
    "V6": ("5.6.3-9-8", "Lead V6"),
    "III": ("5.6.3-9-61", "Lead III"),
    "aVR": ("5.6.3-9-62", "Lead aVR"),
    "aVL": ("5.6.3-9-63", "Lead aVL"),
    "aVF": ("5.6.3-9-64", "Lead aVF"),
}
# ecgdatakit's global measurements -> (SCP-ECG code, meaning, UCUM unit)
MEASUREMENTS: Final = {
    "rr_interval": ("5.10.2.1-3", "RR Interval", "ms"),
    "pr_interval": ("5.13.5-7", "PR Interval", "ms"),
    "qrs_duration": ("5.13.5-9", "QRS Duration", "ms"),
    "qt_interval": ("5.13.5-11", "QT Interval", "ms"),
    "qtc_bazett": ("5.10.2.5-5", "QTc Interval", "ms"),
    "p_axis": ("5.10.3-11", "P Axis", "deg"),
    "qrs_axis": ("5.10.3-13", "QRS Axis", "deg"),
    "t_axis": ("5.10.3-15", "T Axis", "deg"),
}


class AecgMalformed(DicomRejected):
    """Not an HL7 aECG document the parser reads."""

    code = "aecg_malformed"
    default_message = "The document is not a well-formed HL7 aECG."


class AecgUncalibrated(DicomRejected):
    """A lead whose values cannot be put into volts."""

    code = "aecg_uncalibrated"
    default_message = "A lead of the aECG has no voltage scale (uV, mV or V)."


class AecgTooLarge(DicomRejected):
    code = "aecg_too_large"
    default_message = "The aECG document is too large."


@dataclass(frozen=True)
class AecgSummary:
    """What a document held: its leads, samples per lead and sampling rate."""

    leads: tuple[str, ...]
    samples: int
    sampling_frequency_hz: float


def _uid(document_id: str, what: str) -> str:
    digest = hashlib.sha256(f"aecg:{what}:{document_id}".encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _record(path: Path) -> Any:
    """The document parsed by ecgdatakit, or :class:`AecgMalformed`."""
    from ecgdatakit.exceptions import ECGDataKitError
    from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on ignored parts quote the document
            return HL7aECGParser().parse(path)
    except ECGDataKitError as exc:
        logger.info("aECG refused: %s", type(exc).__name__)
        raise AecgMalformed() from None
    except Exception as exc:  # a parse error of the XML, a value that does not convert
        logger.info("aECG refused: %s", type(exc).__name__)
        raise AecgMalformed() from None


def _channel(lead: Any) -> tuple[Any, float, float, str]:
    """(int16 samples, sensitivity, baseline, units) of one lead."""
    import numpy as np

    unit = str(getattr(lead, "resolution_unit", "") or "")
    if unit not in TO_MICROVOLT or not lead.resolution:
        raise AecgUncalibrated()
    digits = np.asarray(lead.samples, dtype=np.float64)
    if not np.all(np.isfinite(digits)):
        raise AecgMalformed()
    scale, origin = float(lead.resolution), float(lead.offset or 0.0)
    baseline = origin / scale
    exact = (
        np.all(digits == np.round(digits))
        and digits.size > 0
        and float(np.abs(digits).max()) <= 32767
        and baseline == round(baseline)
    )
    if exact:
        return digits.astype(np.int16), scale, baseline, unit
    microvolts = (origin + scale * digits) * TO_MICROVOLT[unit]
    if digits.size and float(np.abs(microvolts).max()) > 32767:
        raise AecgUncalibrated("A lead's values are out of range.")
    return np.round(microvolts).astype(np.int16), 1.0, 0.0, "uV"


def to_dataset(path: Path, patient_id: str | None) -> tuple[Dataset, AecgSummary]:
    """The aECG document at ``path`` as a General ECG waveform dataset (blocking)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    if path.stat().st_size > MAX_AECG_BYTES:
        raise AecgTooLarge()
    record = _record(path)
    leads = list(record.leads or [])
    if not leads:
        raise AecgMalformed()
    rate = float(leads[0].sampling_rate or 0)
    count = len(leads[0].samples)
    if rate <= 0 or count == 0 or any(len(lead.samples) != count for lead in leads):
        raise AecgMalformed("The leads do not share one time base.")
    if count * len(leads) > MAX_SAMPLES:
        raise AecgTooLarge()
    channels = [_channel(lead) for lead in leads]
    document_id = str(record.raw_metadata.get("document_id") or "") or path.name
    filters = record.recording.acquisition.filters

    ds = Dataset()
    ds.SOPClassUID = GENERAL_ECG
    ds.SOPInstanceUID = _uid(document_id, "instance")
    ds.StudyInstanceUID = _uid(document_id, "study")
    ds.SeriesInstanceUID = _uid(document_id, "series")
    ds.Modality = "ECG"
    ds.PatientID = patient_id or ""
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = (record.recording.device.manufacturer or "")[:64]
    ds.SeriesDescription = "HL7 aECG"
    when: datetime | None = record.recording.date
    stamp = when.strftime("%Y%m%d%H%M%S") if when else ""
    ds.StudyDate = ds.ContentDate = stamp[:8]
    ds.StudyTime = ds.ContentTime = stamp[8:]
    ds.AcquisitionDateTime = stamp
    ds.SpecificCharacterSet = "ISO_IR 192"

    group = Dataset()
    group.MultiplexGroupTimeOffset = 0.0
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(leads)
    group.NumberOfWaveformSamples = count
    group.SamplingFrequency = rate
    group.MultiplexGroupLabel = "RHYTHM"
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    definitions = []
    for lead, (_, sensitivity, baseline, unit) in zip(leads, channels, strict=True):
        code, meaning = LEADS.get(lead.label, ("", f"Lead {lead.label}"))
        item = Dataset()
        source = _code(code or lead.label[:16], "SCPECG" if code else "99TELECONSULT", meaning)
        item.ChannelSourceSequence = Sequence([source])
        item.ChannelSensitivity = f"{sensitivity:.10g}"
        item.ChannelSensitivityUnitsSequence = Sequence([_code(unit, "UCUM", unit)])
        item.ChannelSensitivityCorrectionFactor = "1"
        item.ChannelBaseline = f"{baseline:.10g}"
        item.ChannelSampleSkew = "0"
        item.WaveformBitsStored = 16
        if filters.highpass:
            item.FilterLowFrequency = f"{filters.highpass:.6g}"
        if filters.lowpass:
            item.FilterHighFrequency = f"{filters.lowpass:.6g}"
        if filters.notch:
            item.NotchFilterFrequency = f"{filters.notch:.6g}"
        definitions.append(item)
    group.ChannelDefinitionSequence = Sequence(definitions)
    interleaved = np.stack([samples for samples, _, _, _ in channels], axis=1)
    group.WaveformData = interleaved.astype("<i2").tobytes()
    ds.WaveformSequence = Sequence([group])

    annotations = []
    measured = record.measurements
    for field, (code, meaning, unit) in MEASUREMENTS.items():
        value = getattr(measured, field, None)
        if value is None:
            continue
        item = Dataset()
        item.ConceptNameCodeSequence = Sequence([_code(code, "SCPECG", meaning)])
        item.NumericValue = f"{float(value):.6g}"
        item.MeasurementUnitsCodeSequence = Sequence([_code(unit, "UCUM", unit)])
        item.AnnotationGroupNumber = 1
        annotations.append(item)
    for statement in record.interpretation.statements or []:
        parts = statement if isinstance(statement, tuple | list) else (statement,)
        text = " ".join(str(p) for p in parts if p)
        if not text:
            continue
        item = Dataset()
        item.UnformattedTextValue = text[:1024]
        item.AnnotationGroupNumber = 0
        annotations.append(item)
    if annotations:
        ds.WaveformAnnotationSequence = Sequence(annotations)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    summary = AecgSummary(
        leads=tuple(lead.label for lead in leads),
        samples=count,
        sampling_frequency_hz=rate,
    )
    return ds, summary


def convert(source: Path, target: Path, patient_id: str | None) -> AecgSummary:
    """Write the aECG document at ``source`` as a Part 10 file at ``target`` (blocking)."""
    ds, summary = to_dataset(source, patient_id)
    ds.save_as(target, enforce_file_format=True)
    return summary


__all__ = [
    "AecgMalformed",
    "AecgSummary",
    "AecgTooLarge",
    "AecgUncalibrated",
    "convert",
    "to_dataset",
]
