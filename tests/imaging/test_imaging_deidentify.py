"""A study that crosses institutions is de-identified (R37): PS3.15 Annex E and our rules."""

from __future__ import annotations

import json
import re

import aiohttp
from dicom_data import part10, series_from
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from consult.imaging.deidentify import ANNEX_E_VERSION, deidentify, uid_mapper

KEEP = {(0x0020, 0x000D), (0x0020, 0x000E), (0x0008, 0x0018)}  # the UIDs a study needs
MARKER = re.compile(rb"MARKER|MK\d{6}|1\.2\.3\.4444\.|1\.2\.3\.5555\.|19770707")
"""Text markers, found in the bytes; numbers are checked by value (:func:`numbers_survive`)."""
NUMERIC = ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD")


def annex_e_tags() -> list[tuple[int, int]]:
    """Every single attribute of the Annex E table (ranges excepted), group 0002 aside."""
    table = dicom_anonymization_database_selector(ANNEX_E_VERSION)
    tags = {tuple(t) for key, ts in table.items() if key != "ALL_TAGS" for t in ts if len(t) == 2}
    return sorted(t for t in tags if t[0] not in (0x0000, 0x0002) and t not in KEEP)  # type: ignore[misc]


def marker(vr: str, n: int) -> object:
    values: dict[str, object] = {
        "AE": f"MK{n:06d}",
        "CS": f"MARKER{n}"[:16],
        "UI": f"1.2.3.4444.{n}",
        "DA": "19770707",
        "TM": "070707",
        "DT": "19770707070707",
        "AS": "077Y",
        "IS": str(770000 + n),
        "DS": str(770000 + n),
        "US": 7707,
        "SS": 7707,
        "UR": f"http://MARKER{n}.example",
    }
    if vr in values:
        return values[vr]
    if vr in ("SH", "LO", "LT", "ST", "UT", "UC", "PN"):
        return f"MARKER{n:05d}"
    if vr in ("UL", "SL", "FL", "FD"):
        return 770000 + n
    if vr in ("OB", "OW", "UN"):
        return b"MARKER%05d" % n + b"\x00"
    if vr == "SQ":
        item = Dataset()
        item.PatientName = f"MARKER{n:05d}"
        item.ReferencedSOPInstanceUID = f"1.2.3.5555.{n}"
        return Sequence([item])
    return None


def plant(ds: Dataset) -> dict[tuple[int, int], object]:
    """A marker in every Annex E attribute, and private tags; returns the numeric ones."""
    planted = 0
    numbers: dict[tuple[int, int], object] = {}
    for n, tag in enumerate(annex_e_tags(), start=1):
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        value = marker(vr, n)
        if value is None:
            continue
        if tag in ds:
            del ds[tag]
        ds.add_new(tag, vr, value)
        planted += 1
        if vr in NUMERIC:
            numbers[tag] = value
    ds.add_new(0x00091010, "LO", "MARKERPRIV")
    ds.private_block(0x0011, "ACME MARKER", create=True).add_new(0x01, "LO", "MARKERPRIV2")
    assert planted >= 600
    return numbers


def numbers_survive(ds: Dataset, numbers: dict[tuple[int, int], object]) -> list[object]:
    return [tag for tag, value in numbers.items() if tag in ds and str(ds[tag].value) == str(value)]


def test_no_annex_e_marker_survives_the_profile() -> None:
    """R37: all of the Annex E table's attributes carry a marker; none survives (nested ones
    and private tags included); (0012,0062) is YES."""
    ds = series_from("CT_small.dcm", 1)[0]
    numbers = plant(ds)
    original = {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    deidentify(ds, uid_mapper(b"k" * 32))
    data = part10(ds)
    assert MARKER.findall(data) == []
    assert numbers_survive(ds, numbers) == []
    assert not any(uid.encode() in data for uid in original)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert not any(element.tag.is_private for element in ds.iterall())


async def test_shared_study_reaches_the_other_institution_de_identified(world: World) -> None:
    """R37: the other institution's doctor retrieves only a de-identified copy: no marker in
    anything it can retrieve, UIDs remapped and consistent within the study, burned-in text
    flagged; it cannot reach the original, and the sharing institution's other doctor cannot
    reach the copy."""
    series = series_from("CT_small.dcm", 3)
    numbers = {}
    for ds in series:
        numbers = plant(ds)  # the same tags and values in each
    # Instance 2 refers to instance 1: the reference must follow the remapping.
    ref = Dataset()
    ref.ReferencedSOPClassUID = series[0].SOPClassUID
    ref.ReferencedSOPInstanceUID = series[0].SOPInstanceUID
    series[1].ReferencedImageSequence = Sequence([ref])
    series[2].BurnedInAnnotation = "YES"
    original_uids = {series[0].StudyInstanceUID, series[0].SeriesInstanceUID} | {
        ds.SOPInstanceUID for ds in series
    }
    stored = await off_loop(client(world.stow_url, world.doctor).store_instances, series)
    assert len(stored.ReferencedSOPSequence) == 3

    study = series[0].StudyInstanceUID
    share = await world.doctor.ok(
        "POST", f"/imaging/studies/{study}/shares", {"recipient_id": world.doctor_b.user_id}
    )
    assert share["instances"] == 3 and share["burned_in_flagged"] == 1 and share["created"]
    again = await world.doctor.ok(
        "POST", f"/imaging/studies/{study}/shares", {"recipient_id": world.doctor_b.user_id}
    )
    assert again["copy_study_uid"] == share["copy_study_uid"] and not again["created"]
    copy_uid = share["copy_study_uid"]
    assert copy_uid != study

    reader = client(world.dicomweb, world.doctor_b)
    studies = await off_loop(reader.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in studies] == [copy_uid]
    retrieved: list[bytes] = [json.dumps(studies).encode()]
    copies = await off_loop(reader.retrieve_study, copy_uid)
    assert len(copies) == 3
    metadata = await off_loop(reader.retrieve_study_metadata, copy_uid)
    retrieved.append(json.dumps(metadata).encode())
    retrieved += [part10(ds) for ds in copies]
    for blob in retrieved:
        assert MARKER.findall(blob) == []
        assert not any(uid.encode() in blob for uid in original_uids)
    assert {ds.StudyInstanceUID for ds in copies} == {copy_uid}
    assert len({ds.SeriesInstanceUID for ds in copies}) == 1
    by_number = {int(ds.InstanceNumber): ds for ds in copies}
    assert (
        by_number[2].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        == by_number[1].SOPInstanceUID
    )
    assert all(ds.PatientIdentityRemoved == "YES" for ds in copies)
    assert all(numbers_survive(ds, numbers) == [] for ds in copies)
    assert by_number[3].BurnedInAnnotation == "YES"
    assert bytes(by_number[1].PixelData) == bytes(series[0].PixelData)

    headers = {"Authorization": f"Bearer {world.doctor_b.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{world.dicomweb}/studies/{study}/metadata") as r:
            assert r.status == 403
    headers = {"Authorization": f"Bearer {world.other_doctor.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{world.dicomweb}/studies/{copy_uid}/metadata") as r:
            assert r.status == 403
    events = await imaging_events(world.server.app)
    assert [e.action for e in events].count("imaging.share") == 1


async def test_share_refusals(world: World) -> None:
    """Only the visit's doctor shares, only with a doctor of another institution."""
    ds = series_from("CT_small.dcm", 1)[0]
    await off_loop(client(world.stow_url, world.doctor).store_instances, [ds])
    path = f"/imaging/studies/{ds.StudyInstanceUID}/shares"
    same = await world.doctor.call("POST", path, {"recipient_id": world.other_doctor.user_id})
    assert (same.status, same.code) == (422, "recipient_invalid")
    stranger = await world.other_doctor.call("POST", path, {"recipient_id": world.doctor_b.user_id})
    assert (stranger.status, stranger.code) == (403, "forbidden")
    nurse = await world.nurse.call("POST", path, {"recipient_id": world.doctor_b.user_id})
    assert nurse.status == 403
