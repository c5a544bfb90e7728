"""What a user sees of the model's raw output: whole sentences, no chat speakers, no echoed notes."""

from __future__ import annotations

import pytest

from bot.generation.text import clean_passage, cut_at_stops, speaker_stops, talks_as_assistant, trim_to_sentence

STOPS = speaker_stops(["Alice", "Bob"])


# --- ending at a sentence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("The sea was loud. The keeper turn", "The sea was loud."),
        ("She ran! He stayed? And then the", "She ran! He stayed?"),
        ('"Who goes there?" asked the guard. The trav', '"Who goes there?" asked the guard.'),
        ('He said, "Run." And she', 'He said, "Run."'),
        ("She whispered, “Stay.” Then the lamp", "She whispered, “Stay.”"),
        ("‘Go home.’ The wind", "‘Go home.’"),
        ("«Enough.» He left the", "«Enough.»"),
        ("(It was late.) The baker", "(It was late.)"),
        ("Wait... what was that", "Wait..."),
        ("Wait… what was that", "Wait…"),
        ("You did what?! I can't belie", "You did what?!"),
        ("It cost 3.50 coins. The merchant sm", "It cost 3.50 coins."),
        ("Mr. Hale opened the door. Dr. Wu and Mrs. Hale", "Mr. Hale opened the door."),
        ("守塔人爬上了楼梯。灯是冷的！海浪很", "守塔人爬上了楼梯。灯是冷的！"),
        ("「走吧。」她说。然後", "「走吧。」她说。"),
    ],
)
def test_an_unfinished_last_sentence_is_dropped(raw: str, shown: str) -> None:
    assert trim_to_sentence(raw) == shown


@pytest.mark.parametrize(
    "finished",
    ["The lamp was cold.", 'She smiled. "Welcome home."', "Was it over?!", "The end…"],
)
def test_text_that_ends_at_a_sentence_is_kept(finished: str) -> None:
    assert trim_to_sentence(finished) == finished
    assert trim_to_sentence(f"  {finished}  \n") == finished


@pytest.mark.parametrize(
    "fragment",
    ["and then the dragon woke", "the lighthouse beam swept across 3.5 miles of", "—", "They waited for Mr."],
)
def test_text_without_any_sentence_end_is_kept_whole(fragment: str) -> None:
    assert trim_to_sentence(fragment) == fragment
    assert clean_passage(fragment, STOPS) == fragment


def test_empty_output_stays_empty() -> None:
    assert trim_to_sentence("   \n ") == ""
    assert clean_passage("", STOPS) == ""


# --- chat speakers -------------------------------------------------------------------------


def test_speaker_stops_are_one_per_named_person() -> None:
    stops = speaker_stops(["Bob", "Alice", "Bob", "  ", ""])
    assert sorted(stops) == ["\nAlice:", "\nBob:"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("The door opened.\nAlice: Hello there.", "The door opened."),
        ("The door opened. Then\nBob: hi\nAlice: hey", "The door opened."),
        ("The door opened.\n\nBob: who is it?", "The door opened."),
    ],
)
def test_a_new_chat_line_for_a_participant_is_cut(raw: str, shown: str) -> None:
    assert clean_passage(raw, STOPS) == shown


def test_the_earliest_stop_wins() -> None:
    assert cut_at_stops("one\nBob: two\nAlice: three", STOPS) == "one"
    assert cut_at_stops("one\nAlice: two\nBob: three", STOPS) == "one"
    assert cut_at_stops("no speakers here", STOPS) == "no speakers here"


def test_a_name_inside_a_sentence_is_not_a_speaker_line() -> None:
    raw = "She turned to Alice: the map was wrong. Bob: silent, as always."
    assert clean_passage(raw, STOPS) == raw


def test_a_chat_line_at_the_very_start_of_the_output_is_cut() -> None:
    # build_prompt ends every prompt with "\n\n", so these are the first characters of a new line.
    assert clean_passage("Alice: I think we should go back.", STOPS) == ""


# --- echoed notes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("The wind howled.\n[Author's note: keep it grim]", "The wind howled."),
        ("The wind howled.\n\n[Author's note: keep it grim] More text.", "The wind howled."),
        ("The wind howled.\n   [Author's note: keep", "The wind howled."),
        ("The wind howled.\n[Next: the ship arrives]", "The wind howled."),
        ("[Author's note: keep it grim]\nThe wind howled.", ""),
    ],
)
def test_an_echoed_bracket_note_is_cut(raw: str, shown: str) -> None:
    assert clean_passage(raw, STOPS) == shown


# --- unprintable characters ----------------------------------------------------------------


@pytest.mark.parametrize("junk", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\ufffd", "\r"])
def test_control_characters_and_replacement_characters_are_removed(junk: str) -> None:
    raw = f"The sea{junk} was loud.{junk}{junk} The ke"
    assert clean_passage(raw, STOPS) == "The sea was loud."


def test_tabs_and_accented_text_survive_cleaning() -> None:
    raw = "Zoë counted:\tone, two, three. Café lights — naïve “hope”."
    assert clean_passage(raw, STOPS) == raw


# --- multiline passages --------------------------------------------------------------------


def test_multiline_passages_are_kept() -> None:
    raw = "The storm came.\nThe boats rocked.\n\nIn the morning, the harbour was quiet. The bak"
    assert clean_passage(raw, STOPS) == "The storm came.\nThe boats rocked.\n\nIn the morning, the harbour was quiet."


def test_a_poem_without_sentence_ends_keeps_all_its_lines() -> None:
    poem = "Over the rocks\nthe beam goes round\nand round"
    assert clean_passage(poem, STOPS) == poem


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Title: The Wizard's Tax Audit\nGenre: comedy\n\nMagnus sighed. He paid.", "Magnus sighed. He paid."),
        ("\nTitle: Rain Check\nShe laughed.", "She laughed."),
        ("The sea rose. Then it fell.\nTitle: Part two\nMore of it.", "The sea rose. Then it fell."),
        ("She ran.\n[Memory: the key is gold.]", "She ran."),
        ("Genre: horror", ""),
        ("A title: not a heading. Fine.", "A title: not a heading. Fine."),
    ],
)
def test_the_prompts_own_markup_never_reaches_a_passage(raw: str, shown: str) -> None:
    assert clean_passage(raw, STOPS) == shown


# --- a chat assistant's voice --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Here is the next passage of the story:\n\nThe tide came in. The gulls", "The tide came in."),
        ("Sure! Here's the continuation: The door opened. She", "The door opened."),
        ("Certainly. Here is the next part of the story:\nMara waited.", "Mara waited."),
        (
            "Here is the next passage of the story. In the old days the sea was kind.",
            "In the old days the sea was kind.",
        ),
    ],
)
def test_an_assistants_announcement_of_the_passage_is_dropped(raw: str, shown: str) -> None:
    assert clean_passage(raw, STOPS) == shown


@pytest.mark.parametrize(
    "story",
    [
        "Here is the map: an old scroll, torn at the edges.",
        "Here she comes: the queen of the night.",
        '"Sure," she said. "Here is the key."',
        "Here is the story of how I lost my hand.",
        '"Ladies and gentlemen," the ringmaster cried, "the lion is loose."',
        "I am excited to see the sea again, she thought, and hated herself for it.",
    ],
)
def test_a_story_that_opens_with_here_or_sure_keeps_its_words(story: str) -> None:
    assert clean_passage(story, STOPS) == story
    assert not talks_as_assistant(story)


@pytest.mark.parametrize(
    "talk",
    [
        "I'd be happy to help you write a short story set in Shanghai.",
        "I've written another chapter for you, and this one continues the last.",
        "The keeper smiled. As an AI, I cannot know what the sea holds.",
        # The bundled model on the chat frame, once in a smoke run:
        "Ladies and gentlemen of the world, I am excited to share the tale of the great harbour of Venice.",
        "I'm thrilled to present the next part of our story!",
    ],
)
def test_an_assistant_talking_instead_of_telling_is_recognised(talk: str) -> None:
    assert talks_as_assistant(talk)
