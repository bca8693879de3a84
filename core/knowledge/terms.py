"""The terms a chunk is indexed by and a question searches with, the same on both storage backends.

Both backends index the terms this module makes, not the text: SQLite's FTS5 and PostgreSQL's `simple` text
search then only split on spaces, so ranking and the relevance floor mean the same everywhere. A word becomes:
  1. folded: Unicode compatibility form, accents dropped, case folded (`Brötchen` -> `brotchen`, `ß` -> `ss`),
     because customers type on phones without accents ("cuanto cuesta", "Brotchen");
  2. dropped if it is a stop word of German, Spanish or English (the bot's language is not known per chunk);
  3. stemmed by Snowball for each of the three languages, every distinct stem kept (`lieferungen` -> `liefer`,
     `lieferung`): a question in one language then meets its document's inflections, and a few extra stems in
     an unrelated language cost nothing but an index entry;
  4. split as a German compound when it is long (8 letters or more): every ending of at least 4 letters after a
     first part of at least 3, stemmed, is a term too (`Laugenbrezel` -> ... `brezel`; `Dinkelbrot` -> ... `brot`),
     so "Brezeln" finds the "Laugenbrezel" and "Dinkelbrot" the bread list. Without a dictionary most of these
     endings are no word at all ("ugenbrezel"); they cost an index entry and match nothing a customer types.
     Endings that are suffixes rather than words (`chen`, `heit`, `tion`, ...) are left out.
     bench/knowledge.py: lexical recall@3 0.744 without this step, 0.782 with it; the thresholds were set before
     measuring, and every variant of them tried after (compounds of 8-10 letters, first parts of 3-4, endings of
     4-5) gave 0.769-0.788, all on the same corpus.

TERMS_VERSION numbers this derivation: chunks indexed by an earlier one are indexed again in the background
(core/knowledge/refresh.py), so a change here reaches documents added before it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import snowballstemmer

_WORD = re.compile(r"[^\W_]+")
_LANGUAGES = ("english", "german", "spanish")
# Bumped whenever index_terms would give a chunk different terms: 1 was steps 1-3, 2 added compounds (step 4).
TERMS_VERSION = 2
# Longest word indexed: longer "words" are hashes, URLs run together or base64, never what a customer types.
_MAX_WORD = 40
# Compound splitting (step 4): the shortest word split, the shortest first part and the shortest (stemmed) head.
_MIN_COMPOUND = 8
_MIN_FIRST_PART = 3
_MIN_HEAD = 4
# Endings that are derivational suffixes (German, English, Spanish), not the head of a compound.
_NOT_HEADS = frozenset(
    {"chen", "lein", "heit", "keit", "schaft", "lich", "isch", "ismus", "tion", "cion", "ment", "mente", "ness"}
    | {"able", "ible", "ista", "idad"}
)

# Function words of the three languages (folded): they say nothing about which chunk answers.
_STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves hi hello please thanks
    thank dear ok okay can't don't i'm it's you're let's much many
    aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes anders auch auf
    aus bei bin bis bist da damit dann das dass dein deine deinem deinen deiner dem den denn der des dich die dies
    diese diesem diesen dieser dieses dir doch dort du durch ein eine einem einen einer eines er es etwas euch
    euer eure fur gegen gewesen hab habe haben hat hatte hatten hier hin hinter ich ihm ihn ihnen ihr ihre ihrem
    ihren ihrer ihres im in indem ins ist jede jedem jeden jeder jedes jetzt kann kannst konnen konnt machen mein
    meine meinem meinen meiner mich mir mit muss musst nach nicht nichts noch nun nur ob oder ohne sehr sein
    seine seinem seinen seiner sich sie sind so solche soll sollte sondern sonst uber um und uns unser unsere
    unter vom von vor war waren warst was weg weil weiter welche welchem welchen welcher welches wenn wer werde
    werden wie wieder will wir wird wirst wo wollen wollte wurde wurden zu zum zur zwar zwischen hallo bitte danke
    gibt gibts ja nein mal man euer eure wieviel viel viele
    al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el ella ellas
    ellos en entre era erais eran eras eres es esa esas ese eso esos esta estaba estado estais estamos estan estar
    estas este esto estos estoy fue fueron fui ha habeis haber habia han has hasta hay la las le les lo los mas me
    mi mis mucho muchos muy nada ni no nos nosotros o os otra otras otro otros para pero poco por porque que quien
    quienes se sea ser si sin sobre sois somos son soy su sus suya suyo tambien tanto te tenemos tener tengo ti
    tiene tienen todo todos tu tus un una uno unos usted ustedes vosotros y ya yo hola gracias favor puedo puede
    pueden podeis podemos vuestro vuestra cuanto cuanta cuantos cuantas
    """.split()  # noqa: SIM905 - a word list reads (and is edited) best as text
)


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """A question's terms: each content word with its stems (the floor counts words, the search uses stems)."""

    words: tuple[tuple[str, frozenset[str]], ...]

    @property
    def stems(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, stems in self.words:
            seen.update(dict.fromkeys(sorted(stems)))
        return list(seen)

    def coverage(self, chunk_terms: str) -> float:
        """The share of the question's content words that the chunk holds in some form (0 to 1)."""
        if not self.words:
            return 0.0
        present = set(chunk_terms.split())
        return sum(1 for _, stems in self.words if stems & present) / len(self.words)


def fold(text: str) -> str:
    """Accents dropped and case folded, so `Öffnungszeiten`, `öffnungszeiten` and `Offnungszeiten` are one word."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def content_words(text: str) -> list[str]:
    """The folded words of `text` that are not stop words, in order."""
    return [w for w in _WORD.findall(fold(text)) if len(w) <= _MAX_WORD and w not in _STOP_WORDS and _keep(w)]


def index_terms(text: str) -> str:
    """What a chunk is indexed by: its content words' stems, space-separated, in order (repeats count for BM25)."""
    return " ".join(stem for word in content_words(text) for stem in terms_of(word))


def query_terms(question: str) -> QueryTerms:
    words: dict[str, frozenset[str]] = {}
    for word in content_words(question):
        words.setdefault(word, frozenset(terms_of(word)))
    return QueryTerms(tuple(words.items()))


@functools.lru_cache(maxsize=65_536)
def stems_of(word: str) -> tuple[str, ...]:
    """The word's distinct Snowball stems in the three languages (cached: stemming is pure Python)."""
    found: dict[str, None] = {}
    for stemmer in _stemmers():
        found[stemmer.stemWord(word)] = None
    return tuple(found)


@functools.lru_cache(maxsize=65_536)
def terms_of(word: str) -> tuple[str, ...]:
    """The word's terms: its stems (step 3), then the heads it may have as a compound (step 4)."""
    stems = stems_of(word)
    return stems + tuple(head for head in heads_of(word) if head not in stems)


@functools.lru_cache(maxsize=65_536)
def heads_of(word: str) -> tuple[str, ...]:
    """The stemmed endings a long word would have as a German compound (step 4), longest first."""
    if len(word) < _MIN_COMPOUND or not word.isalpha():
        return ()
    german = _stemmers()[_LANGUAGES.index("german")]
    found: dict[str, None] = {}
    for start in range(_MIN_FIRST_PART, len(word) - _MIN_HEAD + 1):
        head = german.stemWord(word[start:])
        if len(head) >= _MIN_HEAD and head not in _NOT_HEADS:
            found[head] = None
    return tuple(found)


@functools.cache
def _stemmers() -> tuple[snowballstemmer.stemmer, ...]:
    import snowballstemmer  # loaded with the first knowledge to index or search: most bots have none

    return tuple(snowballstemmer.stemmer(language) for language in _LANGUAGES)


def _keep(word: str) -> bool:
    # A single letter says nothing; a single digit may (a size, a bus line), and numbers ("25", "1990") do.
    return len(word) > 1 or word.isdigit()
