"""Offline scoring: readability, sentiment, toxicity and length, deterministic and local."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from better_profanity import profanity  # type: ignore[import-untyped]

from agentfleet.content.scoring import (
    SCORER,
    SENTIMENT_CHUNK,
    TOXICITY_SCALE,
    score_text,
    sentiment,
    toxicity,
)

PLAIN = "The cat sat on the mat. It was a warm day. We all went out to play."
DENSE = (
    "Institutional intermediaries systematically underestimate idiosyncratic volatility, "
    "consequently misallocating considerable capital across heterogeneous instruments."
)


def test_scores_carry_the_scorer_and_are_deterministic() -> None:
    first = score_text(PLAIN, max_length=4096)
    assert first.scorer == SCORER == "offline:textstat+vader+profanity"
    assert first.judge is None
    assert score_text(PLAIN, max_length=4096) == first


def test_empty_text_scores_zero() -> None:
    scores = score_text("", max_length=10)
    assert (scores.readability, scores.grade, scores.sentiment, scores.toxicity) == (0, 0, 0, 0)
    assert scores.length == 0 and scores.length_ok
    assert score_text("  ...  ", max_length=10).readability == 0


def test_plain_english_reads_easier_than_dense_prose() -> None:
    plain, dense = score_text(PLAIN, max_length=4096), score_text(DENSE, max_length=4096)
    assert plain.readability > 80 > 0 > dense.readability
    assert plain.grade < 4 < 15 < dense.grade


def test_positive_text_scores_above_negative_text() -> None:
    happy = score_text("I love this team, the launch was a wonderful success!", max_length=999)
    neutral = score_text("The meeting is on Tuesday at the office.", max_length=999)
    sad = score_text("This is a terrible, awful failure and I hate it.", max_length=999)
    assert happy.sentiment > 0.5 and sad.sentiment < -0.5
    assert happy.sentiment > neutral.sentiment > sad.sentiment


def test_long_text_sentiment_follows_its_parts() -> None:
    happy, sad = "What a wonderful, great day. " * 400, "What an awful, terrible day. " * 400
    assert len(happy) > SENTIMENT_CHUNK
    assert sentiment(happy) > 0.5 and sentiment(sad) < -0.5
    mixed = sentiment(happy + sad)
    assert sentiment(sad) < mixed < sentiment(happy) and abs(mixed) < 0.2


def test_profanity_raises_toxicity() -> None:
    assert score_text(PLAIN, max_length=4096).toxicity == 0
    assert score_text("This is shit.", max_length=4096).toxicity == 1
    one_in_25 = " ".join(["word"] * 24 + ["damn"])
    assert toxicity(one_in_25) == pytest.approx(TOXICITY_SCALE / 25)


def test_look_alikes_and_spaced_letters_count_but_innocent_words_do_not() -> None:
    for text in ("sh!t happens", "$hit", "s h i t", "bull shit", "f_u_c_k"):
        assert toxicity(text) > 0, text
    for text in ("assessment of the class", "Scunthorpe", "a cocktail of grapes"):
        assert toxicity(text) == 0, text


@pytest.mark.parametrize(
    "text",
    [
        "you are shit",
        "sh!t happens",
        "f_u_c_k this",
        "a blow job",
        "fuck-up",
        "Damn it",
        "go to hell",
        "This is fine.",
        "assessment class",
        "assassin",
        "what the f***",
        "Hello, world!",
    ],
)
def test_toxicity_flags_what_better_profanity_censors(text: str) -> None:
    assert (toxicity(text) > 0) == profanity.contains_profanity(text)


def test_length_ok_is_within_max_length() -> None:
    assert score_text("x" * 10, max_length=10).length_ok
    over = score_text("x" * 11, max_length=10)
    assert over.length == 11 and not over.length_ok


def test_a_100000_character_email_scores_in_seconds() -> None:
    text = ("The launch went well, the damn servers held up and people loved it. " * 1500)[:100_000]
    score_text("Warm up.", max_length=100)  # loads textstat and NLTK once: seconds on a busy disk
    started = time.perf_counter()
    scores = score_text(text, max_length=100_000)
    assert time.perf_counter() - started < 10
    assert scores.length_ok and scores.toxicity > 0


def test_scoring_needs_no_network() -> None:
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network used")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        import nltk

        nltk.download = refuse
        from agentfleet.content.scoring import score_text

        print(score_text("Hello there, my good friend. What a day!", max_length=100))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "readability=" in done.stdout and "network used" not in done.stderr
