"""Chat in consult (issue 6), on SQLite and PostgreSQL: storage, numbering, filter, images, audit.

R1 (text-and-image visits), R22/R23 (the dialogue kept, traceable, in the audit chain), R36 (texts
encrypted at rest), R38 (the sensitive-word filter).
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from chat_images import (
    fake_jpeg_executable,
    jpeg,
    jpeg_with_gps,
    oversized_jpeg,
    png,
    png_bomb,
)
from databases import FIELD_KEY
from PIL import ExifTags, Image
from sqlalchemy import select, text, update

from consult import chat, sensitive_words, visit_flow
from consult.actor import Actor
from consult.audit_verify import verify_chain
from consult.db import Database
from consult.errors import (
    ConsultError,
    ImageNotFound,
    ImageTooLarge,
    ImageTooManyPixels,
    ImageTypeUnsupported,
    MessageEmpty,
    MessageInvalidCharacters,
    MessageTooLong,
    NotAdmitted,
    NotAParticipant,
    PermissionDenied,
    RetractNotAllowed,
    VisitClosed,
    WordInvalid,
)
from consult.models import AuditEvent, ChatMessage
from consult.permissions import Role
from consult.sqltypes import new_id
from consult.visits import DemoVisit, create_demo_visit


def _doctor(demo: DemoVisit) -> Actor:
    return Actor(user_id=demo.doctor_id, role=Role.DOCTOR, source_ip="192.0.2.1")


def _patient(demo: DemoVisit) -> Actor:
    return Actor(user_id=demo.patient_id, role=Role.PATIENT, source_ip="192.0.2.2")


def _operator() -> Actor:
    return Actor(user_id=None, role=Role.OPERATOR, department_ids=frozenset({"d"}))


async def _events(db: Database, object_id: str) -> list[AuditEvent]:
    async with db.session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == object_id).order_by(AuditEvent.seq)
        )
        return list(rows.all())


async def _all_history(db: Database, actor: Actor, visit_id: str, after: int = 0, limit: int = 200):
    messages = []
    while True:
        page = await chat.history(db, actor, visit_id, after=after, limit=limit)
        messages += page.messages
        if not page.more:
            return messages
        after = page.messages[-1].seq


async def test_r22_r23_two_participants_exchange_text_and_an_image(db: Database) -> None:
    """Texts and an image in order with seq 1..n; a late reader pages through all; encrypted."""
    demo = await create_demo_visit(db)
    doctor, patient = _doctor(demo), _patient(demo)
    first = await chat.send_message(db, doctor, demo.room_id, text="您好，哪里不舒服？")
    second = await chat.send_message(db, patient, demo.room_id, text="手臂起了红疹\n两天了")
    image = await chat.upload_image(db, patient, demo.room_id, jpeg())
    third = await chat.send_message(db, patient, demo.room_id, image_id=image.id, text="这是照片")
    assert [m.seq for m in (first, second, third)] == [1, 2, 3]
    assert third.kind.value == "image" and third.image_id == image.id
    assert second.text == "手臂起了红疹\n两天了"  # line breaks survive

    everything = await _all_history(db, doctor, demo.room_id, limit=2)  # paged, bounded
    assert [(m.seq, m.sender_role, m.text) for m in everything] == [
        (1, "doctor", "您好，哪里不舒服？"),
        (2, "patient", "手臂起了红疹\n两天了"),
        (3, "patient", "这是照片"),
    ]
    later = await chat.history(db, patient, demo.room_id, after=2)
    assert [m.seq for m in later.messages] == [3] and not later.more

    # R36: the text is stored encrypted; the audit chain holds its HMAC, never the text.
    async with db.session() as session:
        stored = (
            await session.scalars(select(ChatMessage.text_enc).where(ChatMessage.id == first.id))
        ).one()
    assert stored is not None and "您好" not in stored and stored.startswith("1.")
    events = await _events(db, demo.room_id)
    sent = [e for e in events if e.action == "room.chat" and e.result == "ok"]
    assert len(sent) == 3
    details = json.loads(sent[0].details)
    assert details["message_id"] == first.id and details["seq"] == 1
    assert details["text_mac"] == chat.text_mac(db, "您好，哪里不舒服？")
    assert all("您好" not in e.details for e in events)
    assert any(e.action == "chat.read" for e in events)  # reads are audited
    assert (await verify_chain(db)).ok


async def test_r23_messages_are_never_updated_and_a_retraction_is_a_new_message(
    db: Database,
) -> None:
    demo = await create_demo_visit(db)
    doctor, patient = _doctor(demo), _patient(demo)
    sent = await chat.send_message(db, doctor, demo.room_id, text="剂量写错了")
    with pytest.raises(RetractNotAllowed):
        await chat.retract(db, patient, demo.room_id, sent.id)  # not the sender's
    retraction = await chat.retract(db, doctor, demo.room_id, sent.id)
    assert (retraction.seq, retraction.kind.value, retraction.retracts_id) == (
        2,
        "retraction",
        sent.id,
    )
    with pytest.raises(RetractNotAllowed):
        await chat.retract(db, doctor, demo.room_id, sent.id)  # once
    history = await chat.history(db, doctor, demo.room_id)
    assert [m.text for m in history.messages] == ["剂量写错了", None]  # the original is kept
    with pytest.raises(Exception, match="append-only"):
        async with db.session() as session, session.begin():
            await session.execute(
                update(ChatMessage).where(ChatMessage.id == sent.id).values(seq=99)
            )
    with pytest.raises(Exception, match="append-only"):
        async with db.session() as session, session.begin():
            await session.execute(text("DELETE FROM chat_messages"))


async def test_seq_is_atomic_with_concurrent_senders_on_two_connections(db_url: str) -> None:
    """Two Database objects (as two server processes would) send at once: 1..n, no gap."""
    one = Database(db_url, field_key=FIELD_KEY)
    two = Database(db_url, field_key=FIELD_KEY)
    await one.start()
    await two.start()
    try:
        demo = await create_demo_visit(one)
        doctor, patient = _doctor(demo), _patient(demo)
        sends = [
            chat.send_message(
                one if i % 2 else two, doctor if i % 3 else patient, demo.room_id, text=f"消息 {i}"
            )
            for i in range(24)
        ]
        results = await asyncio.gather(*sends)
        assert sorted(m.seq for m in results) == list(range(1, 25))
        history = await _all_history(one, doctor, demo.room_id)
        assert [m.seq for m in history] == list(range(1, 25))
        assert sorted(m.text or "" for m in history) == sorted(f"消息 {i}" for i in range(24))
    finally:
        await one.close()
        await two.close()


# --- R38: the sensitive-word filter ------------------------------------------------------------


def test_r38_normalisation_full_width_spaces_punctuation_case_traditional() -> None:
    for raw, expected in [
        ("ＡＢＣ１２３", "abc123"),
        ("敏 感\u3000词", "敏感词"),
        ("敏.感-词！", "敏感词"),
        ("敏\u200b感\u200d词", "敏感词"),
        ("醫療報告", "医疗报告"),
        ("MiXeD", "mixed"),
    ]:
        assert sensitive_words.normalise(raw)[0] == expected, raw
    normalised, origin = sensitive_words.normalise("a 醫 B")
    assert normalised == "a医b" and origin == [0, 2, 4]


async def test_r38_the_filter_blocks_a_listed_word_in_every_disguise(db: Database) -> None:
    """Plain, full-width, spaced and traditional forms are blocked; a first character alone is
    not; each block and its original text are in the audit chain (R22)."""
    operator = _operator()
    word = f"违禁药{new_id()[:4]}"  # unique per run: the PostgreSQL database is shared
    latin = f"badword{new_id()[:4]}"
    added, already = await sensitive_words.add_words(db, operator, [word, latin, word])
    assert len(added) == 2 and already == 1  # the repeat
    demo = await create_demo_visit(db)
    patient = _patient(demo)
    suffix = word[3:]
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in suffix)
    disguises = [
        f"我想买{word}",
        f"我想买违禁药{full_width}",
        f"我想买 违 禁 药 {' '.join(suffix)}",
        f"我想买違禁藥{suffix.upper()}",
        f"{latin.upper()} please",
    ]
    for attempt in disguises:
        with pytest.raises(chat.Blocked) as info:
            await chat.send_message(db, patient, demo.room_id, text=attempt)
        assert info.value.code == "sensitive_word"
        block = info.value.block
        assert block.word_count == 1 and block.spans
        assert await chat.blocked_text(db, block.id) == attempt  # the original is kept
    # Not blocked: only the first character of the listed word, or the word inside another one.
    fine = await chat.send_message(db, patient, demo.room_id, text="违反规定的事不做")
    also_fine = await chat.send_message(db, patient, demo.room_id, text=f"x{latin}y")
    assert (fine.seq, also_fine.seq) == (1, 2)  # blocked messages take no number

    refused = [
        e
        for e in await _events(db, demo.room_id)
        if e.action == "room.chat" and e.result == "refused"
    ]
    assert len(refused) == len(disguises)
    for event, attempt in zip(refused, disguises, strict=True):
        details = json.loads(event.details)
        assert details["code"] == "sensitive_word"
        assert details["text_mac"] == chat.text_mac(db, attempt)
        assert await chat.blocked_text(db, details["block_id"]) == attempt
        assert attempt not in event.details
    history = await chat.history(db, patient, demo.room_id)
    assert [m.seq for m in history.messages] == [1, 2]
    assert (await verify_chain(db)).ok


async def test_r38_operators_keep_the_list(db: Database) -> None:
    operator = _operator()
    word = f"测试词{new_id()[:6]}"
    added, _ = await sensitive_words.add_words(db, operator, [word])
    _, already = await sensitive_words.add_words(
        db, operator, [f" {word.upper()} ", "測試詞" + word[3:]]
    )
    assert already == 2  # the same word in other spellings
    assert word in {w.word for w in await sensitive_words.list_words(db, operator)}
    await sensitive_words.remove_word(db, operator, added[0].id)
    assert word not in {w.word for w in await sensitive_words.list_words(db, operator)}
    with pytest.raises(ConsultError) as info:
        await sensitive_words.remove_word(db, operator, added[0].id)
    assert info.value.code == "word_not_found"
    with pytest.raises(WordInvalid):
        await sensitive_words.add_words(db, operator, [" ，。 "])
    demo = await create_demo_visit(db)
    with pytest.raises(PermissionDenied):
        await sensitive_words.add_words(db, _doctor(demo), ["x"])


# --- Images -------------------------------------------------------------------------------------


async def test_images_are_checked_from_their_bytes_and_cleaned(db: Database) -> None:
    """A fake .jpg executable, an oversized file and a decompression bomb are refused with stable
    codes (and audited); a photo with GPS EXIF is accepted with its metadata gone."""
    demo = await create_demo_visit(db)
    patient = _patient(demo)
    for data, error in [
        (fake_jpeg_executable(), ImageTypeUnsupported),
        (oversized_jpeg(), ImageTooLarge),
        (png_bomb(), ImageTooManyPixels),
    ]:
        with pytest.raises(error):
            await chat.upload_image(db, patient, demo.room_id, data)
    codes = [
        json.loads(e.details)["code"]
        for e in await _events(db, demo.room_id)
        if e.action == "chat.upload_image" and e.result == "refused"
    ]
    assert codes == ["image_type_unsupported", "image_too_large", "image_too_many_pixels"]

    original = jpeg_with_gps(80, 40)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    view = await chat.upload_image(db, patient, demo.room_id, original)
    assert (view.content_type, view.width, view.height) == ("image/jpeg", 40, 80)  # turned upright
    _, content_type, data = await chat.image_bytes(db, _doctor(demo), view.id)
    served = Image.open(io.BytesIO(data))
    assert content_type == "image/jpeg" and served.size == (40, 80)
    assert not served.getexif() and b"Exif" not in data and b"TestPhone" not in data
    assert "exif" not in served.info and "xmp" not in served.info
    _, thumb_type, thumb = await chat.image_bytes(db, patient, view.id, thumbnail=True)
    assert thumb_type == "image/jpeg" and max(Image.open(io.BytesIO(thumb)).size) <= 320
    png_view = await chat.upload_image(db, patient, demo.room_id, png())
    assert png_view.content_type == "image/png"


async def test_outsiders_cannot_read_messages_or_fetch_images(db: Database) -> None:
    """Refused and audited as denied: another visit's doctor and patient, a token of another room."""
    demo, other = await create_demo_visit(db), await create_demo_visit(db)
    await chat.send_message(db, _doctor(demo), demo.room_id, text="只给本次就诊")
    image = await chat.upload_image(db, _patient(demo), demo.room_id, jpeg())
    linked_elsewhere = Actor(user_id=demo.patient_id, role=Role.PATIENT, room_id=other.room_id)
    for outsider in (_doctor(other), _patient(other), linked_elsewhere):
        with pytest.raises(NotAParticipant):
            await chat.history(db, outsider, demo.room_id)
        with pytest.raises(NotAParticipant):
            await chat.image_bytes(db, outsider, image.id)
        with pytest.raises(NotAParticipant):
            await chat.export(db, outsider, demo.room_id, fmt="json")
        with pytest.raises(PermissionDenied):  # NotAParticipant, or a room link used to send
            await chat.send_message(db, outsider, demo.room_id, text="hi")
    denied = [
        e
        for e in await _events(db, demo.room_id) + await _events(db, image.id)
        if e.result == "denied"
    ]
    assert len(denied) == 12
    assert {e.actor_id for e in denied} == {other.doctor_id, other.patient_id, demo.patient_id}
    # An image of another room is not found, even for someone who could see that room's.
    with pytest.raises(ImageNotFound):
        await chat.send_message(db, _doctor(other), other.room_id, image_id=image.id)
    with pytest.raises(ImageNotFound):
        await chat.send_message(db, _doctor(demo), demo.room_id, image_id=new_id())


async def test_bad_text_gets_stable_codes(db: Database) -> None:
    demo = await create_demo_visit(db)
    doctor = _doctor(demo)
    for value, error in [
        ("   \n ", MessageEmpty),
        ("x" * (chat.MAX_TEXT_CHARS + 1), MessageTooLong),
        ("bell\x07", MessageInvalidCharacters),
        ("\u202eevil", MessageInvalidCharacters),
        ("\ud800", MessageInvalidCharacters),
    ]:
        with pytest.raises(error):
            await chat.send_message(db, doctor, demo.room_id, text=value)
    with pytest.raises(MessageEmpty):
        await chat.send_message(db, doctor, demo.room_id)
    ok = await chat.send_message(db, doctor, demo.room_id, text="x" * chat.MAX_TEXT_CHARS)
    assert ok.seq == 1


async def test_r1_who_sends_when(db: Database) -> None:
    """The patient sends only once admitted; nobody sends after the visit closed; both still read."""
    demo = await create_demo_visit(db)
    await visit_flow.send_back(db, _doctor(demo), demo.visit_id)  # the room follows the visit
    with pytest.raises(NotAdmitted):
        await chat.send_message(db, _patient(demo), demo.room_id, text="在吗")
    await chat.send_message(db, _doctor(demo), demo.room_id, text="请稍等")
    await visit_flow.cancel_visit(db, _patient(demo), demo.visit_id)
    with pytest.raises(VisitClosed):
        await chat.send_message(db, _doctor(demo), demo.room_id, text="再见")
    page = await chat.history(db, _patient(demo), demo.room_id)
    assert [m.text for m in page.messages] == ["请稍等"]
    exported = await chat.export(db, _patient(demo), demo.room_id, fmt="json")
    assert [m.seq for m in exported.messages] == [1]
    assert any(e.action == "chat.export" for e in await _events(db, demo.room_id))


async def test_r23_postgresql_app_role_appends_chat_and_cannot_change_it(
    pg_scratch_db: Database,
) -> None:
    """Served as a login role of ``teleconsult_app``: chat works; editing it is refused."""
    login = f"tc_chat_{new_id()[:12]}"
    async with pg_scratch_db.engine.connect() as connection:
        await connection.execute(text(f"CREATE ROLE {login} LOGIN IN ROLE teleconsult_app"))
        await connection.commit()
    url = pg_scratch_db.engine.url.set(username=login, password=None)
    app = Database(url.render_as_string(hide_password=False), field_key=FIELD_KEY)
    try:
        await app.start()
        demo = await create_demo_visit(app)
        sent = await chat.send_message(app, _doctor(demo), demo.room_id, text="可以发送")
        await chat.upload_image(app, _patient(demo), demo.room_id, jpeg())
        added, _ = await sensitive_words.add_words(app, _operator(), [f"词{new_id()[:6]}"])
        await sensitive_words.remove_word(app, _operator(), added[0].id)
        for statement in (
            f"UPDATE chat_messages SET seq = 9 WHERE id = '{sent.id}'",
            "DELETE FROM chat_messages",
            "UPDATE chat_images SET width = 1",
            "TRUNCATE chat_blocks",
        ):
            with pytest.raises(Exception, match="permission denied"):
                async with app.session() as session, session.begin():
                    await session.execute(text(statement))
    finally:
        await app.close()
        async with pg_scratch_db.engine.connect() as connection:
            await connection.execute(text(f"DROP ROLE IF EXISTS {login}"))
            await connection.commit()
