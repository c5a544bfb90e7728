"""The quality benchmark's metrics (bench.quality), on small hand-made passages; no model."""

from __future__ import annotations

import math

import pytest

from bench.openings import OPENINGS, QUICK, quick_openings
from bench.quality import (
    Sample,
    copy_rate,
    distinct_n,
    is_complete,
    junk_kinds,
    on_topic,
    repeat_rate,
    summarize,
    units,
    word_count,
)

NAMES = ("Mara", "Tobias")


def test_units_are_words_without_punctuation_and_cjk_characters():
    assert units('"Run!" she said, don\'t  stop.') == ["run", "she", "said", "don't", "stop"]
    assert units("林晓推开门，屋里没人。") == list("林晓推开门屋里没人")
    assert units("Mara 说：好。") == ["mara", "说", "好"]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("The door creaked open. Nobody was there.", []),
        ("", ["empty"]),
        ("  \n ", ["empty"]),
        ("2.\n\n3.", ["no_letters", "list_start"]),
        ("1. The door opened.", ["list_start"]),
        ("2) She ran.", ["list_start"]),
        ("- a list item", ["list_start"]),
        ("* a list item", ["list_start"]),
        ("# Chapter Two", ["list_start"]),
        ("1984 was a long year.", []),
        ("-- and then silence.", []),
        ("The rain stopped.\n\nTitle: The Ledger", ["prompt_markup"]),
        ("She smiled. [Memory: Mara is a detective.]", ["prompt_markup"]),
        ("[Author's note: slow]", ["prompt_markup"]),
        ("She left.<|im_end|>", ["chat_token"]),
        ("<|im_start|>assistant\nOnce upon a time.", ["chat_token", "role_line"]),
        ("assistant\nOnce upon a time.", ["role_line"]),
        ("The user\nwas gone.", []),
        ("He nodded.\nMara: What now?", ["speaker_line"]),
        ("**Tobias:** Nothing.", ["speaker_line"]),
        ("storybot: Here is the next part.", ["speaker_line"]),
        ("Mara said: no.", []),
        ("?!...", ["no_letters"]),
        ("Sure! Here is the next part of the story.", ["assistant_talk"]),
        ("The following is a continuation of the above passage.", ["assistant_talk"]),
        ("Surely she knew.", []),
        ("The following day Kenji came back.", []),
    ],
)
def test_junk_kinds(text, kinds):
    assert junk_kinds(text, NAMES) == kinds


def test_a_passage_in_another_language_than_the_openings_is_junk():
    assert junk_kinds("The house was quiet and the clocks had stopped.", (), "es") == ["wrong_language"]
    assert junk_kinds("La casa estaba en silencio y los relojes se habían parado.", (), "es") == []
    assert junk_kinds("Il ouvrit la porte et la lampe tournait toujours.", (), "fr") == []
    assert junk_kinds("他推开门，屋里没有人。", (), "en") == ["wrong_language"]
    assert junk_kinds("Oh.", (), "fr") == []  # too short to tell


def test_a_full_width_colon_after_a_chinese_name_is_a_speaker_line():
    assert junk_kinds("他点了点头。\n林晓：然后呢？", ("林晓",)) == ["speaker_line"]


def test_repeat_rate():
    assert repeat_rate("one two three four five six") == 0.0
    # 9 four-grams, the loop "a b c d" repeated: only 4 are distinct.
    assert repeat_rate("a b c d a b c d a b c d") == pytest.approx(1 - 4 / 9)
    assert repeat_rate("too short") is None


def test_copy_rate():
    source = "one two three four five six seven eight nine ten"
    assert copy_rate("one two three four five six seven eight", source) == 1.0
    assert copy_rate("zero one two three four five six seven eight", source) == pytest.approx(1 / 2)
    assert copy_rate("nothing here is copied from it at all", source) == 0.0
    assert copy_rate("short", source) is None


def test_distinct_n_across_samples():
    assert distinct_n(["a b c", "a b c"]) == pytest.approx(2 / 4)
    assert distinct_n(["a b c", "d e f"]) == 1.0
    assert distinct_n(["a", "b"]) is None  # no bigram spans two passages


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("She left.", True),
        ("Really?", True),
        ('"Go!"', True),
        ("He waited…", True),
        ("他走了。", True),
        ("«Ils sont revenus avec la marée.»", True),
        ("She left the", False),
        ("", False),
        ("2.\n\n3", False),
    ],
)
def test_is_complete(text, complete):
    assert is_complete(text) is complete


def test_on_topic():
    anchors = ("map", "Veilwood", "林晓")
    assert on_topic("She folded the MAPS away.", anchors)
    assert on_topic("林晓笑了。", anchors)
    assert not on_topic("A bitmap of the sea.", anchors)  # only at a word's start
    assert not on_topic("The movie is a 4x4 with a camera.", anchors)


def test_word_count_counts_cjk_characters_as_two_thirds_of_a_word():
    assert word_count("The door opened.") == 3
    assert word_count("林晓推开门。") == pytest.approx(5 / 1.5)


def test_summarize():
    openings = OPENINGS[:2]
    samples = [
        [Sample("The shop was dark. A phone rang.", 1.0), Sample("2.\n\n3.", 3.0)],
        [Sample("", 2.0, error="The bot could not think of anything"), Sample("Kenji: the salt is", 2.0)],
    ]
    figures = summarize(openings, samples)
    assert figures["passages"] == 4
    assert figures["junk_rate"] == 0.75
    assert figures["junk_kinds"] == {"empty": 1, "no_letters": 1, "list_start": 1, "speaker_line": 1}
    assert figures["complete_rate"] == 0.5  # "2.\n\n3." ends with a full stop
    assert figures["seconds_per_passage"] == 2.0
    assert figures["failed_turns"] == 1
    assert figures["repeat_4gram"] == 0.0
    assert figures["on_topic_rate"] == 0.25  # "Kenji: the salt is"
    assert math.isfinite(figures["distinct_2"])


def test_the_openings():
    assert len(OPENINGS) == 24
    assert len({opening.title for opening in OPENINGS}) == len(OPENINGS)
    assert len(quick_openings()) == len(QUICK) == 6
    for opening in OPENINGS:
        assert 1 <= len(opening.passages) <= 3
        assert opening.as_prose().startswith(opening.title)
        assert on_topic(opening.as_prose(), opening.anchors)
        for entry in opening.lore:  # lore that never triggers would test nothing
            assert any(key.lower() in opening.as_prose().lower() for key in entry.keys)
