"""A review's measurements saved into the study: a TID 1500 Measurement Report (Comprehensive 3D
SR) and a Grayscale Softcopy Presentation State per series, built with highdicom (R20, R21).

The review (``signaling/review.py``) holds the presenter's measurements as Cornerstone3D draws
them: a tool name, the instance and frame, and the handle points in world (patient) millimetres.
Here each becomes, on the image it was drawn on:

- in the SR, one TID 1410 planar ROI group (its tracking identifier names the annotation) whose
  image region is the shape in image coordinates (SCOORD, referencing the SOP instance and
  frame) and whose measurements are the figures the viewer shows: a length in mm, an angle in
  degrees, an area in mm2 and the mean in HU (CT; the modality LUT applied) inside a rectangle
  or an ellipse, the value in HU under a probe;
- in the GSPS, a graphic object of the same shape with a text label of its figure, and the
  presenter's window/level as the series' VOI LUT.

Both are new SOP instances with UIDs of our own (``2.25.<uuid>``), in new series of the same
study, stored through :class:`~consult.imaging.store.ImagingStore` like any arriving instance
(parsed, checked, named by our ids, audited as ``imaging.store`` with source ``review``), so
QIDO/WADO serve them to whoever may read the study and nobody else. Whatever reads the study
(a visit's record, a consultation's exam attachment) reads them with it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from consult.actor import Actor

from .errors import AnnotationNotMeasurable, InstanceNotFound, NothingToSave
from .models import ImagingInstance, ImagingStudy
from .store import Destination, ImagingStore

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

SR_SERIES_NUMBER: Final = 9901
GSPS_SERIES_NUMBER: Final = 9902
MANUFACTURER: Final = "teleconsult"
MODEL: Final = "review together"
SOFTWARE_VERSION: Final = "1"
CT_IMAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
_NAME_WARNING: Final = r"(?s)The string .* is unlikely to represent the intended person name"


@dataclass(frozen=True)
class SavedReview:
    """What a save stored: the SR's and the GSPS' SOP instance UIDs, and their series."""

    study_uid: str
    sr: str
    sr_series: str
    presentation_states: tuple[str, ...]
    gsps_series: str
    measurements: int


@dataclass(frozen=True)
class _Figure:
    """One measurement's shape in image coordinates and its figures."""

    uid: str
    tool: str
    graphic_type: str
    points: np.ndarray
    values: tuple[tuple[str, float, str], ...]
    """(name, value, unit): ``length``/``angle``/``area``/``mean``/``value``."""


# --- Geometry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plane:
    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: tuple[float, float]
    """(between rows, between columns) in mm: PixelSpacing."""
    tolerance: float

    @classmethod
    def of(cls, ds: Dataset) -> _Plane:
        import numpy as np

        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        if not spacing or len(spacing) != 2 or min(float(s) for s in spacing) <= 0:
            raise AnnotationNotMeasurable("The image has no pixel spacing: no measurement in mm.")
        position = ds.get("ImagePositionPatient") or [0.0, 0.0, 0.0]
        orientation = ds.get("ImageOrientationPatient") or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        thickness = float(ds.get("SliceThickness") or 0.0)
        return cls(
            origin=np.array([float(v) for v in position]),
            row_dir=np.array([float(v) for v in orientation[:3]]),
            col_dir=np.array([float(v) for v in orientation[3:]]),
            spacing=(float(spacing[0]), float(spacing[1])),
            tolerance=max(1.0, thickness / 2.0),
        )

    def to_image(self, world: np.ndarray) -> np.ndarray:
        """World mm -> image coordinates (column, row), the top left pixel's centre at (0.5,
        0.5) as SCOORD and GSPS graphic data have it. Refuses points off the image's plane."""
        import numpy as np

        d = world - self.origin
        normal = np.cross(self.row_dir, self.col_dir)
        if np.any(np.abs(d @ normal) > self.tolerance):
            raise AnnotationNotMeasurable("A measurement is not on the plane of its image.")
        cols = d @ self.row_dir / self.spacing[1]
        rows = d @ self.col_dir / self.spacing[0]
        return np.stack([cols + 0.5, rows + 0.5], axis=1)


def _angle(points: np.ndarray) -> float:
    """The angle at the middle point (Cornerstone3D's Angle tool), in degrees."""
    import numpy as np

    a, b = points[0] - points[1], points[2] - points[1]
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        raise AnnotationNotMeasurable("An angle's arms have no length.")
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b) / norms))))


def _mean_inside(pixels: np.ndarray, mask_of: Any, image_points: np.ndarray) -> float | None:
    """The mean of the pixels whose centres ``mask_of`` accepts (None if none is inside)."""
    import numpy as np

    rows, cols = pixels.shape[:2]
    ys, xs = np.mgrid[0:rows, 0:cols]
    mask = mask_of(xs + 0.5, ys + 0.5, image_points)
    if not mask.any():
        return None
    return float(pixels[mask].mean())


EDGE: Final = 1e-6
"""A pixel whose centre is on the edge is inside (handles often sit on pixel centres, and the
round trip through world millimetres must not drop a row)."""


def _in_rectangle(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    x0, x1 = p[:, 0].min() - EDGE, p[:, 0].max() + EDGE
    y0, y1 = p[:, 1].min() - EDGE, p[:, 1].max() + EDGE
    result: np.ndarray = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    return result


def _ellipse_axes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and the two semi-axis vectors from Cornerstone3D's four handles (bottom, top,
    left, right)."""
    centre = (p[0] + p[1] + p[2] + p[3]) / 4.0
    return centre, (p[1] - p[0]) / 2.0, (p[3] - p[2]) / 2.0


def _in_ellipse(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    import numpy as np

    centre, u, v = _ellipse_axes(p)
    basis = np.array([[u[0], v[0]], [u[1], v[1]]])
    if abs(np.linalg.det(basis)) < 1e-9:
        return np.zeros(x.shape, dtype=bool)
    inverse = np.linalg.inv(basis)
    dx, dy = x - centre[0], y - centre[1]
    s = inverse[0, 0] * dx + inverse[0, 1] * dy
    t = inverse[1, 0] * dx + inverse[1, 1] * dy
    result: np.ndarray = s * s + t * t <= 1.0 + EDGE
    return result


def _figure(item: Mapping[str, Any], ds: Dataset, pixels: np.ndarray | None) -> _Figure:
    """One annotation (tool, world points) on its image -> shape and figures."""
    import numpy as np

    plane = _Plane.of(ds)
    world = np.array(item["points"], dtype=float)
    image = plane.to_image(world)
    tool = item["tool"]
    unit = "HU" if str(ds.get("SOPClassUID", "")) == CT_IMAGE else "1"
    values: list[tuple[str, float, str]] = []
    need = {"Length": 2, "Angle": 3, "RectangleROI": 4, "EllipticalROI": 4, "Probe": 1}[tool]
    if len(world) < need:
        raise AnnotationNotMeasurable(f"A {tool} measurement needs {need} points.")
    if need > 1 and float(np.ptp(world[:need], axis=0).max()) == 0.0:
        raise AnnotationNotMeasurable(f"The {tool} measurement has no extent.")
    if tool == "Length":
        image = image[:2]
        values.append(("length", float(np.linalg.norm(world[1] - world[0])), "mm"))
        graphic = "POLYLINE"
    elif tool == "Angle":
        image = image[:3]
        values.append(("angle", _angle(world[:3]), "deg"))
        graphic = "POLYLINE"
    elif tool == "RectangleROI":
        # handles: top left, top right, bottom left, bottom right -> a closed polyline
        corners = image[[0, 1, 3, 2, 0]]
        width = float(np.linalg.norm(world[1] - world[0]))
        height = float(np.linalg.norm(world[2] - world[0]))
        values.append(("area", width * height, "mm2"))
        mean = None if pixels is None else _mean_inside(pixels, _in_rectangle, image[:4])
        if mean is not None:
            values.append(("mean", mean, unit))
        image, graphic = corners, "POLYLINE"
    elif tool == "EllipticalROI":
        _, a, b = _ellipse_axes(world[:4])
        values.append(("area", math.pi * float(np.linalg.norm(a) * np.linalg.norm(b)), "mm2"))
        mean = None if pixels is None else _mean_inside(pixels, _in_ellipse, image[:4])
        if mean is not None:
            values.append(("mean", mean, unit))
        # SCOORD ELLIPSE: the major axis' two ends, then the minor axis'
        first, second = image[[0, 1]], image[[2, 3]]
        if np.linalg.norm(a) < np.linalg.norm(b):
            first, second = second, first
        image, graphic = np.concatenate([first, second]), "ELLIPSE"
    else:  # Probe
        image, graphic = image[:1], "POINT"
        if pixels is not None:
            col, row = int(image[0, 0]), int(image[0, 1])
            if 0 <= row < pixels.shape[0] and 0 <= col < pixels.shape[1]:
                values.append(("value", float(pixels[row, col]), unit))
    rows, columns = int(ds.Rows), int(ds.Columns)
    if np.any(image < 0) or np.any(image[:, 0] > columns) or np.any(image[:, 1] > rows):
        raise AnnotationNotMeasurable("A measurement reaches outside its image.")
    return _Figure(item["uid"], tool, graphic, image.astype(float), tuple(values))


# --- Building the SR and the GSPS (blocking: run off the event loop) -------------------------


def _codes() -> dict[str, Any]:
    from pydicom.sr.codedict import codes

    return {
        "length": codes.SCT.Length,
        "angle": codes.SCT.Angle,
        "area": codes.SCT.Area,
        "mean": codes.SCT.Mean,
        "value": codes.DCM.AttenuationCoefficient,
        "mm": codes.UCUM.Millimeter,
        "deg": codes.UCUM.Degree,
        "mm2": codes.UCUM.SquareMillimeter,
        "HU": codes.UCUM.HounsfieldUnit,
        "procedure": codes.SCT.ImagingProcedure,
    }


def _unit(name: str, table: Mapping[str, Any]) -> Any:
    import highdicom as hd

    return table[name] if name in table else hd.sr.CodedConcept("1", "UCUM", "no units")


def _label(figure: _Figure) -> str:
    suffix = {"mm": " mm", "deg": "°", "mm2": " mm²", "HU": " HU", "1": ""}
    return ", ".join(f"{v:.1f}{suffix.get(u, '')}" for _, v, u in figure.values)[:64]


def measurement_report(
    evidence: Sequence[Dataset],
    groups: Sequence[Any],
    *,
    procedure: Any,
    observer: str,
    series_uid: str,
    description: str,
) -> Dataset:
    """A TID 1500 measurement report (a Comprehensive 3D SR, not final) of ``groups`` taken on
    ``evidence`` by ``observer`` (a person, named as the page shows it), as the one instance of
    a new series of the evidence's study. Images' measurements and ECG calipers alike."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name=f"{observer[:60] or 'reviewer'}^"  # one component: the name as shown
                ),
            )
        ),
        procedure_reported=procedure,
        imaging_measurements=list(groups),
    )
    return hd.sr.Comprehensive3DSR(
        evidence=list(evidence),
        content=report,
        series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(prefix=None),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=description,
        is_complete=True,
        is_final=False,
    )


def build(
    annotations: Sequence[Mapping[str, Any]],
    sources: Mapping[str, Path],
    *,
    voi: Mapping[str, float] | None,
    series_images: Mapping[str, Sequence[Path]],
    observer: str,
    new_path: Any,
) -> tuple[list[Path], SavedReview]:
    """Build the SR and the presentation states; write each as a Part 10 file at ``new_path()``.

    ``sources``: SOP instance UID -> its stored file, for every annotated instance.
    ``series_images``: series UID -> the files of its images the presentation state applies to
    (the annotated series, and the series on screen for the window/level).
    """
    import highdicom as hd
    import numpy as np
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut
    from pydicom.uid import generate_uid

    # highdicom warns about a one-part person name quoting it: the patient's name must not
    # reach a log (filters are process-wide; an identical one is replaced, not added again)
    warnings.filterwarnings("ignore", message=_NAME_WARNING, category=UserWarning)
    table = _codes()
    datasets: dict[str, Dataset] = {}
    headers: dict[Path, Dataset] = {}

    def header(path: Path) -> Dataset:
        if path not in headers:
            headers[path] = dcmread(path, stop_before_pixels=True)
        return headers[path]

    groups = []
    figures: list[tuple[_Figure, Dataset, int | None]] = []
    for item in annotations:
        path = sources[item["instance"]]
        if item["instance"] not in datasets:
            datasets[item["instance"]] = dcmread(path)
        ds = datasets[item["instance"]]
        frames = int(ds.get("NumberOfFrames") or 1)
        frame = int(item.get("frame", 1))
        if "PixelData" not in ds or frame > frames:
            raise AnnotationNotMeasurable("A measurement is not on an image.")
        pixels = None
        if item["tool"] in ("RectangleROI", "EllipticalROI", "Probe"):
            try:
                array = ds.pixel_array
            except Exception:  # no decoder for its syntax: the shape without its mean
                logger.warning("review save: pixels not decoded", extra={"sop": item["instance"]})
            else:
                array = array[frame - 1] if frames > 1 else array
                if array.ndim == 2:
                    pixels = np.asarray(apply_modality_lut(array, ds), dtype=float)
        figure = _figure(item, ds, pixels)
        frame_number = frame if frames > 1 else None
        figures.append((figure, ds, frame_number))
        source = hd.sr.SourceImageForRegion.from_source_image(
            ds, referenced_frame_numbers=None if frame_number is None else [frame_number]
        )
        source_measured = hd.sr.SourceImageForMeasurement.from_source_image(
            ds, referenced_frame_numbers=None if frame_number is None else [frame_number]
        )
        region = hd.sr.ImageRegion(
            graphic_type=figure.graphic_type,
            graphic_data=figure.points,
            source_image=source,
            pixel_origin_interpretation="FRAME" if frame_number is not None else None,
        )
        measurements = [
            hd.sr.Measurement(
                name=table[name],
                value=value,
                unit=_unit(unit, table),
                referenced_images=[source_measured],
            )
            for name, value, unit in figure.values
        ]
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(prefix=None), identifier=f"{figure.tool} {figure.uid}"
                ),
                referenced_region=region,
                measurements=measurements,
            )
        )
    sr_series = generate_uid(prefix=None)
    sr = measurement_report(
        list(datasets.values()),
        groups,
        procedure=table["procedure"],
        observer=observer,
        series_uid=sr_series,
        description="Review measurements",
    )
    gsps_series = generate_uid(prefix=None)
    states = []
    by_series: dict[str, list[tuple[_Figure, Dataset, int | None]]] = {}
    for entry in figures:
        by_series.setdefault(str(entry[1].SeriesInstanceUID), []).append(entry)
    for series_uid in series_images:
        by_series.setdefault(series_uid, [])
    for number, (series_uid, entries) in enumerate(sorted(by_series.items()), start=1):
        states.append(
            _presentation_state(
                entries,
                [header(p) for p in series_images.get(series_uid, ())],
                voi,
                gsps_series,
                number,
            )
        )
    written = []
    for ds in [sr, *states]:
        ds.SpecificCharacterSet = "ISO_IR 192"  # names in Chinese: UTF-8
        path = new_path()
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written, SavedReview(
        study_uid=str(sr.StudyInstanceUID),
        sr=str(sr.SOPInstanceUID),
        sr_series=sr_series,
        presentation_states=tuple(str(s.SOPInstanceUID) for s in states),
        gsps_series=gsps_series,
        measurements=len(figures),
    )


def _presentation_state(
    entries: Sequence[tuple[_Figure, Dataset, int | None]],
    images: Sequence[Dataset],
    voi: Mapping[str, float] | None,
    series_uid: str,
    number: int,
) -> Dataset:
    """One series' GSPS: the measurements drawn on their images, the window/level on all."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    annotated = {str(ds.SOPInstanceUID): ds for _, ds, _ in entries}
    size = None
    if entries:
        size = (int(entries[0][1].Rows), int(entries[0][1].Columns))
    referenced = dict(annotated)
    for ds in images:  # the same size only: one presentation state, one displayed area
        if size is None:
            size = (int(ds.Rows), int(ds.Columns))
        if (int(ds.Rows), int(ds.Columns)) == size:
            referenced.setdefault(str(ds.SOPInstanceUID), ds)
    layer = hd.pr.GraphicLayer(layer_name="MEASUREMENTS", order=1)
    annotations = []
    grouped: dict[tuple[str, int | None], list[_Figure]] = {}
    for figure, ds, frame in entries:
        grouped.setdefault((str(ds.SOPInstanceUID), frame), []).append(figure)
    for (uid, frame), items in grouped.items():
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[annotated[uid]],
                graphic_layer=layer,
                referenced_frame_number=frame,
                graphic_objects=[
                    hd.pr.GraphicObject(
                        graphic_type=f.graphic_type,
                        graphic_data=f.points,
                        units="PIXEL",
                        tracking_id=f"{f.tool} {f.uid}"[:64],
                        tracking_uid=generate_uid(prefix=None),
                    )
                    for f in items
                ],
                text_objects=[
                    hd.pr.TextObject(
                        text_value=_label(f),
                        units="PIXEL",
                        anchor_point=(float(f.points[-1][0]), float(f.points[-1][1])),
                    )
                    for f in items
                    if f.values
                ],
            )
        )
    transformations = None
    if voi is not None:
        width = max(float(voi["upper"]) - float(voi["lower"]), 1.0)
        transformations = [
            hd.pr.SoftcopyVOILUTTransformation(
                window_center=float(voi["lower"]) + width / 2.0,
                window_width=width,
                window_explanation="REVIEW",
            )
        ]
    return hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=list(referenced.values()),
        series_instance_uid=series_uid,
        series_number=GSPS_SERIES_NUMBER,
        sop_instance_uid=generate_uid(prefix=None),
        instance_number=number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_label="REVIEW",
        content_description="Measurements and window of a shared review",
        graphic_annotations=annotations or None,
        graphic_layers=[layer] if annotations else None,
        voi_lut_transformations=transformations,
    )


# --- Saving (on the event loop) ---------------------------------------------------------------


async def save_review(
    store: ImagingStore,
    actor: Actor,
    study: ImagingStudy,
    annotations: Sequence[Mapping[str, Any]],
    *,
    voi: Mapping[str, float] | None,
    series: str | None,
    observer: str,
) -> SavedReview:
    """Build and store the review's SR and GSPS into ``study`` (the caller checked that
    ``actor`` may read it); each stored instance is audited by the store."""
    if not annotations:
        raise NothingToSave()
    rows = (await store.rows(study)).instances
    by_uid: dict[str, ImagingInstance] = {i.sop_instance_uid: i for i in rows}
    sources: dict[str, Path] = {}
    for item in annotations:
        row = by_uid.get(item["instance"])
        if row is None:
            raise InstanceNotFound("A measurement names an image that is not in the study.")
        if not row.frames:
            raise AnnotationNotMeasurable("A measurement is not on an image.")
        sources[row.sop_instance_uid] = store.path_of(study.id, row.id)
    wanted = {by_uid[a["instance"]].series_uid for a in annotations}
    if voi is not None and any(i.series_uid == series and i.frames for i in rows):
        wanted.add(str(series))  # the window applies to the series on screen too
    series_images = {
        s: [store.path_of(study.id, i.id) for i in rows if i.series_uid == s and i.frames]
        for s in wanted
    }
    try:
        paths, saved = await store.run(
            lambda: build(
                annotations,
                sources,
                voi=voi,
                series_images=series_images,
                observer=observer,
                new_path=store.new_incoming,
            )
        )
    except (ValueError, TypeError) as exc:  # highdicom refusing a shape: a code, no traceback
        logger.info("review save refused by the SR/GSPS builder: %s", type(exc).__name__)
        raise AnnotationNotMeasurable() from exc
    dest = Destination(
        institution_id=study.institution_id,
        visit_id=study.visit_id,
        patient_id=study.patient_id,
        source="review",
        expected_study_uid=study.study_uid,
    )
    try:
        for path in list(paths):
            await store.ingest(path, dest, actor)
            paths.remove(path)
    finally:
        for path in paths:  # not stored (a refusal or a cancellation): no stray file
            path.unlink(missing_ok=True)
    return saved
