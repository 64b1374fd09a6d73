"""People, organisations and places beyond English and French: the multilingual model and rules.

Golden sentences per language (hand-written for this test), the rules that correct the compact
model (span trimming, organisation cues, places never people, inflected names), the model's pin
and lazy loading, and the hand-labelled sets of tests/fixtures/ner as regression floors.
"""

import shutil
from pathlib import Path

import pytest

from bench.entities import FIXTURES, Score, read_labelled, score
from services.enricher.enrich import Enricher, Enrichment
from services.enricher.entities import (
    _Ent,
    _same_word,
    _Tally,
    _trimmed,
    _uninflected,
    has_org_cue,
    stop_words,
)
from services.enricher.model import (
    MULTI_MODEL_DIR,
    MULTI_MODEL_SHA256,
    ModelIntegrityError,
    load_ner,
    model_sha256,
)

# Floors on the hand-labelled sets (entity-set F1, documents of 8 sentences, as
# bench/entities.py prints them): what was measured, less 0.05. Measured (people, organisations,
# places): es 0.74 0.61 0.84; it 0.73 0.14 0.67; pt 0.75 0.42 0.76; pl 0.70 0.42 0.54. Before
# the multilingual model (gazetteer only): people and organisations 0.00 everywhere; places es
# 0.83, it 0.64, pt 0.66, pl 0.41.
FLOORS: dict[tuple[str, str], float] = {
    ("es", "PER"): 0.69, ("es", "ORG"): 0.56, ("es", "LOC"): 0.79,
    ("it", "PER"): 0.68, ("it", "ORG"): 0.09, ("it", "LOC"): 0.62,
    ("pt", "PER"): 0.70, ("pt", "ORG"): 0.37, ("pt", "LOC"): 0.71,
    ("pl", "PER"): 0.65, ("pl", "ORG"): 0.37, ("pl", "LOC"): 0.49,
}


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()


def found(result: Enrichment, kind: str) -> set[str]:
    return {e.name for e in result.entities if e.type == kind}


# --- rules, without a model ------------------------------------------------------------------

def _ent(text: str, label: str, sentence: str) -> _Ent:
    start = sentence.index(text)
    return _Ent(text, label, start, start + len(text))


def test_a_span_is_cut_at_a_conjunction_between_two_places() -> None:
    sentence = "Tal y como pedían Francia y Alemania, la Comisión actuó."
    parts = _trimmed(_ent("Francia y Alemania", "LOC", sentence), sentence, stop_words("es"))
    assert [p.text for p in parts] == ["Francia", "Alemania"]
    assert [sentence[p.start_char : p.end_char] for p in parts] == ["Francia", "Alemania"]


def test_an_organisation_keeps_its_conjunction() -> None:
    sentence = "Het Ministerie van Justitie en Veiligheid meldt het."
    name = "Ministerie van Justitie en Veiligheid"
    parts = _trimmed(_ent(name, "ORG", sentence), sentence, stop_words("nl"))
    assert [p.text for p in parts] == [name]


def test_sentence_words_taken_into_a_span_are_dropped() -> None:
    sentence = "Pero también Albania deberán esperar."
    parts = _trimmed(_ent("Pero también Albania deberán", "LOC", sentence), sentence,
                     stop_words("es"))
    assert [p.text for p in parts] == ["Albania"]
    alone = "Además dijo algo."
    assert _trimmed(_ent("Además", "PER", alone), alone, stop_words("es")) == []


def test_articles_that_begin_a_name_and_particles_inside_it_are_kept() -> None:
    sentence = "Lo publicó El País sobre Ursula von der Leyen ayer."
    stops = stop_words("es")
    assert [p.text for p in _trimmed(_ent("El País", "ORG", sentence), sentence, stops)] == [
        "El País"
    ]
    person = _ent("Ursula von der Leyen", "PER", sentence)
    assert [p.text for p in _trimmed(person, sentence, stops)] == ["Ursula von der Leyen"]


def test_stop_words_of_an_unknown_language_are_none() -> None:
    assert stop_words("zz") == frozenset()
    assert "pero" in stop_words("es")


@pytest.mark.parametrize(
    ("name", "is_org"),
    [
        ("Uniper SE", True), ("Deutsche Bank", True), ("Partido Popular", True),
        ("Banco Santander", True), ("FC Porto", True), ("Ministerstwo Zdrowia", True),
        ("Freie Universität Berlin", True), ("Angela Merkel", False), ("Bank", False),
        ("Rio de Janeiro", False),
    ],
)
def test_organisation_cues(name: str, is_org: bool) -> None:
    assert has_org_cue(name) is is_org


@pytest.mark.parametrize(
    ("a", "b", "language", "same"),
    [
        ("Merkel", "Merkels", "de", True), ("Merz", "Merzs", "de", True),
        ("Merz", "Merza", "de", False), ("Scholz", "Scholza", "pl", True),
        ("Angela", "Angeli", "pl", True), ("Kaczyński", "Kaczyńskiego", "pl", True),
        ("Trump", "Tusk", "pl", False), ("Jan", "Jana", "pl", True),
        ("Anna", "Anders", "pl", False),
    ],
)
def test_forms_of_one_name(a: str, b: str, language: str, same: bool) -> None:
    assert _same_word(a, b, language) is same


def test_inflected_names_become_their_base_form() -> None:
    tally = _Tally()
    names = ["Olafa Scholza", "Olaf Scholz", "Merza", "Friedrich Merz", "Trump"]
    assert _uninflected(names, "pl", tally) == [
        "Olaf Scholz", "Olaf Scholz", "Friedrich Merz", "Friedrich Merz", "Trump"
    ]
    assert tally.persons["Olaf Scholz"] == {"Olafa Scholza"}
    assert _uninflected(["Merkels", "Angela Merkel"], "de", _Tally()) == [
        "Angela Merkel", "Angela Merkel"
    ]
    # English names do not inflect: "Paula" is not "Paul".
    assert _uninflected(["Paul Smith", "Paula Smith"], "en", _Tally()) == [
        "Paul Smith", "Paula Smith"
    ]


# --- the multilingual model ------------------------------------------------------------------

def test_multilingual_model_hash_matches_the_pin() -> None:
    assert model_sha256(MULTI_MODEL_DIR) == MULTI_MODEL_SHA256


def test_multilingual_model_with_changed_weights_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ner_multi"
    shutil.copytree(MULTI_MODEL_DIR, copy)
    weights = copy / "tok2vec" / "model"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_ner(copy, MULTI_MODEL_SHA256, frozenset({"tok2vec", "ner"}))


def test_multilingual_model_is_loaded_on_the_first_article_it_reads() -> None:
    fresh = Enricher()
    fresh.enrich("Budget", "The government approved the budget on Tuesday.", "en")
    fresh.enrich("Budget", "Le gouvernement a adopté le budget mardi à Paris.", "fr")
    assert fresh._multi_nlp is None  # an English and French replica never pays for it
    fresh.enrich("Haushalt", "Die Regierung hat am Dienstag in Berlin den Haushalt beschlossen.",
                 "de")
    assert fresh._multi_nlp is not None
    assert fresh._multi_nlp.pipe_names == ["tok2vec", "ner"]


# --- golden sentences, one article per language (hand-written) ------------------------------

GOLDEN = {
    "de": (
        "Bundeskanzler Friedrich Merz hat am Dienstag in Berlin den Vorstandschef der Deutschen "
        "Bank, Christian Sewing, getroffen. Merz sagte, die Bundesregierung stehe zu Uniper. "
        "Auch Emmanuel Macron reiste nach Paris zurück.",
        {"Friedrich Merz": 2, "Christian Sewing": 1, "Emmanuel Macron": 1},
        {"Uniper"},
        {"Berlin", "Paris"},
    ),
    "nl": (
        "Premier Dick Schoof sprak maandag in Den Haag met topman Wopke Hoekstra van de Europese "
        "Commissie. Schoof zei dat Shell en de gemeente Rotterdam samenwerken in de haven van "
        "Rotterdam.",
        {"Dick Schoof": 2, "Wopke Hoekstra": 1},
        {"Europese Commissie", "Shell"},
        {"Den Haag", "Rotterdam"},
    ),
    "es": (
        "El presidente del Gobierno, Pedro Sánchez, se reunió el martes en Madrid con la "
        "presidenta de la Comisión Europea, Ursula von der Leyen. Sánchez dijo que Telefónica y "
        "el Banco Santander invertirán en Andalucía.",
        {"Pedro Sánchez": 2, "Ursula von der Leyen": 1},
        {"Comisión Europea", "Telefónica"},
        # Not "Andalucía": in Spanish a one-word place must be in the gazetteer (see entities).
        {"Madrid"},
    ),
    "it": (
        "La premier Giorgia Meloni ha incontrato a Roma il presidente francese Emmanuel Macron. "
        "Meloni ha detto che Eni e la Banca d'Italia sosterranno il piano per la Sicilia.",
        {"Giorgia Meloni": 2, "Emmanuel Macron": 1},
        {"Eni"},
        {"Roma"},  # "Sicilia" is no gazetteer place (regions are few there)
    ),
    "pt": (
        "O presidente Luiz Inácio Lula da Silva recebeu em Brasília o primeiro-ministro português "
        "Luís Montenegro. Lula disse que a Petrobras e o Banco do Brasil vão investir em Lisboa.",
        {"Luís Montenegro": 1},
        {"Petrobras"},
        {"Brasília", "Lisboa"},
    ),
    "pl": (
        "Premier Donald Tusk spotkał się w Warszawie z kanclerzem Niemiec Olafem Scholzem. Tusk "
        "powiedział, że Orlen i Narodowy Bank Polski wesprą inwestycje w Gdańsku. Scholz wrócił "
        "do Berlina.",
        {"Donald Tusk": 2},
        {"Orlen"},
        {"Berlina"},
    ),
}


@pytest.mark.parametrize("language", sorted(GOLDEN))
def test_golden_article_per_language(enricher: Enricher, language: str) -> None:
    text, people, organisations, places = GOLDEN[language]
    result = enricher.enrich("", text, language)
    assert result.language == language
    persons = {e.name: e.count for e in result.entities if e.type == "person"}
    assert {name: persons.get(name) for name in people} == people, persons
    assert organisations <= found(result, "organization"), result.entities
    assert places <= found(result, "place"), result.entities
    # Never a place or a listed company as a person, never a title kept in a name.
    assert not (found(result, "person") & (places | organisations | {"Rotterdam", "Uniper"}))
    assert not any(n.split()[0] in {"Premier", "Bundeskanzler"} for n in found(result, "person"))


def test_a_place_or_a_company_the_model_reads_as_a_person_is_not_one(
    enricher: Enricher,
) -> None:
    # Seen in the running stack on an English article: "Rotterdam" and "Uniper" as people.
    result = enricher.enrich(
        "Gas terminal",
        "Uniper said the new terminal would open next year. Rotterdam welcomed the plan, and "
        "Uniper's chief executive said the Maasvlakte site was ready.",
        "en",
    )
    assert not found(result, "person") & {"Rotterdam", "Uniper"}
    assert "Uniper" in found(result, "organization")


def test_german_inflected_names_are_one_person(enricher: Enricher) -> None:
    result = enricher.enrich(
        "", "Friedrich Merz reiste nach Paris. Merz' Besuch folgte auf Angela Merkels Reise; "
        "Angela Merkel hatte Paris im Mai besucht.", "de",
    )
    persons = found(result, "person")
    assert "Merz'" not in persons and "Merkels" not in persons
    assert not any(name.endswith("Merkels") for name in persons)
    assert {"Friedrich Merz", "Angela Merkel"} <= persons


# --- the hand-labelled sets as floors --------------------------------------------------------

@pytest.fixture(scope="module")
def labelled_scores(enricher: Enricher) -> dict[str, dict[str, Score]]:
    return {
        language: score(enricher, read_labelled(FIXTURES / f"{language}.tsv"), language)
        for language in ("es", "it", "pt", "pl")
    }


@pytest.mark.parametrize(("language", "label"), sorted(FLOORS))
def test_labelled_sets_stay_above_the_measured_floor(
    labelled_scores: dict[str, dict[str, Score]], language: str, label: str
) -> None:
    assert labelled_scores[language][label].f1 >= FLOORS[(language, label)]


def test_labelled_sets_are_big_enough() -> None:
    for language in ("es", "it", "pt", "pl"):
        rows = (FIXTURES / f"{language}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        assert len(rows) >= 60, language
        assert all(len(row.split("\t")) == 4 for row in rows), language
