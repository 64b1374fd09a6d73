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


def test_a_dead_letter_keeps_a_small_original_readable_and_a_large_one_compressed_losslessly(
) -> None:
    from shared.broker import pack_original, unpack_original
    from shared.messages import ArticleFailed

    def letter(fields: dict[bytes, bytes], cap: int) -> ArticleFailed:
        return ArticleFailed(stream="s", entry_id="1-0", group="g", consumer="c", reason="r",
                             error="E", permanent=True, deliveries=1,
                             **pack_original(fields, cap))

    small = letter({b"__data__": b'{"url": 123}'}, cap=1_000_000)
    assert small.original == {"__data__": '{"url": 123}'} and not small.original_compressed
    # FastStream's binary envelope is not UTF-8: kept byte for byte.
    envelope = b"\x89BIN\x00\xff" + b"<p>page</p>" * 1000
    large = letter({b"__data__": envelope}, cap=1_000_000)
    assert large.original_compressed and not large.original_capped
    assert unpack_original(large) == {b"__data__": envelope}
    assert len(large.original["__data__"]) < len(envelope) / 10
    cut = letter({b"__data__": envelope, b"more": b"x" * 100}, cap=5_000)
    assert cut.original_capped and cut.original_bytes == len(envelope) + 100
    assert unpack_original(cut) == {b"__data__": envelope[:5_000], b"more": b""}
