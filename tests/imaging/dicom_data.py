"""Test DICOM data from installed wheels only (pydicom's test files, pydicom-data), and
series synthesised from them. ``pydicom.data.get_testdata_file`` would download a file that is
not installed; :func:`local_file` refuses instead."""

from __future__ import annotations

import copy
import io
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.waveforms.numpy_handler import multiplex_array

ECG_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
"""The leads of pydicom's waveform_ecg.dcm, in its order."""


def local_file(name: str) -> Path:
    """A test file that is on disk already (fails rather than downloads)."""
    import pydicom.data.data_manager as manager

    found = manager.get_testdata_file(name, download=False)
    assert found is not None, f"{name} is not installed (pydicom or pydicom-data)"
    path = Path(str(found))
    assert path.is_file()
    return path


def series_from(name: str, count: int, *, study_uid: str | None = None) -> list[Dataset]:
    """``count`` instances of one new series of one study, each a copy of ``name``."""
    source = dcmread(local_file(name))
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    out = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(source)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.SeriesNumber = 1
        out.append(ds)
    return out


def aecg_document(
    ds: Dataset, *, document_id: str, scale_unit: str = "uV", samples: int | None = None
) -> bytes:
    """An HL7 aECG document (PORT_MT020001) holding the rhythm group of the DICOM waveform
    ``ds``: each lead's stored digits with its scale (1.25 uV), the time base, the device's
    measurements and statement, as an aECG writer would put them."""
    group = ds.WaveformSequence[0]
    raw = multiplex_array(ds, 0, as_raw=True)[:samples]
    scale = float(group.ChannelDefinitionSequence[0].ChannelSensitivity)
    leads = []
    for number, name in enumerate(ECG_LEADS):
        digits = " ".join(str(int(v)) for v in raw[:, number])
        leads.append(
            f'<component><sequence><code code="MDC_ECG_LEAD_{name.upper()}" '
            'codeSystem="2.16.840.1.113883.6.24"/><value xsi:type="SLIST_PQ">'
            f'<origin value="0" unit="{scale_unit}"/><scale value="{scale}" unit="{scale_unit}"/>'
            f"<digits>{digits}</digits></value></sequence></component>"
        )
    measured = "".join(
        f'<component><annotation><code code="{code}" codeSystem="2.16.840.1.113883.6.24"/>'
        f'<value xsi:type="PQ" value="{value}" unit="ms"/></annotation></component>'
        for code, value in (
            ("MDC_ECG_TIME_PD_RR", 982),
            ("MDC_ECG_TIME_PD_PR", 161),
            ("MDC_ECG_TIME_PD_QRS", 75),
            ("MDC_ECG_TIME_PD_QT", 368),
            ("MDC_ECG_TIME_PD_QTcB", 370),
        )
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<AnnotatedECG xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f'<id root="{document_id}"/><code code="93000" codeSystem="2.16.840.1.113883.6.12"/>'
        '<effectiveTime><low value="20130125082826"/><high value="20130125082836"/>'
        "</effectiveTime><component><series>"
        '<code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>'
        '<effectiveTime><low value="20130125082826"/></effectiveTime>'
        "<component><sequenceSet>"
        '<component><sequence><code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>'
        '<value xsi:type="GLIST_TS"><head value="20130125082826.000"/>'
        '<increment value="0.001" unit="s"/></value></sequence></component>'
        + "".join(leads)
        + "</sequenceSet></component>"
        '<subjectOf><annotationSet><activityTime value="20130125082826"/>'
        + measured
        + '<component><annotation><code code="MDC_ECG_INTERPRETATION_STATEMENT" '
        'codeSystem="2.16.840.1.113883.6.24"/><value xsi:type="ST">RITMO SINUSALE</value>'
        "</annotation></component></annotationSet></subjectOf>"
        "</series></component></AnnotatedECG>"
    ).encode()


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write_series(datasets: list[Dataset], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        path = directory / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


__all__ = [
    "ECG_LEADS",
    "aecg_document",
    "get_testdata_file",
    "local_file",
    "part10",
    "series_from",
    "write_series",
]
