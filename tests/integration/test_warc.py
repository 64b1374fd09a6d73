"""`newsflow publish --warc`: a WARC file the test writes, its pages submitted to a real Redis."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared.streams import DATA_FIELD, SUBMITTED
from tests.servers import RedisServer
from tests.unit.test_warc import write_warc

if TYPE_CHECKING:
    from redis.asyncio import Redis


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_publish_warc_submits_its_pages_with_their_html(
    tmp_path: Path, redis_server: RedisServer, redis_client: "Redis[bytes]"
) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    path = tmp_path / "crawl.warc.gz"
    write_warc(path)
    code, out, err = await cli(env, "publish", "--warc", str(path))
    assert code == 0, err
    entries = [json.loads(f[DATA_FIELD.encode()]) for _, f in
               await redis_client.xrange(SUBMITTED.name)]
    # Every HTML page, with its markup: the fetcher passes it on, nothing is fetched again.
    assert [e["url"] for e in entries] == [
        *(f"https://example.com/{p}" for p in "abcd"), "https://example.com/huge"]
    assert all(e["source"] == "warc" and e["html"] for e in entries)
    assert out.count("submitted ") == 5
    assert ("warc: 5 pages submitted; passed over: 1 not HTML, 1 not an HTTP response, "
            "1 status 404") in err


async def test_publish_warc_refuses_what_it_cannot_read(
    tmp_path: Path, redis_server: RedisServer, redis_client: "Redis[bytes]"
) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    code, _, err = await cli(env, "publish", "--warc", str(tmp_path / "missing.warc"))
    assert code == 2 and "no file" in err
    (tmp_path / "bad.warc").write_bytes(b"not a warc")
    code, _, err = await cli(env, "publish", "--warc", str(tmp_path / "bad.warc"))
    assert code == 1 and "not a readable WARC file" in err
    assert await redis_client.xlen(SUBMITTED.name) == 0
