"""Rooms and participations; the chat keyed by room (issue 11).

Revision ID: 0007_rooms
Revises: 0006_imaging
Create Date: 2026-12-02 00:45:00

Every existing visit gets its room (kind ``visit``) and a participation for its doctor and for
its patient-side account (``patient``, or ``guardian`` when that account is the guardian's of a
ward), in the state the visit is in: waiting or booked -> waiting, in the room -> admitted,
closed -> left. The room keeps the visit's id as its own: the audit chain is append-only and its
``recording.sealed`` and ``room.chat`` events, like the recording directories on disk and their
timelines, name the room by that id, so nothing of them has to move. Rooms made from now on get
ids of their own.

The chat tables' ``visit_id`` becomes ``room_id`` (referencing ``rooms``), values unchanged. The
append-only triggers are lifted around the rebuild (SQLite rebuilds the tables) and put back.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_rooms"
down_revision: str | Sequence[str] | None = "0006_imaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"
APPEND_ONLY = ("chat_messages", "chat_blocks")
CHAT_TABLES = ("chat_images", "chat_messages", "chat_blocks")
ROOM_ROLES = (
    "doctor",
    "patient",
    "guardian",
    "companion",
    "interpreter",
    "inviter",
    "invitee",
    "observer",
)

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT, UPDATE ON rooms, participations, room_invitations TO {APP_ROLE};
    END IF;
END
$$
"""


def _fk(column: str, table: str, source: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_{source}_{column}_{table}")
    )


def _one_of(column: str, values: Sequence[str], table: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{column}_allowed"))


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=32), nullable=nullable)


def _drop_triggers(dialect: str) -> None:
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


def _create_triggers(dialect: str) -> None:
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION chat_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION chat_refuse_change()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _rekey_chat(old: str, new: str, source: str, target: str, *, remap: bool = False) -> None:
    """Rename each chat table's ``old`` column (referencing ``source``) to ``new`` (referencing
    ``target``); with ``remap``, a room id becomes its visit's id on the way (downgrade)."""
    for table in CHAT_TABLES:
        with op.batch_alter_table(table, recreate="auto") as batch:
            batch.drop_constraint(op.f(f"fk_{table}_{old}_{source}"), type_="foreignkey")
            if table == "chat_messages":
                batch.drop_constraint(f"uq_chat_messages_{old}_seq", type_="unique")
            else:
                batch.drop_index(op.f(f"ix_{table}_{old}"))
            batch.alter_column(
                old,
                new_column_name=new,
                existing_type=sa.String(length=32),
                existing_nullable=False,
            )
        if remap:
            op.execute(
                f"UPDATE {table} SET {new} = "
                f"(SELECT r.subject_id FROM rooms r WHERE r.id = {table}.{new})"
            )
        with op.batch_alter_table(table, recreate="auto") as batch:
            batch.create_foreign_key(op.f(f"fk_{table}_{new}_{target}"), target, [new], ["id"])
            if table == "chat_messages":
                batch.create_unique_constraint(f"uq_chat_messages_{new}_seq", [new, "seq"])
            else:
                batch.create_index(op.f(f"ix_{table}_{new}"), [new], unique=False)


def _states(status: str) -> tuple[str, str]:
    """(doctor, patient side) participation states for a visit's status."""
    if status in ("ended", "referred", "cancelled"):
        return "left", "left"
    if status == "in_room":
        return "admitted", "admitted"
    return "admitted", "waiting"


def _rooms_for_visits() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT v.id, v.institution_id, v.doctor_id, v.patient_id, v.status, v.created_at, "
            "v.checked_in_at, v.closed_at, v.updated_at, p.user_id, p.guardian_id "
            "FROM visits v LEFT JOIN patients p ON p.id = v.patient_record_id"
        )
    ).all()
    rooms = sa.table(
        "rooms",
        sa.column("id"),
        sa.column("kind"),
        sa.column("subject_type"),
        sa.column("subject_id"),
        sa.column("institution_id"),
        sa.column("created_at"),
        sa.column("closed_at"),
    )
    participations = sa.table(
        "participations",
        sa.column("id"),
        sa.column("room_id"),
        sa.column("user_id"),
        sa.column("room_role"),
        sa.column("state"),
        sa.column("institution_id"),
        sa.column("arrived_at"),
        sa.column("created_at"),
    )
    room_rows, people = [], []
    for (
        visit_id,
        institution_id,
        doctor_id,
        patient_id,
        status,
        created_at,
        checked_in_at,
        closed_at,
        updated_at,
        record_user_id,
        record_guardian_id,
    ) in rows:
        doctor_state, patient_state = _states(status)
        closed = doctor_state == "left"
        room_rows.append(
            {
                "id": visit_id,
                "kind": "visit",
                "subject_type": "visit",
                "subject_id": visit_id,
                "institution_id": institution_id,
                "created_at": created_at,
                "closed_at": (closed_at or updated_at or created_at) if closed else None,
            }
        )
        # a ward has no account: the account that books and joins for it is its guardian's
        ward = record_user_id is None and record_guardian_id is not None
        side_role = "guardian" if ward or record_user_id not in (None, patient_id) else "patient"
        people.append(
            {
                "id": uuid.uuid4().hex,
                "room_id": visit_id,
                "user_id": doctor_id,
                "room_role": "doctor",
                "state": doctor_state,
                "institution_id": institution_id,
                "arrived_at": None,
                "created_at": created_at,
            }
        )
        if patient_id != doctor_id:
            people.append(
                {
                    "id": uuid.uuid4().hex,
                    "room_id": visit_id,
                    "user_id": patient_id,
                    "room_role": side_role,
                    "state": patient_state,
                    "institution_id": None,
                    "arrived_at": checked_in_at,
                    "created_at": created_at,
                }
            )
    if room_rows:
        op.bulk_insert(rooms, room_rows)
    if people:
        op.bulk_insert(participations, people)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "rooms",
        _id(),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        _id("subject_id"),
        _id("institution_id", nullable=True),
        _at("created_at"),
        _at("closed_at", nullable=True),
        _one_of("kind", ("visit", "consultation", "review"), "rooms"),
        _fk("institution_id", "institutions", "rooms"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("subject_type", "subject_id", name="uq_rooms_subject"),
    )
    op.create_index(op.f("ix_rooms_institution_id"), "rooms", ["institution_id"], unique=False)
    op.create_table(
        "participations",
        _id(),
        _id("room_id"),
        _id("user_id"),
        sa.Column("room_role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _id("institution_id", nullable=True),
        _id("invited_by", nullable=True),
        _at("arrived_at", nullable=True),
        _at("created_at"),
        _at("updated_at", nullable=True),
        _one_of("room_role", ROOM_ROLES, "participations"),
        _one_of("state", ("waiting", "admitted", "left"), "participations"),
        _fk("room_id", "rooms", "participations"),
        _fk("user_id", "users", "participations"),
        _fk("institution_id", "institutions", "participations"),
        _fk("invited_by", "users", "participations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participations")),
        sa.UniqueConstraint("room_id", "user_id", name="uq_participations_room_id_user_id"),
    )
    for column in ("room_id", "user_id"):
        op.create_index(
            op.f(f"ix_participations_{column}"), "participations", [column], unique=False
        )
    op.create_table(
        "room_invitations",
        _id(),
        _id("room_id"),
        sa.Column("room_role", sa.String(length=16), nullable=False),
        sa.Column("secret_digest", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        _id("created_by"),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
        _id("used_by", nullable=True),
        _one_of("room_role", ROOM_ROLES, "room_invitations"),
        _fk("room_id", "rooms", "room_invitations"),
        _fk("created_by", "users", "room_invitations"),
        _fk("used_by", "users", "room_invitations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_invitations")),
        sa.UniqueConstraint("secret_digest", name=op.f("uq_room_invitations_secret_digest")),
    )
    op.create_index(
        op.f("ix_room_invitations_room_id"), "room_invitations", ["room_id"], unique=False
    )
    _rooms_for_visits()
    _drop_triggers(dialect)
    _rekey_chat("visit_id", "room_id", "visits", "rooms")
    _create_triggers(dialect)
    if dialect == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    # the chat of a consultation's or a review's room has no visit to go back to
    stranded = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM rooms r WHERE r.kind <> 'visit' AND ("
            "EXISTS (SELECT 1 FROM chat_messages m WHERE m.room_id = r.id) OR "
            "EXISTS (SELECT 1 FROM chat_blocks b WHERE b.room_id = r.id) OR "
            "EXISTS (SELECT 1 FROM chat_images i WHERE i.room_id = r.id))"
        )
    )
    if stranded:
        raise RuntimeError(
            f"{stranded} rooms other than visits' hold chat: downgrading would lose it"
        )
    _drop_triggers(dialect)
    _rekey_chat("room_id", "visit_id", "rooms", "visits", remap=True)
    _create_triggers(dialect)
    op.drop_index(op.f("ix_room_invitations_room_id"), table_name="room_invitations")
    op.drop_table("room_invitations")
    for column in ("room_id", "user_id"):
        op.drop_index(op.f(f"ix_participations_{column}"), table_name="participations")
    op.drop_table("participations")
    op.drop_index(op.f("ix_rooms_institution_id"), table_name="rooms")
    op.drop_table("rooms")
