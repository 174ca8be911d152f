"""Modalities and PACS send studies by C-STORE and ask by C-FIND (R20, R24): DCMTK's storescu
and findscu against our SCP.

The SCP belongs to the web application (configured by ``dicom_port`` and ``dicom_peers``); the
server is restarted on the same data with it switched on, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dicom_data import series_from, write_series
from harness import Server, skip_or_fail, start_server
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import make_world
from pydicom import dcmread
from pydicom.dataset import Dataset

from web.dicom_scp import SCP

AE = "CT_SCANNER"
AE_B = "PACS_B"
"""A PACS of the other (upstream) institution."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def storescu(port: int, files: list[Path], *options: str, calling: str = AE) -> int:
    process = await asyncio.create_subprocess_exec(
        "storescu",
        "-aet",
        calling,
        "-aec",
        "TELECONSULT",
        *options,
        "127.0.0.1",
        str(port),
        *[str(f) for f in files],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode


@contextlib.asynccontextmanager
async def running_scp(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Any, int]]:
    """A world whose server runs the SCP (restarted on the same data with it on, as an
    operator would), with ``settings`` beside the port and the peers."""
    if shutil.which("storescu") is None:
        skip_or_fail("DCMTK storescu is missing (apt-get install dcmtk)")
    first = await start_server(tmp_path)
    world = await make_world(first)
    await world.clinic.close()
    await first.stop()
    port = _free_port()
    server: Server = await start_server(
        tmp_path,
        dicom_port=port,
        dicom_peers={AE: world.clinic.institution_id, AE_B: world.institution_b},
        **settings,
    )
    world.server = server
    from apiclient import Api

    world.clinic.api = Api(server.url)
    for person in (world.doctor, world.other_doctor, world.nurse, world.patient, world.doctor_b):
        person.api = world.clinic.api
    try:
        yield world, port
    finally:
        await world.clinic.close()
        await server.stop()


@pytest.fixture
async def scp_world(tmp_path: Path) -> AsyncIterator[tuple[Any, int]]:
    async with running_scp(tmp_path) as found:
        yield found


async def findscu(
    port: int, out: Path, level: str, *keys: str, calling: str = AE
) -> tuple[int, str, list[Dataset]]:
    """Run DCMTK findscu (Study Root); the responses it extracted, in order."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    argv = ["findscu", "-v", "-S", "-aet", calling, "-aec", "TELECONSULT", "-X", "-od", str(out)]
    argv += ["-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        argv += ["-k", key]
    process = await asyncio.create_subprocess_exec(
        *argv,
        "127.0.0.1",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    answers = await asyncio.to_thread(lambda: [dcmread(f) for f in sorted(out.glob("rsp*.dcm"))])
    return process.returncode, output.decode(errors="replace"), answers


async def test_findscu_queries_studies_series_and_images_of_its_institution_R20_R24(
    scp_world, tmp_path: Path
) -> None:
    """C-FIND at the three Study Root levels answers what the AE's institution holds, with the
    keys asked for only; another institution's PACS sees none of it; a query without its
    hierarchical key is refused; each query is audited without the values it matched on."""
    if shutil.which("findscu") is None:
        skip_or_fail("DCMTK findscu is missing (apt-get install dcmtk)")
    world, port = scp_world
    native = series_from("CT_small.dcm", 4)
    study = native[0].StudyInstanceUID
    j2k = series_from("693_J2KR.dcm", 2, study_uid=study)
    for ds in native + j2k:
        ds.PatientID = "PID-CFIND-1"
    other = series_from("MR_small.dcm", 1)
    other[0].PatientID = "PID-OTHER"
    assert await storescu(port, write_series(native, tmp_path / "n")) == 0
    assert await storescu(port, write_series(j2k, tmp_path / "j"), "-xv") == 0
    assert await storescu(port, write_series(other, tmp_path / "o")) == 0

    code, output, found = await findscu(
        port,
        tmp_path / "f1",
        "STUDY",
        "PatientID=PID-CFIND*",
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "PatientName",
    )
    assert code == 0, output
    assert [str(d.StudyInstanceUID) for d in found] == [study]
    answer = found[0]
    assert answer.QueryRetrieveLevel == "STUDY" and answer.PatientID == "PID-CFIND-1"
    assert int(answer.NumberOfStudyRelatedInstances) == 6
    modalities = answer.ModalitiesInStudy
    assert ([modalities] if isinstance(modalities, str) else list(modalities)) == ["CT"]
    assert "PatientName" in answer  # asked for: present (the stored value)
    assert "PatientBirthDate" not in answer and "StudyDescription" not in answer  # not asked

    _, _, everything = await findscu(port, tmp_path / "f2", "STUDY", "StudyInstanceUID")
    assert len(everything) == 2
    code, output, series = await findscu(
        port,
        tmp_path / "f3",
        "SERIES",
        f"StudyInstanceUID={study}",
        "SeriesInstanceUID",
        "NumberOfSeriesRelatedInstances",
    )
    assert code == 0, output
    assert sorted(int(s.NumberOfSeriesRelatedInstances) for s in series) == [2, 4]
    code, output, images = await findscu(
        port,
        tmp_path / "f4",
        "IMAGE",
        f"StudyInstanceUID={study}",
        f"SeriesInstanceUID={native[0].SeriesInstanceUID}",
        "SOPInstanceUID",
    )
    assert code == 0, output
    assert sorted(str(i.SOPInstanceUID) for i in images) == sorted(
        str(d.SOPInstanceUID) for d in native
    )
    _, output, none = await findscu(port, tmp_path / "f5", "STUDY", "PatientID=NOBODY")
    assert none == []

    # the upstream institution's PACS: nothing of the clinic's studies
    _, _, foreign = await findscu(port, tmp_path / "f6", "STUDY", "StudyInstanceUID", calling=AE_B)
    assert foreign == []
    # a series query that names no study: refused with "unable to process", no traceback
    _, output, refused = await findscu(port, tmp_path / "f7", "SERIES", "SeriesInstanceUID")
    assert refused == [] and "Failed: UnableToProcess" in output, output
    assert world.server.app[SCP].found == 1 + 2 + 2 + 4

    events = await imaging_events(world.server.app)
    finds = [e for e in events if e.action == "imaging.retrieve" and e.source_ip in (AE, AE_B)]
    assert len(finds) == 6 and {e.actor_role for e in finds} == {"modality"}
    assert all("PID-CFIND" not in json.dumps(e.details) for e in finds)


async def test_storescu_sends_series_native_and_compressed(scp_world, tmp_path: Path) -> None:
    """A multi-slice CT series (native), a JPEG 2000 and an RLE series arrive by C-STORE, join
    the visit named by their Accession Number, and come back over WADO-RS byte for byte."""
    world, port = scp_world
    native = series_from("CT_small.dcm", 6)
    study = native[0].StudyInstanceUID
    j2k = series_from("693_J2KR.dcm", 3, study_uid=study)
    rle = series_from("MR_small_RLE.dcm", 2, study_uid=study)
    everything = native + j2k + rle
    for ds in everything:
        ds.AccessionNumber = world.visit_id  # as the modality worklist gave it
    assert await storescu(port, write_series(native, tmp_path / "native")) == 0
    assert await storescu(port, write_series(j2k, tmp_path / "j2k"), "-xv") == 0
    assert await storescu(port, write_series(rle, tmp_path / "rle"), "-xr") == 0
    assert world.server.app[SCP].stored == 11

    reader = client(world.server.url + "/api/v1/dicomweb", world.doctor)
    studies = await off_loop(reader.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in studies] == [study]
    assert len(await off_loop(reader.search_for_series, study)) == 3
    for sent in (native[0], native[5], j2k[1], rle[1]):
        got = await off_loop(
            reader.retrieve_instance, study, sent.SeriesInstanceUID, sent.SOPInstanceUID
        )
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert bytes(got.PixelData) == bytes(sent.PixelData)
    events = await imaging_events(world.server.app)
    stored = [e for e in events if e.action == "imaging.store" and e.result == "ok"]
    assert len(stored) == 11 and {e.actor_role for e in stored} == {"modality"}
    assert {e.source_ip for e in stored} == {AE}


def _eventfds() -> int:
    """Event descriptors this process holds (one for each association's DUL thread)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in list(fds.iterdir()):
        try:
            count += "eventfd" in os.readlink(fd)
        except OSError:
            pass  # closed meanwhile
    return count


async def test_association_threads_wake_for_their_work_and_leave_nothing_behind(
    scp_world, tmp_path: Path
) -> None:
    """Each association's DUL thread waits on an eventfd of its own (web/dicom_reactor.py)
    instead of sleeping its 1 ms turns, and closes it when the association ends; the
    responses it sends (encoded directly) are what storescu expects. R20: every instance is
    stored through the next file made ready for it, and no ended association leaves one."""
    import pynetdicom.association
    import pynetdicom.dul

    from web.dicom_reactor import _WakingTime
    from web.keys import IMAGING

    world, port = scp_world
    assert isinstance(pynetdicom.dul.time, _WakingTime)
    assert isinstance(pynetdicom.association.time, _WakingTime)
    before = _eventfds()
    files = write_series(series_from("CT_small.dcm", 40), tmp_path / "s")
    sending = asyncio.create_task(storescu(port, files))
    seen = before
    while not sending.done() and seen <= before:  # polled while the association lasts
        seen = max(seen, _eventfds())
        await asyncio.sleep(0.005)
    assert await sending == 0
    assert seen == before + 1, (before, seen)
    assert world.server.app[SCP].stored == 40
    assert world.server.app[SCP].next_files.taken == 39  # all but the first made ahead
    for _ in range(3):  # more associations, one after the other
        assert await storescu(port, files[:2]) == 0
    deadline = time.monotonic() + 10
    while _eventfds() > before:  # each DUL thread closes its own as it ends
        assert time.monotonic() < deadline, (before, _eventfds())
        await asyncio.sleep(0.02)
    # and nothing of an ended association is kept (its last message was 0.5 MB), nor the
    # file each one had made ready for its next instance (web.dicom_scp.NextFiles)
    while _live_duls():
        assert time.monotonic() < deadline, _live_duls()
        await asyncio.sleep(0.02)
    scp = world.server.app[SCP]
    while scp.next_files.waiting or list(world.server.app[IMAGING].incoming.iterdir()):
        assert time.monotonic() < deadline, scp.next_files.waiting
        await asyncio.sleep(0.02)


def _live_duls() -> int:
    from pynetdicom.dul import DULServiceProvider

    gc.collect()
    return sum(isinstance(o, DULServiceProvider) for o in gc.get_objects())


async def test_unlisted_ae_is_refused_and_unlinked_study_stays_with_nurses(
    scp_world, tmp_path: Path
) -> None:
    """An AE title not in ``dicom_peers`` cannot associate; a study no visit claims is seen by
    the institution's nurses, not by a doctor."""
    world, port = scp_world
    series = series_from("CT_small.dcm", 2)
    files = write_series(series, tmp_path / "s")
    assert await storescu(port, files, calling="INTRUDER") != 0
    assert world.server.app[SCP].stored == 0
    assert await storescu(port, files) == 0
    doctor = client(world.server.url + "/api/v1/dicomweb", world.doctor)
    assert await off_loop(doctor.search_for_studies) == []
    nurse = client(world.server.url + "/api/v1/dicomweb", world.nurse)
    found = await off_loop(nurse.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in found] == [series[0].StudyInstanceUID]

    # a later instance of the study names the visit: the study joins it, its doctor sees it
    # (the row is updated in the ingest's transaction; cached decisions are dropped)
    later = series_from("CT_small.dcm", 1, study_uid=series[0].StudyInstanceUID)
    later[0].AccessionNumber = world.visit_id
    assert await storescu(port, write_series(later, tmp_path / "later")) == 0
    found = await off_loop(doctor.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in found] == [series[0].StudyInstanceUID]
    assert len(await off_loop(doctor.search_for_instances, series[0].StudyInstanceUID)) == 3


async def test_a_message_over_the_size_limit_ends_the_association_as_it_arrives(
    scp_world, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom holds a whole message in memory before a handler sees it: past
    ``max_instance_bytes`` (+ 1 MiB) the association's socket stops reading and the association
    ends (``dicom_too_large`` in the log), instead of the server buffering whatever a peer
    sends; the SCP then takes the next association as before. pynetdicom reads its PDUs
    through the bounded ``recv`` (an upgrade that stops doing so fails here)."""
    from web import dicom_scp
    from web.dicom_limits import MESSAGE_SLACK, RECV_CHUNK, BoundedRecv
    from web.keys import IMAGING

    world, port = scp_world
    store = world.server.app[IMAGING]
    big = series_from("693_UNCI.dcm", 1)
    big[0].Rows = big[0].Columns = 1024
    big[0].PixelData = bytes(2 * 1024 * 1024)  # a 2 MB dataset
    small = series_from("CT_small.dcm", 1)
    seen: list[BoundedRecv] = []

    released: list[int] = []  # what each held when it gave its count back

    class Seen(BoundedRecv):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            seen.append(self)

        def release(self) -> None:
            released.append(self.pending)
            super().release()

    monkeypatch.setattr(dicom_scp, "BoundedRecv", Seen)
    scp = world.server.app[SCP]
    store.max_instance_bytes = 64 * 1024
    cap = 64 * 1024 + MESSAGE_SLACK
    try:
        with caplog.at_level("WARNING", logger="web.dicom_scp"):
            assert await storescu(port, write_series(big, tmp_path / "big")) != 0
        assert scp.stored == 0
        assert [r for r in caplog.records if "dicom_too_large" in r.getMessage()]
        # it stopped reading at the cap, long before the 0.5 MB dataset was in memory
        assert len(seen) == 1 and isinstance(seen[0], BoundedRecv)
        # what it held went back to the SCP's budget when the association ended (the
        # association request's own bytes went back when it was read)
        await _until(lambda: scp.receiving.held == 0)
        assert seen[0].stopped and cap < released[-1] <= cap + RECV_CHUNK
        assert len(released) == 2 and 0 < released[0] < 64 * 1024
        # a message under the cap goes through on a new association
        store.max_instance_bytes = 512 * 1024 * 1024
        assert await storescu(port, write_series(small, tmp_path / "small")) == 0
        assert scp.stored == 1
        # the count restarted when the handler took the message: only the release came after
        assert seen[-1].pending < 1024 and not seen[-1].stopped
        await _until(lambda: scp.receiving.held == 0)
    finally:
        store.max_instance_bytes = 512 * 1024 * 1024


async def test_r33_a_message_that_trickles_in_ends_its_association_an_idle_one_stays(
    scp_world, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R33: pynetdicom bounds only the silence between two reads (60 s), so a peer sending a
    byte a minute would hold an association slot for ever (ten of them, every modality out).
    Past a grace from its first byte, a message must have arrived at a floor rate on average:
    one trickled in is cut (``dicom_too_slow``), its bytes go back to the budget, and the SCP
    takes the next association as before. The wait between two messages does not count: an
    association idle between two C-ECHOs stays."""
    from pynetdicom import AE as Entity
    from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

    from consult.imaging import store as imaging_store

    world, port = scp_world
    monkeypatch.setattr(imaging_store, "SLOW_GRACE_S", 0.5)
    monkeypatch.setattr(imaging_store, "MIN_RECEIVE_RATE", 20_000)
    scp = world.server.app[SCP]

    def associate() -> Any:
        entity = Entity(ae_title=AE)
        entity.add_requested_context(Verification)
        entity.add_requested_context(CTImageStorage)
        assoc = entity.associate("127.0.0.1", port, ae_title="TELECONSULT")
        assert assoc.is_established
        return assoc

    def idle() -> tuple[int, int, bool]:
        assoc = associate()
        try:
            first = assoc.send_c_echo()
            time.sleep(1.0)  # twice the grace between two messages: the pacing under test
            second = assoc.send_c_echo()
            return int(first.Status), int(second.Status), bool(assoc.is_established)
        finally:
            assoc.release()

    def trickle() -> tuple[int, int, float]:
        """A P-DATA-TF PDU (a command fragment) whose body comes at ~1 KB/s; the bytes sent
        when the server cut it, of how many, and after how long."""
        assoc = associate()
        context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage)
        raw = assoc.dul.socket.socket
        body = bytes(3994)
        pdv = struct.pack(">LBB", len(body) + 2, context.context_id, 0x01) + body
        pdu = struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv
        started = time.monotonic()
        raw.sendall(pdu[:200])
        sent = 200
        try:
            while assoc.is_established and sent < len(pdu) and time.monotonic() < started + 10:
                time.sleep(0.05)  # 50 bytes every 50 ms: the pacing under test
                raw.sendall(pdu[sent : sent + 50])
                sent += 50
        except OSError:  # the server shut the connection
            pass
        finally:
            assoc.abort()
        return sent, len(pdu), time.monotonic() - started

    with caplog.at_level("WARNING", logger="web.dicom_scp"):
        assert await off_loop(idle) == (0, 0, True)
        assert not [r for r in caplog.records if "dicom_too_slow" in r.getMessage()]
        sent, whole, took = await off_loop(trickle)
    assert sent < whole and 0.5 <= took < 5, (sent, whole, took)
    assert [r for r in caplog.records if "dicom_too_slow" in r.getMessage()]
    await _until(lambda: scp.receiving.held == 0)
    # a sender at full speed is not touched by the floor
    assert await storescu(port, write_series(series_from("CT_small.dcm", 2), tmp_path / "s")) == 0
    assert scp.stored == 2


async def _until(condition: Any, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (pynetdicom's threads change what it reads) until true or fail."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_messages_being_received_share_one_memory_budget(
    scp_world, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each association may hold one message of up to ``max_instance_bytes``, and all of them
    together at most two such messages: with the budget held by others (here taken by hand,
    as peers that never finish sending would hold it), a new message is refused as it arrives
    (``server_busy`` in the log, the association ended), holding nothing afterwards; once the
    budget is free the same instance is stored."""
    from web.keys import IMAGING

    world, port = scp_world
    scp = world.server.app[SCP]
    store = world.server.app[IMAGING]
    limit = 2 * (store.max_instance_bytes + (1 << 20))
    series = series_from("693_UNCI.dcm", 1)  # 0.5 MB
    files = write_series(series, tmp_path / "in")
    others = limit - 200 * 1024
    assert scp.receiving.take(others)
    try:
        with caplog.at_level("WARNING", logger="web.dicom_scp"):
            assert await storescu(port, files) != 0
        assert [r for r in caplog.records if "server_busy" in r.getMessage()]
        assert scp.stored == 0 and scp.receiving.refused >= 1
        await _until(lambda: scp.receiving.held == others)
    finally:
        scp.receiving.give(others)
    assert await storescu(port, files) == 0
    assert scp.stored == 1
    await _until(lambda: scp.receiving.held == 0)


def _associate(port: int, *contexts: Any, calling: str = AE) -> Any:
    """A pynetdicom association to our SCP (blocking), established or not."""
    from pynetdicom import AE as Entity
    from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

    entity = Entity(ae_title=calling)
    for context in contexts or (Verification, CTImageStorage):
        entity.add_requested_context(context)
    return entity.associate("127.0.0.1", port, ae_title="TELECONSULT")


def _wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` from a test's worker thread until true or fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def test_r33_one_address_holds_at_most_its_share_of_the_association_slots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """R33: pynetdicom bounds only the total of associations (10), which one host could take
    whole, every modality out. One peer address holds at most
    ``dicom_max_associations_per_address``: the next is rejected as DICOM says for a local
    limit (transient: the sender may try again), before any negotiation; a slot given back
    (released, aborted) is free again at once, and the others go on working."""
    async with running_scp(tmp_path, dicom_max_associations_per_address=2) as (world, port):
        scp = world.server.app[SCP]

        def crowd() -> tuple[tuple[int, int, int], list[int], bool]:
            first, second = _associate(port), _associate(port)
            assert first.is_established and second.is_established
            third = _associate(port)
            assert third.is_rejected and not third.is_established
            answer = third.acceptor.primitive
            rejection = (answer.result, answer.result_source, answer.diagnostic)
            statuses = [int(first.send_c_echo().Status), int(second.send_c_echo().Status)]
            first.release()
            _wait_for(lambda: scp.slots.held("127.0.0.1") == 1)
            second.abort()
            _wait_for(lambda: scp.slots.held("127.0.0.1") == 0)
            again = [_associate(port), _associate(port)]
            established = all(a.is_established for a in again)
            statuses += [int(a.send_c_echo().Status) for a in again]
            for a in again:
                a.release()
            return rejection, statuses, established

        with caplog.at_level("WARNING", logger="web.dicom_scp"):
            rejection, statuses, established = await off_loop(crowd)
        assert rejection == (0x02, 0x03, 0x02)  # rejected-transient, provider, local limit
        assert statuses == [0, 0, 0, 0] and established
        assert scp.slots.refused == 1
        assert [r for r in caplog.records if "dicom_too_many_associations" in r.getMessage()]
        await _until(lambda: scp.slots.held() == 0)

        # eight at once from the same address: exactly two get in, whatever the race
        def at_once() -> Any:
            return _associate(port)

        crowd_at_once = await asyncio.gather(*(off_loop(at_once) for _ in range(8)))
        try:
            assert sum(a.is_established for a in crowd_at_once) == 2
            assert sum(a.is_rejected for a in crowd_at_once) == 6
        finally:
            for a in crowd_at_once:
                if a.is_established:
                    await off_loop(a.release)
        await _until(lambda: scp.slots.held() == 0)
        assert scp.slots.refused == 7


async def test_r33_an_association_that_only_echoes_is_ended_one_that_works_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """R33: silence is pynetdicom's network timeout, which a C-ECHO resets: a peer echoing
    every minute held its slot for ever. An association with no C-STORE nor C-FIND for
    ``dicom_idle_s`` is aborted, however often it echoes; one storing beside it all the while
    is not touched, and its instances are all stored."""
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    series = series_from("CT_small.dcm", 12)
    async with running_scp(tmp_path, dicom_idle_s=1) as (world, port):
        scp = world.server.app[SCP]

        def echoing() -> tuple[bool, float]:
            assoc = _associate(port)
            started = time.monotonic()
            try:
                while assoc.is_established and time.monotonic() < started + 8:
                    assoc.send_c_echo()
                    time.sleep(0.2)  # well inside the idle limit: the pacing under test
            finally:
                aborted = bool(assoc.is_aborted)
                assoc.abort()
            return aborted, time.monotonic() - started

        def storing() -> tuple[list[int], bool]:
            assoc = _associate(port, CTImageStorage)
            statuses = []
            try:
                for ds in series:
                    statuses.append(int(assoc.send_c_store(ds).Status))
                    time.sleep(0.25)  # 3 s of work in all, an instance every quarter second
                return statuses, bool(assoc.is_established)
            finally:
                assoc.release()

        with caplog.at_level("INFO", logger="web.dicom_scp"):
            (aborted, took), (statuses, kept) = await asyncio.gather(
                off_loop(echoing), off_loop(storing)
            )
        assert aborted and 1 <= took < 4, (aborted, took)
        assert statuses == [0] * len(series) and kept
        assert scp.stored == len(series) and scp.slots.ended_idle == 1
        assert [r for r in caplog.records if "dicom_idle" in r.getMessage()]
        await _until(lambda: scp.slots.held() == 0)


async def test_r33_a_trickled_association_request_is_cut_and_frees_its_slot(
    scp_world, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R33: the A-ASSOCIATE-RQ is a message like any other: one whose bytes trickle in is cut
    by the same rate floor (``dicom_too_slow``), nothing of it is held, and the SCP takes the
    next association as before."""
    from consult.imaging import store as imaging_store

    world, port = scp_world
    monkeypatch.setattr(imaging_store, "SLOW_GRACE_S", 0.5)
    monkeypatch.setattr(imaging_store, "MIN_RECEIVE_RATE", 20_000)
    scp = world.server.app[SCP]

    def trickle() -> tuple[int, float]:
        """An A-ASSOCIATE-RQ header declaring 400 bytes, then 10 bytes every 50 ms."""
        started = time.monotonic()
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(struct.pack(">BBL", 0x01, 0, 400))
            try:
                while sent < 400 and time.monotonic() < started + 10:
                    time.sleep(0.05)  # 200 bytes/s: the pacing under test
                    raw.sendall(bytes(10))
                    sent += 10
                raw.settimeout(5)
                assert raw.recv(1024) == b""  # closed by the server
            except OSError:  # reset by the server
                pass
        return sent, time.monotonic() - started

    with caplog.at_level("WARNING", logger="web.dicom_scp"):
        sent, took = await off_loop(trickle)
    assert sent < 400 and 0.5 <= took < 5, (sent, took)
    assert [r for r in caplog.records if "dicom_too_slow" in r.getMessage()]
    await _until(lambda: scp.receiving.held == 0 and scp.slots.held() == 0)
    assoc = await off_loop(_associate, port)
    try:
        assert assoc.is_established and int((await off_loop(assoc.send_c_echo)).Status) == 0
    finally:
        await off_loop(assoc.release)
