"""Knowledge search terms: accents, case and inflections do not matter; stop words do not count."""

from __future__ import annotations

from core.knowledge.terms import fold, index_terms, query_terms


def test_accents_case_and_sharp_s_fold_away() -> None:
    assert fold("Öffnungszeiten GROẞE Straße café Niño") == "offnungszeiten grosse strasse cafe nino"


def test_a_question_typed_without_accents_meets_the_accented_document() -> None:
    chunk = index_terms("Limpieza dental profesional: 60 €. Incluye pulido.")
    assert query_terms("cuanto cuesta una limpieza?").coverage(chunk) == 0.5  # limpieza yes, cuesta no
    assert query_terms("Limpiezas dentales").coverage(chunk) == 1.0  # plural and adjective stem alike


def test_stop_words_of_the_three_languages_are_not_terms() -> None:
    assert query_terms("Do you have it? Habt ihr das? ¿Lo tenéis?").words == (
        ("habt", frozenset({"habt"})),
        ("teneis", frozenset({"teneis", "tenei"})),
    )
    assert query_terms("Hallo!").stems == []


def test_inflections_share_a_stem_in_german_and_english() -> None:
    delivery = index_terms("Lieferungen nach Potsdam")
    assert query_terms("Lieferung").coverage(delivery) == 1.0
    assert query_terms("deliveries").coverage(index_terms("We deliver on Saturdays (one delivery a day).")) == 1.0


def test_german_compounds_meet_their_parts() -> None:
    prices = index_terms("Laugenbrezel 1,20 €. Dinkelvollkornbrot 6,80 €.")
    assert query_terms("Brezeln").coverage(prices) == 1.0  # the compound's head, in the plural
    assert query_terms("Dinkelbrot").coverage(index_terms("Alle Brote mit Sauerteig.")) == 1.0  # the question's
    assert query_terms("Brot").coverage(prices) == 1.0


def test_suffixes_and_short_words_are_no_compound_heads() -> None:
    # "Brötchen" ends in a diminutive, not in a word: it must not meet every other "-chen".
    assert query_terms("Brötchen").coverage(index_terms("Eichhörnchen")) == 0.0
    assert query_terms("Kuchen").words == (("kuchen", frozenset({"kuchen", "kuch"})),)
