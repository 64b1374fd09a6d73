"""What PostgreSQL cannot hold, met at the store: texts too large for a tsvector, NUL characters
and oversized titles are cut or cleaned, with a logged reason, and the article stays searchable."""

import json
import random
import string

import asyncpg
import pytest

from shared import store
from shared.messages import ArticleEnriched


def distinct_words(count: int, *, seed: int = 1, hyphenated: bool = False) -> str:
    rnd = random.Random(seed)  # noqa: S311 -- test data, not security

    def word() -> str:
        return "".join(rnd.choice(string.ascii_lowercase) for _ in range(8))

    if hyphenated:
        # The costliest text measured: each compound is a lexeme and so is each part.
        return " ".join(f"{word()[:2]}{i}-{word()[:2]}-{word()[:2]}-{word()[:2]}"
                        for i in range(count))
    return " ".join(word() for _ in range(count))


@pytest.mark.parametrize(("text", "language"), [
    (distinct_words(300_000), "en"),  # 2.7 MB of words PostgreSQL keeps almost whole
    (distinct_words(120_000, hyphenated=True), "und"),  # 1.8 MB, twice as many lexemes
])
async def test_a_text_too_large_for_a_tsvector_is_cut_and_stays_searchable(
    db: asyncpg.Pool, caplog: pytest.LogCaptureFixture, text: str, language: str,
) -> None:
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.ProgramLimitExceededError, match="too long for tsvector"):
            await conn.fetchval("SELECT to_tsvector('simple', $1)", text)
    first_word = text.split(maxsplit=1)[0]
    big = ArticleEnriched(id="big", title="Huge page", text=text, language=language,
                          words=len(text.split()))
    small = ArticleEnriched(id="small", title="Small page", text="Hello Dushanbe.",
                            language="en", words=2)
    with caplog.at_level("WARNING", logger="newsflow.store"):
        await store.upsert_articles(db, [small, big])
    assert "capped the text of big from" in caplog.text
    row = await db.fetchrow("SELECT text, words FROM articles WHERE id = 'big'")
    assert 200_000 < len(row["text"]) < len(text)  # as much as fits, not a token share
    assert text.startswith(row["text"]) and row["words"] == big.words
    hits = await store.search(db, store.SearchQuery(q=first_word.split("-")[0]))
    assert [h.id for h in hits.hits] == ["big"]
    assert (await store.search(db, store.SearchQuery(q="Dushanbe"))).hits[0].id == "small"


async def test_a_large_text_that_fits_is_kept_whole(db: asyncpg.Pool) -> None:
    text = "The same few words again and again. " * 40_000  # 1.4 MB, a few lexemes
    await store.upsert_articles(db, [ArticleEnriched(id="long", text=text, language="en")])
    assert await db.fetchval("SELECT length(text) FROM articles") == len(text)


async def test_titles_and_descriptions_beyond_any_use_are_cut(db: asyncpg.Pool) -> None:
    article = ArticleEnriched(id="t", title="word " * 100_000, description="more " * 100_000,
                              text="Body.")
    await store.upsert_articles(db, [article])
    row = await db.fetchrow("SELECT title, description FROM articles")
    assert len(row["title"]) <= store.MAX_TITLE_CHARS
    assert len(row["description"]) <= store.MAX_DESCRIPTION_CHARS


async def test_nul_characters_from_the_wire_reach_the_store_as_nothing(db: asyncpg.Pool) -> None:
    # As the indexer reads it: JSON from the stream, a NUL in the headline and the entities.
    wire = json.dumps({"id": "n\u0000ul", "title": "Head\u0000line", "text": "Body \u0000text.",
                       "entities": [{"name": "Rah\u0000mon", "type": "person"}],
                       "trace": {"parsed": "2026-01-01T00:00:00Z"}, "language": "en"})
    await store.upsert_articles(db, [ArticleEnriched.model_validate_json(wire)])
    row = await db.fetchrow("SELECT id, title, text, entities FROM articles")
    assert (row["id"], row["title"], row["text"]) == ("nul", "Headline", "Body text.")
    assert json.loads(row["entities"])[0]["name"] == "Rahmon"
