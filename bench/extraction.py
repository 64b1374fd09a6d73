"""Score the parser against the Fundus dev set, side by side with plain trafilatura (run by hand).

    .venv/bin/python bench/extraction.py [DATA_DIR] [--only ID_SUBSTRING] [--show N]

DATA_DIR defaults to ../shared/eval-data/fundus relative to the repo root. Each extractor runs
once over every page untimed (warm-up: trafilatura's LRU caches, lazy imports), then timed.

Authors are scored three ways (exact set match, case aside): `authors` against the reference as it
stands; `authors_people` on the pages whose reference names people only; `authors_credits`, our
authors and credits together against the reference (which mixes people, agencies and sites).
`no_author_none`: the share of pages whose reference names no author where we name no person.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trafilatura  # noqa: E402  (after the sys.path line, so the repo's packages import)

from services.parser.extract import clean_authors, extract_article  # noqa: E402  (same reason)
from shared.errors import PermanentError  # noqa: E402  (same reason)

WORD = re.compile(r"\w+")
# Invisible characters inside words (soft hyphen, zero-width space, word joiner, BOM):
# "Brenn\xadpunkt" is one word on the page, so it is one word in the score.
INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


@dataclass
class Result:
    """What one extractor said about one page."""

    text: str = ""
    title: str = ""
    authors: list[str] = field(default_factory=list)
    credits: list[str] = field(default_factory=list)
    published: datetime | None = None
    date_str: str | None = None  # for extractors that give only a day


def ours(html: str, url: str | None) -> Result:
    try:
        e = extract_article(html, url)
    except PermanentError:
        return Result()
    return Result(e.text, e.title, e.authors, e.credits, e.published)


def plain_trafilatura(html: str, url: str | None) -> Result:
    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True)
    if doc is None:
        return Result()
    authors = [a.strip() for a in (doc.author or "").split(";") if a.strip()]
    return Result(doc.text or "", doc.title or "", authors, [], None, doc.date)


def grams(text: str) -> Counter[tuple[str, ...]]:
    tokens = WORD.findall(text.translate(INVISIBLE).lower())
    return Counter(tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3))


def site_names(want: dict[str, Any]) -> set[str]:
    """Comparison keys of the page's own publisher (its name in the reference, its host)."""
    host = urlsplit(want.get("url") or "").hostname or ""
    labels = host.removeprefix("www.").split(".")
    names = {want.get("publisher") or "", host.removeprefix("www."), labels[0],
             labels[-2] if len(labels) > 1 else ""}
    return {k for k in ("".join(c for c in unicodedata.normalize("NFKD", n.casefold())
                                if c.isalnum()) for n in names) if k}


def norm_title(text: str) -> str:
    text = unicodedata.normalize("NFKC", text.translate(INVISIBLE)).casefold()
    return " ".join(WORD.findall(text))


def same_day(result: Result, expected: str | None) -> bool:
    if not expected:
        return result.published is None and result.date_str is None
    want = datetime.fromisoformat(expected)
    if result.published is not None:
        got = result.published
        if want.tzinfo is not None:
            # Compare in the page's own zone: "the day" is the local day of publication.
            got = got.astimezone(want.tzinfo)
        return got.date() == want.date()
    return result.date_str is not None and result.date_str[:10] == want.date().isoformat()


def score(name: str, run: Callable[[str, str | None], Result], pages: dict[str, str],
          truth: dict[str, Any], show: int) -> dict[str, float]:
    for pid, html in pages.items():  # warm-up
        run(html, truth[pid].get("url"))
    precisions, recalls, cpu = [], [], []
    title_exact = title_norm = dates = authors = people_pages = people_ok = 0
    credited = unnamed_pages = unnamed_ok = 0
    misses: list[str] = []
    for pid, html in pages.items():
        want = truth[pid]
        start = time.process_time()
        got = run(html, want.get("url"))
        cpu.append((time.process_time() - start) * 1000)
        pred, exp = grams(got.text), grams(want.get("articleBody") or "")
        common = sum((pred & exp).values())
        precisions.append(common / sum(pred.values()) if pred else 0.0)
        recalls.append(common / sum(exp.values()) if exp else 1.0)
        title_exact += got.title == (want.get("headline") or "")
        title_norm += norm_title(got.title) == norm_title(want.get("headline") or "")
        day_ok = same_day(got, want.get("datePublished"))
        dates += day_ok
        author_ok = {a.casefold() for a in got.authors} == {
            a.casefold() for a in (want.get("authors") or [])}
        authors += author_ok
        # Authors and credits together against the reference as it stands (people, agencies and
        # sites mixed): exact set match, case aside.
        credited += {a.casefold() for a in [*got.authors, *got.credits]} == {
            a.casefold() for a in (want.get("authors") or [])}
        if not want.get("authors"):
            unnamed_pages += 1
            unnamed_ok += not got.authors  # a page that names no author: no person made up
        # The reference often lists agencies and the site as authors; our contract is people only,
        # so also score the pages whose reference names people only (no agency, no own site).
        ref = want.get("authors") or []
        if clean_authors(ref, site_names(want)) == ref:
            people_pages += 1
            people_ok += author_ok
        credit_ok = {a.casefold() for a in [*got.authors, *got.credits]} == {
            a.casefold() for a in (want.get("authors") or [])}
        if show and (precisions[-1] < 0.9 or recalls[-1] < 0.9 or not credit_ok or not day_ok
                     or norm_title(got.title) != norm_title(want.get("headline") or "")):
            misses.append(
                f"  {pid}: P={precisions[-1]:.2f} R={recalls[-1]:.2f}"
                f" title={got.title!r} want={want.get('headline')!r}"
                f" date={got.published or got.date_str} want={want.get('datePublished')}"
                f" authors={got.authors} credits={got.credits} want={want.get('authors')}")
    n = len(pages)
    p, r = statistics.fmean(precisions), statistics.fmean(recalls)
    cpu.sort()
    stats = {
        "precision": p, "recall": r, "body_f1": 2 * p * r / (p + r) if p + r else 0.0,
        "title_exact": title_exact / n, "title": title_norm / n, "date": dates / n,
        "authors": authors / n, "authors_people": people_ok / max(people_pages, 1),
        "authors_credits": credited / n, "no_author_none": unnamed_ok / max(unnamed_pages, 1),
        "cpu_ms_median": statistics.median(cpu),
        "cpu_ms_p95": cpu[min(n - 1, int(0.95 * n))],
    }
    if show:
        print(f"{name}: pages below par (first {show})")
        print("\n".join(misses[:show]))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=REPO / "../shared/eval-data/fundus")
    parser.add_argument("--only", default="", help="only pages whose id contains this")
    parser.add_argument("--show", type=int, default=0, help="print up to N weak pages")
    args = parser.parse_args()
    truth = json.loads((args.data / "ground-truth.json").read_text(encoding="utf-8"))
    pages = {pid: gzip.decompress((args.data / "html" / f"{pid}.html.gz").read_bytes())
             .decode("utf-8") for pid in sorted(truth) if args.only in pid}
    results = {"ours": score("ours", ours, pages, truth, args.show),
               "trafilatura": score("trafilatura", plain_trafilatura, pages, truth, args.show)}
    print(f"{len(pages)} pages from {args.data.resolve()}")
    print(f"{'metric':<14}{'ours':>10}{'trafilatura':>14}")
    for key in results["ours"]:
        print(f"{key:<14}{results['ours'][key]:>10.3f}{results['trafilatura'][key]:>14.3f}")
    o = results["ours"]
    print(f"body_f1={o['body_f1']:.3f} date={o['date']:.3f} title={o['title']:.3f} "
          f"authors={o['authors']:.3f} authors_credits={o['authors_credits']:.3f} "
          f"authors_people={o['authors_people']:.3f} no_author_none={o['no_author_none']:.3f} "
          f"cpu_ms_median={o['cpu_ms_median']:.1f}")


if __name__ == "__main__":
    main()
