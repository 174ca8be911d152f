"""The visit's state machine and the rules of an online visit (R1-R9).

States and transitions are data (:data:`TRANSITIONS`); one function, :func:`_set_state`, changes
a visit's state: it checks the table, logs ``old -> new``, appends the audit event and, after
commit, tells listeners (signaling moves people in and out of the room).

::

    (book) -> booked --check_in--> waiting --admit--> in_room --end--> ended
                 |                  |  ^                 |
                 +--cancel--+       |  +---send_back-----+
                            v       v                    |
                        cancelled  referred <---refer----+   (refer also from waiting)

The rules, each checked in the service, refused with a stable code and audited:

- R1 modes video, voice, text; R6/R7 booking into a schedule slot, or the queue of a doctor
  who is online; R9 only a verified doctor is booked or admits;
- R2 follow-up only: an offline diagnosis of the same condition (ICD-10 category) is needed;
- R4 no emergencies; a child under 6 needs a guardian present in its room before the doctor
  admits (starts the visit): the guardian's participation has arrived (``consult.rooms``);
- R5 the risk notice is signed before check-in; a refused referral is acknowledged in writing;
- waiting room: a patient enters the room only when admitted, the doctor admits one at a time
  and can send the patient back; R3 the doctor refers offline with a reason.

Ownership: a patient account acts on its own visits (its own or its ward's), a doctor on the
visits it holds, a nurse within its institution, an operator within its departments.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import or_, select

from consult import access, rooms
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.db import Database
from consult.documents import DOCUMENTS, REFERRAL_REFUSAL, RISK_NOTICE, Document
from consult.errors import (
    AlreadySigned,
    ConsentMismatch,
    ConsentRequired,
    ConsultError,
    DoctorBusy,
    DoctorOffline,
    EmergencyRefused,
    FirstVisitRefused,
    GuardianPending,
    GuardianRequired,
    InvalidInput,
    InvalidTransition,
    PatientNotFound,
    PermissionDenied,
    SlotNotFound,
    SlotUnavailable,
    VisitClosed,
    VisitExists,
    VisitNotFound,
)
from consult.events import DomainEvent, StateChanged, subscribe
from consult.machine import StateMachine
from consult.models import (
    Consent,
    ConsentKind,
    DiagnosisSource,
    Participation,
    Patient,
    PriorDiagnosis,
    Room,
    RoomRole,
    ScheduleSlot,
    User,
    Visit,
    VisitMode,
    VisitState,
)
from consult.patients import acts_for, pending_guardian_of, verified_guardian
from consult.permissions import Role, in_scope
from consult.practitioners import require_verified
from consult.schedule import booked_count
from consult.sqltypes import new_id, utc_now

logger = logging.getLogger(__name__)

GUARDIAN_AGE: Final = 6
"""R4: a patient younger than this needs a guardian present."""
MAX_REASON_CHARS: Final = 1000


class VisitEvent(StrEnum):
    """What moves a visit from one state to another."""

    CHECK_IN = "check_in"
    CANCEL = "cancel"
    ADMIT = "admit"
    SEND_BACK = "send_back"
    END = "end"
    REFER = "refer"


S, E = VisitState, VisitEvent
TRANSITIONS: Final[Mapping[tuple[VisitState, VisitEvent], VisitState]] = {
    (S.BOOKED, E.CHECK_IN): S.WAITING,
    (S.BOOKED, E.CANCEL): S.CANCELLED,
    (S.WAITING, E.CANCEL): S.CANCELLED,
    (S.WAITING, E.ADMIT): S.IN_ROOM,
    (S.WAITING, E.REFER): S.REFERRED,
    (S.IN_ROOM, E.SEND_BACK): S.WAITING,
    (S.IN_ROOM, E.END): S.ENDED,
    (S.IN_ROOM, E.REFER): S.REFERRED,
}
"""The whole state machine: (state, event) -> next state. Anything else is refused."""

INITIAL_STATE: Final = VisitState.BOOKED
CLOSED_STATES: Final = frozenset({S.ENDED, S.REFERRED, S.CANCELLED})
VISIT_MACHINE: Final = StateMachine("visit", VisitState, TRANSITIONS, CLOSED_STATES, VisitClosed)
EVENT_ACTIONS: Final[Mapping[VisitEvent, str]] = {e: VISIT_MACHINE.action(e) for e in E}
"""The permission-table action (and audit action) of each event."""


def transitions() -> list[tuple[VisitState, VisitEvent, VisitState]]:
    """The transition table as a sorted list of ``(from, event, to)``."""
    return VISIT_MACHINE.table()


# --- Listeners --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChange:
    """A committed state change, for listeners (signaling)."""

    visit_id: str
    old: VisitState
    new: VisitState
    event: VisitEvent
    actor_id: str | None
    doctor_id: str
    patient_id: str


Listener = Callable[[StateChange], Awaitable[None]]


def on_state_change(db: Database, listener: Listener) -> Callable[[], None]:
    """Call ``listener`` after each committed visit state change; returns the unsubscriber.

    A view of the domain events (:mod:`consult.events`) for visits only. A failing listener is
    logged, never undoes the change.
    """

    async def relay(event: DomainEvent) -> None:
        if isinstance(event, StateChanged) and event.machine == VISIT_MACHINE.name:
            parties = dict(event.parties)
            await listener(
                StateChange(
                    visit_id=event.object_id,
                    old=VisitState(event.old),
                    new=VisitState(event.new),
                    event=VisitEvent(event.event),
                    actor_id=event.actor_id,
                    doctor_id=parties.get("doctor", ""),
                    patient_id=parties.get("patient", ""),
                )
            )

    return subscribe(db, relay)


# --- Views --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitView:
    """A visit as its participants and the staff in scope see it."""

    id: str
    state: VisitState
    mode: VisitMode
    institution_id: str
    department_id: str | None
    doctor_id: str
    patient_id: str
    """The patient-side account (a guardian's for a child)."""
    patient_record_id: str | None
    diagnosis_id: str | None
    slot_id: str | None
    created_at: datetime
    checked_in_at: datetime | None
    admitted_at: datetime | None
    closed_at: datetime | None
    guardian_present: bool
    referral_reason: str | None
    referral_appointment: str | None


def _view(row: Visit) -> VisitView:
    return VisitView(
        id=row.id,
        state=VisitState(row.status),
        mode=VisitMode(row.mode),
        institution_id=row.institution_id,
        department_id=row.department_id,
        doctor_id=row.doctor_id,
        patient_id=row.patient_id,
        patient_record_id=row.patient_record_id,
        diagnosis_id=row.diagnosis_id,
        slot_id=row.slot_id,
        created_at=row.created_at,
        checked_in_at=row.checked_in_at,
        admitted_at=row.admitted_at,
        closed_at=row.closed_at,
        guardian_present=row.guardian_present,
        referral_reason=row.referral_reason,
        referral_appointment=row.referral_appointment,
    )


@dataclass(frozen=True)
class QueueEntry:
    """One visit in a doctor's waiting room (or in the room)."""

    visit_id: str
    state: VisitState
    mode: VisitMode
    patient_record_id: str | None
    patient_name: str
    checked_in_at: datetime | None
    guardian_present: bool = False
    """R4: a guardian came (pushed to the queue when it does); a child under 6 waits for it."""


# --- The one place that changes state ----------------------------------------------------------


async def _set_state(
    tx: AuditTx,
    actor: Actor,
    visit: Visit,
    event: VisitEvent,
    details: Mapping[str, Any] | None = None,
) -> VisitState:
    """Move ``visit`` by ``event`` per :data:`TRANSITIONS` (:data:`VISIT_MACHINE`): checked,
    logged, audited, and relayed after commit as a domain event.

    Raises (and audits) :class:`InvalidTransition` when the table has no such transition, or
    :class:`VisitClosed` when the visit is over.
    """
    # a guardian on its own account hears of the change too: its waiting room follows the visit
    parties = await rooms.visit_parties(tx.session, visit)
    new = await VISIT_MACHINE.set_state(tx, actor, visit, event, details, parties=parties)
    # the room's participations follow, in the same transaction
    await rooms.follow_visit(tx.session, visit, event.value, actor)
    return new


# --- Loading with ownership ----------------------------------------------------------------------


async def _load_visit(tx: AuditTx, actor: Actor, visit_id: str, action: str) -> Visit:
    """The visit, locked for update, if ``actor`` may act on it; else an audited refusal."""
    visit = await tx.session.get(Visit, visit_id, with_for_update=True)
    if visit is None:
        raise VisitNotFound()
    await access.check(tx, actor, action, visit)
    return visit


# --- Booking (R1, R2, R4, R6, R7, R9) -----------------------------------------------------------


def _same_condition(a: str, b: str) -> bool:
    """ICD-10 codes of one three-character category (``I10`` and ``I10.0``)."""
    return a[:3].upper() == b[:3].upper()


async def book_visit(
    db: Database,
    actor: Actor,
    *,
    patient_id: str,
    doctor_id: str,
    mode: VisitMode | str,
    condition_code: str,
    slot_id: str | None = None,
    emergency: bool = False,
) -> VisitView:
    """Book a follow-up visit with a doctor: into ``slot_id``, or the doctor's online queue.

    ``visit.book``: a patient account for its own record or a ward's; a nurse (institution) or
    an operator (the doctor's departments) for anyone. Raises, each audited:
    :class:`EmergencyRefused` (R4), :class:`FirstVisitRefused` (R2, no offline diagnosis of the
    condition), :class:`PractitionerNotVerified` (R9), :class:`DoctorOffline` (queue, R7),
    :class:`SlotNotFound`, :class:`SlotUnavailable`; and :class:`InvalidInput` for a bad mode.
    """
    await authorize(db, actor, "visit.book", object_type="visit")
    try:
        mode = VisitMode(mode)
    except ValueError:
        raise InvalidInput("The mode is video, voice or text.") from None
    condition = (condition_code or "").strip().upper()
    if not condition:
        raise InvalidInput("Name the condition (ICD-10) the follow-up is for.")
    async with audited(db) as tx:

        def refuse(error: ConsultError, **details: Any) -> ConsultError:
            return tx.refuse(
                error,
                actor=actor,
                action="visit.book",
                object_type="patient",
                object_id=patient_id,
                details=details,
            )

        if emergency:
            raise refuse(EmergencyRefused())
        session = tx.session
        patient = await session.get(Patient, patient_id)
        if patient is None:
            raise PatientNotFound()
        if actor.role is Role.PATIENT and not await acts_for(session, actor, patient):
            if await pending_guardian_of(session, actor, patient):
                raise refuse(GuardianPending())
            raise refuse(PermissionDenied("Not your record."))
        practitioner = await require_verified(tx, actor, doctor_id, "visit.book")
        doctor = await session.get(User, doctor_id)
        if doctor is None or not doctor.is_active:
            raise refuse(InvalidInput("The doctor is not available."))
        if not in_scope(
            actor,
            institution_id=practitioner.institution_id,
            department_id=practitioner.department_id,
        ):
            raise refuse(PermissionDenied("Outside your departments."))
        diagnoses = (
            await session.scalars(
                select(PriorDiagnosis).where(
                    PriorDiagnosis.patient_id == patient_id,
                    PriorDiagnosis.source == DiagnosisSource.OFFLINE.value,
                )
            )
        ).all()
        diagnosis = next(
            (d for d in diagnoses if _same_condition(d.condition_code, condition)), None
        )
        if diagnosis is None:
            raise refuse(FirstVisitRefused(), condition=condition[:16])
        if await _open_visit_of(session, patient_id, doctor_id, diagnosis.condition_code):
            raise refuse(VisitExists(), condition=condition[:16])
        if slot_id is not None:
            slot = await session.get(ScheduleSlot, slot_id, with_for_update=True)
            if slot is None or slot.doctor_id != doctor_id:
                raise SlotNotFound()
            if slot.ends_at <= utc_now() or await booked_count(tx, slot_id) >= slot.capacity:
                raise refuse(SlotUnavailable())
        elif practitioner.online_since is None:
            raise refuse(DoctorOffline())
        account_id = await _patient_account(session, actor, patient)
        visit = Visit(
            id=new_id(),
            institution_id=practitioner.institution_id,
            department_id=practitioner.department_id,
            doctor_id=doctor_id,
            patient_id=account_id,
            patient_record_id=patient_id,
            diagnosis_id=diagnosis.id,
            slot_id=slot_id,
            mode=mode.value,
            status=INITIAL_STATE.value,
            booked_by=actor.user_id,
            guardian_present=False,
            created_at=utc_now(),
        )
        session.add(visit)
        await session.flush()
        room = await rooms.open_visit_room(session, visit, patient)
        await tx.record(
            "visit.book",
            actor=actor,
            object_type="visit",
            object_id=visit.id,
            details={
                "to": INITIAL_STATE.value,
                "mode": mode.value,
                "via": "slot" if slot_id else "queue",
                "condition": diagnosis.condition_code,
                "room": room.id,
            },
        )
    return _view(visit)


async def _open_visit_of(session: Any, patient_id: str, doctor_id: str, condition: str) -> bool:
    """Whether the patient already holds an open visit with the doctor for the condition."""
    rows = (
        await session.execute(
            select(PriorDiagnosis.condition_code)
            .join(Visit, Visit.diagnosis_id == PriorDiagnosis.id)
            .where(
                Visit.patient_record_id == patient_id,
                Visit.doctor_id == doctor_id,
                Visit.status.in_([S.BOOKED.value, S.WAITING.value, S.IN_ROOM.value]),
            )
        )
    ).scalars()
    return any(_same_condition(code, condition) for code in rows)


async def _patient_account(session: Any, actor: Actor, patient: Patient) -> str:
    """The account that joins for the patient: its own, else its guardian's."""
    if actor.role is Role.PATIENT:
        assert actor.user_id is not None
        return actor.user_id
    if patient.user_id is not None:
        return patient.user_id
    guardian = await verified_guardian(session, patient)
    if guardian is not None and guardian.user_id is not None:
        return str(guardian.user_id)
    raise InvalidInput("The patient (or its guardian) needs an account to join the visit.")


# --- Consent (R5) -------------------------------------------------------------------------------


def current_document(kind: ConsentKind | str) -> Document:
    """The current text of a kind of document, to show before signing."""
    return DOCUMENTS[ConsentKind(kind)]


def _check_document(document: Document, version: str, digest: str) -> None:
    if version != document.version or digest != document.digest:
        raise ConsentMismatch()


async def _consent(tx: AuditTx, visit_id: str, kind: ConsentKind) -> Consent | None:
    return await tx.session.scalar(
        select(Consent).where(Consent.visit_id == visit_id, Consent.kind == kind.value)
    )


async def _sign(
    tx: AuditTx,
    actor: Actor,
    visit: Visit,
    document: Document,
    version: str,
    digest: str,
    action: str,
) -> None:
    _check_document(document, version, digest)
    if await _consent(tx, visit.id, document.kind) is not None:
        raise AlreadySigned()
    assert actor.user_id is not None
    tx.session.add(
        Consent(
            id=new_id(),
            visit_id=visit.id,
            kind=document.kind.value,
            signer_id=actor.user_id,
            document_version=document.version,
            document_digest=document.digest,
            signed_at=utc_now(),
            source_ip=actor.source_ip,
        )
    )
    await tx.record(
        action,
        actor=actor,
        object_type="visit",
        object_id=visit.id,
        details={"kind": document.kind.value, "version": document.version},
    )


async def sign_consent(
    db: Database, actor: Actor, visit_id: str, *, document_version: str, document_digest: str
) -> None:
    """The patient signs the current risk notice for a visit, before check-in (R5).

    ``consent.sign``: the visit's patient account. ``document_version`` and ``document_digest``
    are those of :data:`consult.documents.RISK_NOTICE` as shown. Raises
    :class:`ConsentMismatch`, :class:`AlreadySigned`, :class:`VisitClosed`.
    """
    await authorize(db, actor, "consent.sign", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "consent.sign")
        if VisitState(visit.status) not in {S.BOOKED, S.WAITING}:
            raise (
                VisitClosed() if VisitState(visit.status) in CLOSED_STATES else InvalidTransition()
            )
        await _sign(
            tx, actor, visit, RISK_NOTICE, document_version, document_digest, "consent.sign"
        )


@dataclass(frozen=True)
class ConsentView:
    """A signed document of a visit."""

    kind: ConsentKind
    document_version: str
    document_digest: str
    signer_id: str
    signed_at: datetime


async def visit_consents(db: Database, actor: Actor, visit_id: str) -> list[ConsentView]:
    """The documents signed for a visit (``consent.view``: its people and staff in scope)."""
    await authorize(db, actor, "consent.view", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        await _load_visit(tx, actor, visit_id, "consent.view")
        rows = (
            await tx.session.scalars(
                select(Consent).where(Consent.visit_id == visit_id).order_by(Consent.signed_at)
            )
        ).all()
        await tx.record("consent.view", actor=actor, object_type="visit", object_id=visit_id)
    return [
        ConsentView(
            ConsentKind(r.kind), r.document_version, r.document_digest, r.signer_id, r.signed_at
        )
        for r in rows
    ]


async def consent_signed(
    db: Database, visit_id: str, kind: ConsentKind = ConsentKind.RISK_NOTICE
) -> bool:
    """Whether the visit has a signed document of this kind."""
    async with db.session() as session:
        found = await session.scalar(
            select(Consent.id).where(Consent.visit_id == visit_id, Consent.kind == kind.value)
        )
    return found is not None


# --- Transitions --------------------------------------------------------------------------------


async def check_in(
    db: Database, actor: Actor, visit_id: str, *, guardian_present: bool = False
) -> VisitView:
    """Enter the waiting room (R6): the risk notice signed first (R5).

    ``visit.check_in``: the visit's patient-side account, a guardian taking part in its room, or
    a nurse. The first check-in moves the visit to ``waiting``; a guardian who comes later is
    marked as arrived: waiting, for the doctor to admit with the patient; in the room, let in at
    once (R4); either way the doctor's queue is told (:func:`consult.rooms.arrive_late`).
    ``guardian_present`` is no longer a declaration that counts: a guardian is present when its
    own participation has arrived (``consult.rooms``). Raises :class:`ConsentRequired`,
    :class:`InvalidTransition` (audited).
    """
    del guardian_present  # kept for old callers; R4 counts the guardian's own arrival
    await authorize(db, actor, "visit.check_in", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.check_in")

        def refuse(error: ConsultError) -> ConsultError:
            return tx.refuse(
                error, actor=actor, action="visit.check_in", object_type="visit", object_id=visit_id
            )

        state = VisitState(visit.status)
        if state in {S.WAITING, S.IN_ROOM} and actor.user_id != visit.patient_id:
            # a guardian arriving after the patient-side account checked in: the doctor's
            # queue is told; in the room already, it goes straight in (R4)
            if await rooms.arrive_late(tx, actor, visit) is None:
                raise refuse(InvalidTransition())
            room = await rooms.visit_room(tx.session, visit)
            visit.guardian_present = await rooms.guardian_present(tx.session, room)
            return _view(visit)
        if state is S.BOOKED and await _consent(tx, visit.id, ConsentKind.RISK_NOTICE) is None:
            raise refuse(ConsentRequired())
        visit.checked_in_at = utc_now()
        await _set_state(tx, actor, visit, E.CHECK_IN)
        room = await rooms.visit_room(tx.session, visit)
        visit.guardian_present = await rooms.guardian_present(tx.session, room)
    return _view(visit)


async def cancel_visit(db: Database, actor: Actor, visit_id: str) -> VisitView:
    """Cancel before the room (``visit.cancel``: the patient, a nurse, an operator)."""
    await authorize(db, actor, "visit.cancel", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.cancel")
        await _set_state(tx, actor, visit, E.CANCEL)
    return _view(visit)


async def admit(db: Database, actor: Actor, visit_id: str) -> VisitView:
    """The doctor admits a waiting patient into the room, one at a time (R6, R9), and with it
    everyone of the patient's side who arrived (a guardian, a companion, an interpreter).

    ``visit.admit``: the visit's doctor, verified. Raises :class:`PractitionerNotVerified`,
    :class:`DoctorBusy` (another patient is in the room), :class:`ConsentRequired`,
    :class:`GuardianRequired` (R4: a child under 6 and no guardian arrived),
    :class:`InvalidTransition` (audited).
    """
    await authorize(db, actor, "visit.admit", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.admit")
        await require_verified(tx, actor, visit.doctor_id, "visit.admit")
        if VisitState(visit.status) is S.WAITING:
            busy = await tx.session.scalar(
                select(Visit.id).where(
                    Visit.doctor_id == visit.doctor_id,
                    Visit.status == S.IN_ROOM.value,
                    Visit.id != visit.id,
                )
            )
            error: ConsultError | None = None
            if busy is not None:
                error = DoctorBusy()
            elif await _consent(tx, visit.id, ConsentKind.RISK_NOTICE) is None:
                error = ConsentRequired()
            elif await rooms.under_guardian_age(tx.session, visit) and not (
                await rooms.guardian_present(tx.session, await rooms.visit_room(tx.session, visit))
            ):
                error = GuardianRequired()  # R4: the guardian is there before the doctor starts
            if error is not None:
                raise tx.refuse(
                    error,
                    actor=actor,
                    action="visit.admit",
                    object_type="visit",
                    object_id=visit_id,
                )
        await _set_state(tx, actor, visit, E.ADMIT)
        visit.admitted_at = utc_now()
    return _view(visit)


async def send_back(db: Database, actor: Actor, visit_id: str) -> VisitView:
    """The doctor sends the patient back to the waiting room (``visit.send_back``)."""
    await authorize(db, actor, "visit.send_back", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.send_back")
        await _set_state(tx, actor, visit, E.SEND_BACK)
        visit.admitted_at = None
    return _view(visit)


async def end_visit(db: Database, actor: Actor, visit_id: str) -> VisitView:
    """The doctor ends the visit (``visit.end``)."""
    await authorize(db, actor, "visit.end", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.end")
        await _set_state(tx, actor, visit, E.END)
    return _view(visit)


async def refer_offline(
    db: Database, actor: Actor, visit_id: str, *, reason: str, appointment: str | None = None
) -> VisitView:
    """End the online visit at once and refer the patient offline, with a reason (R3).

    ``visit.refer``: the visit's doctor, from the room or the waiting room. ``appointment`` is
    free text (where and when, if booked). Raises :class:`InvalidInput` without a reason.
    """
    await authorize(db, actor, "visit.refer", object_type="visit", object_id=visit_id)
    reason = (reason or "").strip()
    if not 1 <= len(reason) <= MAX_REASON_CHARS:
        raise InvalidInput("A referral needs a reason (up to 1000 characters).")
    appointment = (appointment or "").strip() or None
    if appointment is not None and len(appointment) > 200:
        raise InvalidInput("The appointment is at most 200 characters.")
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.refer")
        await _set_state(tx, actor, visit, E.REFER, {"appointment": appointment is not None})
        visit.referral_reason = reason
        visit.referral_appointment = appointment
    return _view(visit)


async def acknowledge_referral_refusal(
    db: Database, actor: Actor, visit_id: str, *, document_version: str, document_digest: str
) -> None:
    """The patient declines the offline referral and signs the acknowledgement (R5).

    ``visit.acknowledge_refusal``: the visit's patient account, on a referred visit.
    """
    await authorize(db, actor, "visit.acknowledge_refusal", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.acknowledge_refusal")
        if VisitState(visit.status) is not S.REFERRED:
            raise tx.refuse(
                InvalidTransition("Only a referred visit has a referral to refuse."),
                actor=actor,
                action="visit.acknowledge_refusal",
                object_type="visit",
                object_id=visit_id,
                details={"state": visit.status},
            )
        await _sign(
            tx,
            actor,
            visit,
            REFERRAL_REFUSAL,
            document_version,
            document_digest,
            "visit.acknowledge_refusal",
        )


# --- Reading ------------------------------------------------------------------------------------


async def get_visit_view(db: Database, actor: Actor, visit_id: str) -> VisitView:
    """One visit for its participants and the staff in scope (``visit.view``; audited)."""
    await authorize(db, actor, "visit.view", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await _load_visit(tx, actor, visit_id, "visit.view")
        await tx.record("visit.view", actor=actor, object_type="visit", object_id=visit_id)
    return _view(visit)


async def list_visits(
    db: Database, actor: Actor, *, states: set[VisitState] | None = None, limit: int = 100
) -> list[VisitView]:
    """The visits the actor may act on, newest first (``visit.list``)."""
    await authorize(db, actor, "visit.list", object_type="visit")
    statement = select(Visit).order_by(Visit.created_at.desc()).limit(max(1, min(limit, 500)))
    if actor.role is Role.PATIENT:
        as_guardian = (
            select(Room.subject_id)
            .join(Participation, Participation.room_id == Room.id)
            .where(
                Room.subject_type == "visit",
                Participation.user_id == actor.user_id,
                Participation.room_role == RoomRole.GUARDIAN.value,
            )
        )
        statement = statement.where(
            or_(Visit.patient_id == actor.user_id, Visit.id.in_(as_guardian))
        )
    elif actor.role is Role.DOCTOR:
        statement = statement.where(Visit.doctor_id == actor.user_id)
    elif actor.role is Role.NURSE:
        statement = statement.where(Visit.institution_id == actor.institution_id)
    else:  # operator
        statement = statement.where(Visit.department_id.in_(sorted(actor.department_ids)))
    if states:
        statement = statement.where(Visit.status.in_(sorted(s.value for s in states)))
    async with db.session() as session:
        rows = (await session.scalars(statement)).all()
    return [_view(row) for row in rows]


async def doctor_queue(
    db: Database, actor: Actor, doctor_id: str | None = None
) -> list[QueueEntry]:
    """A doctor's waiting room and room, in check-in order (``queue.view``).

    A doctor sees its own (``doctor_id`` ignored); nurses and operators name the doctor and see
    it within their scope.
    """
    await authorize(db, actor, "queue.view", object_type="queue", object_id=doctor_id)
    if actor.role is Role.DOCTOR or doctor_id is None:
        doctor_id = actor.user_id
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Visit, Patient.name)
                .outerjoin(Patient, Patient.id == Visit.patient_record_id)
                .where(
                    Visit.doctor_id == doctor_id,
                    Visit.status.in_([S.WAITING.value, S.IN_ROOM.value]),
                )
                .order_by(Visit.checked_in_at)
            )
        ).all()
    entries = []
    for visit, name in rows:
        if access.decide(actor, "queue.view", visit, None) is not None:
            continue
        entries.append(
            QueueEntry(
                visit_id=visit.id,
                state=VisitState(visit.status),
                mode=VisitMode(visit.mode),
                patient_record_id=visit.patient_record_id,
                patient_name=name or "",
                checked_in_at=visit.checked_in_at,
                guardian_present=visit.guardian_present,
            )
        )
    return entries
