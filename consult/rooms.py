"""Rooms and who is in them (issue 11): opening a room, following its subject, joining it.

A :class:`~consult.models.Room` belongs to a subject (a visit now; a consultation or a review
later) and holds :class:`~consult.models.Participation` rows: one per person, with a room role
(doctor, patient, guardian, companion, interpreter, inviter, invitee, observer) and a state
(waiting, admitted, left). Join tokens, signaling rooms, chat, recordings and the timeline are
keyed by the room's id.

A visit's room follows the visit's state machine (:func:`follow_visit`, called in the same
transaction as the transition): booking opens it with the doctor (admitted: the host) and the
patient-side account (waiting; ``guardian`` when that account is a ward's guardian's), and a
separate guardian account if the patient record has one; check-in marks who arrived in the
waiting room; admission lets in everyone who arrived; sending back puts them back to waiting;
ending, referring or cancelling closes the room.

Who may do what in a room is :mod:`consult.access`; this module applies it to joining
(:func:`enter`, :func:`authenticate_join`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consult import access
from consult.actor import Actor
from consult.audit import AuditTx, audited
from consult.authorization import authorize
from consult.crypto import sm3_hex
from consult.db import Database
from consult.decision_cache import PerDatabase, token_key
from consult.errors import (
    ConsultError,
    InvalidInput,
    InvalidTransition,
    InvitationExpired,
    InvitationNotFound,
    InvitationUsed,
    NotAParticipant,
    RoomNotFound,
    TokenRevoked,
    VisitNotFound,
)
from consult.events import ParticipationChanged, VisitPeopleChanged, publish
from consult.identifiers import age_on
from consult.models import (
    AuditResult,
    Participation,
    ParticipationState,
    Patient,
    Room,
    RoomInvitation,
    RoomKind,
    RoomRole,
    Session,
    User,
    Visit,
)
from consult.patients import verified_guardian
from consult.permissions import Role
from consult.sessions import join_token_alive
from consult.sqltypes import new_id, utc_now
from consult.tokens import verify_join_token

logger = logging.getLogger(__name__)

W, A = ParticipationState.WAITING, ParticipationState.ADMITTED
GUARDIAN_AGE = 6
"""R4: a patient younger than this needs a guardian present before the doctor starts."""


@dataclass(frozen=True)
class ParticipantView:
    """One person of a room, as the room's people and its host see it."""

    user_id: str
    room_role: RoomRole
    state: ParticipationState
    label: str
    """The display name (or the label an invitation gave)."""
    arrived: bool


@dataclass(frozen=True)
class RoomView:
    """A room and its people."""

    id: str
    kind: RoomKind
    subject_type: str
    subject_id: str
    institution_id: str | None
    closed: bool
    participants: tuple[ParticipantView, ...]


# --- Opening and finding -----------------------------------------------------------------------


async def open_room(
    session: AsyncSession,
    *,
    kind: RoomKind,
    subject_type: str,
    subject_id: str,
    institution_id: str | None,
) -> Room:
    """A new room for a subject (one room per subject), flushed."""
    room = Room(
        id=new_id(),
        kind=kind.value,
        subject_type=subject_type,
        subject_id=subject_id,
        institution_id=institution_id,
        created_at=utc_now(),
    )
    session.add(room)
    await session.flush()
    return room


async def add_participant(
    session: AsyncSession,
    room: Room,
    user_id: str,
    room_role: RoomRole,
    state: ParticipationState,
    *,
    institution_id: str | None = None,
    invited_by: str | None = None,
    arrived: bool = False,
) -> Participation:
    """Put a person into a room (flushed); an existing participation is returned as it is."""
    existing = await access.participation_of(session, room.id, user_id)
    if existing is not None:
        return existing
    now = utc_now()
    row = Participation(
        id=new_id(),
        room_id=room.id,
        user_id=user_id,
        room_role=room_role.value,
        state=state.value,
        institution_id=institution_id,
        invited_by=invited_by,
        arrived_at=now if arrived else None,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def room_of(session: AsyncSession, subject_type: str, subject_id: str) -> Room | None:
    """The room of a subject (``"visit"``, its id), or ``None``."""
    return await session.scalar(
        select(Room).where(Room.subject_type == subject_type, Room.subject_id == subject_id)
    )


async def visit_room_id(db: Database, visit_id: str) -> str | None:
    """The id of a visit's room (``None``: no such visit)."""
    async with db.session() as session:
        return await access.visit_room_id(session, visit_id)


async def subject_of(db: Database, room_id: str) -> tuple[str, str] | None:
    """What a room belongs to: ``(subject_type, subject_id)``, or ``None`` for no such room."""
    async with db.session() as session:
        row = (
            await session.execute(
                select(Room.subject_type, Room.subject_id).where(Room.id == room_id)
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def participants(session: AsyncSession, room_id: str) -> list[tuple[Participation, str]]:
    """The room's participations with each person's display name, oldest first."""
    rows = (
        await session.execute(
            select(Participation, User.display_name)
            .join(User, User.id == Participation.user_id)
            .where(Participation.room_id == room_id)
            .order_by(Participation.created_at, Participation.id)
        )
    ).all()
    return [(p, name) for p, name in rows]


def _view(room: Room, people: list[tuple[Participation, str]]) -> RoomView:
    return RoomView(
        id=room.id,
        kind=RoomKind(room.kind),
        subject_type=room.subject_type,
        subject_id=room.subject_id,
        institution_id=room.institution_id,
        closed=room.closed_at is not None,
        participants=tuple(
            ParticipantView(
                user_id=p.user_id,
                room_role=RoomRole(p.room_role),
                state=ParticipationState(p.state),
                label=name,
                arrived=p.arrived_at is not None,
            )
            for p, name in people
        ),
    )


async def get_room(db: Database, actor: Actor, room_id: str) -> RoomView:
    """A room and its people, for its participants (``room.view``; refusals audited)."""
    async with audited(db) as tx:
        room = await tx.session.get(Room, room_id)
        if room is None:
            raise RoomNotFound()
        await access.check(tx, actor, "room.view", room)
        people = await participants(tx.session, room.id)
    return _view(room, people)


# --- A visit's room follows the visit ------------------------------------------------------------


def patient_side_role(record: Patient | None, account_id: str) -> RoomRole:
    """The room role of a visit's patient-side account: ``guardian`` when it is not the patient
    record's own account (a ward has none; its guardian's account books and joins for it)."""
    if record is not None and record.user_id not in (None, account_id):
        return RoomRole.GUARDIAN
    if record is not None and record.user_id is None and record.guardian_id is not None:
        return RoomRole.GUARDIAN
    return RoomRole.PATIENT


async def guardian_account(session: AsyncSession, record: Patient | None) -> str | None:
    """The account of a patient record's guardian, if it has one and staff verified the
    relation (issue 13 item 3)."""
    if record is None:
        return None
    guardian = await verified_guardian(session, record)
    return None if guardian is None else guardian.user_id


async def open_visit_room(session: AsyncSession, visit: Visit, record: Patient | None) -> Room:
    """Open a booked visit's room: its doctor (admitted), its patient-side account (waiting), and
    the record's guardian if that is another account (waiting, R4)."""
    room = await open_room(
        session,
        kind=RoomKind.VISIT,
        subject_type="visit",
        subject_id=visit.id,
        institution_id=visit.institution_id,
    )
    await add_participant(
        session, room, visit.doctor_id, RoomRole.DOCTOR, A, institution_id=visit.institution_id
    )
    side = patient_side_role(record, visit.patient_id)
    await add_participant(session, room, visit.patient_id, side, W)
    guardian = await guardian_account(session, record)
    if guardian is not None and guardian != visit.patient_id:
        await add_participant(session, room, guardian, RoomRole.GUARDIAN, W)
    return room


async def visit_room(session: AsyncSession, visit: Visit) -> Room:
    """A visit's room (every visit has one: booking opens it, migration 0007 made the old ones)."""
    room = await room_of(session, "visit", visit.id)
    if room is None:  # a visit inserted behind the services' back (a test's fixture)
        record = (
            await session.get(Patient, visit.patient_record_id) if visit.patient_record_id else None
        )
        room = await open_visit_room(session, visit, record)
    return room


async def guardian_accounts(session: AsyncSession, visit: Visit) -> list[str]:
    """The accounts of the visit's guardians other than its patient-side account (a child with
    its own account books; the guardian comes on another): its changes concern them too."""
    room = await room_of(session, "visit", visit.id)
    if room is None:
        return []
    found = await session.scalars(
        select(Participation.user_id).where(
            Participation.room_id == room.id,
            Participation.room_role == RoomRole.GUARDIAN.value,
            Participation.user_id != visit.patient_id,
        )
    )
    return sorted(found)


async def visit_parties(
    session: AsyncSession, visit: Visit, *also: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    """``(role, user_id)`` of the people a visit's changes concern: its doctor, its patient-side
    account and a guardian on its own account (its waiting room follows the visit), and
    ``also``."""
    guardians = await guardian_accounts(session, visit)
    return (
        ("doctor", visit.doctor_id),
        ("patient", visit.patient_id),
        *(("guardian", user_id) for user_id in guardians),
        *also,
    )


async def under_guardian_age(session: AsyncSession, visit: Visit) -> bool:
    """Whether the visit's patient is younger than 6 (R4)."""
    if visit.patient_record_id is None:
        return False
    record = await session.get(Patient, visit.patient_record_id)
    return record is not None and age_on(record.birth_date, date.today()) < GUARDIAN_AGE


async def guardian_present(session: AsyncSession, room: Room) -> bool:
    """Whether a guardian has come to the room (arrived, and not gone)."""
    found = await session.scalar(
        select(Participation.id).where(
            Participation.room_id == room.id,
            Participation.room_role == RoomRole.GUARDIAN.value,
            Participation.arrived_at.is_not(None),
            Participation.state != ParticipationState.LEFT.value,
        )
    )
    return found is not None


async def arrive(session: AsyncSession, room: Room, user_id: str) -> Participation | None:
    """Mark that a person came to the waiting room (check-in); returns its participation."""
    row = await access.participation_of(session, room.id, user_id)
    if row is not None and row.arrived_at is None:
        row.arrived_at = utc_now()
        row.updated_at = row.arrived_at
    return row


async def arrive_late(tx: AuditTx, actor: Actor, visit: Visit) -> Participation | None:
    """A person of the patient's side checks in after the patient-side account did (the visit
    waiting or in the room): a guardian, R4. Returns its participation (``None``: it has none).

    Waiting, it waits with the patient and the doctor's admission lets it in. In the room, a
    guardian is let in at once: the doctor already admitted this patient's side, the guardian
    is the record's verified one, and R4 wants it there; nobody has to admit it a second time
    (an invited companion or interpreter still waits for the doctor, :func:`admit_participant`).
    The doctor's queue and the people's waiting pages are told (:class:`VisitPeopleChanged`).
    """
    room = await visit_room(tx.session, visit)
    row = await arrive(tx.session, room, actor.user_id or "")
    if row is None:
        return None
    straight_in = (
        visit.status == "in_room"
        and row.room_role == RoomRole.GUARDIAN.value
        and row.state == W.value
    )
    if straight_in:
        row.state = A.value
        row.updated_at = utc_now()
    await tx.record(
        "visit.check_in",
        actor=actor,
        object_type="visit",
        object_id=visit.id,
        details={"arrived": row.room_role, "room": room.id, "admitted": straight_in},
    )
    parties = await visit_parties(tx.session, visit, (row.room_role, row.user_id))
    publish(tx, VisitPeopleChanged(visit.id, visit.status, "arrived", row.room_role, parties))
    logger.info("visit %s: a %s arrived late (in: %s)", visit.id, row.room_role, straight_in)
    return row


async def follow_visit(session: AsyncSession, visit: Visit, event: str, actor: Actor) -> Room:
    """Move the visit's room along with a visit transition (same transaction)."""
    room = await visit_room(session, visit)
    people = (
        await session.scalars(select(Participation).where(Participation.room_id == room.id))
    ).all()
    now = utc_now()

    def move(row: Participation, state: ParticipationState) -> None:
        if row.state != state.value:
            row.state = state.value
            row.updated_at = now

    if event == "check_in":
        arrived = visit.patient_id if actor.role is not Role.PATIENT else actor.user_id
        if arrived is not None:
            await arrive(session, room, arrived)
    for row in people:
        host = RoomRole(row.room_role) in access.HOST_ROLES
        if event == "admit" and not host and row.state == W.value and row.arrived_at is not None:
            move(row, A)
        elif event == "send_back" and not host and row.state == A.value:
            move(row, W)
        elif event in ("end", "refer", "cancel"):
            move(row, ParticipationState.LEFT)
    if event in ("end", "refer", "cancel") and room.closed_at is None:
        room.closed_at = now
    return room


# --- Joining -------------------------------------------------------------------------------------


async def authenticate_join(
    db: Database, secret: str, token: object, *, source_ip: str | None = None
) -> Actor:
    """The actor a join token stands for: verified, its room and participation checked.

    Raises ``token_missing``/``token_invalid``/``token_expired`` (the token itself),
    :class:`RoomNotFound`, :class:`NotAParticipant` (no participation in that room role, or the
    account deactivated), :class:`TokenRevoked` (its session ended or the password changed).
    """
    claims = verify_join_token(secret, token)  # the signature and the expiry: every time
    assert isinstance(token, str)  # verified
    cache = _joins_of(db)
    key = token_key(token)
    known = cache.get(key)
    if known is not None and (known.session_ends is None or utc_now() < known.session_ends):
        return replace(known.actor, source_ip=source_ip)
    stamp = cache.stamp()  # before the rows are read (consult.decision_cache)
    async with db.session() as session:
        room = await session.get(Room, claims.room_id)
        if room is None:
            raise RoomNotFound()
        user = await session.get(User, claims.user_id)
        if user is None or not user.is_active:
            logger.info("join refused for room %s: account inactive", room.id)
            raise NotAParticipant("The account is not active.")
        if not await join_token_alive(session, claims, user):
            logger.info("join refused for room %s: token revoked", room.id)
            raise TokenRevoked()
        row = await access.participation_of(session, room.id, user.id)
        if row is None or row.room_role != claims.role:
            logger.info("join refused for room %s: not a participant as %s", room.id, claims.role)
            raise NotAParticipant()
        issuer = await session.get(Session, claims.session_id) if claims.session_id else None
    actor = Actor(
        user_id=user.id,
        role=Role(user.role),
        session_id=claims.session_id,
        source_ip=source_ip,
        institution_id=user.institution_id,
        room_id=room.id,
        room_role=row.room_role,
        display_name=user.display_name,
    )
    ends = issuer.expires_at if issuer is not None else None
    cache.put(key, _Join(actor, ends), stamp)
    return actor


@dataclass(frozen=True)
class _Join:
    """What a join token was found to stand for a moment ago (:func:`authenticate_join`)."""

    actor: Actor
    session_ends: datetime | None
    """The absolute end of the session that issued it (None: the command line's token)."""


_joins_of: PerDatabase[bytes, _Join] = PerDatabase()
"""Join tokens recently checked against their room, account and session (by
:func:`~consult.decision_cache.token_key`), forgotten when this process changes any of them
and after two seconds whatever happens; the token's own signature and expiry are checked on
every use."""


async def enter(db: Database, actor: Actor, room_id: str, *, audit: bool = True) -> Participation:
    """Whether ``actor`` may be in the room now (``room.join``): the one policy, every answer
    audited (``ok`` or ``denied``) unless ``audit`` is false (asked again on ``join``).

    Raises :class:`RoomNotFound`, :class:`NotAParticipant`, :class:`NotAdmitted` (still
    waiting), ``visit_closed`` (the room closed), ``forbidden`` (the role table).
    """
    error: ConsultError | None = None
    async with db.session() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise RoomNotFound()
        participation = await access.participation_of(session, room.id, actor.user_id)
    error = access.decide(actor, "room.join", room, participation)
    if audit:
        async with audited(db) as tx:
            await tx.record(
                "room.join",
                actor=actor,
                object_type="room",
                object_id=room.id,
                result=AuditResult.OK if error is None else AuditResult.DENIED,
                details={
                    "room_role": participation.room_role if participation else None,
                    **({"code": error.code} if error else {}),
                },
            )
    if error is not None:
        logger.info("room join refused for room %s: %s", room.id, error.code)
        raise error
    assert participation is not None
    return participation


async def enter_visit_room(db: Database, actor: Actor, visit_id: str) -> tuple[str, str]:
    """Before a join token is issued: the visit's room id and the actor's room role there, if
    it may enter now (see :func:`enter`)."""
    room_id = await visit_room_id(db, visit_id)
    if room_id is None:
        raise VisitNotFound()
    participation = await enter(db, actor, room_id)
    return room_id, participation.room_role


__all__ = [
    "GUARDIAN_AGE",
    "Invitation",
    "ParticipantView",
    "PatientSide",
    "RoomView",
    "add_participant",
    "admit_participant",
    "arrive",
    "arrive_late",
    "authenticate_join",
    "enter",
    "enter_visit_room",
    "follow_visit",
    "get_room",
    "guardian_accounts",
    "guardian_present",
    "invite",
    "open_room",
    "open_visit_room",
    "participants",
    "patient_side",
    "patient_side_role",
    "redeem",
    "room_of",
    "subject_of",
    "under_guardian_age",
    "visit_parties",
    "visit_room",
    "visit_room_id",
]


# --- Invitations: a companion or an interpreter joins by a single-use link (R4, issue 11) ------

INVITABLE = frozenset({RoomRole.COMPANION, RoomRole.INTERPRETER})
INVITATION_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Invitation:
    """A new invitation: ``code`` is the link's secret, shown once and stored only as a digest."""

    id: str
    room_id: str
    room_role: RoomRole
    label: str
    code: str
    expires_at: datetime


async def invite(
    db: Database, actor: Actor, visit_id: str, room_role: RoomRole | str, label: str
) -> Invitation:
    """The visit's doctor invites a companion or an interpreter (``room.invite``; audited)."""
    await authorize(db, actor, "room.invite", object_type="visit", object_id=visit_id)
    try:
        role = RoomRole(room_role)
    except ValueError:
        raise InvalidInput("Invite a companion or an interpreter.") from None
    if role not in INVITABLE:
        raise InvalidInput("Invite a companion or an interpreter.")
    label = (label or "").strip()
    if not 1 <= len(label) <= 64:
        raise InvalidInput("Name the person invited (up to 64 characters).")
    code = secrets.token_urlsafe(24)
    async with audited(db) as tx:
        visit = await tx.session.get(Visit, visit_id)
        if visit is None:
            raise VisitNotFound()
        room = await visit_room(tx.session, visit)
        await access.check(tx, actor, "room.invite", room)
        assert actor.user_id is not None
        row = RoomInvitation(
            id=new_id(),
            room_id=room.id,
            room_role=role.value,
            secret_digest=sm3_hex(code),
            label=label,
            created_by=actor.user_id,
            created_at=utc_now(),
            expires_at=utc_now() + INVITATION_TTL,
        )
        tx.session.add(row)
        await tx.session.flush()
        await tx.record(
            "room.invite",
            actor=actor,
            object_type="room",
            object_id=room.id,
            details={"invitation": row.id, "room_role": role.value},
        )
    return Invitation(row.id, room.id, role, label, code, row.expires_at)


async def redeem(db: Database, actor: Actor, code: str) -> Participation:
    """A signed-in account takes up an invitation: it joins the room's waiting room in the
    invited room role, to be admitted by the doctor like the patient. Single use: the second
    redemption is ``invitation_used``; a late one or one for a closed room ``invitation_expired``.
    """
    await authorize(db, actor, "room.redeem", object_type="room")
    if not isinstance(code, str) or not 16 <= len(code) <= 64:
        raise InvitationNotFound()
    digest = sm3_hex(code)
    async with audited(db) as tx:
        row = await tx.session.scalar(
            select(RoomInvitation).where(RoomInvitation.secret_digest == digest).with_for_update()
        )
        if row is None:
            raise InvitationNotFound()

        def refuse(error: ConsultError) -> ConsultError:
            return tx.refuse(
                error,
                actor=actor,
                action="room.redeem",
                object_type="room",
                object_id=row.room_id,
                details={"invitation": row.id},
            )

        if row.used_at is not None:
            raise refuse(InvitationUsed())
        room = await tx.session.get(Room, row.room_id)
        if room is None or room.closed_at is not None or utc_now() >= row.expires_at:
            raise refuse(InvitationExpired())
        assert actor.user_id is not None
        if await access.participation_of(tx.session, room.id, actor.user_id) is not None:
            raise refuse(InvitationUsed("You take part in this room already."))
        used = await tx.session.execute(
            update(RoomInvitation)
            .where(RoomInvitation.id == row.id, RoomInvitation.used_at.is_(None))
            .values(used_at=utc_now(), used_by=actor.user_id)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise refuse(InvitationUsed())
        participation = await add_participant(
            tx.session,
            room,
            actor.user_id,
            RoomRole(row.room_role),
            ParticipationState.WAITING,
            invited_by=row.created_by,
            arrived=True,
        )
        await tx.record(
            "room.redeem",
            actor=actor,
            object_type="room",
            object_id=room.id,
            details={"invitation": row.id, "room_role": row.room_role},
        )
    return participation


async def admit_participant(db: Database, actor: Actor, visit_id: str, user_id: str) -> None:
    """The doctor lets one waiting person in (a companion who came while the visit is on)."""
    await authorize(db, actor, "visit.admit", object_type="visit", object_id=visit_id)
    async with audited(db) as tx:
        visit = await tx.session.get(Visit, visit_id)
        if visit is None:
            raise VisitNotFound()
        room = await visit_room(tx.session, visit)
        await access.check(tx, actor, "room.admit", room)
        row = await access.participation_of(tx.session, room.id, user_id)
        if (
            row is None
            or row.state != ParticipationState.WAITING.value
            or visit.status != "in_room"
        ):
            raise tx.refuse(
                InvalidTransition("Only a waiting person of a visit in the room is admitted."),
                actor=actor,
                action="room.admit",
                object_type="room",
                object_id=room.id,
            )
        row.state = ParticipationState.ADMITTED.value
        row.updated_at = utc_now()
        await tx.record(
            "room.admit",
            actor=actor,
            object_type="room",
            object_id=room.id,
            details={"participant": user_id, "room_role": row.room_role},
        )
        parties = await visit_parties(tx.session, visit, (row.room_role, user_id))
        publish(tx, VisitPeopleChanged(visit.id, visit.status, "admitted", row.room_role, parties))


STEP_OUT_ROLES: Final = frozenset(
    {RoomRole.PATIENT, RoomRole.GUARDIAN, RoomRole.COMPANION, RoomRole.INTERPRETER}
)
"""Who a consultation's host may ask out for a part among clinicians, and back in."""


async def step_out(
    db: Database, actor: Actor, room_id: str, user_id: str, *, out: bool
) -> Participation:
    """A consultation's host (the inviter) asks the patient's side out of the room for a part
    among clinicians (``out``), or back in. Out, the person waits: a join is ``not_admitted``
    and its live sockets are taken off the room at once (signaling follows the
    :class:`~consult.events.ParticipationChanged` event); back in, its pages are told."""
    action = "room.admit"
    async with audited(db) as tx:
        room = await tx.session.get(Room, room_id)
        if room is None:
            raise RoomNotFound()
        await access.check(tx, actor, action, room)
        row = await access.participation_of(tx.session, room.id, user_id)
        before, after = (
            (ParticipationState.ADMITTED, ParticipationState.WAITING)
            if out
            else (ParticipationState.WAITING, ParticipationState.ADMITTED)
        )
        if (
            room.kind != RoomKind.CONSULTATION.value
            or room.closed_at is not None
            or row is None
            or row.room_role not in STEP_OUT_ROLES
            or row.state != before.value
        ):
            raise tx.refuse(
                InvalidTransition(
                    "Only the patient's side of an open consultation room steps out, and back."
                ),
                actor=actor,
                action=action,
                object_type="room",
                object_id=room.id,
            )
        row.state = after.value
        row.updated_at = utc_now()
        await tx.record(
            "room.step_out" if out else "room.step_in",
            actor=actor,
            object_type="room",
            object_id=room.id,
            details={"participant": user_id, "room_role": row.room_role},
        )
        publish(
            tx,
            ParticipationChanged(
                room_id=room.id,
                user_id=user_id,
                state=after.value,
                reason="stepped_out" if out else "stepped_in",
            ),
        )
    logger.info("room %s: a %s %s", room_id, row.room_role, "stepped out" if out else "is back")
    return row


@dataclass(frozen=True)
class PatientSide:
    """One person of a consultation room's patient's side, and whether the host asked it out."""

    user_id: str
    room_role: str
    stepped_out: bool


async def patient_side(db: Database, room_id: str) -> list[PatientSide]:
    """The patient's side of an open consultation room (the people its host may ask out, see
    :func:`step_out`), oldest first; empty for any other room. There a waiting participation is
    one the host asked out: a consultation room lets its people in from the start. What the
    room's pages show the doctors-only part by (signaling's ``participants``)."""
    async with db.session() as session:
        rows = (
            await session.execute(
                select(Participation.user_id, Participation.room_role, Participation.state)
                .join(Room, Room.id == Participation.room_id)
                .where(
                    Participation.room_id == room_id,
                    Room.kind == RoomKind.CONSULTATION.value,
                    Room.closed_at.is_(None),
                    Participation.room_role.in_(sorted(r.value for r in STEP_OUT_ROLES)),
                    Participation.state != ParticipationState.LEFT.value,
                )
                .order_by(Participation.created_at, Participation.id)
            )
        ).all()
    return [
        PatientSide(user_id, role, state == ParticipationState.WAITING.value)
        for user_id, role, state in rows
    ]


async def people(db: Database, room_id: str) -> dict[str, tuple[RoomRole, str]]:
    """Everyone who took part in a room, ``user id -> (room role, display name)``: what the
    tiles of its recording's playback composite are labelled with (the server's own read, for
    a file only those who may see the visit can open)."""
    async with db.session() as session:
        return {
            p.user_id: (RoomRole(p.room_role), name)
            for p, name in await participants(session, room_id)
        }
