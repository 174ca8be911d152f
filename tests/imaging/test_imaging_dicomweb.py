"""DICOMweb end to end with dicomweb-client: STOW-RS, QIDO-RS, WADO-RS (R20, R21, R24)."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
from dicom_data import local_file, series_from
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_frames
from sqlalchemy import select

from web.keys import DATABASE, IMAGING


async def test_stow_then_query_and_retrieve_byte_exact(world: World) -> None:
    """R20/R21: a CT series (native), a JPEG 2000 and an RLE instance go in over STOW-RS and
    come back with the very pixel bytes they had; every retrieval is in the audit chain (R24)."""
    ct = series_from("CT_small.dcm", 3)
    study_uid = ct[0].StudyInstanceUID
    j2k = series_from("693_J2KR.dcm", 1, study_uid=study_uid)
    rle = series_from("MR_small_RLE.dcm", 1, study_uid=study_uid)
    datasets = ct + j2k + rle
    doctor = client(world.stow_url, world.doctor)
    answer = await off_loop(doctor.store_instances, datasets)
    assert len(answer.ReferencedSOPSequence) == 5
    assert "FailedSOPSequence" not in answer

    reader = client(world.dicomweb, world.doctor)
    studies = await off_loop(reader.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in studies] == [study_uid]
    assert studies[0]["00201208"]["Value"] == [5]  # NumberOfStudyRelatedInstances
    series = await off_loop(reader.search_for_series, study_uid)
    assert len(series) == 3
    instances = await off_loop(reader.search_for_instances, study_uid, ct[0].SeriesInstanceUID)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(
        ds.SOPInstanceUID for ds in ct
    )

    for sent in datasets:
        got = await off_loop(
            reader.retrieve_instance, study_uid, sent.SeriesInstanceUID, sent.SOPInstanceUID
        )
        assert got.SOPInstanceUID == sent.SOPInstanceUID
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert bytes(got.PixelData) == bytes(sent.PixelData)  # byte-exact
        frames = await off_loop(
            reader.retrieve_instance_frames,
            study_uid,
            sent.SeriesInstanceUID,
            sent.SOPInstanceUID,
            frame_numbers=[1],
            media_types=(("application/octet-stream", "*"),)
            if not sent.file_meta.TransferSyntaxUID.is_compressed
            else None,
        )
        expected = (
            bytes(sent.PixelData)[: len(frames[0])]
            if not sent.file_meta.TransferSyntaxUID.is_compressed
            else next(generate_frames(sent.PixelData, number_of_frames=1))
        )
        assert frames[0] == expected

    metadata = await off_loop(reader.retrieve_study_metadata, study_uid)
    assert len(metadata) == 5
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata)
    events = await imaging_events(world.server.app)
    stored = [e for e in events if e.action == "imaging.store" and e.result == "ok"]
    assert len(stored) == 5
    retrieved = [json.loads(e.details)["what"] for e in events if e.action == "imaging.retrieve"]
    assert retrieved.count("instances") == 5
    assert retrieved.count("frames") == 5
    assert "metadata" in retrieved and "qido.studies" in retrieved


async def test_media_types_are_exact_and_png_renders(world: World) -> None:
    """``application/dicom+json`` without a charset; multipart/related for instances; PNG."""
    ct = series_from("CT_small.dcm", 1)
    await off_loop(client(world.stow_url, world.doctor).store_instances, ct)
    ds = ct[0]
    base = (
        f"{world.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    headers = {"Authorization": f"Bearer {world.doctor.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{world.dicomweb}/studies") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/dicom+json"
        async with http.get(
            base, headers={"Accept": 'multipart/related; type="application/dicom"'}
        ) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith(
                'multipart/related; type="application/dicom"'
            )
        async with http.get(base + "/rendered", headers={"Accept": "image/png"}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png"
            image = Image.open(io.BytesIO(await r.read()))
            assert image.size == (ds.Columns, ds.Rows)
        async with http.get(base + "/frames/2") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "frame_not_found"
        async with http.get(f"{world.dicomweb}/studies?NoSuchKey=1") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "qido_invalid"
        async with http.get(f"{world.dicomweb}/studies/1.2.3/metadata") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "study_not_found"
    assert dcmread(local_file("CT_small.dcm")).Rows == ds.Rows


async def test_stow_to_a_study_refuses_another_studys_instance(world: World) -> None:
    """STOW-RS to /studies/{uid}: an instance of another study fails with its code; the same
    instance sent twice is kept once (a warning, not a failure)."""
    first = series_from("CT_small.dcm", 1)[0]
    other = series_from("MR_small.dcm", 1)[0]
    stow = client(world.stow_url, world.doctor)
    answer = await off_loop(stow.store_instances, [first], first.StudyInstanceUID)
    assert len(answer.ReferencedSOPSequence) == 1
    again = await off_loop(stow.store_instances, [first], first.StudyInstanceUID)
    assert "WarningReason" in again.ReferencedSOPSequence[0]
    try:
        await off_loop(stow.store_instances, [other], first.StudyInstanceUID)
    except Exception as exc:  # 409: every instance failed
        assert "409" in str(exc)
    else:
        raise AssertionError("another study's instance was stored")
    reader = client(world.dicomweb, world.doctor)
    instances = await off_loop(reader.search_for_instances, first.StudyInstanceUID)
    assert len(instances) == 1


async def _committed_retrievals(world: World, what: str) -> int:
    """Retrieval events already committed (read without flushing the writer's queue)."""
    from sqlalchemy import func, select

    from consult.models import AuditEvent
    from web.keys import DATABASE

    async with world.server.app[DATABASE].session() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == "imaging.retrieve",
                    AuditEvent.details.like(f'%"what":"{what}"%'),
                )
            )
            or 0
        )


async def test_r24_each_frame_and_rendering_is_in_the_chain_before_its_answer(
    world: World,
) -> None:
    """R24: the retrieval event of a frame or a rendering is committed before the response is
    sent (a process that dies after answering has logged the view). A rendering asked again is
    served from the render cache, same bytes, and audited all the same."""
    from web.keys import IMAGING

    ct = series_from("CT_small.dcm", 2)
    await off_loop(client(world.stow_url, world.doctor).store_instances, ct)
    cache = world.server.app[IMAGING].renders
    headers = {"Authorization": f"Bearer {world.doctor.token}"}
    pngs = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for n, ds in enumerate([ct[0], ct[1], ct[0], ct[0]], start=1):
            base = (
                f"{world.dicomweb}/studies/{ds.StudyInstanceUID}/series/"
                f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            )
            async with http.get(base + "/rendered", headers={"Accept": "image/png"}) as r:
                assert r.status == 200
                pngs.append(await r.read())
            assert await _committed_retrievals(world, "rendered") == n
            async with http.get(
                base + "/frames/1", headers={"Accept": "application/octet-stream"}
            ) as r:
                assert r.status == 200
                await r.read()
            assert await _committed_retrievals(world, "frames") == n
    assert pngs[0] == pngs[2] == pngs[3]  # (both instances hold the same pixels)
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)


async def test_r20_the_rows_layout_serves_frames_and_renderings_without_the_header(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each native instance stored over STOW-RS, and each instance of its de-identified copy
    (R37), keeps in its row where its pixel data is in its own file and how it renders
    (``consult.imaging.layout``); WADO-RS serves its frames and renderings from that row with
    the header never parsed, the same bytes as decoding the file. A compressed instance keeps
    none and is served as before."""
    from consult.imaging import render
    from consult.imaging.layout import read
    from consult.imaging.models import ImagingInstance, ImagingStudy

    ct = series_from("CT_small.dcm", 2)
    study_uid = ct[0].StudyInstanceUID
    rle = series_from("MR_small_RLE.dcm", 1, study_uid=study_uid)
    await off_loop(client(world.stow_url, world.doctor).store_instances, ct + rle)
    share = await world.doctor.ok(
        "POST", f"/imaging/studies/{study_uid}/shares", {"recipient_id": world.doctor_b.user_id}
    )
    store = world.server.app[IMAGING]
    async with world.server.app[DATABASE].session() as session:
        rows = (
            await session.execute(
                select(ImagingStudy, ImagingInstance).join(
                    ImagingInstance, ImagingInstance.study_id == ImagingStudy.id
                )
            )
        ).all()
    assert len(rows) == 6  # three instances, three copies
    expected = {}
    for study, instance in rows:
        path = store.path_of(study.id, instance.id)
        layout = read(instance.pixel_layout)
        if instance.transfer_syntax == rle[0].file_meta.TransferSyntaxUID:
            assert instance.pixel_layout is None
            continue
        assert layout is not None and layout.grey is not None and layout.frames == 1
        data = path.read_bytes()
        assert data[layout.offset : layout.offset + layout.frame_bytes] == ct[0].PixelData
        reader = world.doctor if study.study_uid == study_uid else world.doctor_b
        expected[(study.study_uid, instance.series_uid, instance.sop_instance_uid)] = (
            reader,
            render.render_decoded(path, 1),
        )
    assert len(expected) == 4 and {uid for uid, _, _ in expected} == {
        study_uid,
        share["copy_study_uid"],
    }

    def no_header(path: object) -> None:
        raise AssertionError("the header was parsed")

    monkeypatch.setattr(render, "read_header", no_header)
    monkeypatch.setattr(render, "load", no_header)
    render.native_layout.cache_clear()
    for (study, series, sop), (reader, png) in expected.items():
        base = f"{world.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
        headers = {"Authorization": f"Bearer {reader.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(base + "/rendered", headers={"Accept": "image/png"}) as r:
                assert r.status == 200 and await r.read() == png
            async with http.get(
                base + "/frames/1",
                headers={
                    "Accept": 'multipart/related; type="application/octet-stream"; '
                    "transfer-syntax=*"
                },
            ) as r:
                assert r.status == 200
                assert ct[0].PixelData in await r.read()
