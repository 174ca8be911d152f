"""The signed-in patient's own consultations (issue 14): what its waiting page shows, and no
more (R37): the kind, the state, the two institutions' names, the start time, and whether the
consultation's room is open to it now or the inviter asked it out for a part among clinicians.

Like the worklist (``GET /consultations``), the listing is checked by the role table with a
refusal audited; a patient reading its own list is not a view of a record (no patient data, no
clinical text) and the page reads it again on every push, so it is not recorded each time."""

from __future__ import annotations

from sqlalchemy import select

from consult.actor import Actor
from consult.authorization import authorize
from consult.consultations.models import Consultation, ConsultationKind, ConsultationState
from consult.consultations.views import MyConsultationView
from consult.db import Database
from consult.models import Institution, Participation, ParticipationState, Room

MINE_LIMIT = 50
HIDDEN: frozenset[ConsultationState] = frozenset({ConsultationState.DRAFT})
"""A draft is its doctor's own until submitted: the patient hears of it from then on."""


async def my_consultations(
    db: Database, actor: Actor, *, limit: int = MINE_LIMIT
) -> list[MyConsultationView]:
    """The consultations whose patient account is ``actor`` (``consultation.mine``), newest
    first: another patient's never, a staff account refused (audited)."""
    await authorize(db, actor, "consultation.mine", object_type="consultation")
    if actor.user_id is None:
        return []
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(Consultation)
                .where(
                    Consultation.patient_account_id == actor.user_id,
                    Consultation.status.not_in([s.value for s in HIDDEN]),
                )
                .order_by(Consultation.created_at.desc(), Consultation.id)
                .limit(max(1, min(limit, MINE_LIMIT)))
            )
        ).all()
        institution_ids = {r.institution_id for r in rows} | {r.target_institution_id for r in rows}
        names_query = select(Institution.id, Institution.name).where(
            Institution.id.in_(sorted(institution_ids))
        )
        names = {row[0]: row[1] for row in (await session.execute(names_query)).all()}
        room_ids = sorted({r.room_id for r in rows if r.room_id})
        presence_query = (
            select(Participation.room_id, Participation.state)
            .join(Room, Room.id == Participation.room_id)
            .where(
                Participation.room_id.in_(room_ids),
                Participation.user_id == actor.user_id,
                Room.closed_at.is_(None),
            )
        )
        presence = {row[0]: row[1] for row in (await session.execute(presence_query)).all()}
    views = []
    for row in rows:
        state = ConsultationState(row.status)
        here = presence.get(row.room_id) if row.room_id else None
        in_session = state is ConsultationState.IN_SESSION
        views.append(
            MyConsultationView(
                id=row.id,
                kind=ConsultationKind(row.kind),
                state=state,
                institution_name=names.get(row.institution_id, ""),
                target_institution_name=names.get(row.target_institution_id, ""),
                starts_at=row.scheduled_at or row.proposed_start,
                room_open=in_session and here == ParticipationState.ADMITTED.value,
                stepped_out=in_session and here == ParticipationState.WAITING.value,
            )
        )
    return views
