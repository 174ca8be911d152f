"""Who is acting: the result of authenticating a session, passed to every service."""

from __future__ import annotations

from dataclasses import dataclass, field

from consult.permissions import STAFF_ROLES, Role


@dataclass(frozen=True)
class Actor:
    """An authenticated account acting through one session.

    ``enrolment_only`` marks a staff session whose account has no confirmed TOTP secret yet: it
    may only enrol one (R33); ``room_id`` marks a join token's actor, bound to one room in one
    room role (``room_role``: doctor, patient, guardian, ...). ``department_ids`` scopes an
    operator (R34). This is the one identity type: a signed-in session, a join token's holder
    on a socket or a REST route, and the command line are each an ``Actor``. ``user_id`` is
    ``None`` only for :meth:`system` (the command line, run by whoever holds the server).
    """

    user_id: str | None
    role: Role
    session_id: str | None = None
    source_ip: str | None = None
    department_ids: frozenset[str] = field(default_factory=frozenset)
    institution_id: str | None = None
    enrolment_only: bool = False
    room_id: str | None = None
    """Set when the actor authenticated with a room's join token instead of a session: it acts
    in that room only (over REST: the room's chat routes, ``permissions.ROOM_TOKEN_ACTIONS``)."""
    room_role: str | None = None
    """The room role the join token carries (``consult.models.RoomRole``)."""
    display_name: str | None = None
    """The account's display name, as the room shows it (join tokens' actors)."""

    @property
    def is_staff(self) -> bool:
        """Whether the role is a staff role (TOTP mandatory)."""
        return self.role in STAFF_ROLES

    @property
    def is_system(self) -> bool:
        """Whether this is the command line's actor rather than a signed-in account."""
        return self.user_id is None

    @classmethod
    def system(cls, source_ip: str = "cli") -> Actor:
        """The actor of administrative commands run on the server (``teleconsult ...``).

        It has the admin role: holding the server's configuration already gives full access to
        the database, so the command line gains nothing by pretending otherwise; its actions
        are audited with no account id.
        """
        return cls(user_id=None, role=Role.ADMIN, source_ip=source_ip)
