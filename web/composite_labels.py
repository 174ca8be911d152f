"""The labels of a recording's playback composite: each tile's role and the name the room
showed for its participant (``recording`` knows ids only; the database knows the people)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from consult import rooms
from consult.db import Database
from consult.models import RoomRole

#: The room roles in the words of the room's pages (web/static/i18n.js, room-strings.js): a
#: composite is one video, in the product's language.
ROLE_WORDS: dict[RoomRole, str] = {
    RoomRole.DOCTOR: "医生",
    RoomRole.PATIENT: "患者",
    RoomRole.GUARDIAN: "监护人",
    RoomRole.COMPANION: "陪同人",
    RoomRole.INTERPRETER: "翻译",
    RoomRole.INVITER: "申请方医生",
    RoomRole.INVITEE: "会诊专家",
    RoomRole.OBSERVER: "旁听",
}


async def labels(db: Database, room_id: str) -> dict[str, str]:
    """``participant id -> "医生 王某"`` for everyone who took part in the room."""
    return {
        user_id: f"{ROLE_WORDS.get(role, '参与者')} {name}".strip()
        for user_id, (role, name) in (await rooms.people(db, room_id)).items()
    }


def labels_of(db: Database) -> Callable[[Path], Awaitable[dict[str, str]]]:
    """What :class:`recording.CompositeJobs` asks for a session directory's labels (its parent
    directory is named by the room id)."""

    async def of(directory: Path) -> dict[str, str]:
        return await labels(db, directory.parent.name)

    return of
