"""Who may read a study (R24, R34, R37): a refusal is a 403 and is in the audit chain."""

from __future__ import annotations

import json

import aiohttp
from apiclient import Person
from dicom_data import series_from
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from sqlalchemy import select

from consult.models import AuditEvent
from web.api.limits import API_LIMITS, COSTLY, IMAGING, READ, WRITE, dicomweb_classes
from web.keys import DATABASE


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


async def test_r33_dicomweb_reads_spend_a_budget_of_their_own(world: World) -> None:
    """A viewer's frame fetches spend the imaging budget (3000 at once, then 100 a second), not
    the REST reads' one; past it, ``rate_limited`` with Retry-After and one audit summary; the
    same account's other reads go on; another reader is not affected. A STOW is a costly write."""
    assert dicomweb_classes("GET") == (IMAGING,)
    assert dicomweb_classes("POST") == (WRITE, COSTLY)
    assert IMAGING.burst > READ.burst  # a 500-slice CT opens in one go
    ds = series_from("CT_small.dcm", 1)[0]
    await off_loop(client(world.stow_url, world.doctor).store_instances, [ds])
    frame = (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    assert (await _get(world, world.doctor, frame))[0] == 200
    limits = world.server.app[API_LIMITS]
    frozen = limits.clock()
    limits.clock = lambda: frozen  # no refill while the test drains the bucket
    key = ("account", world.doctor.user_id)
    drained = 0
    while limits.take(key, (IMAGING,))[1] == 0:  # the viewer's burst, spent in-process
        drained += 1
    assert drained >= int(IMAGING.burst) - 1  # less the fetch above, if not yet refilled
    assert await _get(world, world.doctor, frame) == (429, "rate_limited")
    headers = {"Authorization": f"Bearer {world.doctor.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(world.dicomweb + frame) as r:
            assert r.status == 429 and r.headers.get("Retry-After") == "1"
    assert (await world.doctor.call("GET", "/me")).status == 200  # REST reads: own budget
    assert (await _get(world, world.nurse, frame))[0] == 200  # another account
    async with world.server.app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "api.rate_limited",
                AuditEvent.actor_id == world.doctor.user_id,
            )
        )
        summaries = list(rows.all())
    assert len(summaries) == 1, summaries
    details = json.loads(summaries[0].details or "{}")
    assert details["class"] == "imaging" and details["route"].startswith("dicomweb GET ")
