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


__all__ = ["get_testdata_file", "local_file", "part10", "series_from", "write_series"]
