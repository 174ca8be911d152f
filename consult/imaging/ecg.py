"""12-lead ECGs from DICOM waveform instances (12-lead ECG, general ECG): calibrated leads, the
device's own measurements and statements, its fiducial points (R19: remote ECG diagnosis).

Each multiplex group (e.g. ``RHYTHM``) gives its sampling frequency and its channels; a
channel's samples are calibrated to millivolts as PS3.3 C.10.9.1.4 has it:
``(sample + baseline) x sensitivity x correction factor``, in the sensitivity's units (UCUM
``uV``, ``mV``, ``V``), converted to mV. The viewer draws 10 mm/mV from these values. The
device's measurements (RR, PR, QRS, QT, QTc, axes) and statements come from the Waveform
Annotation Sequence as stored; nothing is re-measured here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.waveforms.numpy_handler import multiplex_array

from .errors import DicomRejected

TO_MILLIVOLT: Final = {"uV": 0.001, "mV": 1.0, "V": 1000.0}
MAX_SAMPLES: Final = 12 * 1_000_000


class EcgUnreadable(DicomRejected):
    """Not a waveform instance, or one whose channels cannot be calibrated."""

    code = "ecg_unreadable"
    default_message = "The instance holds no ECG that can be calibrated."


def _code_meaning(item: Dataset, keyword: str) -> str:
    sequence = item.get(keyword)
    if not sequence:
        return ""
    return str(sequence[0].get("CodeMeaning", "") or "")


def _code_value(item: Dataset, keyword: str) -> str:
    sequence = item.get(keyword)
    if not sequence:
        return ""
    return str(sequence[0].get("CodeValue", "") or "")


def _concept(item: Dataset) -> str:
    """``SCHEME:VALUE`` of an annotation's concept name (``SCPECG:5.13.5-7`` for the PR
    interval), "" without one: the viewer names the measurements it knows in its language."""
    sequence = item.get("ConceptNameCodeSequence")
    if not sequence:
        return ""
    scheme = str(sequence[0].get("CodingSchemeDesignator", "") or "")
    value = str(sequence[0].get("CodeValue", "") or "")
    return f"{scheme}:{value}" if scheme and value else ""


def lead_name(source: str) -> str:
    """``Lead I (Einthoven)`` -> ``I``; ``Lead aVR`` -> ``aVR``; others as they are."""
    name = re.sub(r"\s*\(.*\)\s*$", "", source).strip()
    return name[5:].strip() if name.lower().startswith("lead ") else name


def _float(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise EcgUnreadable("A channel's calibration is not a number.") from None


def _group(ds: Dataset, index: int, item: Dataset) -> dict[str, Any]:
    channels = int(item.NumberOfWaveformChannels)
    samples = int(item.NumberOfWaveformSamples)
    if channels * samples > MAX_SAMPLES:
        raise EcgUnreadable("The waveform is too long.")
    frequency = _float(item.get("SamplingFrequency"), 0.0)
    if frequency <= 0:
        raise EcgUnreadable("The sampling frequency is missing.")
    try:
        raw = multiplex_array(ds, index, as_raw=True)
    except Exception:
        raise EcgUnreadable("The waveform data does not match its description.") from None
    leads = []
    for number, channel in enumerate(item.ChannelDefinitionSequence):
        units = _code_value(channel, "ChannelSensitivityUnitsSequence")
        if units not in TO_MILLIVOLT:
            raise EcgUnreadable("A channel's sensitivity units are not uV, mV or V.")
        sensitivity = _float(channel.get("ChannelSensitivity"), 1.0)
        correction = _float(channel.get("ChannelSensitivityCorrectionFactor"), 1.0)
        baseline = _float(channel.get("ChannelBaseline"), 0.0)
        scale = sensitivity * correction * TO_MILLIVOLT[units]
        values = (raw[:, number].astype(np.float64) + baseline) * scale
        source = _code_meaning(channel, "ChannelSourceSequence")
        leads.append(
            {
                "name": lead_name(source),
                "source": source,
                "units": "mV",
                "mv_per_unit": scale,
                "filter_low_hz": _float(channel.get("FilterLowFrequency"), 0.0) or None,
                "filter_high_hz": _float(channel.get("FilterHighFrequency"), 0.0) or None,
                "notch_hz": _float(channel.get("NotchFilterFrequency"), 0.0) or None,
                "values": np.round(values, 5).tolist(),
            }
        )
    return {
        "index": index,
        "label": str(item.get("MultiplexGroupLabel", "") or ""),
        "sampling_frequency_hz": frequency,
        "samples": samples,
        "duration_s": samples / frequency,
        "leads": leads,
    }


def _annotations(ds: Dataset) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    measurements, statements, points = [], [], []
    for item in ds.get("WaveformAnnotationSequence", []):
        name = _code_meaning(item, "ConceptNameCodeSequence")
        group = item.get("AnnotationGroupNumber")
        if item.get("UnformattedTextValue"):
            statements.append(str(item.UnformattedTextValue))
        elif item.get("NumericValue") not in (None, ""):
            value = item.NumericValue
            number = float(value[0] if isinstance(value, list | tuple) else value)
            measurements.append(
                {
                    "name": name,
                    "code": _concept(item),
                    "value": number,
                    "unit": _code_value(item, "MeasurementUnitsCodeSequence"),
                    "group": None if group is None else int(group),
                }
            )
        elif item.get("ReferencedSamplePositions") is not None:
            positions = item.ReferencedSamplePositions
            positions = list(positions) if isinstance(positions, list | tuple) else [positions]
            points.append(
                {
                    "name": name,
                    "samples": [int(p) for p in positions],
                    "type": str(item.get("TemporalRangeType", "") or ""),
                    "group": None if group is None else int(group),
                }
            )
    return measurements, statements, points


def read_ecg(path: Path) -> dict[str, Any]:
    """The ECG of a stored waveform instance as the viewer's JSON (blocking)."""
    ds = dcmread(path)
    if "WaveformSequence" not in ds:
        raise EcgUnreadable()
    try:
        groups = [_group(ds, i, item) for i, item in enumerate(ds.WaveformSequence)]
        measurements, statements, points = _annotations(ds)
    except EcgUnreadable:
        raise
    except Exception:
        raise EcgUnreadable() from None
    return {
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "sop_class_uid": str(ds.SOPClassUID),
        "groups": groups,
        "measurements": measurements,
        "statements": statements,
        "fiducials": points,
    }
