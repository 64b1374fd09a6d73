"""Where `newsflow up` keeps its data, and the note it leaves there so that the CLI in another
terminal reaches the stack it runs with no setting at all."""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

NOTE = "stack.json"
"""In the data folder while `newsflow up` runs: its pid and the addresses of what it serves."""


def default_data_dir() -> Path:
    """The user's data folder (~/.local/share/newsflow on Linux); /var/lib/newsflow as root,
    because PostgreSQL then runs as a plain user that cannot enter root's home."""
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/newsflow")
    import platformdirs

    return Path(platformdirs.user_data_dir("newsflow", appauthor=False))


def data_dir(configured: str | None) -> Path:
    """`configured` (--data-dir or NEWSFLOW_DATA_DIR) when given, else the default."""
    return Path(configured).expanduser().resolve() if configured else default_data_dir()


@dataclass(frozen=True)
class Stack:
    """What a running `newsflow up` serves."""

    pid: int
    redis_url: str
    database_url: str
    api_url: str


def write_note(folder: Path, stack: Stack) -> None:
    path = folder / NOTE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    temporary.replace(path)


def remove_note(folder: Path, pid: int) -> None:
    """Remove the note if it is ours (a second `up` may have replaced it)."""
    stack = read_note(folder)
    if stack is not None and stack.pid == pid:
        (folder / NOTE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def read_note(folder: Path) -> Stack | None:
    """The stack running from `folder`, or None (no note, an unreadable one, or its `up` is
    gone: a note left by an `up` that was killed)."""
    try:
        data = json.loads((folder / NOTE).read_text())
        stack = Stack(int(data["pid"]), str(data["redis_url"]), str(data["database_url"]),
                      str(data["api_url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stack if _alive(stack.pid) else None


ADDRESSES = {
    "redis_url": ("REDIS_URL", "NEWSFLOW_REDIS_URL"),
    "database_url": ("DATABASE_URL", "NEWSFLOW_DATABASE_URL"),
}


def adopt_running_stack(environ: dict[str, str] | os._Environ[str]) -> Stack | None:
    """Point this process at the stack `newsflow up` runs (from NEWSFLOW_DATA_DIR or the
    default folder): each of REDIS_URL and DATABASE_URL that is not set is set to what it
    serves. The CLI's entry point does this before any setting is read."""
    stack = read_note(data_dir(environ.get("NEWSFLOW_DATA_DIR")))
    if stack is None:
        return None
    for field, names in ADDRESSES.items():
        if not any(environ.get(name) for name in names):
            environ[names[0]] = getattr(stack, field)
    return stack
