"""The sensitive-word list (R38), kept by operators: list, add, import, remove."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from consult import sensitive_words
from consult.sensitive_words import MAX_IMPORT, MAX_WORD_CHARS, WordView

from ..call import Call
from ..fields import Id, Input, Output, Storable
from ..registry import api

Word = Annotated[str, StringConstraints(min_length=1, max_length=MAX_WORD_CHARS), Storable]


class WordIn(Input):
    word: Word


class WordImport(Input):
    words: list[Word] = Field(min_length=1, max_length=MAX_IMPORT)


class WordPath(Input):
    word_id: Id


class WordOut(Output):
    id: str
    word: str
    normalized: str = Field(description="What the filter matches (NFKC, case-folded, simplified).")
    created_at: datetime


class WordList(Output):
    words: list[WordOut]


class WordsAdded(Output):
    added: list[WordOut]
    already_listed: int = Field(
        description="Given words not added: listed already, or repeated (in some spelling)."
    )


def word_of(view: WordView) -> WordOut:
    return WordOut(
        id=view.id, word=view.word, normalized=view.normalized, created_at=view.created_at
    )


@api.operation("GET", "/sensitive-words", action="words.manage", tag="chat")
async def list_sensitive_words(call: Call) -> WordList:
    """The sensitive-word list (R38)."""
    words = await sensitive_words.list_words(call.db, call.me)
    return WordList(words=[word_of(w) for w in words])


@api.operation("POST", "/sensitive-words", action="words.manage", tag="chat", status=201)
async def add_sensitive_word(call: Call, body: WordIn) -> WordsAdded:
    """Add one word to the list (audited)."""
    added, already = await sensitive_words.add_words(call.db, call.me, [body.word])
    return WordsAdded(added=[word_of(w) for w in added], already_listed=already)


@api.operation("POST", "/sensitive-words/import", action="words.manage", tag="chat", status=201)
async def import_sensitive_words(call: Call, body: WordImport) -> WordsAdded:
    """Add many words at once; those already listed are skipped (audited)."""
    added, already = await sensitive_words.add_words(call.db, call.me, list(body.words))
    return WordsAdded(added=[word_of(w) for w in added], already_listed=already)


@api.operation("DELETE", "/sensitive-words/{word_id}", action="words.manage", tag="chat")
async def remove_sensitive_word(call: Call, path: WordPath) -> None:
    """Take a word off the list (audited)."""
    await sensitive_words.remove_word(call.db, call.me, path.word_id)
