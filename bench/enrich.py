"""Benchmark the enricher: model load time, resident memory, CPU ms per 1000 words.

Run by hand: `.venv/bin/python bench/enrich.py [--runs 30]`. Targets: <= 150 ms CPU per 1000
words (median and p95), <= 500 MB resident after load.
"""

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line so the script runs from any directory without installing.
from services.enricher.enrich import Enricher

TARGET_MS_PER_1000_WORDS = 150.0
TARGET_RSS_MB = 500.0
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "article.txt"

# Generated articles mix the vocabulary that costs NER time: names, places, numbers, quotes.
_PEOPLE = ["Emomali Rahmon", "Olaf Scholz", "Maia Sandu", "Narendra Modi", "Lula da Silva"]
_PLACES = ["Tehran", "Berlin", "Chisinau", "New Delhi", "Brasilia", "Kyiv", "Paris", "Tokyo"]
_ORGS = ["the European Union", "the United Nations", "Siemens", "the World Bank", "NATO"]
_WORDS = [
    "government", "agreement", "talks", "minister", "economy", "trade", "security", "energy",
    "budget", "report", "officials", "market", "growth", "crisis", "election", "policy",
    "summit", "analysts", "week", "president", "said", "would", "could",
]


def reference_article() -> tuple[str, str]:
    title, body = REFERENCE.read_text(encoding="utf-8").split("\n", 1)
    return title, body.split("\nRelated articles")[0].split("\nSources:")[0]


def generated_article(rng: random.Random, words: int) -> tuple[str, str]:
    sentences: list[str] = []
    count = 0
    while count < words:
        sentence = (
            f"{rng.choice(_PEOPLE)} told {rng.choice(_ORGS)} in {rng.choice(_PLACES)} on "
            f"{rng.randint(1, 28)} May that " + " ".join(rng.choices(_WORDS, k=rng.randint(8, 20)))
            + f", {rng.randint(2, 95)} percent more than in {rng.choice(_PLACES)}."
        )
        sentences.append(sentence)
        count += len(sentence.split())
    return "Generated article", " ".join(sentences)


def rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="timed passes over each article")
    args = parser.parse_args()

    rss_before = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    enricher = Enricher()
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_loaded = rss_mb()

    rng = random.Random(42)
    articles = {"reference": reference_article()}
    for words in (200, 600, 1500, 4000):
        articles[f"generated-{words}w"] = generated_article(rng, words)

    enricher.enrich(*articles["reference"])  # warm-up: first call pays lazy initialisation
    per_1000: list[float] = []
    print(f"model load: {load_wall:.2f} s wall, {load_cpu:.2f} s CPU")
    print(f"resident memory: {rss_before:.0f} MB before load, {rss_loaded:.0f} MB after load")
    print(f"{'article':<18}{'words':>7}{'median ms':>11}{'p95 ms':>9}{'ms/1000w':>10}")
    for name, (title, text) in articles.items():
        words = len(f"{title} {text}".split())
        times: list[float] = []
        for _ in range(args.runs):
            start = time.process_time()
            enricher.enrich(title, text)
            times.append((time.process_time() - start) * 1000)
        per_1000 += [t * 1000 / words for t in times]
        median = statistics.median(times)
        print(f"{name:<18}{words:>7}{median:>11.1f}{percentile(times, 0.95):>9.1f}"
              f"{median * 1000 / words:>10.1f}")
    median, p95 = statistics.median(per_1000), percentile(per_1000, 0.95)
    rss_end = rss_mb()
    print(f"CPU ms per 1000 words: median {median:.1f}, p95 {p95:.1f} "
          f"(target <= {TARGET_MS_PER_1000_WORDS:.0f})")
    print(f"resident memory after the runs: {rss_end:.0f} MB (target <= {TARGET_RSS_MB:.0f})")
    ok = p95 <= TARGET_MS_PER_1000_WORDS and rss_end <= TARGET_RSS_MB
    print("within targets" if ok else "OVER TARGET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
