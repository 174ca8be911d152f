"""The active-speaker event follows the loudest participant (audio-level header extension)."""

from __future__ import annotations

from client import pair
from peers import wait_for

LOUD, SOFT = 12000, 30  # about -8 dBov and -69 dBov


async def test_active_speaker_follows_the_loudest_participant(server):
    visit = await server.visit()
    doctor, patient = pair(server.url, visit)
    try:
        for p in (doctor, patient):
            await p.connect()
            await p.join()
            await p.publish(video=False)
        doctor.audio.amplitude, patient.audio.amplitude = LOUD, SOFT
        await wait_for(
            lambda: patient.speakers and patient.speakers[-1] == doctor.id,
            timeout=5,
            message=f"the doctor was not named: {patient.speakers}",
        )
        # the patient starts talking, the doctor falls silent
        doctor.audio.amplitude, patient.audio.amplitude = SOFT, LOUD
        await wait_for(
            lambda: doctor.speakers and doctor.speakers[-1] == patient.id,
            timeout=5,
            message=f"the patient was not named: {doctor.speakers}",
        )
        assert patient.speakers[-1] == patient.id  # everyone in the room hears the same event
        # both quiet: nobody is speaking
        doctor.audio.amplitude = patient.audio.amplitude = 0
        await wait_for(lambda: doctor.speakers[-1] is None, timeout=5)
        # the events did not flicker: each change was announced once
        changes = [
            s for i, s in enumerate(doctor.speakers) if i == 0 or s != doctor.speakers[i - 1]
        ]
        assert changes == doctor.speakers
    finally:
        for p in (doctor, patient):
            await p.close()
