"""R1-R9: the visit state machine (every transition, allowed and forbidden) and each visit rule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from consult_world import (
    SYSTEM,
    Org,
    Patienthood,
    Person,
    fresh_id_number,
    make_doctor,
    make_org,
    make_patient,
    make_person,
)
from sqlalchemy import select, update

from consult.actor import Actor
from consult.audit_verify import events_for, verify_chain
from consult.db import Database
from consult.documents import REFERRAL_REFUSAL, RISK_NOTICE
from consult.errors import (
    AlreadySigned,
    ConsentMismatch,
    ConsentRequired,
    DoctorBusy,
    DoctorOffline,
    EmergencyRefused,
    FirstVisitRefused,
    GuardianRequired,
    InvalidInput,
    InvalidTransition,
    NotAdmitted,
    NotAParticipant,
    PermissionDenied,
    PractitionerNotVerified,
    RoomNotFound,
    SlotNotFound,
    SlotUnavailable,
    VisitClosed,
    VisitExists,
)
from consult.identity import decide_guardian
from consult.models import AuditEvent, Patient, Visit, VisitMode, VisitState
from consult.patients import record_prior_diagnosis, register_patient
from consult.permissions import Role
from consult.practitioners import set_online, verify_practitioner
from consult.rooms import authenticate_join, enter, enter_visit_room, visit_room_id
from consult.schedule import add_slot, list_slots
from consult.sqltypes import new_id, utc_now
from consult.tokens import issue_join_token
from consult.visit_flow import (
    TRANSITIONS,
    StateChange,
    VisitEvent,
    acknowledge_referral_refusal,
    admit,
    book_visit,
    cancel_visit,
    check_in,
    doctor_queue,
    end_visit,
    get_visit_view,
    list_visits,
    on_state_change,
    refer_offline,
    send_back,
    sign_consent,
    transitions,
    visit_consents,
)

S, E = VisitState, VisitEvent


@dataclass(frozen=True)
class Scene:
    org: Org
    doctor: Person
    patient: Patienthood

    @property
    def p(self) -> Person:
        return self.patient.person


@pytest.fixture
async def scene(db: Database) -> Scene:
    org = await make_org(db)
    return Scene(org, await make_doctor(db, org), await make_patient(db, org))


async def _book(db: Database, scene: Scene, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "patient_id": scene.patient.record_id,
        "doctor_id": scene.doctor.user_id,
        "mode": "video",
        "condition_code": "I10",
    }
    arguments.update(overrides)
    return (await book_visit(db, scene.p.actor, **arguments)).id  # type: ignore[arg-type]


async def _sign(db: Database, scene: Scene, visit_id: str) -> None:
    await sign_consent(
        db,
        scene.p.actor,
        visit_id,
        document_version=RISK_NOTICE.version,
        document_digest=RISK_NOTICE.digest,
    )


async def _waiting(db: Database, scene: Scene) -> str:
    visit_id = await _book(db, scene)
    await _sign(db, scene, visit_id)
    await check_in(db, scene.p.actor, visit_id)
    return visit_id


async def _state(db: Database, visit_id: str) -> VisitState:
    async with db.session() as session:
        visit = await session.get(Visit, visit_id)
    assert visit is not None
    return VisitState(visit.status)


async def _force(db: Database, visit_id: str, state: VisitState) -> None:
    """Put a visit in a state directly (test setup for the transition table)."""
    async with db.session() as session, session.begin():
        await session.execute(update(Visit).where(Visit.id == visit_id).values(status=state.value))


async def _audit(db: Database, object_id: str) -> list[tuple[str, str, dict[str, object]]]:
    return [(e.action, e.result, json.loads(e.details)) for e in await events_for(db, object_id)]


async def _visit_and_room_audit(
    db: Database, visit_id: str
) -> list[tuple[str, str, dict[str, object]]]:
    """The events of a visit and of its room, in chain order."""
    room_id = await visit_room_id(db, visit_id)
    assert room_id is not None
    events = sorted(
        [*await events_for(db, visit_id), *await events_for(db, room_id)], key=lambda e: e.seq
    )
    return [(e.action, e.result, json.loads(e.details)) for e in events]


async def may_join_room(db: Database, actor: Actor, visit_id: str, role: str) -> bool:
    """Enter the visit's room through the one policy, and check the room role it gives."""
    _room_id, room_role = await enter_visit_room(db, actor, visit_id)
    assert room_role == role
    return True


# --- The state machine --------------------------------------------------------------------


def test_state_machine_transition_list_is_exactly_this() -> None:
    assert transitions() == sorted(
        [
            (S.BOOKED, E.CHECK_IN, S.WAITING),
            (S.BOOKED, E.CANCEL, S.CANCELLED),
            (S.WAITING, E.CANCEL, S.CANCELLED),
            (S.WAITING, E.ADMIT, S.IN_ROOM),
            (S.WAITING, E.REFER, S.REFERRED),
            (S.IN_ROOM, E.SEND_BACK, S.WAITING),
            (S.IN_ROOM, E.END, S.ENDED),
            (S.IN_ROOM, E.REFER, S.REFERRED),
        ]
    )


def _fire(db: Database, scene: Scene, event: VisitEvent, visit_id: str):  # type: ignore[no-untyped-def]
    doctor, patient = scene.doctor.actor, scene.p.actor
    return {
        E.CHECK_IN: lambda: check_in(db, patient, visit_id),
        E.CANCEL: lambda: cancel_visit(db, patient, visit_id),
        E.ADMIT: lambda: admit(db, doctor, visit_id),
        E.SEND_BACK: lambda: send_back(db, doctor, visit_id),
        E.END: lambda: end_visit(db, doctor, visit_id),
        E.REFER: lambda: refer_offline(db, doctor, visit_id, reason="胸痛加重，需线下就诊"),
    }[event]()


@pytest.mark.parametrize("state", list(VisitState))
async def test_state_machine_every_event_in_every_state(
    db: Database, scene: Scene, state: VisitState
) -> None:
    """Each (state, event): the table's transitions happen and are audited; the rest refused."""
    for event in VisitEvent:
        visit_id = await _book(db, scene)
        await _sign(db, scene, visit_id)
        await _force(db, visit_id, state)
        expected = TRANSITIONS.get((state, event))
        if expected is not None:
            view = await _fire(db, scene, event, visit_id)
            assert view.state is expected
            action, result, details = (await _audit(db, visit_id))[-1]
            assert (action, result) == (f"visit.{event.value}", "ok")
            assert (details["from"], details["to"]) == (state.value, expected.value)
        else:
            closed = state in {S.ENDED, S.REFERRED, S.CANCELLED}
            with pytest.raises(VisitClosed if closed else InvalidTransition):
                await _fire(db, scene, event, visit_id)
            assert await _state(db, visit_id) is state
            action, result, details = (await _audit(db, visit_id))[-1]
            assert (action, result, details["state"]) == (
                f"visit.{event.value}",
                "refused",
                state.value,
            )
        await _force(db, visit_id, S.ENDED)  # free the doctor for the next case


async def test_state_machine_listeners_hear_committed_changes(db: Database, scene: Scene) -> None:
    heard: list[StateChange] = []

    async def listener(change: StateChange) -> None:
        heard.append(change)

    unsubscribe = on_state_change(db, listener)
    try:
        visit_id = await _waiting(db, scene)
        await admit(db, scene.doctor.actor, visit_id)
        with pytest.raises(InvalidTransition):
            await check_in(db, scene.p.actor, visit_id)
    finally:
        unsubscribe()
    await end_visit(db, scene.doctor.actor, visit_id)
    assert [(c.old, c.new, c.event) for c in heard] == [
        (S.BOOKED, S.WAITING, E.CHECK_IN),
        (S.WAITING, S.IN_ROOM, E.ADMIT),
    ]
    assert heard[0].patient_id == scene.p.user_id and heard[0].doctor_id == scene.doctor.user_id


# --- R1, R6, R7: booking -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(VisitMode))
async def test_r1_every_mode_can_be_booked(db: Database, scene: Scene, mode: VisitMode) -> None:
    visit_id = await _book(db, scene, mode=mode.value)
    view = await get_visit_view(db, scene.p.actor, visit_id)
    assert view.mode is mode and view.state is S.BOOKED


async def test_r1_unknown_mode_is_refused(db: Database, scene: Scene) -> None:
    with pytest.raises(InvalidInput):
        await _book(db, scene, mode="fax")


async def test_r7_queue_booking_needs_the_doctor_online(db: Database, scene: Scene) -> None:
    await set_online(db, scene.doctor.actor, False)
    with pytest.raises(DoctorOffline) as info:
        await _book(db, scene)
    assert info.value.code == "doctor_offline"
    await set_online(db, scene.doctor.actor, True)
    await _book(db, scene)


async def test_r7_schedule_slots_take_bookings_up_to_capacity(db: Database, scene: Scene) -> None:
    await set_online(db, scene.doctor.actor, False)  # slots do not need online hours
    start = utc_now() + timedelta(hours=1)
    slot = await add_slot(
        db,
        scene.doctor.actor,
        doctor_id=scene.doctor.user_id,
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        capacity=2,
    )
    second, third = await make_patient(db, scene.org), await make_patient(db, scene.org)

    async def book_for(patient: Patienthood) -> str:
        view = await book_visit(
            db,
            patient.person.actor,
            patient_id=patient.record_id,
            doctor_id=scene.doctor.user_id,
            mode="video",
            condition_code="I10",
            slot_id=slot.id,
        )
        return view.id

    first = await _book(db, scene, slot_id=slot.id)
    await book_for(second)
    with pytest.raises(SlotUnavailable):
        await book_for(third)
    await cancel_visit(db, scene.p.actor, first)  # a cancellation frees its place
    await book_for(third)
    (listed,) = await list_slots(db, scene.p.actor, scene.doctor.user_id)
    assert (listed.booked, listed.remaining) == (2, 0)
    other = await make_doctor(db, scene.org)
    with pytest.raises(SlotNotFound):
        await _book(db, scene, doctor_id=other.user_id, slot_id=slot.id)


async def test_r2_one_open_visit_per_doctor_and_condition(db: Database, scene: Scene) -> None:
    """A second open booking of the same follow-up (same doctor, same ICD-10 category) is
    refused (``visit_exists``); another doctor, or the same after the first closed, is fine."""
    first = await _book(db, scene)
    with pytest.raises(VisitExists):
        await _book(db, scene, condition_code="I10.0")
    other = await make_doctor(db, scene.org)
    await _book(db, scene, doctor_id=other.user_id)
    await cancel_visit(db, scene.p.actor, first)
    await _book(db, scene)


async def test_r7_slots_are_managed_by_their_doctor_or_an_operator_in_scope(
    db: Database, scene: Scene
) -> None:
    start = utc_now() + timedelta(hours=2)
    times = {"starts_at": start, "ends_at": start + timedelta(minutes=30)}
    other = await make_doctor(db, scene.org)
    with pytest.raises(PermissionDenied):
        await add_slot(db, other.actor, doctor_id=scene.doctor.user_id, **times)
    operator = await make_person(db, scene.org, Role.OPERATOR)
    await add_slot(db, operator.actor, doctor_id=scene.doctor.user_id, **times)
    outsider = await make_person(
        db, scene.org, Role.OPERATOR, department_id=scene.org.other_department_id
    )
    with pytest.raises(PermissionDenied):
        await add_slot(db, outsider.actor, doctor_id=scene.doctor.user_id, **times)
    with pytest.raises(InvalidInput):
        await add_slot(
            db, scene.doctor.actor, doctor_id=scene.doctor.user_id, starts_at=start, ends_at=start
        )


async def test_r6_staff_book_for_a_patient_within_their_scope(db: Database, scene: Scene) -> None:
    nurse = await make_person(db, scene.org, Role.NURSE)
    view = await book_visit(
        db,
        nurse.actor,
        patient_id=scene.patient.record_id,
        doctor_id=scene.doctor.user_id,
        mode="voice",
        condition_code="I10",
    )
    assert view.patient_id == scene.p.user_id  # the patient's account joins
    outsider = await make_person(
        db, scene.org, Role.OPERATOR, department_id=scene.org.other_department_id
    )
    with pytest.raises(PermissionDenied):
        await book_visit(
            db,
            outsider.actor,
            patient_id=scene.patient.record_id,
            doctor_id=scene.doctor.user_id,
            mode="voice",
            condition_code="I10",
        )


async def test_r6_a_patient_books_only_for_itself_or_its_wards(db: Database, scene: Scene) -> None:
    stranger = await make_patient(db, scene.org)
    with pytest.raises(PermissionDenied):
        await book_visit(
            db,
            stranger.person.actor,
            patient_id=scene.patient.record_id,
            doctor_id=scene.doctor.user_id,
            mode="video",
            condition_code="I10",
        )


# --- R2: follow-up only -------------------------------------------------------------------------


async def test_r2_a_first_visit_is_refused(db: Database, scene: Scene) -> None:
    newcomer = await make_patient(db, scene.org, condition=None)
    with pytest.raises(FirstVisitRefused) as info:
        await _book(db, Scene(scene.org, scene.doctor, newcomer))
    assert info.value.code == "first_visit_refused"
    (event,) = [e for e in await _audit(db, newcomer.record_id) if e[0] == "visit.book"]
    assert event[1] == "refused" and event[2]["code"] == "first_visit_refused"


async def test_r2_the_diagnosis_must_be_of_the_same_condition(db: Database, scene: Scene) -> None:
    with pytest.raises(FirstVisitRefused):
        await _book(db, scene, condition_code="E11.9")  # diabetes: no prior diagnosis
    await _book(db, scene, condition_code="I10.0")  # same category as I10


async def test_r2_an_online_diagnosis_does_not_count(db: Database, scene: Scene) -> None:
    nurse = await make_person(db, scene.org, Role.NURSE)
    await record_prior_diagnosis(
        db,
        nurse.actor,
        scene.patient.record_id,
        condition_code="J45",
        condition_name="哮喘",
        institution_name="互联网医院",
        diagnosed_on=date(2024, 1, 2),
        source="online",
    )
    with pytest.raises(FirstVisitRefused):
        await _book(db, scene, condition_code="J45")


# --- R4: emergencies, young children ------------------------------------------------------------


async def test_r4_emergencies_are_refused(db: Database, scene: Scene) -> None:
    with pytest.raises(EmergencyRefused) as info:
        await _book(db, scene, emergency=True)
    assert info.value.code == "emergency_not_allowed"


async def _child(db: Database, scene: Scene, birth: date) -> str:
    child = await register_patient(
        db,
        scene.p.actor,
        name="张小宝",
        id_number=fresh_id_number(birth),
        guardian_id=scene.patient.record_id,
        guardian_relation="parent",
    )
    nurse = await make_person(db, scene.org, Role.NURSE)
    await record_prior_diagnosis(
        db,
        nurse.actor,
        child.id,
        condition_code="J45",
        condition_name="哮喘",
        institution_name="北京儿童医院",
        diagnosed_on=date.today() - timedelta(days=30),
    )
    await decide_guardian(db, nurse.actor, child.id, verified=True)  # issue 13 item 3
    return child.id


async def test_r4_a_wards_guardian_joins_as_guardian_and_is_present_on_check_in(
    db: Database, scene: Scene
) -> None:
    """A ward has no account: its guardian's books and checks in, in the room role guardian;
    that arrival is the guardian's presence (R4), so the doctor may admit."""
    today = date.today()
    child_id = await _child(db, scene, today.replace(year=today.year - 3))
    visit_id = await _book(db, scene, patient_id=child_id, condition_code="J45")
    await _sign(db, scene, visit_id)
    view = await check_in(db, scene.p.actor, visit_id)
    assert view.state is S.WAITING and view.guardian_present
    assert (await admit(db, scene.doctor.actor, visit_id)).state is S.IN_ROOM
    assert await may_join_room(db, scene.p.actor, visit_id, "guardian")


async def test_r4_the_doctor_cannot_start_before_the_guardian_arrives(
    db: Database, scene: Scene
) -> None:
    """A child under 6 with an account of its own (a family tablet) and a guardian with another:
    the child's check-in alone does not let the doctor start; the guardian's arrival does, and
    admits both (R4)."""
    today = date.today()
    child = await make_patient(db, scene.org, birth=today.replace(year=today.year - 4))
    async with db.session() as session, session.begin():
        await session.execute(
            update(Patient)
            .where(Patient.id == child.record_id)
            .values(
                guardian_id=scene.patient.record_id,
                guardian_relation="parent",
                guardian_verified_at=utc_now(),  # staff saw the proof (issue 13 item 3)
            )
        )
    kid = Scene(scene.org, scene.doctor, child)
    visit_id = await _book(db, kid)
    await _sign(db, kid, visit_id)
    view = await check_in(db, child.person.actor, visit_id)
    assert view.state is S.WAITING and not view.guardian_present
    with pytest.raises(GuardianRequired) as info:
        await admit(db, scene.doctor.actor, visit_id)
    assert info.value.code == "guardian_required"
    # the guardian sees the ward's visit, and comes to the waiting room
    assert visit_id in {v.id for v in await list_visits(db, scene.p.actor)}
    assert (await check_in(db, scene.p.actor, visit_id)).guardian_present
    assert (await admit(db, scene.doctor.actor, visit_id)).state is S.IN_ROOM
    assert await may_join_room(db, child.person.actor, visit_id, "patient")
    assert await may_join_room(db, scene.p.actor, visit_id, "guardian")
    await send_back(db, scene.doctor.actor, visit_id)
    with pytest.raises(NotAdmitted):
        await may_join_room(db, scene.p.actor, visit_id, "guardian")


async def test_r4_a_child_of_six_checks_in_alone(db: Database, scene: Scene) -> None:
    today = date.today()
    child_id = await _child(db, scene, today.replace(year=today.year - 6) - timedelta(days=1))
    visit_id = await _book(db, scene, patient_id=child_id, condition_code="J45")
    await _sign(db, scene, visit_id)
    assert (await check_in(db, scene.p.actor, visit_id)).state is S.WAITING


# --- R5: consent before joining, refusal acknowledgement -----------------------------------------


async def test_r5_check_in_needs_the_signed_risk_notice(db: Database, scene: Scene) -> None:
    visit_id = await _book(db, scene)
    with pytest.raises(ConsentRequired) as info:
        await check_in(db, scene.p.actor, visit_id)
    assert info.value.code == "consent_required"
    with pytest.raises(ConsentMismatch):
        await sign_consent(
            db, scene.p.actor, visit_id, document_version="old", document_digest=RISK_NOTICE.digest
        )
    with pytest.raises(ConsentMismatch):
        await sign_consent(
            db,
            scene.p.actor,
            visit_id,
            document_version=RISK_NOTICE.version,
            document_digest="0" * 64,
        )
    await _sign(db, scene, visit_id)
    with pytest.raises(AlreadySigned):
        await _sign(db, scene, visit_id)
    await check_in(db, scene.p.actor, visit_id)
    (consent,) = await visit_consents(db, scene.doctor.actor, visit_id)
    assert (consent.kind.value, consent.document_digest) == ("risk_notice", RISK_NOTICE.digest)
    assert consent.signer_id == scene.p.user_id
    trail = [(a, r) for a, r, _ in await _audit(db, visit_id) if a != "consent.view"]
    assert trail == [
        ("visit.book", "ok"),
        ("visit.check_in", "refused"),
        ("consent.sign", "ok"),
        ("visit.check_in", "ok"),
    ]


async def test_r5_only_the_patient_signs(db: Database, scene: Scene) -> None:
    visit_id = await _book(db, scene)
    with pytest.raises(PermissionDenied):
        await sign_consent(
            db,
            scene.doctor.actor,
            visit_id,
            document_version=RISK_NOTICE.version,
            document_digest=RISK_NOTICE.digest,
        )
    stranger = await make_patient(db, scene.org)
    with pytest.raises(PermissionDenied):
        await sign_consent(
            db,
            stranger.person.actor,
            visit_id,
            document_version=RISK_NOTICE.version,
            document_digest=RISK_NOTICE.digest,
        )


async def test_r5_a_refused_referral_is_acknowledged(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)

    async def acknowledge(actor_visit: str, version: str = REFERRAL_REFUSAL.version) -> None:
        await acknowledge_referral_refusal(
            db,
            scene.p.actor,
            actor_visit,
            document_version=version,
            document_digest=REFERRAL_REFUSAL.digest,
        )

    with pytest.raises(InvalidTransition):
        await acknowledge(visit_id)  # nothing referred yet
    await admit(db, scene.doctor.actor, visit_id)
    await refer_offline(db, scene.doctor.actor, visit_id, reason="需要心电图和查体")
    with pytest.raises(ConsentMismatch):
        await acknowledge(visit_id, version=RISK_NOTICE.version)
    await acknowledge(visit_id)
    with pytest.raises(AlreadySigned):
        await acknowledge(visit_id)
    with pytest.raises(PermissionDenied):
        await acknowledge_referral_refusal(
            db,
            scene.doctor.actor,
            visit_id,
            document_version=REFERRAL_REFUSAL.version,
            document_digest=REFERRAL_REFUSAL.digest,
        )
    acknowledged = [e for e in await _audit(db, visit_id) if e[0] == "visit.acknowledge_refusal"]
    assert [r for _, r, _ in acknowledged] == ["refused", "ok", "denied"]


# --- R3: ending and referring --------------------------------------------------------------------


async def test_r3_a_referral_needs_a_reason_and_ends_the_visit(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)
    await admit(db, scene.doctor.actor, visit_id)
    with pytest.raises(InvalidInput):
        await refer_offline(db, scene.doctor.actor, visit_id, reason="  ")
    view = await refer_offline(
        db, scene.doctor.actor, visit_id, reason="病情变化", appointment="明日上午心内科门诊"
    )
    assert view.state is S.REFERRED and view.closed_at is not None
    assert (view.referral_reason, view.referral_appointment) == ("病情变化", "明日上午心内科门诊")
    with pytest.raises(VisitClosed):
        await may_join_room(db, scene.p.actor, visit_id, "patient")


async def test_r3_the_doctor_may_refer_from_the_waiting_room(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)
    view = await refer_offline(db, scene.doctor.actor, visit_id, reason="不适合线上")
    assert view.state is S.REFERRED


# --- R6: the waiting room ------------------------------------------------------------------------


async def test_r6_a_patient_enters_the_room_only_when_admitted(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)
    assert await may_join_room(db, scene.doctor.actor, visit_id, "doctor")
    with pytest.raises(NotAdmitted) as info:
        await may_join_room(db, scene.p.actor, visit_id, "patient")
    assert info.value.code == "not_admitted"
    await admit(db, scene.doctor.actor, visit_id)
    assert await may_join_room(db, scene.p.actor, visit_id, "patient")
    await send_back(db, scene.doctor.actor, visit_id)
    with pytest.raises(NotAdmitted):
        await may_join_room(db, scene.p.actor, visit_id, "patient")
    joins = [
        (r, d["room_role"])
        for a, r, d in await _visit_and_room_audit(db, visit_id)
        if a == "room.join"
    ]
    assert joins == [
        ("ok", "doctor"),
        ("denied", "patient"),
        ("ok", "patient"),
        ("denied", "patient"),
    ]


async def test_r6_a_join_token_is_checked_against_the_room(db: Database, scene: Scene) -> None:
    """A join token's actor: its room, its room role, its participation; then the policy."""
    visit_id = await _waiting(db, scene)
    room_id = await visit_room_id(db, visit_id)
    assert room_id is not None and room_id != visit_id  # a new visit's room has its own id
    secret = "s" * 32

    def token(user_id: str, role: str, room: str = room_id) -> str:
        return issue_join_token(secret, room_id=room, user_id=user_id, role=role)

    patient = await authenticate_join(db, secret, token(scene.p.user_id, "patient"))
    assert (patient.room_id, patient.room_role, patient.role) == (room_id, "patient", Role.PATIENT)
    with pytest.raises(NotAdmitted):
        await enter(db, patient, room_id)
    await admit(db, scene.doctor.actor, visit_id)
    await enter(db, patient, room_id)
    with pytest.raises(NotAParticipant):  # a patient claiming to be the doctor
        await authenticate_join(db, secret, token(scene.p.user_id, "doctor"))
    other = await _waiting(db, Scene(scene.org, scene.doctor, await make_patient(db, scene.org)))
    other_room = await visit_room_id(db, other)
    assert other_room is not None
    with pytest.raises(NotAParticipant):  # a token for another room
        await authenticate_join(db, secret, token(scene.p.user_id, "patient", other_room))
    with pytest.raises(NotAParticipant):  # its own token used in another room
        await enter(db, patient, other_room)
    with pytest.raises(RoomNotFound):
        await authenticate_join(db, secret, token(scene.p.user_id, "patient", new_id()))
    nurse = await make_person(db, scene.org, Role.NURSE)
    with pytest.raises(PermissionDenied):  # the table: nurses do not join rooms
        await enter(db, nurse.actor, room_id)


async def test_r6_the_doctor_admits_one_patient_at_a_time(db: Database, scene: Scene) -> None:
    first = await _waiting(db, scene)
    second_patient = await make_patient(db, scene.org)
    second_scene = Scene(scene.org, scene.doctor, second_patient)
    second = await _waiting(db, second_scene)
    queue = await doctor_queue(db, scene.doctor.actor)
    assert [e.visit_id for e in queue] == [first, second]
    assert queue[0].patient_name == "张三"
    await admit(db, scene.doctor.actor, first)
    with pytest.raises(DoctorBusy) as info:
        await admit(db, scene.doctor.actor, second)
    assert info.value.code == "doctor_busy"
    await send_back(db, scene.doctor.actor, first)
    await admit(db, scene.doctor.actor, second)
    assert {e.visit_id: e.state for e in await doctor_queue(db, scene.doctor.actor)} == {
        first: S.WAITING,
        second: S.IN_ROOM,
    }


# --- R9: verified doctors only --------------------------------------------------------------------


async def test_r9_an_unverified_doctor_cannot_take_a_patient(db: Database, scene: Scene) -> None:
    pending = await make_doctor(db, scene.org, verified=False)
    with pytest.raises(PractitionerNotVerified) as info:
        await set_online(db, pending.actor, True)
    assert info.value.code == "practitioner_not_verified"
    with pytest.raises(PractitionerNotVerified):
        await _book(db, scene, doctor_id=pending.user_id)
    visit_id = await _waiting(db, scene)
    await verify_practitioner(db, SYSTEM, scene.doctor.user_id, approve=False)  # licence withdrawn
    with pytest.raises(PractitionerNotVerified):
        await admit(db, scene.doctor.actor, visit_id)
    assert await _state(db, visit_id) is S.WAITING


# --- Ownership and scope ---------------------------------------------------------------------------


async def test_r34_only_the_visits_own_people_act_on_it(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)
    other_doctor = await make_doctor(db, scene.org)
    stranger = await make_patient(db, scene.org)
    outsider = await make_person(
        db, scene.org, Role.OPERATOR, department_id=scene.org.other_department_id
    )
    other_org = await make_org(db)
    far_nurse = await make_person(db, other_org, Role.NURSE)
    for attempt in (
        admit(db, other_doctor.actor, visit_id),
        end_visit(db, other_doctor.actor, visit_id),
        cancel_visit(db, stranger.person.actor, visit_id),
        cancel_visit(db, outsider.actor, visit_id),
        get_visit_view(db, far_nurse.actor, visit_id),
        get_visit_view(db, stranger.person.actor, visit_id),
    ):
        with pytest.raises(PermissionDenied):
            await attempt
    denied = [e for e in await _audit(db, visit_id) if e[1] == "denied"]
    assert len(denied) == 6
    operator = await make_person(db, scene.org, Role.OPERATOR)
    assert (await get_visit_view(db, operator.actor, visit_id)).id == visit_id
    assert visit_id in {v.id for v in await list_visits(db, operator.actor)}
    assert visit_id not in {v.id for v in await list_visits(db, outsider.actor)}
    assert visit_id in {v.id for v in await list_visits(db, scene.p.actor)}
    assert visit_id not in {v.id for v in await list_visits(db, stranger.person.actor)}


# --- The whole path leaves a verifiable trail (R22) -------------------------------------------------


async def test_r22_a_visit_leaves_its_steps_in_the_chain(db: Database, scene: Scene) -> None:
    visit_id = await _waiting(db, scene)
    await may_join_room(db, scene.doctor.actor, visit_id, "doctor")
    await admit(db, scene.doctor.actor, visit_id)
    await may_join_room(db, scene.p.actor, visit_id, "patient")
    await refer_offline(db, scene.doctor.actor, visit_id, reason="需线下检查")
    steps = [(a, d.get("to")) for a, r, d in await _visit_and_room_audit(db, visit_id) if r == "ok"]
    assert steps == [
        ("visit.book", "booked"),
        ("consent.sign", None),
        ("visit.check_in", "waiting"),
        ("room.join", None),
        ("visit.admit", "in_room"),
        ("room.join", None),
        ("visit.refer", "referred"),
    ]
    async with db.session() as session:
        refer = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.object_id == visit_id, AuditEvent.action == "visit.refer"
            )
        )
    assert refer is not None and "需线下检查" not in refer.details  # clinical text stays out
    assert (await verify_chain(db)).ok
