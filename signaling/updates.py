"""Pushed updates for the portal pages (the doctor's queue, the patient's waiting room).

Namespace ``/updates`` of the same socket.io server. A page connects with its signed-in session
(``auth: {session: <bearer token>}``) and is told, instead of polling:

- ``visit_changed {visit, state, event}``: a visit the account takes part in changed state
  (after commit), or someone came to its room (``event`` ``arrived``: a guardian after the
  child; ``admitted``: a companion let in; with ``room_role``); the page reads the visit (or its
  queue) once;
- ``reminder {id, kind, subject_type, subject_id, consultation_id, at}``: a reminder was made
  for the account (issue 14); the page shows it and its unread count;
- ``signed_out {reason}``: the session ended (sign-out elsewhere, password change, deactivation);
  the socket is then disconnected.

``touch`` (no payload) keeps the session alive while the page is in use (a consultation open in
the queue page's embedded room); it is what a poll used to do, once a minute at most.
Protocol: docs/signaling.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import socketio

from consult import events
from consult.accounts import authenticate
from consult.actor import Actor
from consult.authorization import authorize
from consult.db import Database
from consult.errors import ConsultError
from consult.tokens import check_no_query_token

from .errors import error_payload

logger = logging.getLogger(__name__)

NAMESPACE: Final = "/updates"
CONSULTATION_MACHINES: Final = frozenset(
    {"consultation", "invitation", "opinion", "referral", "interpretation"}
)
"""The machines of remote consultation whose changes the consultation pages hear (and, for
referrals and interpretations, R17 and R18, the patient's waiting page)."""


@dataclass
class Watcher:
    """One page's socket: the session it authenticated with."""

    actor: Actor
    token: str


def _user_room(user_id: str) -> str:
    return f"user:{user_id}"


class Updates:
    """The ``/updates`` namespace of ``sio``: sockets by sid, pushes by account."""

    def __init__(self, sio: socketio.AsyncServer, db: Database) -> None:
        self._sio = sio
        self._db = db
        self.watchers: dict[str, Watcher] = {}
        sio.on("connect", self._on_connect, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        sio.on("touch", self._on_touch, namespace=NAMESPACE)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("session") if isinstance(auth, dict) else None
        source_ip = str(environ.get("REMOTE_ADDR") or "") or None
        try:
            check_no_query_token(str(environ.get("QUERY_STRING") or ""))
            actor = await authenticate(
                self._db, token if isinstance(token, str) else None, source_ip
            )
            await authorize(self._db, actor, "session.view", object_type="session")
        except ConsultError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                str(exc), {"code": exc.code, "message": str(exc)}
            ) from None
        assert actor.user_id is not None and isinstance(token, str)
        self.watchers[sid] = Watcher(actor, token)
        await self._sio.enter_room(sid, _user_room(actor.user_id), namespace=NAMESPACE)

    async def _on_disconnect(self, sid: str, *args: Any) -> None:
        self.watchers.pop(sid, None)

    async def _on_touch(self, sid: str, data: Any = None) -> dict[str, Any]:
        watcher = self.watchers.get(sid)
        if watcher is None:
            return {"ok": False, "error": {"code": "invalid_state", "message": "not connected"}}
        try:
            await authenticate(self._db, watcher.token, watcher.actor.source_ip)
        except Exception as exc:  # expired meanwhile: the page signs in again
            return error_payload(exc)
        return {"ok": True}

    async def _tell(self, name: str, payload: Any, user_ids: Iterable[str]) -> None:
        """Emit ``name`` once to every page of each of ``user_ids`` (each account's room)."""
        for user_id in sorted(set(user_ids)):
            await self._sio.emit(name, payload, to=_user_room(user_id), namespace=NAMESPACE)

    async def relay(self, event: events.DomainEvent) -> None:
        """Push a committed domain event to the pages it concerns."""
        if isinstance(event, events.StateChanged) and event.machine == "visit":
            payload = {"visit": event.object_id, "state": event.new, "event": event.event}
            await self._tell("visit_changed", payload, (u for _role, u in event.parties))
        elif isinstance(event, events.VisitPeopleChanged):
            # a guardian came, or a companion was let in: same push, the visit read again
            payload = {
                "visit": event.visit_id,
                "state": event.state,
                "event": event.event,
                "room_role": event.room_role,
            }
            await self._tell("visit_changed", payload, (u for _role, u in event.parties))
        elif isinstance(event, events.StateChanged) and event.machine in CONSULTATION_MACHINES:
            # Remote consultation (issue 14): the worklists of both institutions read again.
            payload = {
                "machine": event.machine,
                "id": event.object_id,
                "state": event.new,
                "event": event.event,
            }
            await self._tell("consultation_changed", payload, (u for _role, u in event.parties))
        elif isinstance(event, events.RatingChanged):
            # a visit's rating given, edited or answered (R40, R41): both sides read again
            payload = {"rating_visit": event.visit_id, "event": event.event}
            await self._tell("rating_changed", payload, event.user_ids)
        elif isinstance(event, events.ReminderMade):
            # a reminder for this account (issue 14, R11): ids, kind and moment only
            reminder: dict[str, str | None] = {
                "id": event.reminder_id,
                "kind": event.kind,
                "subject_type": event.subject_type,
                "subject_id": event.subject_id,
                "consultation_id": event.consultation_id,
                "at": event.at,
            }
            await self._tell("reminder", reminder, (event.user_id,))
        elif isinstance(event, events.ParticipationChanged):
            # asked out of a consultation's room, or back in: the person's pages follow
            payload = {"room": event.room_id, "state": event.state, "reason": event.reason}
            await self._tell("room_changed", payload, (event.user_id,))
        elif isinstance(event, events.AccessRevoked):
            if event.tokens_only:  # the sessions stay signed in
                return
            for sid, watcher in tuple(self.watchers.items()):
                if watcher.actor.user_id != event.user_id:
                    continue
                if not event.whole_account and watcher.actor.session_id not in event.session_ids:
                    continue
                self.watchers.pop(sid, None)
                await self._sio.emit(
                    "signed_out", {"reason": event.reason}, to=sid, namespace=NAMESPACE
                )
                await self._sio.disconnect(sid, namespace=NAMESPACE)
