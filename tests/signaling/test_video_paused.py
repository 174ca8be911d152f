"""A subscriber whose network cannot carry a participant's video is told so, and told again when
it comes back (R1: the page shows "poor network, video paused" on that tile only)."""

from __future__ import annotations

import contextlib
import time

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from client import Participant, sees, start_call
from peers import wait_for


async def _report_estimate(participant: Participant, bitrate: int, until, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Send ``bitrate`` as the subscriber's REMB about every 300 ms until ``until()``."""
    assert participant.sub is not None
    receiver = next(t.receiver for t in participant.sub.pc.getTransceivers() if t.kind == "video")
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # we speak for it
    ssrcs = list(receiver._RTCRtpReceiver__remote_streams)
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not met in time"
        await receiver._send_rtcp(
            RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
            )
        )
        with contextlib.suppress(AssertionError):
            await wait_for(until, timeout=0.3)


async def test_r1_the_subscriber_is_told_when_its_video_of_a_participant_stops_and_resumes(
    server,
):
    visit = await server.visit()
    doctor, patient = await start_call(server.url, visit)
    try:
        # the doctor's video is served first on the patient's poor link (a companion's last)
        dump = await server.media.rooms[0].dump()
        assert dump["priorities"] == {doctor.id: 3, patient.id: 2}
        await _report_estimate(patient, 1_000, lambda: bool(patient.video_paused), timeout=20)
        assert patient.video_paused == [{"participant": doctor.id, "paused": True}]
        frames = len(patient.received_from(doctor.id, "video").counters)  # type: ignore[union-attr]
        await _report_estimate(
            patient, 50_000_000, lambda: len(patient.video_paused) >= 2, timeout=15
        )
        assert patient.video_paused[-1] == {"participant": doctor.id, "paused": False}
        await wait_for(lambda: sees(patient, doctor, frames + 10), timeout=10)
        assert doctor.video_paused == []  # only the one whose network it is
    finally:
        for p in (doctor, patient):
            await p.close()
