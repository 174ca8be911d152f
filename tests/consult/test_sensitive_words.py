"""The sensitive-word filter against invisible and look-alike characters (R38, issue 13 item 6).

Code points that render nothing (U+034F COMBINING GRAPHEME JOINER, U+FE0F VARIATION SELECTOR-16,
U+3164 HANGUL FILLER, and the rest of Unicode's default-ignorables and combining marks) are
dropped before matching; letters of other scripts that look like Latin ones, and CJK radicals
that look like ideographs, are folded to them. Each case below passed the filter unseen before.
"""

from __future__ import annotations

import pytest

from consult import chat, sensitive_words
from consult.actor import Actor
from consult.db import Database
from consult.permissions import Role
from consult.sqltypes import new_id
from consult.visits import create_demo_visit

BYPASSES = ("\u034f", "\ufe0f", "\u3164")
"""The three code points the issue names: each, put between characters, hid a listed word."""


def _operator() -> Actor:
    return Actor(user_id=None, role=Role.OPERATOR, department_ids=frozenset({"d"}))


@pytest.mark.parametrize("invisible", (*BYPASSES, "\u200b\u034f", "\U000e0041", "\u115f"))
def test_r38_characters_that_render_nothing_are_dropped(invisible: str) -> None:
    normalised, origin = sensitive_words.normalise(f"违{invisible}禁{invisible}药")
    assert normalised == "违禁药"
    assert origin[0] == 0 and origin[-1] == 2 + 2 * len(invisible)


def test_r38_look_alikes_fold_to_what_they_imitate() -> None:
    for raw, expected in [
        ("pаypаl", "paypal"),  # Cyrillic a
        ("ΒΑDWΟRD", "badword"),  # Greek capitals
        ("ѕеху", "sexy"),  # Cyrillic s, e, x, y
        ("⺠主", "民主"),  # CJK radical supplement
        ("𝐛𝐚𝐝", "bad"),  # mathematical bold (NFKC)
        ("e\u0301", "e"),  # a combining accent
    ]:
        assert sensitive_words.normalise(raw)[0] == expected, raw


def test_r38_a_listed_word_matches_only_whole_and_a_span_is_told_back() -> None:
    matcher = sensitive_words.Matcher([("w1", "违禁药"), ("w2", "ass"), ("w3", "禁药")])
    hits = matcher.find("买\u3164违\u034f禁\ufe0f药吧")
    assert {(h.word_id, h.start, h.end) for h in hits} == {("w1", 2, 7), ("w3", 4, 7)}
    assert matcher.find("class") == []  # a Latin word stands at a boundary
    assert [h.word_id for h in matcher.find("a\u034fs\u3164s!")] == ["w2"]
    assert matcher.find("违反规定") == []
    assert len(sensitive_words.Matcher([])) == 0 and sensitive_words.Matcher([]).find("x") == []


async def test_r38_bypass_and_look_alike_messages_are_blocked(db: Database) -> None:
    """Each disguise is blocked and kept as a block (R38, R22), with no number taken."""
    operator = _operator()
    tail = new_id()[:4]
    word = f"违禁药{tail}"
    latin = f"paypal{tail}"
    await sensitive_words.add_words(db, operator, [word, latin])
    demo = await create_demo_visit(db)
    patient = Actor(user_id=demo.patient_id, role=Role.PATIENT, source_ip="192.0.2.2")
    disguises = [f"买{c.join(word)}" for c in BYPASSES]
    disguises += [
        "買" + "\u034f".join("違禁藥") + tail,  # traditional with a joiner
        f"pаypаl{tail} now",  # Cyrillic a
        f"ΡΑΥΡΑL{tail.upper()}",  # Greek capitals
        f"p\u0301a\u0308ypal{tail}",  # combining marks
    ]
    for attempt in disguises:
        with pytest.raises(chat.Blocked) as info:
            await chat.send_message(db, patient, demo.room_id, text=attempt)
        assert info.value.code == "sensitive_word", attempt
        assert await chat.blocked_text(db, info.value.block.id) == attempt
    fine = await chat.send_message(db, patient, demo.room_id, text="违反规定\u034f的事不做")
    assert fine.seq == 1
