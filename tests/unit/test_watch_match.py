"""The watcher's matcher without servers: tsquery parsing, the lexemes a query needs, boolean
evaluation, filters, and the index choosing candidates (PostgreSQL's answers are given)."""

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.watcher.match import ArticleFacts, FilterCheck, WatchIndex
from services.watcher.tsquery import evaluate, has_phrase, needed, parse_tsquery
from shared.watches import Watch, WatchFilters

# What PostgreSQL 15-18 print for websearch_to_tsquery (checked on a real server).
PARSED = [
    ("'rahmon'", ("lex", "rahmon")),
    ("'climat' & 'summit'", ("and", (("lex", "climat"), ("lex", "summit")))),
    ("'climat' <-> 'summit'", ("phrase", (("lex", "climat"), ("lex", "summit")))),
    ("'climat' <2> 'summit'", ("phrase", (("lex", "climat"), ("lex", "summit")))),
    ("'a' | 'b' & 'c'", ("or", (("lex", "a"), ("and", (("lex", "b"), ("lex", "c")))))),
    ("!'foo'", ("not", ("lex", "foo"))),
    ("'x' & !( 'a' <-> 'b' )",
     ("and", (("lex", "x"), ("not", ("phrase", (("lex", "a"), ("lex", "b"))))))),
    ("'a' <-> 'b' | 'c' <-> 'd' & !'e'",
     ("or", (("phrase", (("lex", "a"), ("lex", "b"))),
             ("and", (("phrase", (("lex", "c"), ("lex", "d"))), ("not", ("lex", "e"))))))),
    ("'o''brien' & 'back\\\\slash'", ("and", (("lex", "o'brien"), ("lex", "back\\slash")))),
    ("'a' & 'b & c'", ("and", (("lex", "a"), ("lex", "b & c")))),
    ("'a b'", ("lex", "a b")),
    ("( 'a' | 'b' ) & 'c'", ("and", (("or", (("lex", "a"), ("lex", "b"))), ("lex", "c")))),
]


@pytest.mark.parametrize(("text", "tree"), PARSED)
def test_parse_tsquery_reads_what_postgresql_prints(text: str, tree: Any) -> None:
    assert parse_tsquery(text) == tree


def test_an_empty_tsquery_is_none_and_garbage_is_refused() -> None:
    assert parse_tsquery("") is None
    for bad in ("'a' &", "( 'a'", "'a' 'b' )", "'unterminated"):
        with pytest.raises((ValueError, IndexError)):
            parse_tsquery(bad)


def test_needed_lexemes() -> None:
    def need(text: str) -> frozenset[str] | None:
        tree = parse_tsquery(text)
        assert tree is not None
        return needed(tree)

    assert need("'rahmon'") == {"rahmon"}
    # AND needs only one of its parts; the longer (rarer) word is chosen.
    assert need("'eu' & 'tajikistan'") == {"tajikistan"}
    assert need("'a' | 'b' & 'c'") == {"a", "b"}
    assert need("!'foo'") is None
    assert need("'x' | !'y'") is None
    assert need("'x' & !'y'") == {"x"}
    assert need("!'a' <-> 'b'") == {"b"}


@pytest.mark.parametrize(("text", "lexemes", "verdict"), [
    ("'a' & 'b'", {"a", "b", "c"}, True),
    ("'a' & 'b'", {"a"}, False),
    ("'a' | 'b' & 'c'", {"a"}, True),
    ("'a' | 'b' & 'c'", {"b"}, False),
    ("!'a'", {"b"}, True),
    ("!'a'", {"a"}, False),
    ("'x' & !'y'", {"x", "y"}, False),
])
def test_evaluate(text: str, lexemes: set[str], verdict: bool) -> None:
    tree = parse_tsquery(text)
    assert tree is not None and not has_phrase(tree)
    assert evaluate(tree, lexemes) is verdict


def test_phrases_are_left_to_postgresql() -> None:
    tree = parse_tsquery("'x' & !( 'a' <-> 'b' )")
    assert tree is not None and has_phrase(tree)
    with pytest.raises(ValueError, match="PostgreSQL"):
        evaluate(tree, {"x"})


def article(**overrides: Any) -> ArticleFacts:
    values: dict[str, Any] = {
        "id": "a1", "ts_config": "english", "lexemes": frozenset({"rahmon", "dushanb", "visit"}),
        "language": "en", "source": "commonspace.eu", "site_name": "commonspace.eu",
        "entity_names": frozenset({"emomali rahmon", "dushanbe"}),
        "entity_keys": frozenset({"person:emomali rahmon", "place:dushanbe"}),
        "countries": frozenset({"TJ", "IR"}),
        "published": datetime(2024, 5, 2, 10, tzinfo=UTC),
        "credit_keys": frozenset({"deutsche presse-agentur", "dpa"}),
    }
    return ArticleFacts(**{**values, **overrides})


@pytest.mark.parametrize(("filters", "verdict"), [
    ({"country": "tj"}, True), ({"country": "FR"}, False),
    ({"language": "EN"}, True), ({"language": "de"}, False),
    ({"source": "www.commonspace.eu"}, True), ({"source": "other.eu"}, False),
    ({"person": "Emomali RAHMON"}, True), ({"place": "Emomali Rahmon"}, False),
    ({"entity": "Dushanbe"}, True),
    ({"credit": "Deutsche Presse-Agentur"}, True), ({"credit": "dpa"}, True),
    ({"credit": "AFP"}, False),
    ({"since": date(2024, 5, 2)}, True), ({"since": date(2024, 5, 3)}, False),
    ({"until": date(2024, 5, 2)}, True), ({"until": date(2024, 5, 1)}, False),
])
def test_filters_as_search_applies_them(filters: dict[str, Any], verdict: bool) -> None:
    assert FilterCheck.of(WatchFilters.model_validate(filters)).accepts(article()) is verdict


def test_an_undated_article_fails_date_filters() -> None:
    check = FilterCheck.of(WatchFilters(since=date(2020, 1, 1)))
    assert not check.accepts(article(published=None))


def watch(name: str, **filters: Any) -> Watch:
    return Watch(id=name, name=name, filters=WatchFilters.model_validate(filters), webhook=None,
                 format="json", secret="s" * 16, feed_key="k", every_copy=False,
                 created_at=datetime.now(UTC))


async def test_the_index_matches_without_a_query_per_watch() -> None:
    # PostgreSQL's tsqueries for each watch's words, in English.
    compiled = {"Rahmon": "'rahmon'", "Rahmon visit": "'rahmon' & 'visit'",
                "Macron": "'macron'", "-Macron": "!'macron'", "the": "",
                '"Rahmon visit"': "'rahmon' <-> 'visit'"}
    calls: list[Any] = []

    async def compile_queries(config: str, queries: list[str]) -> list[str]:
        calls.append(config)
        return [compiled[q] for q in queries]

    phrase_calls: list[list[str]] = []

    async def phrase_check(article_id: str, queries: list[str]) -> list[bool]:
        phrase_calls.append(queries)
        return [True for _ in queries]

    watches = [watch("tj", q="Rahmon", country="TJ"), watch("fr", q="Rahmon", country="FR"),
               watch("both", q="Rahmon visit"), watch("macron", q="Macron"),
               watch("not-macron", q="-Macron"), watch("stop", q="the"),
               watch("phrase", q='"Rahmon visit"'), watch("iran", country="IR"),
               watch("german", language="de")]
    index = WatchIndex.of(watches, compile_queries)
    found = await index.match(article(), phrase_check)
    assert sorted(w.name for w in found) == ["both", "iran", "not-macron", "phrase", "tj"]
    assert phrase_calls == [['"Rahmon visit"']]
    await index.match(article(id="a2"), phrase_check)
    assert calls == ["english"]  # compiled once per configuration

    # Changes touch only what changed: a new watch is compiled alone, a removed one is gone
    # from every index, a changed one is indexed under its new words.
    compiled["Dushanbe"] = "'dushanb'"
    changed = watch("tj", q="Macron", country="TJ")
    assert index.update([changed, *watches[1:5], watch("new", q="Dushanbe")]) == (2, 5)
    found = await index.match(article(), phrase_check)
    assert sorted(w.name for w in found) == ["both", "new", "not-macron"]
    assert calls == ["english", "english"]
    flat = {(key, lexeme): ids for key, by_lexeme in index.configs["english"].by_lexeme.items()
            for lexeme, ids in by_lexeme.items()}
    # Indexed under its filter value and the lexeme it needs: only TJ articles look there.
    assert {k for k, ids in flat.items() if "tj" in ids} == {(("country", "TJ"), "macron")}
    assert {k for k, ids in flat.items() if "both" in ids} == {(None, "rahmon")}
    assert not any(w in ids for w in ("phrase", "iran", "german") for ids in flat.values())
    assert not any("iran" in ids for ids in index.by_filter.values())
    assert index.update([]) == (0, 6)
    assert index.configs["english"].by_lexeme == {} and index.by_filter == {}
    assert await index.match(article(), phrase_check) == []


def test_a_search_filter_the_matcher_does_not_know_is_refused() -> None:
    from pydantic import ValidationError

    from shared.store import SearchFilters
    from shared.watches import MATCHED_FILTERS

    # What FilterCheck applies; a filter search gains later is refused until it is taught.
    assert set(SearchFilters.model_fields) >= MATCHED_FILTERS

    class Searched(SearchFilters):
        sentiment: str | None = None

    class Watched(WatchFilters, Searched):
        pass

    assert Watched(q="x").q == "x"
    with pytest.raises(ValidationError, match="cannot filter on sentiment yet"):
        Watched(q="x", sentiment="positive")
