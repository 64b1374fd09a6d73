"""What a newcomer meets first: a CLI that starts fast, a metrics port that never stops a replica,
quiet health checks, /docs without internet, plurals, and a refusal that names its setting."""

import logging
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.cli.servers import ServerUnavailable, listen, port_is_free
from services.cli.words import plural
from services.fetcher.fetch import FetchRefused, _checked_addresses
from shared.logging import QuietProbes
from shared.settings import Settings

ROOT = Path(__file__).parents[2]
HEAVY = ("faststream", "redis", "asyncpg", "uvicorn", "shared.store", "shared.broker",
         "services.fetcher.fetch", "pydantic_settings")


def test_the_cli_imports_no_heavy_module_to_start() -> None:
    """`newsflow --help` loads none of the heavy modules; each command loads what it uses."""
    script = ("import sys\n"
              "sys.argv = ['newsflow', '--help']\n"
              "from services.cli.main import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert "LOADED []" in done.stdout, done.stdout[-500:]


def test_counts_read_in_the_singular_and_plural() -> None:
    assert plural(1, "story", "stories") == "1 story"
    assert plural(0, "story", "stories") == "0 stories"
    assert plural(2, "article", "articles") == "2 articles"


def test_a_taken_metrics_port_is_replaced_and_said_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING):
            sock = listen("127.0.0.1", port, "NEWSFLOW_METRICS_PORT", fallback=True)
        with sock:
            got = sock.getsockname()[1]
        assert got not in (port, 0)
        [line] = caplog.messages
        assert f"port {port} on 127.0.0.1 is taken (NEWSFLOW_METRICS_PORT)" in line
        assert f"on port {got} instead" in line
        # The API's port is the address people use: taken, it is an error naming the setting.
        with pytest.raises(ServerUnavailable, match="NEWSFLOW_API_PORT"):
            listen("127.0.0.1", port, "NEWSFLOW_API_PORT", fallback=False)


def _access(path: str) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                             '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", path, "1.1", 204), None)


def test_health_checks_are_not_logged_at_info() -> None:
    logging.getLogger().setLevel(logging.INFO)
    probes = QuietProbes()
    assert not probes.filter(_access("/health"))
    assert not probes.filter(_access("/metrics"))
    assert probes.filter(_access("/search?q=x"))
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        record = _access("/health")
        assert probes.filter(record) and record.levelno == logging.DEBUG
    finally:
        logging.getLogger().setLevel(logging.WARNING)


async def test_the_api_docs_need_no_internet() -> None:
    from services.api.main import create_app

    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "/docs/assets/swagger-ui-bundle.js" in page.text
        assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[1]
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 200
        assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.")


async def test_a_refused_private_address_names_the_setting_that_opens_it() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["172.18.0.10"]

    with pytest.raises(FetchRefused) as refused:
        await _checked_addresses(httpx.URL("http://testsite/news"), Settings(), resolve)
    assert "resolves to private address 172.18.0.10" in str(refused.value)
    assert "NEWSFLOW_ALLOWED_NETWORKS=172.18.0.10" in str(refused.value)
    assert "NEWSFLOW_ALLOW_PRIVATE_NETWORKS=true" in str(refused.value)
    with pytest.raises(FetchRefused, match=r"NEWSFLOW_ALLOWED_NETWORKS=127\.0\.0\.1"):
        await _checked_addresses(httpx.URL("http://127.0.0.1/"), Settings(), resolve)


def test_a_port_left_in_time_wait_is_free_again() -> None:
    """A second `newsflow up` gets the same ports as the first, whose connections linger."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert port_is_free(port)
