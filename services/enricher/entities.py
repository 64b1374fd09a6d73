"""Turn spaCy's raw NER spans into counted people, organisations and places with countries."""

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.messages import Entity

from .gazetteer import Gazetteer, Mention

# Words that precede a name without being part of it: "President", "Major-General", "Dr".
TITLES = frozenset(
    {
        "president", "vice-president", "prime", "minister", "ministers", "premier",
        "chancellor", "foreign", "defence", "defense", "interior", "finance", "secretary",
        "secretary-general", "general", "major-general", "lieutenant-general",
        "brigadier-general", "colonel", "lieutenant", "captain", "commander", "admiral",
        "marshal", "field-marshal", "sergeant", "major", "chief", "staff", "ambassador",
        "envoy", "senator", "sen", "rep", "representative", "congressman", "congresswoman",
        "governor", "gov", "mayor", "judge", "justice", "king", "queen", "prince",
        "princess", "emperor", "sheikh", "emir", "ayatollah", "pope", "cardinal", "bishop",
        "archbishop", "rabbi", "imam", "dr", "mr", "mrs", "ms", "miss", "sir", "dame",
        "lord", "lady", "prof", "professor", "ceo", "chairman", "chairwoman", "chair",
        "spokesman", "spokeswoman", "spokesperson", "speaker", "leader", "supreme",
        "former", "late", "acting", "deputy", "mp", "lt", "col", "gen", "adm", "sgt",
        "capt", "cmdr", "st", "saint",
        # French and German, for the French model and names quoted in German text.
        "président", "présidente", "ministre", "chancelier", "chancelière", "roi", "reine",
        "général", "générale", "m", "mme", "mlle", "maire", "député", "députée", "sénateur",
        "sénatrice", "secrétaire", "porte-parole", "pape", "ancien", "ancienne", "dirigeant",
        "dirigeante", "chef", "patron", "patronne", "präsident", "präsidentin", "kanzler",
        "kanzlerin", "bundeskanzler", "bundeskanzlerin", "ministerin", "staatschef",
        "regierungschef", "regierungschefin", "könig", "königin", "herr", "frau",
    }
)
_TITLE_BEFORE = re.compile(
    r"\b(?:" + "|".join(sorted((re.escape(t) for t in TITLES if len(t) > 3), key=len,
                               reverse=True)) + r")\.?[\s,]*$",
    re.IGNORECASE,
)
# Not "." : names may end with one ("U.S."), and spaCy splits off a sentence's full stop anyway.
_EDGE_JUNK = " \t\n\"'“”‘’()[],;:"
_ELIDED_ARTICLE = re.compile(r"([lLdD])['’](?=\w)")
_POSSESSIVE = re.compile(r"(?:'s|’s|'|’)$")
_EVENT_WORDS = frozenset({"war", "revolution", "uprising", "crisis", "election", "elections"})
_LABELS = {"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC"}
_PLACE_LABELS = {"GPE", "LOC", "FAC"}
# The French model's labels, read as the English ones. MISC (events, works, "Premier ministre
# canadien") is dropped: its demonyms are counted by the gazetteer scan.
_LABEL_ALIASES = {"PER": "PERSON"}
# Particles inside family names: "Ursula von der Leyen", "Charles de Gaulle", "Lula da Silva".
_PARTICLES = frozenset(
    {"von", "van", "der", "den", "de", "du", "des", "da", "di", "del", "della", "dos", "das",
     "le", "la", "ter", "zu", "bin", "al", "el"}
)
# The French model takes the article into the place ("La France", "le Mali"); dropped when what
# is left is a known place ("Le Monde" and "Bruno Le Maire" keep theirs).
_PLACE_ARTICLES = frozenset({"le", "la", "les", "l'", "l’", "der", "die", "das"})
_NEXT_NAME_WORD = re.compile(r"[ \t]+([A-ZÀ-ÖØ-Þ][\w'’-]*)")


@dataclass
class _Tally:
    """What the article says about who and where, before it becomes Entities."""

    persons: dict[str, set[str]] = field(default_factory=dict)  # full name -> short forms
    orgs: Counter[str] = field(default_factory=Counter)
    places: Counter[str] = field(default_factory=Counter)
    place_country: dict[str, str | None] = field(default_factory=dict)
    # country -> [mentions, first offset]
    countries: dict[str, list[int]] = field(default_factory=dict)

    def country(self, code: str, offset: int) -> None:
        entry = self.countries.setdefault(code, [0, offset])
        entry[0] += 1
        entry[1] = min(entry[1], offset)


@dataclass(frozen=True)
class Extraction:
    """Entities, and per country how often and how early the article names it."""

    entities: list[Entity]
    country_mentions: dict[str, tuple[int, int]]


def clean_name(text: str) -> str:
    """The name without surrounding punctuation, possessive or leading article."""
    text = _POSSESSIVE.sub("", text.strip(_EDGE_JUNK)).strip(_EDGE_JUNK)
    elided = _ELIDED_ARTICLE.match(text)
    if elided and (elided.group(1).islower() or text[elided.end() :].isupper()):
        # "l'Ifop", "L'ONU"; but "L'Oréal" is the company's name.
        text = text[elided.end() :]
    words = text.split()
    if len(words) > 1 and words[0].casefold() == "the":
        words = words[1:]
    return " ".join(words)


def person_name(name: str, gazetteer: Gazetteer) -> str:
    """A person's name without what news puts before it: "Iranian President", "Major-General"."""
    words = name.split()
    while len(words) > 1 and (
        gazetteer.demonym(words[0]) or words[0].casefold().rstrip(".,") in TITLES
    ):
        words = words[1:]
    return " ".join(words)


@dataclass(frozen=True)
class _Ent:
    """One NER span, with the French model's labels mapped to the English ones."""

    text: str
    label: str
    start_char: int
    end_char: int


def _merged_ents(doc: Any, gazetteer: Gazetteer) -> list[_Ent]:
    """The model's spans, with names it cut in two put back together.

    The sm models stop a name at a particle ("Ursula von der" + "Leyen" as a place) and read a
    given name that is also a place as the place ("Israel" + "Adesanya").
    """
    text: str = doc.text
    ents = [
        _Ent(e.text, _LABEL_ALIASES.get(e.label_, e.label_), e.start_char, e.end_char)
        for e in doc.ents
    ]
    merged: list[_Ent] = []
    i = 0
    while i < len(ents):
        ent = ents[i]
        nxt = ents[i + 1] if i + 1 < len(ents) else None
        words = ent.text.split()
        gap = text[ent.end_char : nxt.start_char] if nxt else ""
        if ent.label == "PERSON" and len(words) > 1 and words[-1].casefold() in _PARTICLES:
            # "Ursula von der" + "Leyen": the name goes on to the next capitalised word.
            following = _NEXT_NAME_WORD.match(text, ent.end_char)
            if following:
                end = following.end(1)
                merged.append(_Ent(text[ent.start_char : end], "PERSON", ent.start_char, end))
                i += 2 if nxt is not None and nxt.start_char < end else 1
                continue
        if (
            nxt is not None
            and ent.label in _PLACE_LABELS
            and nxt.label in {"PERSON", *_PLACE_LABELS}
            and gap.strip(" \t") == ""
            and gap
            and gazetteer.is_given_name(ent.text)
            and not gazetteer.place(nxt.text)
        ):
            # "Israel" + "Adesanya": a given name before a word that is no place is a person.
            merged.append(
                _Ent(text[ent.start_char : nxt.end_char], "PERSON", ent.start_char, nxt.end_char)
            )
            i += 2
            continue
        merged.append(ent)
        i += 1
    return merged


@dataclass
class _Spans:
    """spaCy's entities sorted into names of people and everything else still to classify."""

    person_names: list[str] = field(default_factory=list)
    pending: list[tuple[str, str, int]] = field(default_factory=list)  # (name, label, offset)
    covered: list[tuple[int, int]] = field(default_factory=list)


def extract_with_ner(doc: Any, gazetteer: Gazetteer, english: bool = True) -> Extraction:
    """Entities from a spaCy Doc (English or French model), corrected with the gazetteer."""
    text: str = doc.text
    tally = _Tally()
    spans = _read_spans(doc, gazetteer, english)
    surnames = _short_forms(spans.person_names, -1)
    given = _short_forms(spans.person_names, 0)
    for name in spans.person_names:
        if " " in name:
            tally.persons.setdefault(name, set()).add(name.split()[-1])
    for name in spans.person_names:
        if " " not in name:
            # "Rahmon" is Emomali Rahmon; "Xi" (family name first) is Xi Jinping.
            full = surnames.get(name) or given.get(name)
            tally.persons.setdefault(full or name, set()).add(name)
    # A lone surname counts for the full name, whatever spaCy labelled it ("Raisi" as a GPE).
    for name, label, offset in spans.pending:
        if name in surnames:
            tally.persons[surnames[name]].add(name)
        else:
            _classify(name, label, offset, gazetteer, tally)
    counts = {p: _count_person(p, forms, text) for p, forms in tally.persons.items()}

    # Countries and capitals spaCy missed entirely, and all demonyms ("the Tajik government").
    person_spans = [
        (m.start(), m.end()) for p in tally.persons for m in re.finditer(re.escape(p), text)
    ]
    for mention in gazetteer.scan(text, english):
        if _inside(mention.start, person_spans):
            continue
        if mention.is_demonym:
            tally.country(mention.country, mention.start)
        elif not _inside(mention.start, spans.covered) and _is_major(mention, gazetteer):
            _add_place(mention.name, mention.country, mention.start, tally)
    return _finish(tally, counts)


def _read_spans(doc: Any, gazetteer: Gazetteer, english: bool) -> _Spans:
    text: str = doc.text
    spans = _Spans()
    for ent in _merged_ents(doc, gazetteer):
        if ent.label not in _LABELS:
            continue
        spans.covered.append((ent.start_char, ent.end_char))
        name = clean_name(ent.text)
        article, _, rest = name.partition(" ")
        if article.casefold() in _PLACE_ARTICLES and rest and gazetteer.place(rest):
            name = rest
        if ent.label == "PERSON":
            name = person_name(name, gazetteer)
        if not name or not name[0].isupper() or gazetteer.demonym(name, english):
            continue  # demonyms are counted by the gazetteer scan
        if ent.label == "ORG" and name.split()[-1].casefold() in _EVENT_WORDS:
            continue  # "the Tajik Civil War" is an event, not an organisation
        parts = name.split("-")
        if len(parts) > 1 and all(gazetteer.place(p) for p in parts):
            # Hyphenated pairs of places: "direct Dushanbe-Tehran flights".
            offset = ent.start_char
            for part in parts:
                spans.pending.append((part, "GPE", offset))
                offset += len(part) + 1
            continue
        label = ent.label
        if label == "ORG" and len(name.split()) > 1 and _TITLE_BEFORE.search(
            text[max(0, ent.start_char - 40) : ent.start_char]
        ):
            # spaCy's sm model often labels "President, Ebrahim Raisi" an organisation.
            label = "PERSON"
            name = person_name(name, gazetteer)
        if label == "PERSON" and not gazetteer.place(name):
            spans.person_names.append(name)
        else:
            spans.pending.append((name, label, ent.start_char))
    return spans


def extract_by_gazetteer(text: str, gazetteer: Gazetteer) -> Extraction:
    """Places and countries for text no model reads: gazetteer names only."""
    tally = _Tally()
    for mention in gazetteer.scan(text, english=False):
        if mention.is_demonym:
            tally.country(mention.country, mention.start)
        else:
            _add_place(mention.name, mention.country, mention.start, tally)
    return _finish(tally, {})


def _classify(name: str, label: str, offset: int, gazetteer: Gazetteer, tally: _Tally) -> None:
    place = gazetteer.place(name)
    if place and (label in _PLACE_LABELS or place.kind in ("country", "capital")):
        # spaCy calls "Dushanbe" an organisation and "Tajikistan" a nationality; a country or
        # capital name is a place whatever it says. A mere town labelled ORG stays an
        # organisation: that is how brands named like towns are kept out of places.
        _add_place(name, place.country, offset, tally)
    elif label in _PLACE_LABELS and name.casefold() not in gazetteer.brands:
        _add_place(name, None, offset, tally)
    elif label == "ORG":
        tally.orgs[name] += 1
    elif label == "PERSON":
        tally.persons.setdefault(name, set())


def _add_place(name: str, country: str | None, offset: int, tally: _Tally) -> None:
    tally.places[name] += 1
    tally.place_country.setdefault(name, country)
    if country:
        tally.country(country, offset)


def _is_major(mention: Mention, gazetteer: Gazetteer) -> bool:
    place = gazetteer.place(mention.name)
    return place is not None and place.kind in ("country", "capital")


def _short_forms(full_names: Iterable[str], index: int) -> dict[str, str]:
    """Last (index -1) or first (0) name → full name, where it belongs to one person only."""
    owners: dict[str, set[str]] = {}
    for name in full_names:
        words = name.split()
        if len(words) > 1:
            owners.setdefault(words[index], set()).add(name)
    return {short: next(iter(names)) for short, names in owners.items() if len(names) == 1}


def _count_person(name: str, short_forms: set[str], text: str) -> int:
    """Mentions of a person: the full name, plus its short forms used on their own."""
    full = [m.span() for m in re.finditer(_word_pattern(name), text)]
    count = len(full)
    for form in short_forms - {name}:
        count += sum(
            1 for m in re.finditer(_word_pattern(form), text) if not _inside(m.start(), full)
        )
    return max(1, count)


def _word_pattern(words: str) -> str:
    return rf"(?<![\w-]){re.escape(words)}(?![\w-])"


def _inside(offset: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= offset < end for start, end in spans)


def _finish(tally: _Tally, person_counts: dict[str, int]) -> Extraction:
    entities = [Entity(name=n, type="person", count=c) for n, c in person_counts.items()]
    entities += [Entity(name=n, type="organization", count=c) for n, c in tally.orgs.items()]
    entities += [
        Entity(name=n, type="place", count=c, country=tally.place_country[n])
        for n, c in tally.places.items()
    ]
    entities.sort(key=lambda e: -e.count)
    mentions = {code: (count, first) for code, (count, first) in tally.countries.items()}
    return Extraction(entities, mentions)
