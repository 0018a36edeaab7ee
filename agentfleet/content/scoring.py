"""Offline scores of a text: readability, grade level, length, sentiment and toxicity.

Pure, deterministic and local: the same text gives the same
:class:`~agentfleet.content.model.Scores` on every machine, and nothing is downloaded (a scoring
activity may run where there is no network). The word lists and dictionaries ship inside the
installed packages and are loaded once per process, on first use."""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import TYPE_CHECKING, Any

from agentfleet.content.model import Scores

if TYPE_CHECKING:
    from vader import SentimentIntensityAnalyzer

SCORER = "offline:textstat+vader+profanity"

TOXICITY_SCALE = 5.0
"""``toxicity = min(1, TOXICITY_SCALE * flagged words / words)``: one flagged word in 25 scores
0.2, one in five (or more) scores 1."""

_WORD = re.compile(r"(?:[^\W_]|[@$*])+(?:['\u2019](?:[^\W_]|[@$*])+)*")
"""A word as better-profanity sees one: letters, digits and the look-alikes ``@ $ *``."""
_END = ""


def score_text(text: str, *, max_length: int) -> Scores:
    """Scores of ``text`` against a channel's ``max_length``; an empty text scores all zeros.

    ``readability`` and ``grade`` are the Flesch reading ease and Flesch-Kincaid grade as textstat
    computes them, with syllables counted by textstat's own dictionary-free method (Pyphen):
    textstat's default would fetch NLTK's CMU dictionary over the network on first use.
    ``sentiment`` and ``toxicity`` are described at :func:`sentiment` and :func:`toxicity`.
    """
    readability, grade = _flesch(text)
    return Scores(
        readability=readability,
        grade=grade,
        length=len(text),
        length_ok=len(text) <= max_length,
        sentiment=sentiment(text),
        toxicity=toxicity(text),
        scorer=SCORER,
    )


def _flesch(text: str) -> tuple[float, float]:
    """(reading ease, grade): textstat's English formulas over textstat's word and sentence
    counts."""
    textstat = _textstat()
    words = str(textstat.remove_punctuation(text)).lower().split()
    sentences = int(textstat.sentence_count(text)) if text else 0
    if not words or not sentences:
        return 0.0, 0.0
    words_per_sentence = len(words) / sentences
    syllables_per_word = sum(_syllables(word) for word in words) / len(words)
    reading_ease = 206.835 - 1.015 * words_per_sentence - 84.6 * syllables_per_word
    grade = 0.39 * words_per_sentence + 11.8 * syllables_per_word - 15.59
    return round(reading_ease, 2), round(grade, 2)


@functools.cache
def _textstat() -> Any:
    import textstat  # type: ignore[import-untyped]  # imports NLTK: slow

    return textstat


@functools.lru_cache(maxsize=65536)
def _syllables(word: str) -> int:
    return len(_hyphenator().positions(word)) + 1


@functools.cache
def _hyphenator() -> Any:
    import pyphen  # type: ignore[import-untyped]  # textstat's own dependency

    return pyphen.Pyphen(lang="en_US")


SENTIMENT_CHUNK = 4096
"""Longest text VADER scores in one piece (its compound score saturates towards -1 or 1 as the
words add up, so a long text would read as all one thing)."""


def sentiment(text: str) -> float:
    """VADER's compound score, -1 (negative) to 1 (positive); 0 for an empty text.

    A text up to :data:`SENTIMENT_CHUNK` characters (any Telegram post) gets exactly VADER's
    score. A longer one is cut at sentence ends into pieces of at most that size, and their
    scores are averaged weighted by length, so an email with a good half and a bad half scores
    near 0.
    """
    pieces = _pieces(text, SENTIMENT_CHUNK)
    if not pieces:
        return 0.0
    analyzer = _analyzer()
    total = sum(len(piece) * analyzer.polarity_scores(piece)["compound"] for piece in pieces)
    return round(total / sum(len(piece) for piece in pieces), 4)


def _pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut after sentence ends where possible
    (else at a space, else anywhere)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > size:
        window = rest[: size + 1]
        ends = [match.end() for match in re.finditer(r"[.!?](?=\s)", window)]
        cut = ends[-1] if ends else (window.rfind(" ") if " " in window else size)
        cut = cut if cut > 0 else size
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return [piece for piece in [*pieces, rest] if piece]


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    """VADER (pip ``nltk-vader-sentiment``) with its lexicons: built once per process."""
    from vader import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def toxicity(text: str) -> float:
    """Share of words on better-profanity's list, times :data:`TOXICITY_SCALE`, capped at 1.

    Matching follows better-profanity's ``censor``: whole words, any case, its look-alike
    characters (``sh!t``, ``$hit``), and phrases of up to a few words, joined as written or
    without their separators (``f u c k``, ``bull shit``). A flagged phrase counts each of its
    words. ``censor`` itself compares every word with all 900 entries (about a second for a
    Telegram-sized post); the same list in a trie answers in microseconds.
    """
    words = list(_WORD.finditer(text))
    profanity = _profanity()
    flagged = index = 0
    while index < len(words):
        for size in range(min(profanity.max_words, len(words) - index), 0, -1):
            span = words[index : index + size]
            as_written = text[span[0].start() : span[-1].end()].lower()
            joined = "".join(word.group() for word in span).lower()
            if _is_profane(as_written) or (size > 1 and _is_profane(joined)):
                flagged += size
                index += size
                break
        else:
            index += 1
    if not words:
        return 0.0
    return round(min(1.0, TOXICITY_SCALE * flagged / len(words)), 4)


class _ProfanityList:
    """better-profanity's packaged word list and look-alike characters, as a trie."""

    def __init__(self) -> None:
        from better_profanity import profanity  # type: ignore[import-untyped]

        listing = importlib.resources.files("better_profanity").joinpath("profanity_wordlist.txt")
        entries = {
            line.strip().lower()
            for line in listing.read_text(encoding="utf-8").splitlines()
            if line.strip()
        }
        mapping: dict[str, tuple[str, ...]] = dict(profanity.CHARS_MAPPING)
        options: dict[str, set[str]] = {}
        for letter, look_alikes in mapping.items():
            for char in look_alikes:
                options.setdefault(char, set()).add(letter)
        self.reads_as = {
            char: tuple(sorted(letters | ({char} if char not in mapping else set())))
            for char, letters in options.items()
        }
        """Which list characters a written character may stand for (``$`` -> ``s``)."""
        self.max_words = max(len(_WORD.findall(entry)) for entry in entries)
        self.lengths = frozenset(len(entry) for entry in entries)
        self.trie: dict[str, Any] = {}
        for entry in entries:
            node = self.trie
            for char in entry:
                node = node.setdefault(char, {})
            node[_END] = True


@functools.cache
def _profanity() -> _ProfanityList:
    return _ProfanityList()


@functools.lru_cache(maxsize=65536)
def _is_profane(candidate: str) -> bool:
    """``candidate`` (lowercase) reads as an entry of the list, look-alikes included."""
    profanity = _profanity()
    if len(candidate) not in profanity.lengths:
        return False
    nodes = [profanity.trie]
    for char in candidate:
        nodes = [
            node[option]
            for node in nodes
            for option in profanity.reads_as.get(char, (char,))
            if option in node
        ]
        if not nodes:
            return False
    return any(_END in node for node in nodes)
