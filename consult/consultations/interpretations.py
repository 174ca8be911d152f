"""Report interpretation requests (R18; seed 004 "报告解读申请及反馈"): once the report is issued,
the patient (or its requesting doctor for it) asks for it to be explained; an expert of the
invited institution answers in writing, or schedules a voice or video call and answers after it.

Who answers: the expert who wrote the issued version, unless the invited institution's consult
centre names another (a verified practitioner of that institution with 3+ years and the title
asked, as R12 wants of any expert on the case). The call is a room of kind ``consultation`` with
subject ``interpretation`` (``consult.rooms``): the expert as ``doctor`` (the host), the patient's
account as ``patient`` and the requesting doctor as ``inviter``, all admitted; join tokens come
from ``POST /interpretations/{id}/join-token`` as for the consultation's own room, and the room
closes when the answer is recorded.

Each change is a move of :data:`~consult.consultations.machines.INTERPRETATION_MACHINE`
(audited, relayed after commit, pushed as ``consultation_changed`` with ``machine:
interpretation``). The question and the answer are SM4-encrypted (R36). The expert sees the
question, the issued report and the patient's age, never its name or record (R37); the patient
sees its own requests only.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from sqlalchemy import or_, select

from consult import rooms
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.consultations.errors import (
    ConsultationNotFound,
    InterpretationNotFound,
    NotYourConsultation,
)
from consult.consultations.followup import issued_report
from consult.consultations.invitations import check_expert
from consult.consultations.loading import (
    REPORT_CONTEXT,
    Loaded,
    load_sides,
    names_of,
    parties_of,
    refuse,
)
from consult.consultations.machines import INTERPRETATION_MACHINE, InterpretationEvent
from consult.consultations.models import (
    AnswerMode,
    Consultation,
    InterpretationState,
    OpinionReport,
    ReportInterpretation,
)
from consult.consultations.views import InterpretationView, MyInterpretationView
from consult.db import Database
from consult.errors import InvalidInput, RoomNotFound
from consult.events import StateChanged, publish
from consult.identifiers import age_on
from consult.models import (
    Participation,
    ParticipationState,
    Patient,
    Practitioner,
    Room,
    RoomKind,
    RoomRole,
)
from consult.permissions import Role
from consult.sqltypes import utc_now

QUESTION_CONTEXT: Final = "report_interpretations.question"
ANSWER_CONTEXT: Final = "report_interpretations.answer"
SUBJECT: Final = "interpretation"
LIST_LIMIT: Final = 200


def _relation(actor: Actor, row: ReportInterpretation, loaded: Loaded) -> frozenset[str]:
    """The caller's relation to an interpretation request: ``patient`` (its own), ``asker``,
    ``requester`` (the consultation's), ``expert`` (named to answer), ``invitee_centre``."""
    if actor.user_id is None or actor.room_id is not None:
        return frozenset()
    found: set[str] = set()
    if actor.role is Role.PATIENT:
        if loaded.row.patient_account_id == actor.user_id:
            found.add("patient")
            if row.asked_by == actor.user_id:
                found.add("asker")
        return frozenset(found)
    if row.asked_by == actor.user_id:
        found.add("asker")
    if actor.role is Role.DOCTOR and row.expert_id == actor.user_id:
        found.add("expert")
    found |= loaded.sides & {"requester", "invitee_centre"}
    return frozenset(found)


def _parties(loaded: Loaded, row: ReportInterpretation) -> tuple[tuple[str, str], ...]:
    parties = list(parties_of(loaded))
    if row.expert_id and ("expert", row.expert_id) not in parties:
        parties.append(("expert", row.expert_id))
    return tuple(parties)


async def _consultation(tx: AuditTx, actor: Actor, consultation_id: str) -> Loaded:
    row = await tx.session.get(Consultation, consultation_id, with_for_update=True)
    if row is None:
        raise ConsultationNotFound()
    return await load_sides(tx, actor, row)


async def ask_interpretation(
    db: Database, actor: Actor, consultation_id: str, question: str
) -> InterpretationView:
    """The patient (its own consultation) or the requesting doctor asks for the issued report
    to be explained (R18). The expert who wrote the version is named to answer."""
    action = "interpretation.ask"
    await authorize(db, actor, action, object_type="consultation", object_id=consultation_id)
    question = question.strip()
    if not question:
        raise InvalidInput("Say what should be explained.")
    async with audited(db) as tx:
        loaded = await _consultation(tx, actor, consultation_id)
        row = loaded.row
        own = (
            actor.role is Role.PATIENT
            and actor.room_id is None
            and row.patient_account_id is not None
            and row.patient_account_id == actor.user_id
        )
        if not own and "requester" not in loaded.sides:
            raise refuse(tx, actor, NotYourConsultation(), action, consultation_id)
        report = await issued_report(tx, actor, row, action)
        assert tx.db is not None and actor.user_id is not None
        interpretation = ReportInterpretation(
            consultation_id=row.id,
            report_id=report.id,
            asked_by=actor.user_id,
            institution_id=row.target_institution_id,
            expert_id=report.created_by,
            status=InterpretationState.ASKED.value,
            mode=AnswerMode.TEXT.value,
            question_enc=tx.db.cipher.encrypt(question, QUESTION_CONTEXT),
            created_at=utc_now(),
        )
        tx.session.add(interpretation)
        await tx.session.flush()
        await tx.record(
            action,
            actor=actor,
            object_type="interpretation",
            object_id=interpretation.id,
            details={
                "consultation_id": row.id,
                "report_id": report.id,
                "on_behalf": not own,
            },
        )
        publish(
            tx,
            StateChanged(
                "interpretation",
                interpretation.id,
                "",
                InterpretationState.ASKED.value,
                "ask",
                actor.user_id,
                _parties(loaded, interpretation),
            ),
        )
        return await _view(tx, actor, interpretation, loaded)


async def _load(
    tx: AuditTx, actor: Actor, interpretation_id: str, action: str, needs: frozenset[str]
) -> tuple[ReportInterpretation, Loaded]:
    row = await tx.session.get(ReportInterpretation, interpretation_id, with_for_update=True)
    if row is None:
        raise InterpretationNotFound()
    loaded = await _consultation(tx, actor, row.consultation_id)
    if not _relation(actor, row, loaded) & needs:
        raise tx.refuse(
            NotYourConsultation(),
            actor=actor,
            action=action,
            object_type="interpretation",
            object_id=interpretation_id,
        )
    return row, loaded


async def assign_interpreter(
    db: Database, actor: Actor, interpretation_id: str, expert_id: str
) -> InterpretationView:
    """The invited centre names the expert who answers (R12 checked, as for an invitation)."""
    action = "interpretation.assign"
    await authorize(db, actor, action, object_type="interpretation", object_id=interpretation_id)
    async with audited(db) as tx:
        row, loaded = await _load(
            tx, actor, interpretation_id, action, frozenset({"invitee_centre"})
        )
        practitioner = await tx.session.get(Practitioner, expert_id)
        problem = check_expert(practitioner, loaded.row)
        if problem is not None:
            raise tx.refuse(
                problem,
                actor=actor,
                action=action,
                object_type="interpretation",
                object_id=interpretation_id,
                details={"expert_id": expert_id},
            )
        previous = row.expert_id
        row.expert_id = expert_id
        await INTERPRETATION_MACHINE.set_state(
            tx,
            actor,
            row,
            InterpretationEvent.ASSIGN,
            {"expert_id": expert_id, "previous": previous},
            parties=_parties(loaded, row) + ((("expert", previous),) if previous else ()),
        )
        return await _view(tx, actor, row, loaded)


async def answer_interpretation(
    db: Database, actor: Actor, interpretation_id: str, answer: str
) -> InterpretationView:
    """The named expert answers in writing (required unless a call was held: then a summary,
    optional); a call's room closes (R18)."""
    action = "interpretation.answer"
    await authorize(db, actor, action, object_type="interpretation", object_id=interpretation_id)
    answer = answer.strip()
    async with audited(db) as tx:
        row, loaded = await _load(tx, actor, interpretation_id, action, frozenset({"expert"}))
        if not answer and row.status == InterpretationState.ASKED.value:
            raise tx.refuse(
                InvalidInput("A written answer is required (or schedule a call)."),
                actor=actor,
                action=action,
                object_type="interpretation",
                object_id=interpretation_id,
            )
        await INTERPRETATION_MACHINE.set_state(
            tx,
            actor,
            row,
            InterpretationEvent.ANSWER,
            {"mode": row.mode, "written": bool(answer)},
            parties=_parties(loaded, row),
        )
        assert tx.db is not None
        row.answer_enc = tx.db.cipher.encrypt(answer, ANSWER_CONTEXT) if answer else None
        row.answered_at = utc_now()
        await _close_room(tx, row)
        return await _view(tx, actor, row, loaded)


async def schedule_call(
    db: Database,
    actor: Actor,
    interpretation_id: str,
    mode: AnswerMode,
    scheduled_at: datetime | None = None,
) -> InterpretationView:
    """The named expert answers by voice or video: the call's room opens with the expert, the
    patient's account and the requesting doctor (R18)."""
    action = "interpretation.schedule"
    await authorize(db, actor, action, object_type="interpretation", object_id=interpretation_id)
    if mode is AnswerMode.TEXT:
        raise InvalidInput("A call is by voice or video.")
    async with audited(db) as tx:
        row, loaded = await _load(tx, actor, interpretation_id, action, frozenset({"expert"}))
        await INTERPRETATION_MACHINE.set_state(
            tx,
            actor,
            row,
            InterpretationEvent.SCHEDULE,
            {"mode": mode.value, "at": scheduled_at.isoformat() if scheduled_at else None},
            parties=_parties(loaded, row),
        )
        row.mode = mode.value
        row.scheduled_at = scheduled_at or utc_now()
        room = await _open_room(tx, actor, row, loaded.row)
        row.room_id = room.id
        return await _view(tx, actor, row, loaded)


async def cancel_interpretation(
    db: Database, actor: Actor, interpretation_id: str
) -> InterpretationView:
    """The one who asked withdraws a request not yet answered; a call's room closes."""
    action = "interpretation.cancel"
    await authorize(db, actor, action, object_type="interpretation", object_id=interpretation_id)
    async with audited(db) as tx:
        row, loaded = await _load(tx, actor, interpretation_id, action, frozenset({"asker"}))
        await INTERPRETATION_MACHINE.set_state(
            tx, actor, row, InterpretationEvent.CANCEL, parties=_parties(loaded, row)
        )
        await _close_room(tx, row)
        return await _view(tx, actor, row, loaded)


async def _open_room(
    tx: AuditTx, actor: Actor, row: ReportInterpretation, consultation: Consultation
) -> Room:
    room = await rooms.room_of(tx.session, SUBJECT, row.id)
    if room is None:
        room = await rooms.open_room(
            tx.session,
            kind=RoomKind.CONSULTATION,
            subject_type=SUBJECT,
            subject_id=row.id,
            institution_id=row.institution_id,
        )
    assert row.expert_id is not None
    admitted = ParticipationState.ADMITTED
    await rooms.add_participant(
        tx.session,
        room,
        row.expert_id,
        RoomRole.DOCTOR,
        admitted,
        institution_id=row.institution_id,
    )
    if consultation.patient_account_id:
        await rooms.add_participant(
            tx.session,
            room,
            consultation.patient_account_id,
            RoomRole.PATIENT,
            admitted,
            institution_id=consultation.institution_id,
            invited_by=row.expert_id,
        )
    await rooms.add_participant(
        tx.session,
        room,
        consultation.requested_by,
        RoomRole.INVITER,
        admitted,
        institution_id=consultation.institution_id,
        invited_by=row.expert_id,
    )
    await tx.record(
        "interpretation.open_room",
        actor=actor,
        object_type="interpretation",
        object_id=row.id,
        details={"room_id": room.id},
    )
    return room


async def _close_room(tx: AuditTx, row: ReportInterpretation) -> None:
    if row.room_id is None:
        return
    room = await tx.session.get(Room, row.room_id)
    if room is not None and room.closed_at is None:
        room.closed_at = utc_now()


async def interpretation_room_id(db: Database, interpretation_id: str) -> str:
    """The call's room id; whether the caller may enter is the room's policy (participation,
    admitted, the room open: ``consult.rooms.enter``)."""
    async with db.session() as session:
        row = await session.get(ReportInterpretation, interpretation_id)
    if row is None:
        raise InterpretationNotFound()
    if row.room_id is None:
        raise RoomNotFound()
    return row.room_id


# --- Reading --------------------------------------------------------------------------------------


async def _view(
    tx: AuditTx, actor: Actor, row: ReportInterpretation, loaded: Loaded
) -> InterpretationView:
    return (await _views(tx.session, tx.db.cipher if tx.db else None, actor, [(row, loaded)]))[0]


async def _views(
    session: Any, cipher: Any, actor: Actor, pairs: list[tuple[ReportInterpretation, Loaded]]
) -> list[InterpretationView]:
    names = await names_of(session, sorted({r.expert_id for r, _ in pairs if r.expert_id}))
    today = utc_now().date()
    views = []
    for row, loaded in pairs:
        report = await session.get(OpinionReport, row.report_id)
        patient = await session.get(Patient, loaded.row.patient_id)
        views.append(
            InterpretationView(
                id=row.id,
                consultation_id=row.consultation_id,
                report_id=row.report_id,
                state=InterpretationState(row.status),
                mode=AnswerMode(row.mode),
                asked_by_patient=row.asked_by == loaded.row.patient_account_id,
                question=cipher.decrypt(row.question_enc, QUESTION_CONTEXT),
                answer=cipher.decrypt(row.answer_enc, ANSWER_CONTEXT) if row.answer_enc else None,
                expert_id=row.expert_id,
                expert_name=names.get(row.expert_id) if row.expert_id else None,
                institution_id=row.institution_id,
                patient_age=age_on(patient.birth_date, today) if patient is not None else None,
                report=json.loads(cipher.decrypt(report.content_enc, REPORT_CONTEXT))
                if report is not None
                else {},
                scheduled_at=row.scheduled_at,
                room_id=row.room_id,
                answered_at=row.answered_at,
                created_at=row.created_at,
                sides=tuple(sorted(_relation(actor, row, loaded))),
            )
        )
    return views


async def list_interpretations(db: Database, actor: Actor) -> list[InterpretationView]:
    """The caller's interpretation requests, newest first: an expert's inbox (named to answer),
    the invited centre's (to assign), the requesting doctor's. Reading them is audited (R24)."""
    action = "interpretation.list"
    await authorize(db, actor, action, object_type="interpretation")
    async with audited(db) as tx:
        query = (
            select(ReportInterpretation)
            .join(Consultation, Consultation.id == ReportInterpretation.consultation_id)
            .where(
                or_(
                    ReportInterpretation.expert_id == actor.user_id,
                    ReportInterpretation.asked_by == actor.user_id,
                    ReportInterpretation.institution_id == actor.institution_id,
                    Consultation.institution_id == actor.institution_id,
                )
            )
            .order_by(ReportInterpretation.created_at.desc(), ReportInterpretation.id)
            .limit(LIST_LIMIT)
        )
        rows = (await tx.session.scalars(query)).all()
        pairs = []
        for row in rows:
            consultation = await tx.session.get(Consultation, row.consultation_id)
            assert consultation is not None
            loaded = await load_sides(tx, actor, consultation)
            if _relation(actor, row, loaded):
                pairs.append((row, loaded))
        if pairs:
            await tx.record(
                action,
                actor=actor,
                object_type="interpretation",
                details={"count": len(pairs)},
            )
        return await _views(tx.session, tx.db.cipher if tx.db else None, actor, pairs)


async def my_interpretations(db: Database, actor: Actor) -> list[MyInterpretationView]:
    """The signed-in patient's interpretation requests (``interpretation.mine``), asked by it or
    for it, with the answers; ``room_open`` while a call waits for it. Another patient's never."""
    await authorize(db, actor, "interpretation.mine", object_type="interpretation")
    if actor.user_id is None:
        return []
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(ReportInterpretation)
                .join(Consultation, Consultation.id == ReportInterpretation.consultation_id)
                .where(Consultation.patient_account_id == actor.user_id)
                .order_by(ReportInterpretation.created_at.desc(), ReportInterpretation.id)
                .limit(LIST_LIMIT)
            )
        ).all()
        names = await names_of(session, sorted({r.expert_id for r in rows if r.expert_id}))
        room_ids = sorted({r.room_id for r in rows if r.room_id})
        open_rooms = set(
            (
                await session.scalars(
                    select(Participation.room_id)
                    .join(Room, Room.id == Participation.room_id)
                    .where(
                        Participation.room_id.in_(room_ids),
                        Participation.user_id == actor.user_id,
                        Participation.state == ParticipationState.ADMITTED.value,
                        Room.closed_at.is_(None),
                    )
                )
            ).all()
        )
        cipher = db.cipher
    return [
        MyInterpretationView(
            id=r.id,
            consultation_id=r.consultation_id,
            state=InterpretationState(r.status),
            mode=AnswerMode(r.mode),
            question=cipher.decrypt(r.question_enc, QUESTION_CONTEXT),
            answer=cipher.decrypt(r.answer_enc, ANSWER_CONTEXT) if r.answer_enc else None,
            expert_name=names.get(r.expert_id) if r.expert_id else None,
            scheduled_at=r.scheduled_at,
            room_open=r.status == InterpretationState.SCHEDULED.value and r.room_id in open_rooms,
            created_at=r.created_at,
            answered_at=r.answered_at,
        )
        for r in rows
    ]
