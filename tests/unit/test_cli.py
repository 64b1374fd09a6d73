"""The CLI's own failure paths: bad input lines, servers out of reach, unknown services."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app, article_header

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


def test_an_article_is_headed_by_its_title_credits_address_and_facts() -> None:
    article = {"title": "Mining blasts shatter homes", "site_name": "Lesotho Times",
               "authors": ["Mathatisi Sebusi", "Mohalenyane Phakela"],
               "url": "https://lestimes.com/mining-blasts-shatter-homes/",
               "published": "2025-11-21 13:34:26+00:00", "language": "en", "countries": ["LS"]}
    assert article_header(article).splitlines() == [
        "Mining blasts shatter homes",
        "Lesotho Times · Mathatisi Sebusi, Mohalenyane Phakela",
        "https://lestimes.com/mining-blasts-shatter-homes/",
        "2025-11-21 13:34:26+00:00  en  LS",
    ]
    wire = {**article, "authors": ["Jane Doe"], "credits": ["dpa"]}
    assert article_header(wire).splitlines()[1] == "Lesotho Times · Jane Doe, dpa"
    bare = {**article, "site_name": None, "authors": [], "published": None, "countries": []}
    assert article_header(bare).splitlines()[1:] == [
        "https://lestimes.com/mining-blasts-shatter-homes/", "-  en  -"]
