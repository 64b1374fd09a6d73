"""The CLI's own failure paths: bad input lines, servers out of reach, unknown services."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on loopback: nothing listens there, so every connection is refused at once.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://newsflow:secret@127.0.0.1:1/newsflow")


def test_bad_lines_are_named_and_redis_out_of_reach_is_a_clear_error(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("https://example.com/a\n# a comment\nnot a url\n\nftp://example.com/b\n")
    result = runner.invoke(app, ["publish", "--file", str(urls)])
    assert result.exit_code == 1
    assert "line 3: 'not a url'" in result.stderr
    assert "line 5: 'ftp://example.com/b'" in result.stderr
    assert "cannot reach Redis at redis://127.0.0.1:1/0 (REDIS_URL)" in result.stderr
    assert "Traceback" not in result.output


def test_the_store_out_of_reach_is_a_clear_error_without_the_password() -> None:
    result = runner.invoke(app, ["search", "Rahmon"])
    assert result.exit_code == 1
    assert "cannot reach the search store at 127.0.0.1:1/newsflow" in result.stderr
    assert "secret" not in result.output


def test_nothing_to_publish_and_unknown_services_are_usage_errors() -> None:
    assert runner.invoke(app, ["publish"]).exit_code == 2
    assert runner.invoke(app, ["run", "nosuch"]).exit_code == 2
