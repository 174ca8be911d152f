"""A review's ECG calipers saved into the study: a TID 1500 Measurement Report (R19, R21).

The review (``signaling/review.py``) holds the presenter's calipers as the ECG view places them:
a kind (``RR``, ``PR``, ``QRS``, ``QT``; ``free`` ones are not figures of the report), the
waveform's multiplex group, and the first and last sample. Here they become one TID 1501
measurement group ("ECG calipers") of a Comprehensive 3D SR, built with highdicom:

- RR, PR, QRS and QT in ms at one-sample resolution, each inferred from its source: a TCOORD
  (SEGMENT, the two sample positions, 1-based as PS3.3 C.18.7 counts them) selected from the
  WAVEFORM (the ECG's SOP instance and every channel of the group). highdicom 0.28 neither
  builds nor reads WAVEFORM items, so these are added to the tree it built; DCMTK's
  ``dsrdump`` reads the document whole;
- heart rate (/min, 60000 / RR) and QTc by Bazett (QT / sqrt(RR in s)) and by Fridericia
  (QT / cbrt(RR in s)) when RR (and QT) are measured, as the viewer computes them.

The concept names are the SCP-ECG codes the device writes into the waveform (pydicom's
``waveform_ecg.dcm``), heart rate LOINC 8867-4; the QTc formula is the measurement's method
(a local scheme, ``99TELECONSULT``). Stored as :mod:`consult.imaging.annotations` stores an
image's: a new SOP instance in a new series of the same study, through the imaging store
(parsed, named by our ids, audited ``imaging.store`` with source ``review``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from consult.actor import Actor

from .annotations import (
    _NAME_WARNING,
    SavedReview,
    measurement_report,
)
from .errors import AnnotationNotMeasurable, InstanceNotFound, NothingToSave
from .models import ImagingStudy
from .store import Destination, ImagingStore

logger = logging.getLogger(__name__)

INTERVALS: Final = ("RR", "PR", "QRS", "QT")
"""Caliper kinds that are figures of the report (in this order)."""
LOCAL_SCHEME: Final = "99TELECONSULT"


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept

    return {
        "RR": CodedConcept("5.10.2.1-3", "SCPECG", "RR Interval"),
        "PR": CodedConcept("5.13.5-7", "SCPECG", "PR Interval"),
        "QRS": CodedConcept("5.13.5-9", "SCPECG", "QRS Duration"),
        "QT": CodedConcept("5.13.5-11", "SCPECG", "QT Interval"),
        "QTc": CodedConcept("5.10.2.5-5", "SCPECG", "QTc Interval"),
        "HR": CodedConcept("8867-4", "LN", "Heart rate"),
        "Bazett": CodedConcept("QTCB", LOCAL_SCHEME, "Bazett formula"),
        "Fridericia": CodedConcept("QTCF", LOCAL_SCHEME, "Fridericia formula"),
        "ms": CodedConcept("ms", "UCUM", "millisecond"),
        "/min": CodedConcept("/min", "UCUM", "per minute"),
        "source": CodedConcept("121112", "DCM", "Source of Measurement"),
        "procedure": CodedConcept("29303009", "SCT", "Electrocardiographic procedure"),
    }


def figures(ecg: Mapping[str, Any], rates: list[float]) -> dict[str, Any]:
    """The report's figures from the calipers (the last of each kind), as the viewer has them:
    ``{kind: (ms, caliper)}`` for the intervals, and ``HR``, ``QTcB``, ``QTcF`` (numbers)."""
    out: dict[str, Any] = {}
    for caliper in ecg.get("calipers", []):
        if caliper["kind"] not in INTERVALS:
            continue
        group = caliper["group"]
        if group >= len(rates):
            raise AnnotationNotMeasurable("A caliper names a waveform group the ECG lacks.")
        ms = abs(caliper["to"] - caliper["from"]) / rates[group] * 1000.0
        out[caliper["kind"]] = (ms, caliper)
    if "RR" in out and out["RR"][0] > 0:
        rr = out["RR"][0]
        out["HR"] = 60000.0 / rr
        if "QT" in out:
            out["QTcB"] = out["QT"][0] / math.sqrt(rr / 1000.0)
            out["QTcF"] = out["QT"][0] / (rr / 1000.0) ** (1.0 / 3.0)
    return out


def build(
    path: Path, ecg: Mapping[str, Any], observer: str, new_path: Any
) -> tuple[Path, SavedReview]:
    """Build the SR for the calipers on the waveform stored at ``path``; write it at
    ``new_path()`` (blocking)."""
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    warnings.filterwarnings("ignore", message=_NAME_WARNING, category=UserWarning)
    ds = dcmread(path)
    groups = list(ds.get("WaveformSequence", []))
    if not groups:
        raise AnnotationNotMeasurable("The instance holds no waveform.")
    rates = [float(g.SamplingFrequency) for g in groups]
    found = figures(ecg, rates)
    if not any(kind in found for kind in INTERVALS):
        raise NothingToSave()
    codes = _codes()

    def source(caliper: Mapping[str, Any]) -> Any:
        group = caliper["group"]
        samples = int(groups[group].NumberOfWaveformSamples)
        start, end = sorted((caliper["from"], caliper["to"]))
        if end >= samples:
            raise AnnotationNotMeasurable("A caliper ends after the waveform.")
        channels = int(groups[group].NumberOfWaveformChannels)
        tcoord = hd.sr.TcoordContentItem(
            name=codes["source"],
            temporal_range_type="SEGMENT",
            referenced_sample_positions=[start + 1, end + 1],
            relationship_type="INFERRED FROM",
        )
        pairs: Any = [(group + 1, c) for c in range(1, channels + 1)]
        waveform = hd.sr.WaveformContentItem(
            name=codes["source"],
            referenced_sop_class_uid=ds.SOPClassUID,
            referenced_sop_instance_uid=ds.SOPInstanceUID,
            # (multiplex group, channel) pairs, 1-based: every lead of the group (highdicom
            # takes pairs, its annotation says ints)
            referenced_waveform_channels=pairs,
            relationship_type="SELECTED FROM",
        )
        tcoord.ContentSequence = Sequence([waveform])
        return tcoord

    measurements = []
    sources: dict[str, Any] = {}  # concept code -> the TCOORD of its calipers
    for kind in INTERVALS:
        if kind not in found:
            continue
        ms, caliper = found[kind]
        measurements.append(hd.sr.Measurement(name=codes[kind], value=ms, unit=codes["ms"]))
        sources[codes[kind].value] = source(caliper)
    if "HR" in found:
        measurements.append(
            hd.sr.Measurement(name=codes["HR"], value=found["HR"], unit=codes["/min"])
        )
    for key, method in (("QTcB", "Bazett"), ("QTcF", "Fridericia")):
        if key in found:
            measurements.append(
                hd.sr.Measurement(
                    name=codes["QTc"], value=found[key], unit=codes["ms"], method=codes[method]
                )
            )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(prefix=None), identifier="ECG calipers"
        ),
        measurements=measurements,
    )
    sr = measurement_report(
        [ds],
        [group],
        procedure=codes["procedure"],
        observer=observer,
        series_uid=generate_uid(prefix=None),
        description="Review ECG measurements",
    )
    # highdicom neither builds nor reads a WAVEFORM content item (it re-reads the content it is
    # given): each interval's source goes into the built tree
    for item in _numbers(sr.ContentSequence):
        tcoord = sources.pop(str(item.ConceptNameCodeSequence[0].CodeValue), None)
        if tcoord is not None:
            item.ContentSequence = [*item.get("ContentSequence", []), tcoord]
    sr.SpecificCharacterSet = "ISO_IR 192"
    target = new_path()
    sr.save_as(target, enforce_file_format=True)
    return target, SavedReview(
        study_uid=str(sr.StudyInstanceUID),
        sr=str(sr.SOPInstanceUID),
        sr_series=str(sr.SeriesInstanceUID),
        presentation_states=(),
        gsps_series="",
        measurements=len(measurements),
    )


def _numbers(items: Any) -> Any:
    """Every NUM content item of a content tree."""
    for item in items:
        if item.get("ValueType") == "NUM":
            yield item
        yield from _numbers(item.get("ContentSequence", []))


async def save_calipers(
    store: ImagingStore,
    actor: Actor,
    study: ImagingStudy,
    *,
    instance: str,
    ecg: Mapping[str, Any],
    observer: str,
) -> SavedReview:
    """Build and store the SR of the calipers on ``instance`` (a waveform of ``study``; the
    caller checked that ``actor`` may read it); the stored instance is audited by the store."""
    rows = (await store.rows(study)).instances
    row = next((i for i in rows if i.sop_instance_uid == instance), None)
    if row is None:
        raise InstanceNotFound("The ECG is not in the study.")
    try:
        path, saved = await store.run(
            build, store.path_of(study.id, row.id), ecg, observer, store.new_incoming
        )
    except (ValueError, TypeError, AttributeError) as exc:  # a waveform highdicom refuses
        logger.info("ECG save refused by the SR builder: %s", type(exc).__name__)
        raise AnnotationNotMeasurable() from exc
    dest = Destination(
        institution_id=study.institution_id,
        visit_id=study.visit_id,
        patient_id=study.patient_id,
        source="review",
        expected_study_uid=study.study_uid,
    )
    try:
        await store.ingest(path, dest, actor)
    finally:
        path.unlink(missing_ok=True)
    return saved


__all__ = ["build", "figures", "save_calipers"]
