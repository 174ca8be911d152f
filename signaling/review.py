"""Review together: one shared view of a study or an ECG across the participants of a room.

Protocol: ``docs/review.md``. A participant's viewer enters the room's review with
``review_join`` (the ack carries the current state, so a late joiner lands on the current view);
a doctor who may read the study shares it (``review_share``) and becomes the presenter; the
presenter's view (series, slice, camera in world millimetres, window/level, pointer, ECG position
and calipers) goes out with ``review_view`` and its measurements with ``review_annotations``;
``review_handover`` gives the presenter role to another member, ``review_stop`` ends the share.
Followers get ``review_view``, ``review_annotations`` and ``review_state`` (a whole snapshot).
Each event's payload is checked by its class in :mod:`signaling.review_messages`.

The review of a room is keyed by the room id the join token names (:func:`room_key`: a visit's
or a consultation's room) and held in this process: with several signaling processes, the
members of one room must be on the process holding it (rooms are placed on one worker).

Access: the events are actions of the permission table (following: ``room.review``; presenting:
``room.viewer_sync``); a shared study must be readable by the presenter *as a participant of this
room* (:func:`consult.imaging.access.readable_study` with the room bound to the actor, the same
rule the room's DICOMweb reads meet), so a study of another visit is refused. Followers fetch
the pixels themselves over DICOMweb, each read checked and audited. Share, handover and stop are
audited and go onto the room's recording timeline.

Each institution its own holding (R37): in a consultation's room the inviter's side reads the
original and the invited experts their institution's de-identified copy, whose UIDs differ. The
review keeps its state in the original's UIDs and names them to each member in the holding that
member reads (:mod:`consult.imaging.copies`): what a presenter sends is translated from its
holding, what a follower gets into its own. Nobody ever sees another holding's UIDs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import socketio

from consult.access import ROOM_ROLE_ACTIONS
from consult.actor import Actor
from consult.audit import append
from consult.db import Database
from consult.imaging import access as imaging_access
from consult.imaging import copies
from consult.imaging.annotations import save_review
from consult.imaging.copies import Holding
from consult.imaging.errors import CopyNotMapped
from consult.imaging.models import ImagingStudy
from consult.imaging.store import ImagingStore
from consult.permissions import is_allowed

from .errors import SignalingError, bad_request
from .review_messages import (
    ReviewAnnotations,
    ReviewHandover,
    ReviewSave,
    ReviewShare,
    ReviewView,
    as_object,
)
from .session import Session

logger = logging.getLogger(__name__)

RecordHook = Callable[[str, str, dict[str, Any]], Awaitable[None]]
Handler = Callable[[Session, Any], Awaitable[dict[str, Any] | None]]

REVIEW_EVENTS: Final = frozenset(
    {
        "review_join",
        "review_leave",
        "review_share",
        "review_view",
        "review_annotations",
        "review_handover",
        "review_stop",
        "review_save",
    }
)
"""The events of this module; a socket may send them without the room's media ``join``."""


def room_key(session: Session) -> str:
    """The room a socket's review belongs to: the room its join token names."""
    return session.room_id


def _sio_room(key: str) -> str:
    return f"review:{key}"


# --- State --------------------------------------------------------------------------------------


def may_present(actor: Actor) -> bool:
    """Whether a member may present: ``room.viewer_sync`` for its account role and room role."""
    return is_allowed(actor, "room.viewer_sync") and actor.room_role in ROOM_ROLE_ACTIONS.get(
        "room.viewer_sync", frozenset()
    )


@dataclass
class Member:
    sid: str
    participant_id: str
    role: str
    name: str
    actor: Actor
    presents: bool
    """Whether this member may present (the share button, a handover's target)."""
    holding: Holding | None = None
    """The holding of the shared study this member reads (the original or its institution's
    copy); None while nothing is shared or when it reads none of them."""


def _local_uid(uid: str | None, holding: Holding | None) -> str | None:
    return None if holding is None else holding.local(uid)


def _local_view(view: dict[str, Any], holding: Holding | None) -> dict[str, Any]:
    """The view in ``holding``'s UIDs (without them for a member that reads no holding)."""
    if holding is not None and holding.is_original:
        return view
    out = dict(view)
    for key in ("series", "instance"):
        if out.get(key) is not None:
            out[key] = _local_uid(out[key], holding)
    return out


def _local_annotations(
    annotations: list[dict[str, Any]], holding: Holding | None
) -> list[dict[str, Any]]:
    if holding is not None and holding.is_original:
        return annotations
    out = []
    for item in annotations:
        instance = _local_uid(item["instance"], holding)
        if instance is not None:
            out.append({**item, "instance": instance})
    return out


def _original_uid(uid: str | None, holding: Holding | None, key: str) -> str | None:
    """The original's UID for a presenter's ``uid`` (from its holding); a UID that names
    nothing of the shared study in that holding is ``bad_request``."""
    if uid is None or holding is None or holding.is_original:
        return uid
    found = holding.original(uid)
    if found is None:
        raise bad_request(f"'{key}' names nothing of the shared study")
    return found


@dataclass
class Review:
    """One room's review: who is in it, who presents what, and the last view.

    ``subject``, ``view`` and ``annotations`` are kept in the UIDs of the shared study's
    original; each member is told them in the UIDs of its own holding (:meth:`snapshot_for`)."""

    key: str
    members: dict[str, Member] = field(default_factory=dict)
    presenter: str | None = None
    subject: ReviewShare | None = None
    view: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    annotations: list[dict[str, Any]] = field(default_factory=list)
    family: list[ImagingStudy] = field(default_factory=list)
    """The shared study's original and its copies (each a holding some member may read)."""
    holdings: dict[str, Holding] = field(default_factory=dict)
    """The holdings members read, by study row id (their UID pairs, loaded once per share)."""

    def snapshot_for(self, member: Member | None) -> dict[str, Any]:
        """The whole state as ``member`` sees it: the subject, view and measurements in the UIDs
        of its holding; ``unavailable`` when something is shared that it reads none of."""
        holding = member.holding if member is not None else None
        seen: dict[str, dict[str, Any]] = {}
        for m in self.members.values():
            seen[m.participant_id] = {
                "id": m.participant_id,
                "role": m.role,
                "name": m.name,
                "presents": m.presents,
            }
        subject = None
        if self.subject is not None and holding is not None:
            subject = {
                "kind": self.subject.kind,
                "study": holding.study.study_uid,
                "series": holding.local(self.subject.series),
                "instance": holding.local(self.subject.instance),
            }
        return {
            "presenter": self.presenter,
            "subject": subject,
            "unavailable": self.subject is not None and holding is None,
            "view": _local_view(self.view, holding),
            "seq": self.seq,
            "annotations": _local_annotations(self.annotations, holding),
            "members": list(seen.values()),
        }

    def holds(self, participant_id: str) -> bool:
        return any(m.participant_id == participant_id for m in self.members.values())

    @property
    def translated(self) -> bool:
        """Whether any member reads a copy (its messages need UIDs of their own)."""
        return any(not h.is_original for h in self.holdings.values())

    def groups(self, skip: str) -> dict[str | None, tuple[Holding | None, list[str]]]:
        """The members but ``skip`` (a sid) by the holding they read."""
        out: dict[str | None, tuple[Holding | None, list[str]]] = {}
        for m in self.members.values():
            if m.sid == skip:
                continue
            key = None if m.holding is None else m.holding.id
            out.setdefault(key, (m.holding, []))[1].append(m.sid)
        return out


# --- The component ------------------------------------------------------------------------------


async def no_record(key: str, event: str, data: dict[str, Any]) -> None:
    """The default recording hook: does nothing."""


class ReviewComponent:
    """The review events of the signaling server (each runs in the sender's queue)."""

    def __init__(
        self,
        db: Database,
        sio: socketio.AsyncServer,
        on_record: RecordHook | None = None,
        imaging: ImagingStore | None = None,
    ) -> None:
        self._db = db
        self._sio = sio
        self.imaging = imaging
        """Where saved measurements go (``review_save``); None: saving is unavailable."""
        self.on_record: RecordHook = on_record or no_record
        self.reviews: dict[str, Review] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "review_join": self.join,
            "review_leave": self.leave_event,
            "review_share": self.share,
            "review_view": self.set_view,
            "review_annotations": self.set_annotations,
            "review_handover": self.handover,
            "review_stop": self.stop,
            "review_save": self.save,
        }

    def _review(self, session: Session) -> Review:
        review = self.reviews.get(room_key(session))
        if review is None or session.sid not in review.members:
            raise SignalingError("not_in_review", "send 'review_join' first")
        return review

    def _presenting(self, session: Session) -> Review:
        review = self._review(session)
        if review.presenter != session.participant_id:
            raise SignalingError("not_presenter", "only the presenter changes the shared view")
        return review

    @staticmethod
    def _room_actor(actor: Actor, review: Review) -> Actor:
        # as a participant of *this* room: the rule the room's DICOMweb reads meet
        return dataclasses.replace(actor, room_id=review.key)

    async def _holding_of(self, review: Review, study: ImagingStudy) -> Holding:
        found = review.holdings.get(study.id)
        if found is None:
            found = await copies.holding(self._db, study, review.family[0])
            review.holdings[study.id] = found
        return found

    async def _assign(self, review: Review, member: Member) -> None:
        """Which holding of the shared study ``member`` reads (none: it is told
        ``unavailable``)."""
        member.holding = None
        if review.subject is None:
            return
        actor = self._room_actor(member.actor, review)
        study = await imaging_access.readable_among(self._db, actor, review.family)
        if study is None:
            return
        try:
            member.holding = await self._holding_of(review, study)
        except CopyNotMapped:
            logger.info("review: a copy without its pairs", extra={"room": review.key})

    async def _emit_translated(
        self,
        review: Review,
        event: str,
        base: dict[str, Any],
        key: str,
        value: Any,
        local: Callable[[Any, Holding | None], Any],
        skip: str,
    ) -> None:
        """``base`` with ``key`` = ``value`` to every member but ``skip``, in the UIDs of the
        holding each reads (one emit per holding; one to the room when nobody reads a copy)."""
        if not review.translated:
            await self._sio.emit(
                event, {**base, key: value}, to=_sio_room(review.key), skip_sid=skip
            )
            return
        for holding, sids in review.groups(skip).values():
            await self._sio.emit(event, {**base, key: local(value, holding)}, to=sids)

    async def _state_changed(self, review: Review, event: str, session: Session | None) -> None:
        for member in list(review.members.values()):
            await self._sio.emit("review_state", review.snapshot_for(member), to=member.sid)
        details: dict[str, Any] = {"event": event, "presenter": review.presenter}
        if review.subject is not None:
            details["kind"] = review.subject.kind
            details["study"] = review.subject.study
            details["holdings"] = sorted(review.holdings)
        try:
            await append(
                self._db,
                "room.review",
                actor=session.actor if session is not None else None,
                actor_role=None if session is not None else "system",
                object_type="room",
                object_id=review.key,
                details=details,
            )
        except Exception:  # the audit chain refusing must not leave the room half-changed
            logger.exception("review audit failed", extra={"room": review.key})
        try:
            await self.on_record(review.key, f"review_{event}", details)
        except Exception:
            logger.exception("review record hook failed", extra={"room": review.key})

    # --- following ---------------------------------------------------------------------------

    async def join(self, session: Session, data: Any) -> dict[str, Any]:
        as_object(data)
        key = room_key(session)
        review = self.reviews.setdefault(key, Review(key))
        member = Member(
            session.sid,
            session.participant_id,
            session.room_role,
            session.name,
            session.actor,
            may_present(session.actor),
        )
        await self._assign(review, member)
        review.members[session.sid] = member
        await self._sio.enter_room(session.sid, _sio_room(key))
        return {"state": review.snapshot_for(member), "you": session.participant_id}

    async def leave_event(self, session: Session, data: Any) -> None:
        as_object(data)
        await self.leave(session)

    async def leave(self, session: Session) -> None:
        """Take ``session`` out of its review (also on disconnect and eviction). Idempotent."""
        key = room_key(session)
        review = self.reviews.get(key)
        if review is None or review.members.pop(session.sid, None) is None:
            return
        try:
            await self._sio.leave_room(session.sid, _sio_room(key))
        except Exception:  # the socket is already gone
            logger.debug("review leave_room failed", extra={"sid": session.sid})
        if not review.members:
            del self.reviews[key]
            return
        if review.presenter == session.participant_id and not review.holds(session.participant_id):
            # the presenter left: the view stays where it was, nobody drives it until a share
            review.presenter = None
            await self._state_changed(review, "presenter_left", None)

    # --- presenting --------------------------------------------------------------------------

    async def share(self, session: Session, data: Any) -> dict[str, Any]:
        request = ReviewShare.parse(data)
        review = self._review(session)
        if review.presenter not in (None, session.participant_id) and review.holds(
            review.presenter
        ):
            raise SignalingError("not_presenter", "another participant is presenting")
        # readable by the presenter as a participant of *this* room: followers read it the same way
        actor = self._room_actor(session.actor, review)
        study = await imaging_access.readable_study(self._db, actor, request.study, "review")
        family = await copies.family(self._db, study)
        mine = await copies.holding(self._db, study, family[0])
        subject = ReviewShare(
            kind=request.kind,
            study=mine.original_uid,
            series=_original_uid(request.series, mine, "series"),
            instance=_original_uid(request.instance, mine, "instance"),
        )
        review.family, review.holdings = family, {mine.id: mine}
        review.presenter = session.participant_id
        review.subject = subject
        review.view = {}
        review.annotations = []
        review.seq += 1
        for member in review.members.values():
            if member.participant_id == session.participant_id:
                member.holding = mine
            else:
                await self._assign(review, member)
        await self._state_changed(review, "share", session)
        return {"state": review.snapshot_for(review.members[session.sid])}

    async def set_view(self, session: Session, data: Any) -> dict[str, Any]:
        request = ReviewView.parse(data)
        review = self._presenting(session)
        if review.subject is None:
            raise SignalingError("nothing_shared", "share a study first")
        view = dict(request.view)
        holding = review.members[session.sid].holding
        for key in ("series", "instance"):
            if key in view:
                view[key] = _original_uid(view[key], holding, key)
        review.view = {**review.view, **view}
        review.seq += 1
        base = {
            "seq": review.seq,
            "by": session.participant_id,
            "sent_at": request.sent_at,
            "relayed_at": time.time() * 1000.0,
        }
        if "series" in view or "instance" in view:
            await self._emit_translated(
                review, "review_view", base, "view", view, _local_view, session.sid
            )
        else:  # the same for every holding (world millimetres, window, ECG samples)
            await self._sio.emit(
                "review_view",
                {**base, "view": view},
                to=_sio_room(review.key),
                skip_sid=session.sid,
            )
        return {"seq": review.seq}

    async def set_annotations(self, session: Session, data: Any) -> dict[str, Any]:
        request = ReviewAnnotations.parse(data)
        review = self._presenting(session)
        if review.subject is None:
            raise SignalingError("nothing_shared", "share a study first")
        holding = review.members[session.sid].holding
        review.annotations = [
            {**a, "instance": _original_uid(a["instance"], holding, "instance")}
            for a in request.annotations
        ]
        review.seq += 1
        await self._emit_translated(
            review,
            "review_annotations",
            {"seq": review.seq, "by": session.participant_id},
            "annotations",
            review.annotations,
            _local_annotations,
            session.sid,
        )
        try:
            await self.on_record(
                review.key,
                "review_annotations",
                {"by": session.participant_id, "count": len(review.annotations)},
            )
        except Exception:
            logger.exception("review record hook failed", extra={"room": review.key})
        return {"seq": review.seq}

    async def save(self, session: Session, data: Any) -> dict[str, Any]:
        """The presenter stores the measurements into the shared study (in the holding it reads)
        as DICOM SR: an image's as a TID 1500 SR and a GSPS per series
        (:mod:`consult.imaging.annotations`), an ECG's calipers as a TID 1500 SR of waveform
        measurements (:mod:`consult.imaging.ecg_report`); audited, on the timeline."""
        request = ReviewSave.parse(data)
        review = self._presenting(session)
        if review.subject is None:
            raise SignalingError("nothing_shared", "share a study first")
        if review.subject.kind == "image" and request.calipers is not None:
            raise bad_request("'calipers' are an ECG's")
        if review.subject.kind == "ecg" and request.annotations is not None:
            raise bad_request("'annotations' are an image's")
        if request.annotations is not None:
            await self.set_annotations(session, {"annotations": request.annotations})
        if request.calipers is not None:
            ecg = {**review.view.get("ecg", {}), "calipers": request.calipers}
            await self.set_view(session, {"view": {"ecg": ecg}})
        if self.imaging is None:
            raise SignalingError("imaging_unavailable", "the imaging store is not available")
        holding = review.members[session.sid].holding
        if holding is None:
            raise SignalingError("forbidden", "you read none of the shared study")
        # the same rule as the share: readable by the presenter as a participant of this room
        actor = self._room_actor(session.actor, review)
        study = await imaging_access.readable_study(
            self._db, actor, holding.study.study_uid, "review_save"
        )
        if review.subject.kind == "ecg":
            from consult.imaging.ecg_report import save_calipers

            saved = await save_calipers(
                self.imaging,
                actor,
                study,
                instance=str(holding.local(review.subject.instance)),
                ecg=review.view.get("ecg") or {},
                observer=session.name,
            )
        else:
            saved = await save_review(
                self.imaging,
                actor,
                study,
                _local_annotations(review.annotations, holding),
                voi=review.view.get("voi"),
                series=holding.local(review.view.get("series") or review.subject.series),
                observer=session.name,
            )
        details: dict[str, Any] = {
            "event": "save",
            "kind": review.subject.kind,
            "study": saved.study_uid,
            "sr": saved.sr,
            "presentation_states": list(saved.presentation_states),
            "measurements": saved.measurements,
        }
        await append(
            self._db,
            "room.review",
            actor=session.actor,
            object_type="room",
            object_id=review.key,
            details=details,
        )
        try:
            await self.on_record(review.key, "review_saved", details)
        except Exception:
            logger.exception("review record hook failed", extra={"room": review.key})
        return {
            "saved": {
                **dataclasses.asdict(saved),
                "presentation_states": details["presentation_states"],
            }
        }

    async def handover(self, session: Session, data: Any) -> dict[str, Any]:
        request = ReviewHandover.parse(data)
        review = self._presenting(session)
        target = next((m for m in review.members.values() if m.participant_id == request.to), None)
        if target is None:
            raise SignalingError("not_in_review", "the participant is not in the review")
        if not target.presents:  # the permission and room-role tables' room.viewer_sync
            raise SignalingError("forbidden", "only a doctor can present")
        if review.subject is not None and target.holding is None:
            raise SignalingError("forbidden", "the participant reads none of the shared study")
        review.presenter = target.participant_id
        review.seq += 1
        await self._state_changed(review, "handover", session)
        return {"state": review.snapshot_for(review.members[session.sid])}

    async def stop(self, session: Session, data: Any) -> dict[str, Any]:
        as_object(data)
        review = self._presenting(session)
        review.presenter = None
        review.subject = None
        review.view = {}
        review.annotations = []
        review.family, review.holdings = [], {}
        for member in review.members.values():
            member.holding = None
        review.seq += 1
        await self._state_changed(review, "stop", session)
        return {"state": review.snapshot_for(review.members[session.sid])}


__all__ = ["REVIEW_EVENTS", "ReviewComponent", "room_key"]
