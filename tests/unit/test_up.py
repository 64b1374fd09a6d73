"""`newsflow up` without servers: --scale, the children it plans, the note the CLI finds the stack
by, and the supervisor's restarts, give-up and shutdown (on small Python children)."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.cli import stack, supervisor
from services.cli.supervisor import Child, Supervisor
from services.cli.up import default_scale, parse_scale, plan

SERVICES = ["fetcher", "scheduler", "parser", "enricher", "indexer", "api"]


def test_scale_is_repeated_or_comma_separated() -> None:
    assert parse_scale(["parser=2", "enricher=3"], SERVICES) == {"parser": 2, "enricher": 3}
    assert parse_scale(["parser=2,enricher=3"], SERVICES) == {"parser": 2, "enricher": 3}
    assert parse_scale(["scheduler=0"], SERVICES) == {"scheduler": 0}
    assert parse_scale([], SERVICES) == {}


@pytest.mark.parametrize(("value", "says"), [
    ("parser", "SERVICE=COUNT"), ("parser=two", "SERVICE=COUNT"), ("parser=-1", "SERVICE=COUNT"),
    ("parsers=2", "unknown service 'parsers'"), ("api=2", "api runs once"),
])
def test_a_bad_scale_says_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_scale([value], SERVICES)


def test_the_cpu_bound_stages_follow_the_cores() -> None:
    assert default_scale(SERVICES, 2) == dict.fromkeys(SERVICES, 1)
    assert default_scale(SERVICES, 8)["parser"] == 4
    assert default_scale(SERVICES, 64)["enricher"] == 4
    assert default_scale(SERVICES, 64)["indexer"] == 1
    assert default_scale(SERVICES, None)["parser"] == 1


def test_each_replica_gets_its_own_metrics_port_and_plain_lines() -> None:
    children = plan(SERVICES, {"parser": 2, "scheduler": 0}, {"PATH": "/bin"}, 9000, 8000)
    assert [c.name for c in children] == ["fetcher-1", "parser-1", "parser-2", "enricher-1",
                                          "indexer-1", "api-1"]
    ports = [c.env["NEWSFLOW_METRICS_PORT"] for c in children]
    assert len(set(ports)) == len(ports) and "8000" not in ports
    assert all(c.env["NEWSFLOW_LOG_FORMAT"] == "plain" for c in children)
    assert all(c.env["NEWSFLOW_API_PORT"] == "8000" for c in children)
    assert children[1].args[-2:] == ["run", "parser"]
    # JSON lines stay JSON lines when asked for.
    json_lines = plan(["parser"], {}, {"NEWSFLOW_LOG_FORMAT": "json"}, 9000, 8000)
    assert json_lines[0].env["NEWSFLOW_LOG_FORMAT"] == "json"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_cli_finds_the_running_stack_through_its_note(tmp_path: Path) -> None:
    running = stack.Stack(os.getpid(), "redis://127.0.0.1:6390/0",
                          "postgresql://newsflow@127.0.0.1:5440/newsflow", "http://127.0.0.1:8001")
    stack.write_note(tmp_path, running)
    environ = {"NEWSFLOW_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://elsewhere/x"}
    assert stack.adopt_running_stack(environ) == running
    # What is set stays as set; what is not comes from the note.
    assert environ["REDIS_URL"] == running.redis_url
    assert environ["DATABASE_URL"] == "postgresql://elsewhere/x"

    stack.remove_note(tmp_path, os.getpid() + 1)  # not ours: kept
    assert stack.read_note(tmp_path) == running
    stack.remove_note(tmp_path, os.getpid())
    assert stack.read_note(tmp_path) is None


def test_a_note_left_by_a_killed_up_is_ignored(tmp_path: Path) -> None:
    stack.write_note(tmp_path, stack.Stack(_dead_pid(), "redis://x:1/0", "postgresql://x/y",
                                           "http://x"))
    environ = {"NEWSFLOW_DATA_DIR": str(tmp_path)}
    assert stack.adopt_running_stack(environ) is None
    assert "REDIS_URL" not in environ
    (tmp_path / stack.NOTE).write_text("{not json")
    assert stack.read_note(tmp_path) is None


def test_the_data_folder_is_the_flag_then_the_default(tmp_path: Path) -> None:
    assert stack.data_dir(str(tmp_path)) == tmp_path.resolve()
    default = stack.data_dir(None)
    assert default.name == "newsflow"


def _child(name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", textwrap.dedent(code)],
                 {**os.environ, "PYTHONUNBUFFERED": "1"})


async def _until(condition: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_child_that_keeps_dying_stops_the_run_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_BASE_S", 0.01)
    lines: list[str] = []
    run = Supervisor([_child("broken-1", "print('cannot start'); raise SystemExit(3)"),
                      _child("fine-1", """
                          import signal, sys, time
                          signal.signal(signal.SIGTERM, lambda *a: (print('bye'), sys.exit(0)))
                          print('ready')
                          while True: time.sleep(1)
                      """)], colour=False, out=lines.append)
    await asyncio.wait_for(run.run(), 60)
    assert run.failed is not None
    assert "broken-1 keeps dying: it exited with code 3 5 times in a row" in run.failed
    restarts = [line for line in lines if "restarting it" in line]
    assert len(restarts) == supervisor.MAX_FAILURES - 1
    assert restarts[0].startswith("up       | broken-1 exited with code 3 after 0 s; restarting")
    assert lines.count("broken-1 | cannot start") == supervisor.MAX_FAILURES
    # The healthy one was stopped with SIGTERM, and said goodbye.
    assert "fine-1   | bye" in lines


async def test_a_killed_child_is_restarted_and_stop_ends_all(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_BASE_S", 0.01)
    lines: list[str] = []
    child = _child("worker-1", """
        import os, time
        print('started', os.getpid())
        while True: time.sleep(1)
    """)
    run = Supervisor([child], colour=True, out=lines.append)
    task = asyncio.create_task(run.run())
    await _until(lambda: any("started" in line for line in lines))
    first = child.proc
    assert first is not None
    os.kill(first.pid, 9)
    await _until(lambda: sum("started" in line for line in lines) == 2)
    assert any("worker-1 exited with signal SIGKILL" in line and "restarting it" in line
               for line in lines)
    assert child.proc is not first and child.restarts == 1
    # The prefix is coloured on a terminal.
    assert lines[0].startswith("\033[")
    run.stop()
    await asyncio.wait_for(task, 60)
    assert child.proc.returncode is not None
    assert run.failed is None


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_time() -> None:
    lines: list[str] = []
    stubborn = _child("stubborn-1", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ignoring SIGTERM')
        while True: time.sleep(1)
    """)
    run = Supervisor([stubborn], colour=False, out=lines.append, grace_s=0.5)
    task = asyncio.create_task(run.run())
    await _until(lambda: "stubborn-1 | ignoring SIGTERM" in lines)
    run.stop()
    await asyncio.wait_for(task, 30)
    assert stubborn.proc is not None and stubborn.proc.returncode == -9
    assert "up         | 1 replica(s) still running after 0.5 s: killed" in lines
