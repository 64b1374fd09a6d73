"""The API's /watches: list and read watches (open), add and remove them (with the API token),
and each watch's Atom feed (with its key)."""

import hashlib
import hmac
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam

from shared import store, watches
from shared.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
ET.register_namespace("", ATOM)
WatchId = Annotated[str, PathParam(max_length=100)]


def _atom_time(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def atom_feed(watch: watches.Watch, matches: list[watches.MatchedArticle], self_url: str) -> bytes:
    """The watch's matches as an Atom 1.0 feed (RFC 4287), newest first."""
    feed = ET.Element(f"{{{ATOM}}}feed")

    def add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        node = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            node.text = text
        return node

    add(feed, "id", f"urn:newsflow:watch:{watch.id}")
    add(feed, "title", f"newsflow watch: {watch.name}")
    wanted = watch.filters.model_dump_json(exclude_none=True)
    add(feed, "subtitle", f"New articles matching {wanted}")
    add(feed, "updated", _atom_time(matches[0].matched_at if matches else watch.created_at))
    add(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    add(add(feed, "author"), "name", "newsflow")
    add(feed, "generator", "newsflow")
    for m in matches:
        entry = add(feed, "entry")
        add(entry, "id", f"urn:newsflow:article:{m.article_id}")
        add(entry, "title", m.title or m.article_id)
        if m.url:
            add(entry, "link", rel="alternate", href=m.url)
        add(entry, "updated", _atom_time(m.matched_at))
        if m.published:
            add(entry, "published", _atom_time(m.published))
        if m.source:
            add(add(entry, "author"), "name", m.source)
        for country in m.countries:
            add(entry, "category", term=country, label=f"country {country}")
        add(entry, "category", term=f"language:{m.language}", label=f"language {m.language}")
        if m.summary:
            add(entry, "summary", " ".join(m.summary.split()))
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def watch_routes(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["watches"])

    def writer(request: Request) -> asyncpg.Pool:
        return request.app.state.watch_pool  # type: ignore[no-any-return]  # set by the lifespan

    Pool = Annotated[asyncpg.Pool, Depends(writer)]

    def authorized(authorization: str | None) -> bool:
        if not settings.api_token or not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.api_token.encode())

    def require_token(
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        if not settings.api_token:
            raise HTTPException(403, "changing watches is off: the server has no "
                                     "NEWSFLOW_API_TOKEN")
        if not authorized(authorization):
            raise HTTPException(401, "a valid `Authorization: Bearer <NEWSFLOW_API_TOKEN>` is "
                                     "needed", headers={"WWW-Authenticate": "Bearer"})

    Token = Annotated[None, Depends(require_token)]

    def shown(watch: watches.Watch, full: bool, **more: Any) -> dict[str, Any]:
        return _shown(watch, settings, full, **more)

    @router.get("/watches")
    async def list_watches(
        db: Pool, authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Every watch with its matches in the last day and week. Feed URLs and webhooks are
        shown to token holders only. `writable`: whether the server takes changes."""
        full = authorized(authorization)
        counts = await watches.match_counts(db)
        zero = {"day": 0, "week": 0}
        return {"writable": bool(settings.api_token), "watches": [
            shown(w, full, matches=counts.get(w.id, zero))
            for w in await watches.list_watches(db)]}

    @router.post("/watches", status_code=201)
    async def add_watch(db: Pool, spec: watches.WatchSpec, _: Token) -> dict[str, Any]:
        """Add a watch (needs the token). The answer holds its signing secret: shown once."""
        try:
            watch = await watches.create_watch(
                db, spec, allow_private=settings.allow_private_networks,
                allowed_networks=settings.allowed_networks)
        except watches.WatchError as exc:
            raise HTTPException(422, str(exc)) from None
        return {**shown(watch, True), "secret": watch.secret}

    @router.get("/watches/{watch_id}")
    async def get_watch(
        db: Pool, watch_id: WatchId, limit: Annotated[int, Query(ge=1, le=200)] = 20,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """One watch (by id or name) and its most recent matches."""
        watch = await watches.get_watch(db, watch_id)
        if watch is None:
            raise HTTPException(404, f"no watch {watch_id!r}")
        recent = await watches.recent_matches(db, watch.id, limit)
        return {**shown(watch, authorized(authorization)),
                "recent": [m.model_dump(mode="json") for m in recent]}

    @router.get("/watches/{watch_id}/test", response_model=store.SearchResults)
    async def test_watch(
        db: Pool, watch_id: WatchId, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Any:
        """What the watch would have matched in the archive, newest first (a search with its
        words and filters; copies folded unless it asks for every copy)."""
        watch = await watches.get_watch(db, watch_id)
        if watch is None:
            raise HTTPException(404, f"no watch {watch_id!r}")
        return await store.search(db, watches.archive_query(watch, limit))

    @router.delete("/watches/{watch_id}", status_code=204)
    async def remove_watch(db: Pool, watch_id: WatchId, _: Token) -> Response:
        """Remove a watch (by id or name) and its record of matches (needs the token)."""
        if not await watches.remove_watch(db, watch_id):
            raise HTTPException(404, f"no watch {watch_id!r}")
        return Response(status_code=204)

    @router.get("/watches/{watch_id}/feed.atom", response_class=Response, responses={
        200: {"content": {"application/atom+xml": {}}}, 304: {}, 404: {}})
    async def feed(
        db: Pool, watch_id: WatchId, key: Annotated[str, Query(max_length=200)],
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The watch's matches as Atom, newest first; `key` is the watch's feed key. Answers
        304 to a matching If-None-Match."""
        watch = await watches.get_watch(db, watch_id)
        # One answer for "no such watch" and "wrong key": the key is the only secret.
        if watch is None or watch.id != watch_id or not hmac.compare_digest(
                key.encode(), watch.feed_key.encode()):
            raise HTTPException(404, "no such feed")
        matches = await watches.recent_matches(db, watch.id, 50)
        body = atom_feed(watch, matches, settings.public_url.rstrip("/") + watch.feed_path())
        return conditional(body, "application/atom+xml; charset=utf-8", if_none_match)

    return router


def _shown(watch: watches.Watch, settings: Settings, full: bool, **more: Any) -> dict[str, Any]:
    data = watch.public(settings.public_url, **more)
    if not full:
        # The feed key and the webhook are for those who hold the token.
        data.pop("feed_url")
        data.pop("webhook")
    return data


def conditional(body: bytes, media_type: str, if_none_match: str | None) -> Response:
    """The body with its ETag, or 304 when the client holds it already."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match and etag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)

