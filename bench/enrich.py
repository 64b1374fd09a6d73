"""Benchmark the enricher: model load time, resident memory, CPU ms per 1000 words.

Run by hand: `.venv/bin/python bench/enrich.py [--runs 30]`. Targets: <= 100 ms CPU per 1000
words (median and p95, per language and overall), <= 400 MB resident with every model loaded
(the French one loads on the first French article, the multilingual one on the first German,
Dutch, Spanish, Italian, Portuguese or Polish article: their time and memory are reported
apart). An article's time is enrich() plus its
MinHash signature (the near-duplicate step), which is also reported on its own; the Redis side of
that step is measured in tests/integration/test_duplicates.py.
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
from services.enricher.minhash import signature

TARGET_MS_PER_1000_WORDS = 100.0
TARGET_RSS_MB = 400.0
# German, Spanish and Polish stand for the languages the multilingual model reads.
LANGUAGES = ("en", "fr", "de", "es", "pl")
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "article.txt"

# Generated articles mix the vocabulary that costs NER time: names, places, numbers, quotes.
_PEOPLE = ["Emomali Rahmon", "Olaf Scholz", "Maia Sandu", "Narendra Modi", "Lula da Silva"]
_PLACES = ["Tehran", "Berlin", "Chisinau", "New Delhi", "Brasilia", "Kyiv", "Paris", "Tokyo"]
_ORGS = ["the European Union", "the United Nations", "Siemens", "the World Bank", "NATO"]
# The same shape in French (read by the French model) and German (gazetteer only).
_FR_PEOPLE = ["Emmanuel Macron", "Ursula von der Leyen", "Olaf Scholz", "Giorgia Meloni"]
_FR_PLACES = ["Paris", "Bruxelles", "Berlin", "Marseille", "Londres", "Alger", "Dakar"]
_FR_ORGS = ["l'Union européenne", "l'ONU", "la Banque mondiale", "TotalEnergies", "l'OTAN"]
_FR_WORDS = [
    "gouvernement", "accord", "négociations", "ministre", "économie", "commerce", "sécurité",
    "énergie", "budget", "rapport", "responsables", "marché", "croissance", "crise", "élection",
    "politique", "sommet", "analystes", "semaine", "président", "a", "déclaré", "pourrait",
]
_DE_PEOPLE = ["Olaf Scholz", "Annalena Baerbock", "Emmanuel Macron", "Wladimir Putin"]
_DE_PLACES = ["Berlin", "Paris", "München", "Wien", "Moskau", "Peking", "Warschau"]
_DE_ORGS = ["der Europäischen Union", "der UNO", "Siemens", "der Weltbank", "der Nato"]
_DE_WORDS = [
    "Regierung", "Abkommen", "Gespräche", "Minister", "Wirtschaft", "Handel", "Sicherheit",
    "Energie", "Haushalt", "Bericht", "Beamte", "Markt", "Wachstum", "Krise", "Wahl", "Politik",
    "Gipfel", "Analysten", "Woche", "Präsident", "sagte", "würde", "könnte",
]
# Spanish and Polish go through the multilingual model (as German, Dutch, Italian, Portuguese).
_ES_PEOPLE = ["Pedro Sánchez", "Ursula von der Leyen", "Giorgia Meloni", "Isabel Díaz Ayuso"]
_ES_PLACES = ["Madrid", "Bruselas", "Barcelona", "Sevilla", "Lisboa", "Roma", "Rabat"]
_ES_ORGS = ["la Comisión Europea", "el Partido Popular", "Telefónica", "el Banco de España"]
_ES_WORDS = [
    "gobierno", "acuerdo", "negociaciones", "ministro", "economía", "comercio", "seguridad",
    "energía", "presupuesto", "informe", "responsables", "mercado", "crecimiento", "crisis",
    "elecciones", "política", "cumbre", "analistas", "semana", "presidente", "dijo", "podría",
]
_PL_PEOPLE = ["Donald Tusk", "Andrzej Duda", "Radosław Sikorski", "Olaf Scholz"]
_PL_PLACES = ["Warszawa", "Kraków", "Berlin", "Gdańsk", "Wilno", "Praga", "Kijów"]
_PL_ORGS = ["Komisja Europejska", "PiS", "Orlen", "Narodowy Bank Polski", "NATO"]
_PL_WORDS = [
    "rząd", "porozumienie", "rozmowy", "minister", "gospodarka", "handel", "bezpieczeństwo",
    "energia", "budżet", "raport", "urzędnicy", "rynek", "wzrost", "kryzys", "wybory",
    "polityka", "szczyt", "analitycy", "tydzień", "prezydent", "powiedział", "mógłby",
]
_WORDS = [
    "government", "agreement", "talks", "minister", "economy", "trade", "security", "energy",
    "budget", "report", "officials", "market", "growth", "crisis", "election", "policy",
    "summit", "analysts", "week", "president", "said", "would", "could",
]


def reference_article() -> tuple[str, str]:
    title, body = REFERENCE.read_text(encoding="utf-8").split("\n", 1)
    return title, body.split("\nRelated articles")[0].split("\nSources:")[0]


def generated_article(rng: random.Random, words: int, language: str = "en") -> tuple[str, str]:
    sentences: list[str] = []
    count = 0
    while count < words:
        filler = " ".join(rng.choices(
            {"en": _WORDS, "fr": _FR_WORDS, "de": _DE_WORDS, "es": _ES_WORDS,
             "pl": _PL_WORDS}[language], k=rng.randint(8, 20)
        ))
        day, percent = rng.randint(1, 28), rng.randint(2, 95)
        if language == "fr":
            sentence = (
                f"{rng.choice(_FR_PEOPLE)} a dit à {rng.choice(_FR_ORGS)} à "
                f"{rng.choice(_FR_PLACES)} le {day} mai que {filler}, {percent} % de plus "
                f"qu'à {rng.choice(_FR_PLACES)}."
            )
        elif language == "de":
            sentence = (
                f"{rng.choice(_DE_PEOPLE)} sagte {rng.choice(_DE_ORGS)} am {day}. Mai in "
                f"{rng.choice(_DE_PLACES)}, {filler}, {percent} Prozent mehr als in "
                f"{rng.choice(_DE_PLACES)}."
            )
        elif language == "es":
            sentence = (
                f"{rng.choice(_ES_PEOPLE)} dijo a {rng.choice(_ES_ORGS)} en "
                f"{rng.choice(_ES_PLACES)} el {day} de mayo que {filler}, un {percent} % más "
                f"que en {rng.choice(_ES_PLACES)}."
            )
        elif language == "pl":
            sentence = (
                f"{rng.choice(_PL_PEOPLE)} powiedział, że {rng.choice(_PL_ORGS)} w mieście "
                f"{rng.choice(_PL_PLACES)} {day} maja {filler}, o {percent} proc. więcej niż "
                f"{rng.choice(_PL_PLACES)}."
            )
        else:
            sentence = (
                f"{rng.choice(_PEOPLE)} told {rng.choice(_ORGS)} in {rng.choice(_PLACES)} on "
                f"{day} May that {filler}, {percent} percent more than in "
                f"{rng.choice(_PLACES)}."
            )
        sentences.append(sentence)
        count += len(sentence.split())
    title = {"en": "Generated article", "fr": "Article généré", "de": "Generierter Artikel",
             "es": "Artículo generado", "pl": "Wygenerowany artykuł"}
    return title[language], " ".join(sentences)


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
    # name -> (language, title, text)
    articles = {"reference": ("en", *reference_article())}
    for language in LANGUAGES:
        for words in (200, 600, 1500, 4000):
            articles[f"{language}-{words}w"] = (language, *generated_article(rng, words, language))

    enricher.enrich(*articles["reference"][1:])  # warm-up: first call pays lazy initialisation
    rss_english = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    enricher.enrich(*articles["fr-200w"][1:], "fr")  # loads the French model
    french_wall, french_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_french = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    enricher.enrich(*articles["de-200w"][1:], "de")  # loads the multilingual model
    multi_wall, multi_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_multi = rss_mb()
    per_1000: dict[str, list[float]] = {}
    minhash_ms: list[float] = []
    minhash_per_1000: list[float] = []
    print(f"model load: {load_wall:.2f} s wall, {load_cpu:.2f} s CPU (English, at start)")
    print(f"French model, on the first French article: {french_wall:.2f} s wall, "
          f"{french_cpu:.2f} s CPU, +{rss_french - rss_english:.0f} MB resident")
    print(f"multilingual model, on the first German article: {multi_wall:.2f} s wall, "
          f"{multi_cpu:.2f} s CPU, +{rss_multi - rss_french:.0f} MB resident")
    print(f"resident memory: {rss_before:.0f} MB before load, {rss_loaded:.0f} MB after load, "
          f"{rss_french:.0f} MB with the French model, {rss_multi:.0f} MB with every model")
    print(f"{'article':<18}{'words':>7}{'median ms':>11}{'p95 ms':>9}{'ms/1000w':>10}")
    for name, (language, title, text) in articles.items():
        words = len(f"{title} {text}".split())
        times: list[float] = []
        for _ in range(args.runs):
            start = time.process_time()
            enricher.enrich(title, text, language)
            signed = time.process_time()
            signature(text)
            end = time.process_time()
            times.append((end - start) * 1000)
            minhash_ms.append((end - signed) * 1000)
            minhash_per_1000.append((end - signed) * 1000 * 1000 / words)
        per_1000.setdefault(language, []).extend(t * 1000 / words for t in times)
        median = statistics.median(times)
        print(f"{name:<18}{words:>7}{median:>11.1f}{percentile(times, 0.95):>9.1f}"
              f"{median * 1000 / words:>10.1f}")
    print(f"of which MinHash signature: median {statistics.median(minhash_ms):.2f} ms per "
          f"article, {statistics.median(minhash_per_1000):.2f} ms per 1000 words "
          f"(p95 {percentile(minhash_per_1000, 0.95):.2f})")
    worst_p95 = 0.0
    for language, values in per_1000.items():
        median, p95 = statistics.median(values), percentile(values, 0.95)
        worst_p95 = max(worst_p95, p95)
        print(f"CPU ms per 1000 words, {language}: median {median:.1f}, p95 {p95:.1f} "
              f"(target <= {TARGET_MS_PER_1000_WORDS:.0f})")
    every = [v for values in per_1000.values() for v in values]
    print(f"CPU ms per 1000 words, all: median {statistics.median(every):.1f}, "
          f"p95 {percentile(every, 0.95):.1f}")
    rss_end = rss_mb()
    print(f"resident memory after the runs: {rss_end:.0f} MB (target <= {TARGET_RSS_MB:.0f})")
    ok = worst_p95 <= TARGET_MS_PER_1000_WORDS and rss_end <= TARGET_RSS_MB
    print("within targets" if ok else "OVER TARGET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
