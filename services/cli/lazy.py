"""Modules imported on first use, so that `newsflow --help`, `search` and `status` start fast.

The CLI names many heavy modules (FastStream, redis-py, asyncpg, uvicorn, the fetcher) but each
command uses a few: importing them all made every command cost about a second of CPU.
"""

import importlib
from typing import Any


class LazyModule:
    """Stands for a module: the first attribute read imports it (an ordinary import, so the
    module is loaded once and shared, as with `import`); every read is the module's own."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for module `name`, imported when an attribute is first read. Type it with
    the real module under TYPE_CHECKING."""
    return LazyModule(name)
