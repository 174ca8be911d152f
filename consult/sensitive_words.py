"""The sensitive-word filter (R38): a list kept by operators, matched against normalised text.

Normalisation, per character of the text (and of every listed word, the same way):

1. NFKC: full-width letters and digits become ASCII (``ＡＢＣ１`` -> ``ABC1``), compatibility
   forms their base (``①`` -> ``1``);
2. case folding (``ABC`` -> ``abc``);
3. traditional to simplified Chinese, character by character (``zhconv``, a maintained table:
   ``醫`` -> ``医``);
4. dropped: whitespace, punctuation, symbols, control and format characters (zero-width
   spaces and joiners), so ``敏 感``, ``敏.感`` and ``敏\u200b感`` read as ``敏感``;
5. dropped: every default-ignorable code point (Unicode's ``Default_Ignorable_Code_Point``:
   the combining grapheme joiner U+034F, variation selectors U+FE00-FE0F, Hangul fillers
   U+115F, U+1160, U+3164, U+FFA0, tags, ...) and every combining mark (categories Mn, Me),
   which render nothing of their own between two characters;
6. look-alikes folded (Unicode's confusables, from ``confusable-homoglyphs``): a letter of
   another script that looks like a Latin letter or digit becomes it (Cyrillic ``а`` -> ``a``,
   Greek ``ο`` -> ``o``), a CJK radical that looks like an ideograph becomes it (``⺠`` ->
   ``民``).

The list is matched in one pass by an Aho-Corasick automaton (``pyahocorasick``), built once
per snapshot of the list. Stored entries are matched in the current normalisation of their
word (``normalized`` is recomputed when the list is loaded), so a change of these rules applies
to entries made before it.

Each character of the normalised text remembers the index of the original character it came
from, so a hit can be told back as a span of the original. A listed word matches only as a whole:
a message that merely holds the first character of a listed word is not blocked. A word made only
of Latin letters and digits must also stand at a boundary of the original text (``ass`` does not
hit ``class``); inserted spaces still do not hide it (``a s s``).

Operators add, remove and import entries (``words.manage``; every change is audited). The
matcher keeps the list in memory per database for a few seconds (another process's change is
seen within :data:`CACHE_SECONDS`; this process's at once).
"""

from __future__ import annotations

import time
import unicodedata
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Final

import ahocorasick
import zhconv
from confusable_homoglyphs import confusables
from sqlalchemy import delete, select

from consult.actor import Actor
from consult.audit import audited
from consult.authorization import authorize
from consult.db import Database
from consult.errors import WordInvalid, WordNotFound
from consult.models import SensitiveWord

MAX_WORD_CHARS: Final = 64
MAX_IMPORT: Final = 5000
CACHE_SECONDS: Final = 5.0
_DROPPED_CATEGORIES: Final = ("Z", "P", "S", "C")
_DROPPED_MARKS: Final = ("Mn", "Me")
_DEFAULT_IGNORABLE: Final = (
    # DerivedCoreProperties.txt, Default_Ignorable_Code_Point (Unicode 15.1).
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_CJK_IDEOGRAPHS: Final = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x20000, 0x3134F))


def _in(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= code <= last for first, last in ranges)


def renders_nothing(char: str) -> bool:
    """Whether ``char`` is default-ignorable or a combining mark (dropped before matching)."""
    return _in(ord(char), _DEFAULT_IGNORABLE) or unicodedata.category(char) in _DROPPED_MARKS


@cache
def _look_alikes() -> dict[str, str]:
    """Each confusable character with the one it is folded to: an ASCII letter or digit, or
    (for a CJK radical or the like) a unified ideograph."""
    table: dict[str, str] = {}
    for char, entries in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        targets = [e["c"] for e in entries if isinstance(e, dict) and len(e.get("c", "")) == 1]
        ascii_targets = [t for t in targets if t.isascii() and t.isalnum()]
        if ascii_targets:
            table[char] = ascii_targets[0]
        elif not _in(ord(char), _CJK_IDEOGRAPHS):
            cjk = [t for t in targets if _in(ord(t), _CJK_IDEOGRAPHS)]
            if cjk:
                table[char] = cjk[0]
    return table


@lru_cache(maxsize=65536)
def _fold(char: str) -> str:
    """One original character as zero or more normalised characters."""
    if not char or renders_nothing(char):
        return ""
    look_alikes = _look_alikes()
    out = []
    for composed in unicodedata.normalize("NFKC", char):
        for part in look_alikes.get(composed, composed).casefold():
            part = look_alikes.get(part, part)
            if unicodedata.category(part)[0] in _DROPPED_CATEGORIES or renders_nothing(part):
                continue
            if ord(part) > 0x2E7F:  # CJK and beyond: the traditional -> simplified table
                part = zhconv.convert(part, "zh-hans")
            out.append(part)
    return "".join(out)


def normalise(text: str) -> tuple[str, list[int]]:
    """``text`` normalised for matching, and for each of its characters the original index."""
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold(char)
        chars.append(folded)
        origin.extend([index] * len(folded))
    return "".join(chars), origin


def normalise_word(word: str) -> str:
    """A listed word's normalised form; :class:`WordInvalid` when empty or too long."""
    if not isinstance(word, str) or len(word) > MAX_WORD_CHARS:
        raise WordInvalid()
    normalised, _ = normalise(word)
    if not normalised or len(normalised) > MAX_WORD_CHARS:
        raise WordInvalid()
    return normalised


def _latin(word: str) -> bool:
    return word.isascii() and word.isalnum()


@dataclass(frozen=True)
class Hit:
    """A listed word found in a text: its id and the span of the original text it covers."""

    word_id: str
    start: int
    end: int


class Matcher:
    """A snapshot of the list: ``(id, normalised word)`` pairs, matched as whole words by one
    Aho-Corasick automaton (one pass over the text, whatever the length of the list)."""

    def __init__(self, words: Iterable[tuple[str, str]]) -> None:
        self._automaton = ahocorasick.Automaton()
        self._count = 0
        for word_id, word in words:
            if not word:
                continue
            _, ids = self._automaton.get(word, (word, ()))
            self._automaton.add_word(word, (word, (*ids, word_id)))
            self._count += 1
        if self._count:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return self._count

    def find(self, text: str) -> list[Hit]:
        """Every listed word the text holds (first occurrence of each), in order of place."""
        if not self._count:
            return []
        normalised, origin = normalise(text)
        hits: dict[str, Hit] = {}
        for end, (word, ids) in self._automaton.iter(normalised):
            first, last = origin[end - len(word) + 1], origin[end]
            if _latin(word) and not _at_boundary(text, first, last):
                continue
            for word_id in ids:
                hits.setdefault(word_id, Hit(word_id, first, last + 1))
        return sorted(hits.values(), key=lambda hit: (hit.start, -hit.end))


def _at_boundary(text: str, first: int, last: int) -> bool:
    before = text[first - 1] if first > 0 else ""
    after = text[last + 1] if last + 1 < len(text) else ""
    return not (_fold(before).isalnum() and _fold(before).isascii()) and not (
        _fold(after).isalnum() and _fold(after).isascii()
    )


@dataclass
class _Cached:
    matcher: Matcher
    loaded_at: float


_cache: weakref.WeakKeyDictionary[Database, _Cached] = weakref.WeakKeyDictionary()


async def matcher(db: Database) -> Matcher:
    """The current list as a :class:`Matcher` (reloaded after :data:`CACHE_SECONDS`)."""
    cached = _cache.get(db)
    now = time.monotonic()
    if cached is not None and now - cached.loaded_at < CACHE_SECONDS:
        return cached.matcher
    async with db.session() as session:
        rows = (
            await session.execute(
                select(SensitiveWord.id, SensitiveWord.word, SensitiveWord.normalized)
            )
        ).all()
    loaded = Matcher((str(row[0]), normalise(str(row[1]))[0] or str(row[2])) for row in rows)
    _cache[db] = _Cached(loaded, now)
    return loaded


def _invalidate(db: Database) -> None:
    _cache.pop(db, None)


# --- The operators' service ---------------------------------------------------------------------


@dataclass(frozen=True)
class WordView:
    """One entry of the list."""

    id: str
    word: str
    normalized: str
    created_at: datetime


def _view(row: SensitiveWord) -> WordView:
    return WordView(row.id, row.word, row.normalized, row.created_at)


async def list_words(db: Database, actor: Actor) -> list[WordView]:
    """The whole list by normalised form (``words.manage``)."""
    await authorize(db, actor, "words.manage", object_type="sensitive_words")
    async with db.session() as session:
        statement = select(SensitiveWord).order_by(SensitiveWord.normalized)
        rows = (await session.scalars(statement)).all()
    return [_view(row) for row in rows]


async def add_words(db: Database, actor: Actor, words: list[str]) -> tuple[list[WordView], int]:
    """Add ``words`` (one, or an import of many); returns the new entries and how many of the
    given words were not added (listed already, or repeated, in some spelling). One audit event
    per call (``words.manage``)."""
    await authorize(db, actor, "words.manage", object_type="sensitive_words")
    if len(words) > MAX_IMPORT:
        raise WordInvalid(f"Import at most {MAX_IMPORT} words at once.")
    wanted: dict[str, str] = {}
    for word in words:
        wanted.setdefault(normalise_word(word), word.strip())
    added: list[SensitiveWord] = []
    async with audited(db) as tx:
        existing = set(
            (
                await tx.session.scalars(
                    select(SensitiveWord.normalized).where(
                        SensitiveWord.normalized.in_(sorted(wanted))
                    )
                )
            ).all()
        )
        for normalized, word in wanted.items():
            if normalized in existing:
                continue
            row = SensitiveWord(word=word[:MAX_WORD_CHARS], normalized=normalized)
            row.created_by = actor.user_id
            tx.session.add(row)
            added.append(row)
        await tx.session.flush()
        await tx.record(
            "words.manage",
            actor=actor,
            object_type="sensitive_words",
            details={"op": "add", "added": len(added), "skipped": len(words) - len(added)},
        )
    _invalidate(db)
    return [_view(row) for row in added], len(words) - len(added)


async def remove_word(db: Database, actor: Actor, word_id: str) -> None:
    """Take one entry off the list (``words.manage``; audited)."""
    await authorize(db, actor, "words.manage", object_type="sensitive_words", object_id=word_id)
    async with audited(db) as tx:
        result = await tx.session.execute(delete(SensitiveWord).where(SensitiveWord.id == word_id))
        if not getattr(result, "rowcount", 0):
            raise WordNotFound()
        await tx.record(
            "words.manage",
            actor=actor,
            object_type="sensitive_word",
            object_id=word_id,
            details={"op": "remove"},
        )
    _invalidate(db)
