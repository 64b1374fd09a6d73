"""Match one article against every watch without a query per watch: an index from lexemes and
filter values to the watches that need them, exact boolean evaluation in Python, and one SQL
statement per article for the few candidate queries with phrases.

Exactness: a watch matches an article when `newsflow search` with the watch's words and filters
would return it. Search matches `document @@ websearch_to_tsquery(<article's config>, q)`; the
watch's query is turned into a tsquery by PostgreSQL itself (per text-search configuration, once),
so stemming and stop words are PostgreSQL's. A tsquery of AND, OR and NOT only depends on which
lexemes the document holds, and is evaluated here on the article's lexemes; a phrase (`<->`,
`<N>`) depends on positions, and is left to PostgreSQL, with the stored document.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.watcher.tsquery import Node, evaluate, has_phrase, needed, parse_tsquery
from shared.messages import ArticleIndexed, WatchMatched
from shared.store import credit_key
from shared.watches import Watch, WatchFilters, list_watches
from shared.watches import version as watches_version

logger = logging.getLogger("newsflow.watcher")

Compile = Callable[[str, list[str]], Awaitable[list[str]]]
"""(text-search config, queries) → each query's websearch_to_tsquery as text (PostgreSQL)."""
PhraseCheck = Callable[[str, list[str]], Awaitable[list[bool]]]
"""(article id, queries) → whether the stored article matches each (PostgreSQL)."""

@dataclass(frozen=True)
class ArticleFacts:
    """What matching needs of a stored article (one row of `articles`)."""

    id: str
    ts_config: str
    lexemes: frozenset[str]
    language: str
    source: str | None
    site_name: str | None
    entity_names: frozenset[str]
    entity_keys: frozenset[str]
    countries: frozenset[str]
    published: datetime | None
    credit_keys: frozenset[str] = frozenset()

    def filter_keys(self) -> Iterable[tuple[str, str]]:
        yield ("language", self.language)
        for c in self.countries:
            yield ("country", c)
        if self.source:
            yield ("source", self.source)
        if self.site_name:
            yield ("source", self.site_name.lower())
        for name in self.entity_names:
            yield ("entity", name)
        for key in self.entity_keys:
            yield ("entity_key", key)
        for key in self.credit_keys:
            yield ("credit", key)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class FilterCheck:
    """A watch's filters, normalised as `shared/store.py`'s WHERE clause normalises them."""

    language: str | None = None
    source: str | None = None
    entity: str | None = None
    entity_keys: tuple[str, ...] = ()
    country: str | None = None
    credit: str | None = None
    since: datetime | None = None
    before: datetime | None = None

    @classmethod
    def of(cls, f: WatchFilters) -> "FilterCheck":
        return cls(
            language=f.language.lower() if f.language else None,
            source=f.source.lower().removeprefix("www.") if f.source else None,
            entity=f.entity.lower() if f.entity else None,
            entity_keys=tuple(f"{kind}:{name.lower()}" for kind, name in (
                ("person", f.person), ("organization", f.organization), ("place", f.place))
                if name),
            country=f.country.upper() if f.country else None,
            credit=credit_key(f.credit) if f.credit else None,
            since=_day_start(f.since) if f.since else None,
            before=_day_start(f.until + timedelta(days=1)) if f.until else None,
        )

    def key(self) -> tuple[str, str] | None:
        """One filter value every matching article has (to index a watch without words)."""
        if self.entity_keys:
            return ("entity_key", self.entity_keys[0])
        for kind, value in (("entity", self.entity), ("credit", self.credit),
                            ("source", self.source), ("country", self.country),
                            ("language", self.language)):
            if value:
                return (kind, value)
        return None

    def accepts(self, a: ArticleFacts) -> bool:  # noqa: PLR0911 -- one return per filter
        if self.language is not None and a.language != self.language:
            return False
        if self.source is not None and not (
                a.source == self.source or (a.site_name or "").lower() == self.source):
            return False
        if self.entity is not None and self.entity not in a.entity_names:
            return False
        if any(k not in a.entity_keys for k in self.entity_keys):
            return False
        if self.country is not None and self.country not in a.countries:
            return False
        if self.credit is not None and self.credit not in a.credit_keys:
            return False
        if self.since is not None and (a.published is None or a.published < self.since):
            return False
        return not (self.before is not None and (a.published is None
                                                 or a.published >= self.before))


_NO_FILTERS = FilterCheck()

# How a query is tested on an article's lexemes: every one of a set (most saved searches: a few
# words; a C-speed subset test), a boolean tsquery, or a phrase (PostgreSQL decides).
_ALL, _BOOLEAN, _PHRASE = 0, 1, 2
Test = tuple[int, Any]


def _test(tree: Node, exact: bool) -> Test:
    if not exact:
        return (_PHRASE, None)
    if tree[0] == "lex":
        return (_ALL, frozenset((tree[1],)))
    if tree[0] == "and" and all(child[0] == "lex" for child in tree[1]):
        return (_ALL, frozenset(child[1] for child in tree[1]))
    return (_BOOLEAN, tree)


Primary = tuple[str, str] | None
"""The filter value a watch is indexed under (FilterCheck.key), or None when it has none."""


def _only(key: tuple[str, str]) -> FilterCheck:
    """The filters of a watch whose only filter is its primary one (nothing left to check)."""
    kind, value = key
    only = {"entity_key": FilterCheck(entity_keys=(value,)), "entity": FilterCheck(entity=value),
            "source": FilterCheck(source=value), "country": FilterCheck(country=value),
            "credit": FilterCheck(credit=value), "language": FilterCheck(language=value)}
    return only[kind]


@dataclass
class ConfigIndex:
    """The query watches in one text-search configuration, by their primary filter value and
    the lexemes they need: an article only looks under the filter values it has."""

    by_lexeme: dict[Primary, dict[str, set[str]]] = field(default_factory=dict)
    always: dict[Primary, set[str]] = field(default_factory=dict)
    """Watches no lexeme set narrows down (a bare exclusion), by primary filter value."""
    pending: set[str] = field(default_factory=set)
    """Watches added since, indexed here when this configuration is next used."""
    queries: dict[str, "Test"] = field(default_factory=dict)
    """Watch id → how its query is tested here (absent: only stop words, never matches)."""


Compiled = tuple[Node | None, bool, frozenset[str] | None]
"""A query in one configuration: its tsquery (None: only stop words there, never matches),
whether Python evaluates it (no phrase), the lexemes it needs (None: none narrows it down)."""


class WatchIndex:
    """Every watch, indexed by a filter value it needs (if any) and the lexemes (per text-search
    configuration) it needs. `update` brings it to a new list of watches touching only what
    changed; `compiled` keeps each (configuration, query) PostgreSQL compiled, so it is compiled
    once. One task at a time: `update` must not run while `match` or `config` waits (Matcher
    holds a lock)."""

    def __init__(self, compile_queries: Compile,
                 compiled: dict[tuple[str, str], Compiled] | None = None) -> None:
        self.compile_queries = compile_queries
        self.compiled = compiled if compiled is not None else {}
        self.watches: dict[str, Watch] = {}
        self.primary: dict[str, Primary] = {}
        self.residual: dict[str, FilterCheck | None] = {}
        """Watch id → the filters left to check once its primary one holds (None: none)."""
        self.queries: dict[str, str] = {}
        self.by_filter: dict[tuple[str, str], set[str]] = {}
        self.filter_always: set[str] = set()
        self.configs: dict[str, ConfigIndex] = {}

    @classmethod
    def of(cls, watches: list[Watch], compile_queries: Compile,
           compiled: dict[tuple[str, str], Compiled] | None = None) -> "WatchIndex":
        index = cls(compile_queries, compiled)
        index.update(watches)
        return index

    def update(self, watches: list[Watch]) -> tuple[int, int]:
        """Make the index hold exactly `watches`: (watches added or changed, removed or changed)."""
        wanted = {w.id: w for w in watches}
        gone = [i for i, w in self.watches.items() if wanted.get(i) != w]
        added = [w for i, w in wanted.items() if self.watches.get(i) != w]
        for watch_id in gone:
            self._remove(watch_id)
        for watch in added:
            self._add(watch)
        return len(added), len(gone)

    def _add(self, watch: Watch) -> None:
        self.watches[watch.id] = watch
        check = FilterCheck.of(watch.filters)
        self.primary[watch.id] = key = check.key()
        left = _NO_FILTERS if key is None else _only(key)
        self.residual[watch.id] = None if check in (left, _NO_FILTERS) else check
        self.queries[watch.id] = query = watch.filters.q.strip()
        if query:
            for built in self.configs.values():
                built.pending.add(watch.id)
        elif key is None:
            self.filter_always.add(watch.id)
        else:
            self.by_filter.setdefault(key, set()).add(watch.id)

    def _remove(self, watch_id: str) -> None:
        query = self.queries.pop(watch_id)
        key = self.primary.pop(watch_id)
        del self.residual[watch_id], self.watches[watch_id]
        if not query:
            if key is None:
                self.filter_always.discard(watch_id)
            else:
                _discard(self.by_filter, key, watch_id)
            return
        for ts_config, built in self.configs.items():
            if watch_id in built.pending:
                built.pending.discard(watch_id)
                continue
            built.queries.pop(watch_id, None)
            tree, _, need = self.compiled[(ts_config, query)]
            if tree is None:
                continue
            if need is None:
                _discard(built.always, key, watch_id)
            else:
                lexemes = built.by_lexeme.get(key, {})
                for lexeme in need:
                    _discard(lexemes, lexeme, watch_id)
                if not lexemes:
                    built.by_lexeme.pop(key, None)

    async def _compile(self, ts_config: str, ids: set[str]) -> None:
        missing = sorted({q for i in ids if (ts_config, q := self.queries[i]) not in self.compiled})
        if not missing:
            return
        texts = await self.compile_queries(ts_config, missing)
        parsed: dict[str, Compiled] = {}  # many queries print the same tsquery
        for n, (query, text) in enumerate(zip(missing, texts, strict=True)):
            if n % 10_000 == 9_999:
                await asyncio.sleep(0)  # a large index is built without stalling deliveries
            found = parsed.get(text)
            if found is None:
                tree = parse_tsquery(text)
                found = parsed[text] = (None, False, None) if tree is None else (
                    tree, not has_phrase(tree), needed(tree))
            self.compiled[(ts_config, query)] = found

    async def config(self, ts_config: str) -> ConfigIndex:
        """The index for one configuration, built on first use, brought up to date after."""
        built = self.configs.get(ts_config)
        if built is None:
            built = self.configs[ts_config] = ConfigIndex(
                pending={i for i, q in self.queries.items() if q})
        if not built.pending:
            return built
        pending = built.pending
        await self._compile(ts_config, pending)
        for n, watch_id in enumerate(pending):
            if n % 10_000 == 9_999:
                await asyncio.sleep(0)
            tree, exact, need = self.compiled[(ts_config, self.queries[watch_id])]
            if tree is None:
                continue
            built.queries[watch_id] = _test(tree, exact)
            key = self.primary[watch_id]
            if need is None:
                built.always.setdefault(key, set()).add(watch_id)
            else:
                lexemes = built.by_lexeme.setdefault(key, {})
                for lexeme in need:
                    lexemes.setdefault(lexeme, set()).add(watch_id)
        built.pending = set()
        return built

    def _candidates(self, index: ConfigIndex, article: ArticleFacts) -> set[str]:
        """The watches that may match: under no filter value or one the article has, those
        needing a lexeme it holds; and the few no lexeme narrows down."""
        candidates: set[str] = set()
        lexemes = article.lexemes
        keys: set[Primary] = {None, *article.filter_keys()}
        for key in keys:
            found = index.always.get(key)
            if found:
                candidates.update(found)
            needing = index.by_lexeme.get(key)
            if not needing:
                continue
            if len(needing) < len(lexemes):
                for lexeme, ids in needing.items():
                    if lexeme in lexemes:
                        candidates.update(ids)
            else:
                for lexeme in lexemes:
                    some = needing.get(lexeme)
                    if some:
                        candidates.update(some)
        for key in keys:
            filtered = self.by_filter.get(key) if key is not None else None
            if filtered:
                candidates.update(filtered)
        candidates.update(self.filter_always)
        return candidates

    async def match(self, article: ArticleFacts, phrase_check: PhraseCheck) -> list[Watch]:
        """The watches the article matches (in no particular order)."""
        index = await self.config(article.ts_config)
        candidates = self._candidates(index, article)
        matched: list[str] = []
        phrased: list[str] = []
        residual, queries, compiled = self.residual, self.queries, index.queries
        lexemes = article.lexemes
        for watch_id in candidates:
            check = residual[watch_id]
            if check is not None and not check.accepts(article):
                continue
            if not queries[watch_id]:
                matched.append(watch_id)
                continue
            test = compiled.get(watch_id)
            if test is None:
                continue  # only stop words in this language
            kind, payload = test
            if kind == _ALL:
                if payload <= lexemes:
                    matched.append(watch_id)
            elif kind == _BOOLEAN:
                if evaluate(payload, lexemes):
                    matched.append(watch_id)
            else:
                phrased.append(watch_id)
        if phrased:
            verdicts = await phrase_check(article.id, [self.queries[i] for i in phrased])
            matched += [i for i, ok in zip(phrased, verdicts, strict=True) if ok]
        return [self.watches[i] for i in matched]


def _discard(index: dict[Any, set[str]], key: Any, watch_id: str) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(watch_id)
        if not found:
            del index[key]


# --- The watcher's side of the store --------------------------------------------------------

_ARTICLE = """
SELECT a.id, a.ts_config::text AS ts_config, tsvector_to_array(a.document) AS lexemes,
       a.language, a.source, a.site_name, a.entity_names, a.entity_keys, a.countries,
       a.credit_keys, a.published, a.duplicate_of, a.title,
       coalesce(a.url, a.canonical_url, a.final_url) AS url,
       coalesce(nullif(a.summary, ''), a.description, left(a.text, 280)) AS snippet,
       (SELECT version FROM watches_version) AS watches_version
FROM articles a WHERE a.id = $1
"""
# Each query in the same expression `newsflow search` uses (shared/store.py): exact by design.
_PHRASES = """
SELECT coalesce(bool_or(a.document @@ websearch_to_tsquery(a.ts_config, q.q)), false)
FROM unnest($2::text[]) WITH ORDINALITY AS q(q, n) LEFT JOIN articles a ON a.id = $1
GROUP BY q.n ORDER BY q.n
"""
_COMPILE = """
SELECT websearch_to_tsquery($1::regconfig, q)::text
FROM unnest($2::text[]) WITH ORDINALITY AS u(q, n) ORDER BY n
"""


def facts(row: Any) -> ArticleFacts:
    return ArticleFacts(
        id=row["id"], ts_config=row["ts_config"], lexemes=frozenset(row["lexemes"]),
        language=row["language"], source=row["source"], site_name=row["site_name"],
        entity_names=frozenset(row["entity_names"]), entity_keys=frozenset(row["entity_keys"]),
        countries=frozenset(row["countries"]), published=row["published"],
        credit_keys=frozenset(row["credit_keys"]))


class Matcher:
    """The watcher's matching: the article from the store, the index (reloaded when the watches
    change), and the record of what each watch matched (so copies and re-indexing stay quiet)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.compiled: dict[tuple[str, str], Compiled] = {}
        self.index = WatchIndex(self.compile_queries, self.compiled)
        self.version: int | None = None
        self.lock = asyncio.Lock()
        """Held while the index changes or is used (matching awaits PostgreSQL midway)."""

    async def compile_queries(self, ts_config: str, queries: list[str]) -> list[str]:
        rows = await self.pool.fetch(_COMPILE, ts_config, queries)
        return [r[0] for r in rows]

    async def phrase_check(self, article_id: str, queries: list[str]) -> list[bool]:
        rows = await self.pool.fetch(_PHRASES, article_id, queries)
        return [bool(r[0]) for r in rows]

    async def reload(self, version: int) -> None:
        """Bring the index to the watches as they are now (only what changed is indexed again)."""
        found = await list_watches(self.pool)
        async with self.lock:
            added, removed = self.index.update(found)
            if removed:
                # Queries no watch uses any more are forgotten (after update: it needed them).
                current = set(self.index.queries.values())
                for key in [k for k in self.compiled if k[1] not in current]:
                    del self.compiled[key]
            self.version = version
        logger.info("watching %d watches (version %d: %d new or changed, %d removed or changed)",
                    len(found), version, added, removed)

    async def watch(self, watch_id: str) -> Watch | None:
        """The current watch of that id (reloading when the watches changed), or None."""
        current = await watches_version(self.pool)
        if current != self.version:
            await self.reload(current)
        return self.index.watches.get(watch_id)

    async def matches(self, event: ArticleIndexed) -> list[WatchMatched]:
        """The (watch, article) matches to hand on for this "indexed" event."""
        row = await self.pool.fetchrow(_ARTICLE, event.id)
        if row is None:
            return []  # an "indexed" event for an article the store does not hold (skipped)
        if row["watches_version"] != self.version:
            await self.reload(row["watches_version"])
        article = facts(row)
        async with self.lock:
            matched = await self.index.match(article, self.phrase_check)
        if not matched:
            return []
        story = row["duplicate_of"] or article.id
        fresh = await self.record(article.id, story, event.indexed_at, matched)
        return [WatchMatched(
            id=article.id, url=row["url"], trace=event.traced("matched"), watch_id=w.id,
            watch_name=w.name, title=row["title"], published=row["published"],
            source=row["source"], language=row["language"], countries=row["countries"],
            snippet=" ".join((row["snippet"] or "").split())[:280], story=story,
            indexed_at=event.indexed_at,
        ) for w in fresh]

    async def record(
        self, article_id: str, story: str, indexed_at: datetime, matched: list[Watch]
    ) -> list[Watch]:
        """Record the matches; return the watches to tell. Not told: a watch that already matched
        this article from an earlier "indexed" event (re-indexing), or another article of the
        same story (a near-duplicate), unless it asks for every copy. Told again: the same
        event delivered twice (a crash before it was handed on): at least once."""
        ids = [w.id for w in matched]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT watch_id, article_id, indexed_at FROM watch_matches "
                "WHERE watch_id = ANY($1::text[]) AND (article_id = $2 OR story = $3)",
                ids, article_id, story)
            own = {r["watch_id"]: r["indexed_at"] for r in rows if r["article_id"] == article_id}
            told_story = {r["watch_id"] for r in rows if r["article_id"] != article_id}
            tell, new = [], []
            for w in matched:
                if w.id in own:
                    if own[w.id] == indexed_at:
                        tell.append(w)
                elif w.every_copy or w.id not in told_story:
                    tell.append(w)
                    new.append(w.id)
                else:
                    logger.info("quiet %s for %s: a copy of story %s it was told of",
                                article_id, w.name, story, extra={"article_id": article_id})
            if new:
                await conn.executemany(
                    "INSERT INTO watch_matches (watch_id, article_id, story, indexed_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [(watch_id, article_id, story, indexed_at) for watch_id in new])
        return tell
