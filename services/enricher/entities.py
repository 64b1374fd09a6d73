"""Turn spaCy's raw NER spans into counted people, organisations and places with countries."""

import bisect
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import spacy

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
        # German genitives ("des Bundeskanzlers Merz"), and the titles of the languages the
        # multilingual model reads (nl, es, it, pt, pl).
        "präsidenten", "kanzlers", "bundeskanzlers", "ministerpräsident",
        "ministerpräsidenten", "außenminister", "außenministerin", "außenministers",
        "bürgermeister", "bürgermeisterin", "bürgermeisters", "parteichef", "parteichefin",
        "vorsitzende", "vorsitzenden", "premierminister", "koning", "koningin",
        "burgemeester", "voorzitter", "minister-president", "heer", "mevrouw",
        "presidente", "presidenta", "ministro", "ministra", "primer", "primera",
        "rey", "reina", "regina", "doña", "señor", "señora", "sra",
        "signor", "signora", "dott", "juez", "jueza", "giudice", "alcalde", "alcaldesa",
        "sindaco", "prefeito", "prefeita", "senhor", "senhora", "governador", "governadora",
        "prezydent", "prezydenta", "premiera", "kanclerz", "kanclerza", "pani", "marszałek",
        "burmistrz", "szef", "szefowa", "wiceprezydent", "przewodniczący",
        "kaiser", "kaiserin", "fürst", "fürstin", "graf", "gräfin", "herzog", "herzogin",
        "prinz", "prinzessin", "papst", "bischof", "trainer", "trainerin", "kapitän",
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
# Organisation cues that lead the name ("Banco Santander", "Partido Popular", "FC Porto").
_LEADING_ORG_CUES = frozenset(
    {"banco", "banca", "bank", "partido", "partito", "partia", "partij", "ministerio",
     "ministero", "ministério", "ministerstwo", "ministerium", "universidad", "università",
     "universidade", "uniwersytet", "université", "universiteit", "fc", "ac", "sv", "vfb",
     "vfl", "tsv", "fundación", "fondazione", "fundação", "instituto", "istituto", "instytut",
     "institut", "agencia", "agenzia", "agência", "agencja", "comisión", "commissione",
     "comissão", "komisja", "consejo", "consiglio", "conselho", "tribunal", "gruppo", "grupo",
     "grupa", "presidencia", "presidenza", "presidência", "ministerie", "gemeente"}
)
_EVENT_WORDS = frozenset({"war", "revolution", "uprising", "crisis", "election", "elections"})
# Words that make a name an organisation whatever the model says: legal forms and the nouns of
# company, party, ministry, bank and university names in the languages read ("Uniper SE",
# "Deutsche Bank", "Partido Popular", "Ministerstwo Zdrowia").
ORG_CUES = frozenset(
    {
        "gmbh", "ag", "se", "kg", "kgaa", "ltd", "plc", "inc", "corp", "llc", "co", "sa", "spa",
        "srl", "sl", "nv", "bv", "ab", "asa", "oyj", "holding", "holdings", "group", "gruppe",
        "bank", "banco", "banca", "banque", "bancorp", "partei", "party", "partido", "partito",
        "partij", "parti", "partia", "ministerium", "ministry", "ministerio", "ministero",
        "ministério", "ministerstwo", "ministère", "ministerie", "universität", "university",
        "universidad", "università", "universidade", "uniwersytet", "université",
        "universiteit", "stiftung", "foundation", "fundación", "fondazione", "fundação",
        "verein", "verband", "institut", "institute", "instituto", "istituto", "instytut",
        "agentur", "agency", "agencia", "agenzia", "agência", "agencja", "kommission",
        "commission", "comisión", "commissione", "comissão", "komisja", "gewerkschaft",
        "council", "rat", "consejo", "consiglio", "conselho", "rada", "tribunal",
        "gericht", "bundesgericht", "bundesamt", "court", "fc", "club", "airlines", "airways",
        "motors", "energie", "energy", "telecom", "telekom", "fiscalía", "polizei", "police",
        "policía", "polizia", "polícia", "policja", "commissie", "raad", "unie",
    }
)
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
_PLACE_ARTICLES = frozenset(
    {"le", "la", "les", "l'", "l’", "der", "die", "das", "el", "los", "las", "il", "lo", "gli",
     "i", "o", "os", "a", "as", "de", "het"}
)
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


# "Francia y Alemania", "Egipto o Mauritania": two names the compact model read as one.
_CONJUNCTIONS = frozenset(
    {"y", "e", "o", "u", "i", "ou", "und", "oder", "and", "or", "et", "en", "oraz", "lub",
     "albo", "ni", "oppure", "sowie"}
)
# Articles that begin names ("El País", "La Stampa", "De Telegraaf", "Der Spiegel").
_NAME_ARTICLES = frozenset(
    {"el", "la", "los", "las", "il", "lo", "gli", "le", "les", "de", "het", "der", "die", "das",
     "o", "a", "os", "as", "the"}
)
_WORD_SPAN = re.compile(r"\S+")
_FAMILY_PARTICLES = re.compile(
    # Not a bare lowercase "von": "die Kirche von Paris".
    r"(?:\b[A-ZÀ-ÖØ-Þ][\w-]+ )?\b"
    r"(?:(?:Von|Van|Vander)(?: (?:der|den|de))?|(?:von|van) (?:der|den)) $"
)
# Lowercase words inside place names: "Frankfurt am Main", "Frankfurt nad Odrą", "Isle of Man".
_PLACE_LINKS = frozenset(
    {"am", "an", "im", "ob", "sur", "upon", "on", "of", "al", "sul", "nad", "pod", "na", "aan",
     "op", "bei"}
)
_UNIT_WORDS = frozenset(
    {"mio", "mrd", "mld", "eur", "chf", "usd", "gbp", "pln", "euro", "dollar", "milliarden",
     "millionen", "prozent", "mln", "zł"}
)
# Capitalised nouns the compact model reads as names: the government, the state, the country.
_GENERIC_NOUNS = frozenset(
    {"gobierno", "ejecutivo", "regierung", "governo", "rząd", "regering", "gouvernement",
     "government", "estado", "estados", "stato", "staat", "país", "paese", "land",
     "kabinett", "gabinete", "bund"}
)
# One-word names of institutions, as news writes them after a first full mention.
_SINGLE_ORG_WORDS = frozenset(
    {"comisión", "commissione", "comissão", "komisja", "kommission", "commissie", "unión",
     "unione", "união", "unia", "consejo", "consiglio", "conselho", "tribunal", "fiscalía",
     "bundestag", "bundesrat", "sejm", "senat", "senado", "senato", "congreso", "parlamento",
     "parlament"}
)


@lru_cache(maxsize=16)
def stop_words(language: str) -> frozenset[str]:
    """spaCy's stop words of a language ("pero", "además"), or none for a language it lacks."""
    try:
        return frozenset(spacy.util.get_lang_class(language).Defaults.stop_words)
    except ImportError:
        return frozenset()


_FAMILY_GAP = re.compile(r" (?:von|van|von der|van der|van den|von den|vom|zu) ")


def _particles_joined(ents: list[_Ent], text: str) -> list[_Ent]:
    """"Ursula" + "von der" + "Leyen" read as two places by the compact model: one person."""
    joined: list[_Ent] = []
    for ent in ents:
        previous = joined[-1] if joined else None
        if previous is not None and _FAMILY_GAP.fullmatch(
            text[previous.end_char : ent.start_char]
        ) and previous.text[:1].isupper() and ent.text[:1].isupper():
            joined[-1] = _Ent(
                text[previous.start_char : ent.end_char], "PERSON", previous.start_char,
                ent.end_char,
            )
        else:
            joined.append(ent)
    return joined


def _trimmed(ent: _Ent, text: str, stops: frozenset[str]) -> list[_Ent]:
    """The span without the sentence words the compact model takes in with a name ("Pero",
    "Albania deberán"), cut at a conjunction between two names."""
    words = [
        (m.start() + ent.start_char, m.end() + ent.start_char)
        for m in _WORD_SPAN.finditer(ent.text)
    ]
    parts: list[list[tuple[int, int]]] = [[]]
    labels = [ent.label]
    for i, (start, end) in enumerate(words):
        word = text[start:end]
        following = text[slice(*words[i + 1])] if i + 1 < len(words) else ""
        folded = word.casefold()
        if word.islower() and (
            # Organisations keep theirs ("Ministerie van Justitie en Veiligheid") unless an
            # article begins a second name: "Telefónica y el Banco Santander".
            (folded in _CONJUNCTIONS
             and (ent.label != "ORG" or following.casefold() in _NAME_ARTICLES))
            # "Scholz wrócił do Berlina", "Sánchez dijo que Telefónica": words between names.
            or (ent.label != "ORG" and folded not in _PARTICLES and folded not in _PLACE_LINKS)
        ):
            parts.append([])
            labels.append(ent.label)
        elif (
            ent.label == "PERSON" and folded in _PARTICLES and word.islower()
            and has_org_cue(text[start : ent.end_char])
        ):
            # "Wopke Hoekstra van de Europese Commissie": the person, then the organisation.
            parts.append([])
            labels.append("ORG")
        else:
            parts[-1].append((start, end))
    found: list[_Ent] = []
    for part, part_label in zip(parts, labels, strict=True):
        label = part_label
        first, last = 0, len(part)
        while first < last and (
            _is_sentence_word(text[slice(*part[first])], stops, True)
            # An article begins a name only before a capital: not "La apuesta de la UE".
            or (first + 1 < last and text[slice(*part[first])].casefold() in _NAME_ARTICLES
                and not text[part[first + 1][0]].isupper())
        ):
            first += 1
        while first < last and _is_sentence_word(text[slice(*part[last - 1])], stops, False):
            last -= 1
        if first == last or any(
            text[slice(*w)].casefold() in _UNIT_WORDS for w in part[first:last]
        ):
            continue  # "Mio CHF", "Milliarden Dollar": an amount, not a name
        start, end = part[first][0], part[last - 1][1]
        name = text[start:end]
        family = _FAMILY_PARTICLES.search(text, max(0, start - 16), start)
        if family and family.end() == start:
            # "Von der" + "Leyen": a capitalised particle before the span makes a family name.
            start, name, label = family.start(), text[family.start() : end], "PERSON"
        elif " " not in name and name.casefold() in _GENERIC_NOUNS:
            continue  # "Gobierno", "Ejecutivo": the institution, not a name
        elif " " not in name and name.casefold() in _SINGLE_ORG_WORDS:
            label = "ORG"  # "Comisión", "Unión": the Commission, the Union
        found.append(_Ent(name, label, start, end))
    return found


def _is_sentence_word(word: str, stops: frozenset[str], leading: bool) -> bool:
    folded = word.casefold().strip(_EDGE_JUNK)
    if not folded:
        return True
    if leading and folded in _NAME_ARTICLES and word[:1].isupper():
        return False
    if folded in _PARTICLES and not leading:
        return True  # "Ursula von" ends at the name, not at its particle
    return (folded in stops and folded not in _PARTICLES) or (
        word[:1].islower() and folded not in _PARTICLES
    )


@dataclass
class _Spans:
    """spaCy's entities sorted into names of people and everything else still to classify."""

    person_names: list[str] = field(default_factory=list)
    pending: list[tuple[str, str, int]] = field(default_factory=list)  # (name, label, offset)
    covered: list[tuple[int, int]] = field(default_factory=list)
    named: list[tuple[int, int]] = field(default_factory=list)  # spans read as people or orgs
    place_starts: set[int] = field(default_factory=set)  # where the model's places begin


def extract_with_ner(
    doc: Any,
    gazetteer: Gazetteer,
    english: bool = True,
    language: str = "",
    every_place: bool = False,
) -> Extraction:
    """Entities from a spaCy Doc (any of the NER models), corrected with the gazetteer.

    `language` ("de", "pl"…) says how names inflect: an inflected form of a name the article
    also gives ("Merkels", "Olafa Scholza") is counted for that name, not as a new person.
    With `every_place`, every gazetteer place outside the model's names counts (the compact
    multilingual model misses more places than the gazetteer mislabels); otherwise only
    countries and capitals the model missed do.
    """
    text: str = doc.text
    tally = _Tally()
    stops = stop_words(language) if language else frozenset()
    mentions = [m for m in gazetteer.scan(text, english) if m.name.casefold() not in stops]
    places = (
        [(m.start, m.start + len(m.name)) for m in mentions if not m.is_demonym]
        if every_place else []
    )
    spans = _read_spans(doc, gazetteer, english, language, places)
    spans.person_names = _uninflected(spans.person_names, language, tally)
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
            _classify(name, label, offset, gazetteer, tally, language in _KNOWN_PLACES_ONLY)
    counts = {p: _count_person(p, forms, text) for p, forms in tally.persons.items()}

    # Countries and capitals spaCy missed entirely, and all demonyms ("the Tajik government").
    _add_scanned(text, mentions, spans, gazetteer, tally, every_place)
    return _finish(tally, counts)


def _add_scanned(
    text: str,
    mentions: list[Mention],
    spans: _Spans,
    gazetteer: Gazetteer,
    tally: _Tally,
    every_place: bool,
) -> None:
    """What the gazetteer finds that the model did not: places, demonyms, listed companies."""
    forms = sorted(
        {f for p, short in tally.persons.items() for f in ({p, *short} if every_place else {p})},
        key=len, reverse=True,
    )
    # One pass over the text for all names (a pass per name was quadratic on long articles).
    pattern = (
        "|".join(_word_pattern(f) for f in forms) if every_place
        else "|".join(re.escape(f) for f in forms)
    )
    person_spans = _Coverage(
        (m.start(), m.end())
        for m in (
            re.finditer(pattern, text, re.IGNORECASE if every_place else 0) if forms else []
        )
    )
    # With every_place, the gazetteer's places count wherever no person or organisation was
    # read (the compact model's place spans are often a word too long or short).
    covered = _Coverage(spans.named if every_place else spans.covered)
    if every_place:
        everything = _Coverage(spans.covered)
        for org, offset in gazetteer.scan_organisations(text):
            if offset not in everything:
                tally.orgs[org] += 1  # "Eni", "Uniper": listed companies the model missed
    for mention in mentions:
        if mention.start in person_spans or mention.start in spans.place_starts:
            continue  # a person's name, or a place the model read already
        if mention.is_demonym:
            tally.country(mention.country, mention.start)
        elif mention.start not in covered and (
            every_place or _is_major(mention, gazetteer)
        ):
            _add_place(mention.name, mention.country, mention.start, tally)


def _read_spans(
    doc: Any,
    gazetteer: Gazetteer,
    english: bool,
    language: str = "",
    places: list[tuple[int, int]] | None = None,
) -> _Spans:
    """The model's spans sorted out; `places` are gazetteer place names in the text, and a span
    that is a piece of one ("Uniti" of "Stati Uniti") is dropped."""
    text: str = doc.text
    spans = _Spans()
    place_ranges = set(places or [])
    place_coverage = _Coverage(place_ranges)
    ents = _merged_ents(doc, gazetteer)
    if language:
        ents = [
            part for ent in _particles_joined(ents, text)
            for part in _trimmed(ent, text, stop_words(language))
        ]
    for ent in ents:
        if ent.label not in _LABELS or _only_places(ent, place_ranges, place_coverage):
            continue
        spans.covered.append((ent.start_char, ent.end_char))
        name = _span_name(ent, gazetteer)
        if not name or not name[0].isupper() or gazetteer.demonym(name, english):
            continue  # demonyms are counted by the gazetteer scan
        if ent.label == "ORG" and name.split()[-1].casefold() in _EVENT_WORDS:
            continue  # "the Tajik Civil War" is an event, not an organisation
        places_in_name = _places_in_name(name, ent, language, gazetteer)
        if places_in_name:
            spans.pending += places_in_name
            continue
        name, label = _titled_person(name, ent, text, gazetteer, language)
        if label in ("PERSON", "ORG"):
            spans.named.append((ent.start_char, ent.end_char))
        elif name == ent.text:
            spans.place_starts.add(ent.start_char)
        if label == "PERSON" and not (
            gazetteer.place(name) or has_org_cue(name) or gazetteer.is_organisation(name)
        ):
            spans.person_names.append(name)
        else:
            spans.pending.append((name, label, ent.start_char))
    return spans


def _span_name(ent: _Ent, gazetteer: Gazetteer) -> str:
    """The span's text as a name: no edge punctuation, no article before a place, no title."""
    name = clean_name(ent.text)
    article, _, rest = name.partition(" ")
    if (
        article.casefold() in _PLACE_ARTICLES and rest and gazetteer.place(rest)
        and not gazetteer.place(name)  # "Los Angeles", "Den Haag" keep theirs
    ):
        name = rest
    return person_name(name, gazetteer) if ent.label == "PERSON" else name


def _places_in_name(
    name: str, ent: _Ent, language: str, gazetteer: Gazetteer
) -> list[tuple[str, str, int]]:
    """The places a span stands for when it is not one name: "Dushanbe-Tehran" (both), and in
    German "Israel Waffen" read as a person (the country before a noun)."""
    parts = name.split("-")
    if len(parts) > 1 and all(gazetteer.place(p) for p in parts):
        offsets = [ent.start_char + sum(len(p) + 1 for p in parts[:i]) for i in range(len(parts))]
        return [(part, "GPE", offset) for part, offset in zip(parts, offsets, strict=True)]
    if language in _NOUNS_CAPITALISED and ent.label == "PERSON" and " " in name:
        first = name.split(maxsplit=1)[0]
        place = gazetteer.place(first)
        if place is not None and place.kind == "country":
            return [(first, "GPE", ent.start_char)]
    return []


def _titled_person(
    name: str, ent: _Ent, text: str, gazetteer: Gazetteer, language: str
) -> tuple[str, str]:
    """The name and label, with "President, Ebrahim Raisi" read as the person it is."""
    if ent.label == "ORG" and len(name.split()) > 1 and _TITLE_BEFORE.search(
        text[max(0, ent.start_char - 40) : ent.start_char]
    ):
        # spaCy's sm model often labels "President, Ebrahim Raisi" an organisation.
        return person_name(name, gazetteer), "PERSON"
    untitled = person_name(name, gazetteer)
    if language and ent.label == "ORG" and untitled != name and len(untitled.split()) > 1 and not (
        has_org_cue(untitled) or gazetteer.place(untitled)
    ):
        # "Premier Dick Schoof" read as an organisation (not "Premier League": one word left).
        return untitled, "PERSON"
    return name, ent.label


def _only_places(ent: _Ent, places: set[tuple[int, int]], coverage: "_Coverage") -> bool:
    """Whether a span other than a place name is a piece of one ("Uniti" of "Stati Uniti") or
    only place names ("Francia y Alemania" read as one organisation): the scan counts those."""
    if (ent.start_char, ent.end_char) in places:
        return False
    capitalised = [
        m.start() + ent.start_char for m in _WORD_SPAN.finditer(ent.text) if m.group()[0].isupper()
    ]
    return bool(capitalised) and all(offset in coverage for offset in capitalised) and (
        ent.label != "PERSON" or any(
            start <= ent.start_char and ent.end_char <= end for start, end in places
        )
    )


def extract_by_gazetteer(text: str, gazetteer: Gazetteer) -> Extraction:
    """Places and countries for text no model reads: gazetteer names only."""
    tally = _Tally()
    for mention in gazetteer.scan(text, english=False):
        if mention.is_demonym:
            tally.country(mention.country, mention.start)
        else:
            _add_place(mention.name, mention.country, mention.start, tally)
    return _finish(tally, {})


def _classify(
    name: str,
    label: str,
    offset: int,
    gazetteer: Gazetteer,
    tally: _Tally,
    known_only: bool = False,
) -> None:
    place = gazetteer.place(name)
    if (has_org_cue(name) or gazetteer.is_organisation(name)) and not (
        place and place.kind in ("country", "capital")
    ):
        # "Uniper" read as a person, "Deutsche Bank" as a place: the name says organisation.
        tally.orgs[name] += 1
    elif place and (
        label in _PLACE_LABELS or place.kind in ("country", "capital")
        or (label == "PERSON" and place.population >= _BIG_CITY)
    ):
        # A big city is never a person ("Rotterdam" read as a name; a town such as Ajax,
        # Ontario, may well be the football club or a name).
        # spaCy calls "Dushanbe" an organisation and "Tajikistan" a nationality; a country or
        # capital name is a place whatever it says. A mere town labelled ORG stays an
        # organisation: that is how brands named like towns are kept out of places.
        _add_place(name, place.country, offset, tally)
    elif label in _PLACE_LABELS and name.casefold() not in gazetteer.brands:
        if known_only and " " not in name:
            return  # German: "Händler", "Netz" read as places; only known one-word places count
        _add_place(name, None, offset, tally)
    elif label == "ORG":
        tally.orgs[name] += 1
    elif label == "PERSON":
        tally.persons.setdefault(name, set())


def has_org_cue(name: str) -> bool:
    """Whether a word of the name marks an organisation ("Uniper SE", "Deutsche Bank")."""
    return any(word.casefold().strip(".,") in ORG_CUES for word in name.split()[1:]) or (
        len(name.split()) > 1 and name.split(maxsplit=1)[0].casefold() in _LEADING_ORG_CUES
    )


# Languages where a one-word place the model finds counts only if the gazetteer knows it:
# German capitalises every noun ("Händler", "Netz" read as places); in Spanish and Italian the
# gazetteer alone read places better than the compact model (bench/entities.py).
_KNOWN_PLACES_ONLY = frozenset({"de", "es", "it"})
# Inhabitants from which a place the model calls a person is read as the place.
_BIG_CITY = 250_000
# Languages that capitalise every noun: a one-word place the model finds must be a known one.
_NOUNS_CAPITALISED = frozenset({"de"})
# Languages whose names take case endings in running text, and how far a form may stray.
_INFLECTING = frozenset({"de", "pl"})


def _same_word(a: str, b: str, language: str) -> bool:
    """Whether two words are forms of one name: German genitive "Merkels"/"Merz'", Polish cases
    ("Scholza", "Angeli", "Kaczyńskiego")."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    if language == "de":
        return long == short + "s"
    pairs = enumerate(zip(short, long, strict=False))
    common = next((i for i, (x, y) in pairs if x != y), len(short))
    return len(long) - len(short) <= 3 and common >= 3 and common >= len(short) - 1


def _uninflected(names: list[str], language: str, tally: _Tally) -> list[str]:
    """The person names with each inflected form replaced by the article's base form.

    The base form of a group is the shortest (Polish nominatives and German names without the
    genitive -s are); the inflected forms are kept as short forms, so they are counted.
    """
    if language not in _INFLECTING:
        return names
    base: dict[str, str] = {}
    # Full names first, so that a lone "Merza" finds "Friedrich Merz"; the shortest form first.
    first_seen = {name: i for i, name in reversed(list(enumerate(names)))}
    for name in sorted(first_seen, key=lambda n: (-len(n.split()), len(n), first_seen[n])):
        words = name.split()
        match = next(
            (
                b for b in base.values()
                if len(b.split()) == len(words)
                and all(_same_word(x, y, language) for x, y in zip(b.split(), words, strict=True))
            ),
            None,
        )
        if match is None and len(words) == 1:
            # "Merza" alone: the family name of a full name in the article.
            match = next(
                (b for b in base.values()
                 if len(b.split()) > 1 and _same_word(b.split()[-1], words[0], language)),
                None,
            )
        base[name] = match or name
        if match:
            tally.persons.setdefault(match, set()).add(name)
    return [base[n] for n in names]


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
    covered = _Coverage(full)
    for form in short_forms - {name}:
        count += sum(
            1 for m in re.finditer(_word_pattern(form), text) if m.start() not in covered
        )
    return max(1, count)


def _word_pattern(words: str) -> str:
    return rf"(?<![\w-]){re.escape(words)}(?![\w-])"


class _Coverage:
    """Character ranges merged and sorted, for a bisect per lookup (a long article has
    thousands of name mentions: a scan of every range per word was quadratic)."""

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [start for start, _ in merged]
        self._ends = [end for _, end in merged]

    def __contains__(self, offset: int) -> bool:
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]


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
