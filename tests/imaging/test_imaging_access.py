"""Who may read a study (R24, R34, R37): a refusal is a 403 and is in the audit chain."""

from __future__ import annotations

import json

import aiohttp
from apiclient import Person
from dicom_data import series_from
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World


async def _get(world: World, person: Person, path: str) -> tuple[int, str | None]:
    headers = {"Authorization": f"Bearer {person.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(world.dicomweb + path) as r:
            body = await r.read()
            code = None
            if r.content_type == "application/json":
                code = json.loads(body)["error"]["code"]
            return r.status, code


async def test_no_relationship_no_study_and_every_refusal_is_audited(world: World) -> None:
    """The other doctor of the institution and a doctor of another institution (nothing shared)
    get 403 on QIDO and WADO; the admin (no clinical role) too; each refusal is audited."""
    ds = series_from("CT_small.dcm", 1)[0]
    await off_loop(client(world.stow_url, world.doctor).store_instances, [ds])
    study = ds.StudyInstanceUID
    instance = f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    paths = [
        f"/studies?StudyInstanceUID={study}",
        f"/studies/{study}/series",
        f"/studies/{study}/metadata",
        instance,
        instance + "/frames/1",
        instance + "/rendered",
    ]
    app = world.server.app
    before = len(await imaging_events(app))
    for outsider in (world.other_doctor, world.doctor_b):
        for path in paths:
            assert await _get(world, outsider, path) == (403, "forbidden"), path
        # Listing all studies shows nothing of it (and refuses nothing).
        reader = client(world.dicomweb, outsider)
        assert await off_loop(reader.search_for_studies) == []
    for path in paths:
        assert (await _get(world, world.clinic.admin, path))[0] == 403
    events = (await imaging_events(app))[before:]
    denied = [e for e in events if e.result == "denied"]
    assert len(denied) == 3 * len(paths)
    assert {e.actor_id for e in denied} == {
        world.other_doctor.user_id,
        world.doctor_b.user_id,
        world.clinic.admin.user_id,
    }

    # Those with a relationship read it: the visit's doctor, its patient, a nurse of the
    # institution; each read is audited as a retrieval.
    for reader_person in (world.doctor, world.patient, world.nurse):
        for path in paths:
            assert (await _get(world, reader_person, path))[0] == 200, (reader_person.role, path)
    events = (await imaging_events(app))[before:]
    ok = [e for e in events if e.action == "imaging.retrieve" and e.result == "ok"]
    assert len(ok) >= 3 * len(paths)


async def test_stow_needs_the_visit(world: World) -> None:
    """Only staff who may act on the visit store into it; a patient may not store at all."""
    ds = series_from("CT_small.dcm", 1)[0]
    for outsider in (world.other_doctor, world.doctor_b, world.patient, world.clinic.admin):
        try:
            await off_loop(client(world.stow_url, outsider).store_instances, [ds])
        except Exception as exc:  # requests.HTTPError
            assert "403" in str(exc)
        else:
            raise AssertionError(f"{outsider.role} stored into another's visit")
    answer = await off_loop(client(world.stow_url, world.nurse).store_instances, [ds])
    assert len(answer.ReferencedSOPSequence) == 1
