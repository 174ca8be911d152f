"""Database lifecycle, sessions and the properties the schema promises on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError

from consult.db import Database
from consult.models import Department, Institution, User
from consult.sqltypes import new_id


def _institution(**overrides: object) -> Institution:
    values: dict[str, object] = {"id": new_id(), "name": "测试医院", "level": "secondary"}
    values.update(overrides)
    return Institution(**values)


async def test_data_survives_a_restart(db_url: str) -> None:
    first = Database(db_url)
    await first.start()
    institution = _institution()
    async with first.session() as session, session.begin():
        session.add(institution)
    await first.close()

    second = Database(db_url)
    await second.start()
    try:
        async with second.session() as session:
            loaded = await session.get(Institution, institution.id)
        assert loaded is not None
        assert loaded.name == "测试医院"
    finally:
        await second.close()


async def test_start_twice_on_one_instance_keeps_the_engine(db: Database) -> None:
    engine = db.engine
    await db.start()
    assert db.engine is engine


async def test_close_is_idempotent_and_final(db_url: str) -> None:
    database = Database(db_url)
    await database.start()
    assert not database.closed
    await database.close()
    await database.close()
    assert database.closed
    with pytest.raises(RuntimeError, match="closed"):
        database.session()
    with pytest.raises(RuntimeError, match="closed"):
        await database.start()


async def test_close_without_start(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/never.db")
    await database.close()
    assert database.closed
    assert not (tmp_path / "never.db").exists()


def test_session_before_start_raises(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with pytest.raises(RuntimeError, match="not started"):
        database.session()
    with pytest.raises(RuntimeError, match="not started"):
        _ = database.engine


async def test_ids_are_32_hex_and_timestamps_utc(db: Database) -> None:
    institution = Institution(name="测试医院", level="grassroots")  # id and created_at defaulted
    async with db.session() as session, session.begin():
        session.add(institution)
    async with db.session() as session:
        loaded = await session.get(Institution, institution.id)
    assert loaded is not None
    assert len(loaded.id) == 32
    int(loaded.id, 16)
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - loaded.created_at) < timedelta(minutes=1)


async def test_aware_timestamps_keep_their_instant(db: Database) -> None:
    beijing = timezone(timedelta(hours=8))
    moment = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=beijing)
    institution = _institution(created_at=moment)
    async with db.session() as session, session.begin():
        session.add(institution)
    async with db.session() as session:
        loaded = await session.get(Institution, institution.id)
    assert loaded is not None
    assert loaded.created_at == moment
    assert loaded.created_at.tzinfo == UTC
    assert loaded.created_at.hour == 1


async def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.session() as session, session.begin():
            session.add(_institution(created_at=datetime(2024, 3, 1, 9, 30)))


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.session() as session, session.begin():
            session.add(Department(id=new_id(), institution_id=new_id(), name="孤儿科室"))


async def test_level_must_be_known(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.session() as session, session.begin():
            session.add(_institution(level="quaternary"))


async def test_usernames_are_unique(db: Database) -> None:
    def user() -> User:
        return User(id=new_id(), username=username, display_name="x", role="nurse")

    username = f"same-{new_id()}"  # the PostgreSQL database is shared by the run

    async with db.session() as session, session.begin():
        session.add(user())
    with pytest.raises(IntegrityError):
        async with db.session() as session, session.begin():
            session.add(user())


async def test_user_defaults(db: Database) -> None:
    user = User(username=f"nurse-{new_id()}", display_name="李护士", role="nurse")
    async with db.session() as session, session.begin():
        session.add(user)
    async with db.session() as session:
        loaded = await session.get(User, user.id)
    assert loaded is not None
    assert loaded.is_active is True
    assert loaded.password_hash is None
    assert loaded.institution_id is None
    assert loaded.kind == "staff"  # from the role
    assert loaded.failed_logins == 0 and loaded.locked_until is None
    assert loaded.totp_secret_enc is None and loaded.totp_confirmed_at is None


async def test_role_is_required_known_and_matches_kind(db: Database) -> None:
    for values in (
        {"role": "superuser"},
        {"role": "patient", "kind": "staff"},
        {"role": "doctor", "kind": "patient"},
        {},
    ):
        with pytest.raises(IntegrityError):
            async with db.session() as session, session.begin():
                session.add(User(username=f"u-{new_id()}", display_name="x", **values))


async def test_sqlite_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "teleconsult.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.start()
    try:
        assert path.is_file()
        async with database.engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one()
        assert journal == "wal"
        assert foreign_keys == 1
    finally:
        await database.close()


async def test_sqlite_in_memory_keeps_one_database() -> None:
    database = Database("sqlite+aiosqlite://")
    await database.start()
    try:
        institution = _institution()
        async with database.session() as session, session.begin():
            session.add(institution)
        async with database.session() as session:
            assert await session.get(Institution, institution.id) is not None
    finally:
        await database.close()
