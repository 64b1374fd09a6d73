"""Who wrote it and who supplied it: people's names and organisations' credits from byline text.

`authors` are people only; `credits` are the organisations a page credits with the story — wire
agencies (dpa, AFP, Reuters…), or the publisher or its desk when no person is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .boilerplate import EMAIL
from .text import clean, fold, unique

# An author entry, even a list of thirty names, is shorter than this.
MAX_BYLINE_CHARS = 1000
# A credit ("Deutsche Presse-Agentur", "Redaktion hessenschau.de") is a name, not a sentence.
MAX_CREDIT_CHARS = 60
_MAX_CREDIT_WORDS = 5

# Credit prefixes in bylines, in the languages of the pages we see most; a person's name never
# starts with them. Some come from links to an author's page ("Alles von Jane Doe", "More from").
BYLINE_PREFIX = re.compile(
    r"^\s*(?:(?:written\s+by|reported\s+by|posted\s+by|"
    r"(?:alle[s]?|mehr)\s+(?:artikel\s+|beiträge\s+)?von|more\s+(?:from|by)|"
    r"(?:all\s+)?(?:articles|stories|posts)\s+by|tous\s+les\s+articles\s+de|"
    r"von|by|par|por|di|door|av|af|przez|från|from|"
    r"автор|авторы|від|от|του|της|بقلم|作者|文|撰文)\s*[:：]?"
    r"|(?:autor(?:in|es|en|a)?|auteur|auteurs|autore|autori|forfatter|text|texte|authors?)"
    r"(?:\s*/\s*autor(?:in)?)?\s*[:：]?)\s+",
    re.IGNORECASE,
)
# "Capital Von Jemima Kelly": a label glued before the credit, as page text runs together.
_INNER_BYLINE = re.compile(r"^.+?\s(?:By|Von|Par|Por|Door)\s+(?=\S+\s\S)")
_NAME_PARTICLES = frozenset({
    "von", "van", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
    "bin", "ibn", "al", "el", "ter", "ten", "zu", "af", "y", "e",
})
# A web address inside a byline ("mdr.de", "Deutsche Welle (www.dw.com)") names a site.
_DOMAIN = re.compile(r"\w\.(?:com|net|org|info|news|co|[a-z]{2})(?![a-z])", re.IGNORECASE)
# A role after the name: "Jane Doe, Reporter" is split at the comma; these are glued on.
_ROLE_SUFFIX = re.compile(r"\s+(?:기자|특파원|記者|reporter|correspondent|staff writer)$",
                          re.IGNORECASE)
# "&" and "+" are left out: whether they part two people or sit inside one name ("Mac & i") is
# decided by `_split_ampersands`.
_LIST_SPLIT = re.compile(r"\s*[,;/]\s*")
_AND_SPLIT = re.compile(r"\s*(?:\band\b|\bund\b|\bet\b|\by\b|\be\b|\bi\b|\bog\b)\s*",
                        re.IGNORECASE)
_AMPERSAND = re.compile(r"\s*[&+]\s*")
# "Jong, Michiel de": a surname, then the given name with its particle (library-catalogue order).
_LAST_FIRST_PARTICLE = re.compile(
    r"^(?P<last>[^\W\d_][\w'’\-]*),\s*(?P<first>[^\W\d_][\w'’\-]*(?:\s+[^\W\d_][\w'’\-]*)?)"
    r"\s+(?P<particle>(?:(?:van|von|de|der|den|del|della|di|da|du|la|le|ter|ten|zu)\s*)+)$")
# Words that mark a byline as an organisation or a desk rather than a person (multilingual, short).
_ORG_MARKERS = frozenset({
    "redaktion", "redaction", "rédaction", "redacción", "redazione", "redactie", "editorial",
    "editors", "editor", "staff", "newsroom", "desk", "team", "agency", "agencies", "agentur",
    "news", "online", "dpa", "afp", "ap", "reuters", "apa", "kna", "epd", "sid", "ansa", "efe",
    "press", "presse", "media", "group", "gmbh", "ltd", "inc", "service", "services", "wire",
    "correspondent", "korrespondent", "zeitung", "times", "post", "tribune", "journal",
    "red", "agenturen", "agences", "agencias", "agenzie", "nachrichten", "redakteur", "reporter",
    "writer", "writers", "contributor", "contributors", "columnist", "reporters", "staffs",
    "redaktionen", "folgen", "follow",  # a "Follow" button caught in a byline
})
# The markers that name a desk or an agency, so that a byline holding one credits an
# organisation ("BR24 Redaktion", "MND Staff", "Guardian staff reporter"). The others are job
# titles, buttons or common words that are no credit by themselves.
_DESK_MARKERS = frozenset({
    "redaktion", "redaction", "redacción", "redazione", "redactie", "editorial", "editors",
    "staff", "newsroom", "desk", "team", "agency", "agentur", "nachrichtenagentur", "agenturen",
    "agences", "agencias", "agenzie", "wire", "presseagentur",
})
# In scripts without case or spaces an organisation shows in its name's words for newspaper,
# broadcaster, agency, online ("読売新聞オンライン", "中日新聞Web", "한국일보", "新华通讯社").
_CJK_ORG_WORDS = re.compile(
    "新聞|新闻|日報|日报|時報|时报|通信|通讯|電視|电视|テレビ|放送|オンライン|デジタル|ニュース"
    "|編集部|编辑部|일보|신문|뉴스|방송|통신|편집부")
# News agencies as their credit lines name them (folded, see `fold`). A byline that credits
# only agencies marks a wire story: a name found further down the page is some teaser's byline.
WIRE_AGENCIES = frozenset({
    "dpa", "afp", "ap", "associatedpress", "theassociatedpress", "reuters", "apa", "kna", "epd",
    "sid", "ansa", "efe", "sda", "keystonesda", "anp", "belga", "pap", "ctk", "tass", "xinhua",
    "yonhap", "kyodo", "aap", "pti", "ians", "ntb", "tt", "ritzau", "anadoluagency", "aa",
    "anadoluajansi", "anadoluajansı", "deutschepresseagentur", "agencefrancepresse", "dpainfocom",
    "upi",
    "europapress", "agenciaefe", "lusa", "bernama", "antara", "rianovosti", "interfax",
    "ukrinform", "ips", "bloomberg", "kyodonews", "yonhapnews", "dpaafx", "awp", "apadpa",
})
# Month and weekday names (English, German, French, Spanish, Italian, Dutch, Portuguese): a page's
# date run into its byline ("Nathan Willis March", "Joe Wee Monday") is no part of a name.
# Word lists as data: one string each, split once (one quoted word apiece would fill a page).
_CALENDAR_WORDS = frozenset("""
january february march april may june july august september october november december
feb apr jun jul aug sept oct nov
monday tuesday wednesday thursday friday saturday sunday tues thurs
januar februar märz mai juni juli oktober dezember montag dienstag mittwoch donnerstag freitag
samstag sonntag janvier février mars avril juin juillet août septembre octobre novembre décembre
lundi mardi mercredi jeudi vendredi samedi dimanche enero febrero marzo abril mayo junio julio
agosto septiembre octubre noviembre diciembre lunes martes miércoles jueves viernes sábado domingo
gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre lunedì martedì mercoledì
giovedì venerdì sabato domenica januari februari maart mei augustus oktober maandag dinsdag
woensdag donderdag vrijdag zaterdag zondag janeiro fevereiro março maio junho julho setembro
outubro novembro dezembro today yesterday heute gestern updated aktualisiert published
""".split())  # noqa: SIM905  (see above)
# Words a form label, a button or a heading is made of, never a name on its own ("Name",
# "Username", "Auteurs", "Jobs; Hire").
_LABEL_WORDS = frozenset("""
name names username user users login logout register account profile email mail password
author authors autor autoren autorin auteur auteurs autore autori autores forfatter writer
jobs job hire careers contact about home menu search share print comments comment reply
subscribe newsletter guest admin administrator anonymous unknown none null undefined
redaktion editor editors team staff source sources quelle quellen bild foto photo photos
video videos more mehr plus read lesen weiterlesen advertisement anzeige werbung
""".split())  # noqa: SIM905  (word lists as data, as above)


def clean_authors(raw: Iterable[str], organisations: set[str] | None = None) -> list[str]:
    """People's names only: no "By", no e-mail addresses, no organisations or site names."""
    organisations = organisations or set()
    names: list[str] = []
    for entry in raw:
        for name in _byline_parts(entry):
            if _is_person_name(name, organisations):
                # "JANE DOE" → "Jane Doe"; mixed case ("Jane McDoe") is the page's own spelling.
                names.append(name.title() if name.isupper() else name)
    return unique(names)


def clean_credits(raw: Iterable[str], organisations: set[str] | None = None) -> list[str]:
    """The organisations a byline credits: agencies, the site itself, a desk ("MND Staff")."""
    organisations = organisations or set()
    return unique(part for entry in raw for part in _byline_parts(entry, keep_sites=True)
                  if is_credit(part, organisations))


def is_credit(name: str, organisations: set[str]) -> bool:
    """Whether `name` is an organisation credited with the story (not a person, not noise)."""
    if not name or len(name) > MAX_CREDIT_CHARS or len(name.split()) > _MAX_CREDIT_WORDS:
        return False
    key = fold(name)
    if not key or key.isdigit():
        return False
    if key in WIRE_AGENCIES or names_site(name, organisations) or _CJK_ORG_WORDS.search(name):
        return True
    words = _word_keys(name)
    # "BR24 Redaktion", "MND Staff"; or an agency named inside a credit ("Reuters Berlin").
    return (bool(words & _DESK_MARKERS) and len(words) > 1) or (bool(words & WIRE_AGENCIES) and (
        len(words) <= 2))


def names_site(name: str, organisations: set[str]) -> bool:
    """Whether `name` names the site itself: its name ("Daily Planet"), with a region ("MDR
    Thüringen"), a desk or a web address ("Redaktion hessenschau.de")."""
    key = fold(name)
    return bool(key in organisations or _word_keys(name) & organisations
                or any(len(o) > 3 and o in key for o in organisations) or _DOMAIN.search(name))


def _word_keys(name: str) -> set[str]:
    return {fold(w) for w in re.split(r"[\s\-‐/]+", name)} - {""}


def credits_agencies_only(raw: list[str]) -> bool:
    """Whether a byline names news agencies and nothing else ("dpa", "Von AFP und Reuters")."""
    parts = [fold(part) for entry in raw for part in _byline_parts(entry, keep_sites=True)]
    parts = [part for part in parts if part]
    return bool(parts) and all(part in WIRE_AGENCIES for part in parts)


def strip_byline_prefix(line: str) -> str:
    """The line without its leading credit labels ("By", "Von", "Autor:")."""
    while (stripped := BYLINE_PREFIX.sub("", line)) != line:
        line = stripped
    return line


def _byline_parts(entry: str, keep_sites: bool = False) -> list[str]:
    """The names one byline entry lists, labels and roles removed, in order.

    Without `keep_sites`, a web address and what follows it are dropped (it names a site, not a
    person); with it, they are kept as a part (a credit).
    """
    if len(entry) > MAX_BYLINE_CHARS:
        return []  # a paragraph, or a blob, that no name is: its patterns would cost seconds
    byline = EMAIL.sub(" ", clean(entry))
    if byline.startswith(("http://", "https://", "/")):
        return []
    if _DOMAIN.search(byline) and not keep_sites:
        # "Jane Doe, professor of law, Example.com": names (and roles) before the site are
        # kept. A byline that opens with a web address names the site ("www.example.com, …",
        # "Example (www.example.com)").
        parts = byline.split(",")
        site = next((i for i, part in enumerate(parts) if _DOMAIN.search(part)), 0)
        if site == 0:
            return []
        byline = ",".join(parts[:site])
    byline = re.sub(r"\(.*?\)|\[.*?\]", " ", byline)
    byline = strip_byline_prefix(byline).strip()
    if match := _LAST_FIRST_PARTICLE.match(byline):
        return [f"{match['first']} {match['particle'].strip()} {match['last']}"]
    names = []
    for part in _LIST_SPLIT.split(byline):
        for piece in _split_conjunctions(part):
            name = BYLINE_PREFIX.sub("", piece).strip(" .,:;|-–—·'\"()[]")
            name = _INNER_BYLINE.sub("", name)
            # A role ends a person's name ("Jane Doe Reporter"), but is part of a desk's
            # ("Guardian staff reporter").
            name = name if keep_sites else _ROLE_SUFFIX.sub("", name)
            names.append(_without_calendar_tail(name))
    return [name for name in names if name]


def _split_conjunctions(part: str) -> list[str]:
    """`part` split at "and" (in several languages), "&" or "+" between names.

    "&" or "+" part two people only when both sides are full names ("Jane Doe & John Roe");
    between single words the sign is inside one name ("Mac & i", "Ernst & Young"), which is
    then not split at all.
    """
    pieces = _AMPERSAND.split(part)
    if len(pieces) > 1 and not all(len(p.split()) >= 2 for p in pieces):
        return [" & ".join(p for p in pieces if p)]
    return [name for piece in pieces for name in _AND_SPLIT.split(piece)]


def _without_calendar_tail(name: str) -> str:
    """The name without a month, weekday or date run into it: "Nathan Willis March 3"."""
    words = name.split()
    for index, word in enumerate(words[1:], start=1):
        if word.casefold().strip(".,") in _CALENDAR_WORDS or any(c.isdigit() for c in word):
            return " ".join(words[:index]) if index >= 2 else name
    return name


def _is_person_name(name: str, organisations: set[str]) -> bool:  # noqa: PLR0911  (one test a line reads best)
    words = name.split()
    if not 1 <= len(words) <= 5 or len(name) > 60:
        return False
    if any(ch.isdigit() for ch in name) or not any(ch.isalpha() for ch in name):
        return False
    key = fold(name)
    if key in organisations or any(len(o) > 3 and o in key for o in organisations):
        return False
    # Word by word, hyphenated parts too: "MDR Thüringen", "MM-Redaktion", "Red" (Redaktion).
    if _word_keys(name) & (_ORG_MARKERS | organisations):
        return False
    if key in WIRE_AGENCIES or _CJK_ORG_WORDS.search(name):
        return False  # "Associated Press", "Anadolu Ajansı", "読売新聞オンライン"
    # A form label or a heading ("Name", "Username", "Jobs", "Hire") is no name.
    if len(words) == 1 and key in _LABEL_WORDS:
        return False
    if any(ch in name for ch in "&+@#"):
        return False  # "Mac & i": a name with a sign in it is a brand's
    # In scripts with case a name's words are capitalised, but for particles ("van der", "de").
    if any(w[0].islower() and w not in _NAME_PARTICLES for w in words):
        return False
    # A single all-caps token ("DPA", "AFP") is an agency code, not a person.
    return not (len(words) == 1 and name.isupper())
