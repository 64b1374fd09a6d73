"""What a handler's return value becomes: the events handed on with its entry's acknowledgement."""

import pytest

from shared.broker import Emit, Entry, Stage
from shared.errors import PermanentError
from shared.messages import ArticleIndexed, ArticleParsed
from shared.streams import DATA_FIELD, FETCHED, INDEXED, PARSED, SUBMITTED


def test_a_bare_event_goes_to_the_one_output() -> None:
    event = ArticleParsed(id="a1")
    assert Stage._emits(event, (PARSED,)) == [Emit(PARSED, event)]


def test_none_hands_nothing_on() -> None:
    assert Stage._emits(None, (PARSED,)) == []


def test_an_emit_names_one_of_the_outputs() -> None:
    done = Emit(INDEXED, ArticleIndexed(id="a1"))
    assert Stage._emits(done, (FETCHED, INDEXED, SUBMITTED)) == [done]
    with pytest.raises(TypeError, match="emits to articles:indexed"):
        Stage._emits(done, (FETCHED,))


def test_several_outputs_need_an_emit() -> None:
    with pytest.raises(TypeError, match="returns an Emit"):
        Stage._emits(ArticleParsed(id="a1"), (FETCHED, INDEXED))


def test_an_entry_decodes_plain_json_and_refuses_a_missing_data_field() -> None:
    entry = Entry(PARSED, b"1-0", {DATA_FIELD.encode(): b'{"id": "a1", "title": "t"}'})
    assert entry.event() == ArticleParsed(id="a1", title="t")
    with pytest.raises(PermanentError, match="no __data__ field"):
        Entry(PARSED, b"1-1", {b"url": b"https://x.org/"}).event()
