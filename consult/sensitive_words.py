"""The sensitive-word filter (R38): a list kept by operators, matched against normalised text.

Normalisation, per character of the text (and of every listed word, the same way):

1. NFKC: full-width letters and digits become ASCII (``ＡＢＣ１`` -> ``ABC1``), compatibility
   forms their base (``①`` -> ``1``);
2. case folding (``ABC`` -> ``abc``);
3. traditional to simplified Chinese, character by character (``zhconv``, a maintained table:
   ``醫`` -> ``医``);
4. dropped: whitespace, punctuation, symbols, control and format characters (zero-width
   spaces and joiners), so ``敏 感``, ``敏.感`` and ``敏\u200b感`` read as ``敏感``.

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
from functools import lru_cache
from typing import Final

import zhconv
from sqlalchemy import delete, select

from consult.actor import Actor
from consult.audit import audited, authorize
from consult.db import Database
from consult.errors import WordInvalid, WordNotFound
from consult.models import SensitiveWord

MAX_WORD_CHARS: Final = 64
MAX_IMPORT: Final = 5000
CACHE_SECONDS: Final = 5.0
_DROPPED_CATEGORIES: Final = ("Z", "P", "S", "C")


@lru_cache(maxsize=65536)
def _fold(char: str) -> str:
    """One original character as zero or more normalised characters."""
    out = []
    for part in unicodedata.normalize("NFKC", char).casefold():
        if unicodedata.category(part)[0] in _DROPPED_CATEGORIES:
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
    """A snapshot of the list: ``(id, normalised word)`` pairs, matched as whole words."""

    def __init__(self, words: Iterable[tuple[str, str]]) -> None:
        self._words = sorted(words, key=lambda pair: (-len(pair[1]), pair[1]))

    def __len__(self) -> int:
        return len(self._words)

    def find(self, text: str) -> list[Hit]:
        """Every listed word the text holds (first occurrence of each)."""
        normalised, origin = normalise(text)
        hits = []
        for word_id, word in self._words:
            start = normalised.find(word)
            while start != -1:
                first, last = origin[start], origin[start + len(word) - 1]
                if not _latin(word) or _at_boundary(text, first, last):
                    hits.append(Hit(word_id, first, last + 1))
                    break
                start = normalised.find(word, start + 1)
        return hits


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
        rows = (await session.execute(select(SensitiveWord.id, SensitiveWord.normalized))).all()
    loaded = Matcher((str(row[0]), str(row[1])) for row in rows)
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
