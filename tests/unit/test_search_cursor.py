"""Search cursors and estimates without a database: cursors round-trip exactly, garbage and
cursors of another order are refused, deep offsets point to the cursor, estimates round."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared import store


@pytest.mark.parametrize("cursor", [
    store.Cursor(kind="score", score=0.1 + 0.2, published=datetime(2024, 2, 29, 23, 59, 59,
                                                                   999_999, tzinfo=UTC),
                 id="a/b?c=d&é"),
    store.Cursor(kind="newest", published=None, id=""),
    store.Cursor(kind="oldest", published=datetime(1970, 1, 1, tzinfo=UTC), id="x" * 200),
])
def test_a_cursor_round_trips_exactly(cursor: store.Cursor) -> None:
    encoded = cursor.encode()
    assert encoded.isascii() and "=" not in encoded  # safe in a URL as is
    assert store.Cursor.decode(encoded) == cursor  # the float and microseconds exactly


@pytest.mark.parametrize("garbage", ["", "!!!", "e30", "WyJzY29yZSJd", "WzEsMiwzLDRd",
                                     "WyJtYXliZSIsIDAsIG51bGwsICJ4Il0"])
def test_garbage_is_not_a_cursor(garbage: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        store.Cursor.decode(garbage)


def test_the_query_checks_its_cursor_and_offset() -> None:
    score = store.Cursor(kind="score", score=1.5, id="a").encode()
    newest = store.Cursor(kind="newest", id="a").encode()
    assert store.SearchQuery(q="x", after=score).after == score
    assert store.SearchQuery(after=newest).after == newest  # relevance without words: by date
    assert store.SearchQuery(after="  ").after is None  # a blank form field
    with pytest.raises(ValidationError, match="another order"):
        store.SearchQuery(q="x", sort="oldest", after=score)
    with pytest.raises(ValidationError, match="another order"):
        store.SearchQuery(after=score)
    with pytest.raises(ValidationError, match="offset or after"):
        store.SearchQuery(offset=10, after=newest)
    assert store.SearchQuery(offset=store.MAX_OFFSET).offset == store.MAX_OFFSET
    with pytest.raises(ValidationError, match="pass `after`"):
        store.SearchQuery(offset=store.MAX_OFFSET + 1)


@pytest.mark.parametrize(("value", "about"), [(512_347, 510_000), (1001, 1000), (1049.9, 1000),
                                              (96, 96), (0, 0)])
def test_estimates_keep_two_figures(value: float, about: int) -> None:
    assert store._about(value) == about
