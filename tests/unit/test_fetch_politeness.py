"""robots.txt as the fetcher reads it (RFC 9309 statuses, Crawl-delay) and robots origins."""

import pytest

from services.fetcher.politeness import RobotsTxt, origin_of

UA = "newsflow/0.1 (+https://github.com/newsflow/newsflow)"


@pytest.mark.parametrize(("url", "origin"), [
    ("https://News.Example/a?b", "https://news.example:443"),
    ("http://news.example:8080/", "http://news.example:8080"),
    ("http://[::1]:8080/x", "http://[::1]:8080"),
])
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_rules_for_our_agent_and_for_everyone() -> None:
    robots = RobotsTxt("https://x:443", "ok",
                       "User-agent: *\nDisallow: /private/\n\n"
                       "User-agent: newsflow\nDisallow: /no-bots/\nCrawl-delay: 3\n")
    assert robots.allows("https://x/private/a", UA)  # our group replaces the * group
    assert not robots.allows("https://x/no-bots/a", UA)
    assert not robots.allows("https://x/private/a", "otherbot/1")
    assert robots.crawl_delay(UA) == 3


def test_request_rate_counts_as_a_delay() -> None:
    robots = RobotsTxt("https://x:443", "ok", "User-agent: *\nRequest-rate: 1/5\n")
    assert robots.crawl_delay(UA) == 5


def test_missing_allows_all_and_unreachable_allows_none() -> None:
    assert RobotsTxt("https://x:443", "missing").allows("https://x/a", UA)
    assert not RobotsTxt("https://x:443", "unreachable").allows("https://x/a", UA)
    assert RobotsTxt("https://x:443", "missing").crawl_delay(UA) is None
