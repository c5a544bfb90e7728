"""The /story grammar (bot.commands): what people type on every platform, and what they are told."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import (
    EXPORT_FORMATS,
    HELP_TEXT,
    SETTING_KEYS,
    Add,
    Branch,
    Command,
    ContentRating,
    Context,
    Continue,
    End,
    Export,
    Help,
    Join,
    Leave,
    ListStories,
    LoreAdd,
    LoreList,
    LoreRemove,
    Memory,
    Mode,
    Note,
    ParseError,
    Rate,
    Recap,
    Retry,
    Settings,
    Show,
    Start,
    Status,
    Turn,
    Undo,
    Vote,
    parse,
    usage,
)
from bot.printable import printable

SUBCOMMANDS = (
    "start", "add", "continue", "retry", "pick", "vote", "branch", "undo", "rate", "report", "hide", "unhide", "words", "join",
    "leave", "turn", "memory", "note", "recap", "lore", "settings", "status", "context", "end", "export", "list", "show",
    "publish", "unpublish", "share", "help",
)  # fmt: skip
NO_TEXT = {"retry": Retry, "undo": Undo, "join": Join, "leave": Leave, "turn": Turn,
           "status": Status, "context": Context, "end": End, "list": ListStories}  # fmt: skip


def error_of(text: str) -> str:
    """Parse text that must fail; return the message after checking that it is one line."""
    with pytest.raises(ParseError) as info:
        parse(text)
    message = str(info.value)
    assert message and len(message.splitlines()) == 1 and message == message.strip()
    return message


# --- the /story word, the subcommand word, unknown commands ---------------------------------


@pytest.mark.parametrize(
    "text",
    ["add hi", "/story add hi", "story add hi", "/STORY Add hi", "Story ADD hi",
     "  /story   add   hi  ", "\n/story\tadd hi\n", "/story\nadd\nhi"],
)  # fmt: skip
def test_prefix_and_subcommand_word_are_optional_and_case_insensitive(text: str) -> None:
    assert parse(text) == Add("hi")


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "/story", "story", "/STORY  ", " Story\n"])
def test_nothing_after_story_asks_for_help(text: str) -> None:
    assert parse(text) == Help()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("strat", ["Unknown command 'strat'", "Did you mean /story start?", "/story help"]),
        ("/story contnue", ["Did you mean /story continue?"]),
        ("/story exp", ["Did you mean /story export?"]),
        ("/story zzzzzz", ["Unknown command 'zzzzzz'.", "Type /story help"]),
        ("storytime", ["Unknown command 'storytime'"]),
        ("/storyadd hi", ["Unknown command '/storyadd'"]),
        ("/story /story add hi", ["Unknown command '/story'"]),
    ],
)
def test_unknown_command_suggests_and_points_to_help(text: str, fragments: list[str]) -> None:
    message = error_of(text)
    for fragment in fragments:
        assert fragment in message


def test_error_messages_quote_user_input_on_one_short_line() -> None:
    message = error_of("bad\x00word" + "x" * 500 + "\nmore")
    assert "\x00" not in message and len(message) < 200


# --- start ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start", Start()),
        ("/story start Dragons of Autumn", Start(title="Dragons of Autumn")),
        ("START The Long Night", Start(title="The Long Night")),
        ('start "The Long Night"', Start(title="The Long Night")),
        ("start “The Long Night”", Start(title="The Long Night")),
        ("start „Die lange Nacht“", Start(title="Die lange Nacht")),
        ("start «La longue nuit»", Start(title="La longue nuit")),
        ('start title:"The Long Night"', Start(title="The Long Night")),
        ("start title:Dune", Start(title="Dune")),
        ('start genre:"space opera" "Dune"', Start(title="Dune", genre="space opera")),
        (
            'start "Dune" mode:rr genre:sf thread:yes',
            Start(title="Dune", genre="sf", mode=Mode.ROUND_ROBIN, thread=True),
        ),
        (
            "start thread:on MODE:Free Genre:horror title:“The Well”",
            Start(title="The Well", genre="horror", mode=Mode.FREE, thread=True),
        ),
        ("start thread:0 Dune", Start(title="Dune", thread=False)),
        (
            "start Dragons of Autumn genre:fantasy mode:alternate",
            Start(title="Dragons of Autumn", genre="fantasy", mode=Mode.ALTERNATE),
        ),
        ("start Chapter One: The Beginning", Start(title="Chapter One: The Beginning")),
        ("start 1 2 3 4 5 6 7 eight", Start(title="1 2 3 4 5 6 7 eight")),
        (
            "start one two three four five six seven eight nine",
            Start(opening="one two three four five six seven eight nine"),
        ),
        ("start It was a dark and stormy night.", Start(opening="It was a dark and stormy night.")),
        ("start Who goes there?", Start(opening="Who goes there?")),
        ("start Run!", Start(opening="Run!")),
        ("start And then…", Start(opening="And then…")),
        ('start He said "Stop."', Start(opening='He said "Stop."')),
        ("start The Gate\nIt was open.", Start(opening="The Gate\nIt was open.")),
        (
            'start "Dune" A beginning is a very delicate time.',
            Start(title="Dune", opening="A beginning is a very delicate time."),
        ),
        ('start "Run!" she shouted.', Start(title="Run!", opening="she shouted.")),
        (
            'start "Dune" "Fear is the mind-killer," she said',
            Start(title="Dune", opening='"Fear is the mind-killer," she said'),
        ),
        ("start time:3pm the clock struck", Start(title="time:3pm the clock struck")),
        ("start https://example.com is down", Start(title="https://example.com is down")),
        ("start Bob's \"great adventure", Start(title="Bob's \"great adventure")),
    ],
)
def test_start(text: str, expected: Start) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "opening",
    [
        "It was \"dark\".\n\n  She said: 'no'.\n\tThe end",
        "**Bold** _claim_ with `code`, a > quote and a [link](http://x.y).\n- item\n- item",
        "🐉 The dragon 🔥 woke.\nNothing else moved 🌙",
        "שלום עולם. زمانی بود و نبود.\nThe end.",
        "note:not an option key\nthe opening text",
        'A stray " quote and an apostrophe\'s fine.\n"Unclosed',
    ],
)
def test_opening_text_is_kept_exactly(opening: str) -> None:
    command = parse(f'/story start "Title" genre:noir  \n{opening}\n  ')
    assert command == Start(title="Title", genre="noir", opening=opening)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("start gnre:x Hi", ["Unknown option 'gnre:'.", "Did you mean genre:?", "/story start"]),
        ("start Dragons titel:x", ["Did you mean title:?"]),
        ("start mdoe:free Hi", ["Did you mean mode:?"]),
        ('start "The Long Night', ["Unclosed quote in title.", "/story start"]),
        ('start title:"The Long\nNight"', ["Unclosed quote in title."]),
        ('start genre:"space opera', ["Unclosed quote in genre."]),
        ('start Dune genre:"space opera', ["Unclosed quote in genre."]),
        ("start title:A title:B", ["title is given twice."]),
        ('start "A" title:B', ["title is given twice."]),
        ("start A title:B", ["title is given twice."]),
        ("start genre:a genre:b Hi", ["genre is given twice."]),
        ("start genre: fantasy", ["genre: needs a value right after the colon.", "/story start"]),
        ('start title:"" Hi', ["title: needs a value"]),
        ('start "" Hi', ["The title is empty.", "/story start"]),
        ('start "  " Hi', ["The title is empty."]),
        ("start genre:" + "x" * 51, ["genre can be at most 50 characters"]),
        ("start mode:fast", ["mode must be one of alternate, round-robin, free (got 'fast')."]),
        ("start thread:maybe", ["thread must be yes or no (got 'maybe')", "thread:yes"]),
    ],
)
def test_start_errors(text: str, fragments: list[str]) -> None:
    message = error_of(text)
    for fragment in fragments:
        assert fragment in message


def test_genre_of_fifty_characters_is_allowed() -> None:
    assert parse("start genre:" + "g" * 50).genre == "g" * 50


# --- add, continue, memory, note ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The door creaked open.",
        'She whispered, "Don\'t."\n\nThen   silence.',
        "> quoted\n```\ncode block\n```",
        "emoji 🐉🔥 and RTL مرحبا بالعالم",
        "start title:not-a-command",
        "genre:x mode:free",
    ],
)
def test_add_keeps_text_exactly(text: str) -> None:
    assert parse(f"/story add   {text}\n ") == Add(text)


@pytest.mark.parametrize("text", ["add", "/story add", "/story add   \n\t "])
def test_add_without_text_shows_usage(text: str) -> None:
    assert "Usage: /story add <text>" in error_of(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("continue", Continue()),
        ("/story CONTINUE   ", Continue()),
        ("continue the dragon attacks\nat dawn", Continue("the dragon attacks\nat dawn")),
        ('continue make it "scarier"', Continue('make it "scarier"')),
    ],
)
def test_continue(text: str, expected: Continue) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("kind", [Memory, Note, Recap])
@pytest.mark.parametrize(
    ("rest", "text"),
    [
        ("", None),
        ("   ", None),
        ("clear", ""),
        ("CLEAR ", ""),
        ("clear the deck first", "clear the deck first"),
        ("Mira lies.\nThe ship is *The Wren*.", "Mira lies.\nThe ship is *The Wren*."),
    ],
)
def test_memory_note_and_recap(kind: type[Memory] | type[Note] | type[Recap], rest: str, text: str | None) -> None:
    assert parse(f"/story {kind.name} {rest}") == kind(text)
    assert kind(text).shows_privately == (text is None)


# --- commands without text ------------------------------------------------------------------


@pytest.mark.parametrize(("word", "kind"), NO_TEXT.items())
def test_commands_without_text(word: str, kind: type[Command]) -> None:
    assert parse(word) == kind()
    assert parse(f"/story {word.upper()}  \n") == kind()
    assert kind.name == word


@pytest.mark.parametrize("word", NO_TEXT)
def test_commands_without_text_reject_text(word: str) -> None:
    message = error_of(f"/story {word} please")
    assert message == f"/story {word} takes no text. Type just /story {word}."


# --- lore -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lore", LoreList()),
        ("lore list", LoreList()),
        ("/story LORE List", LoreList()),
        ("lore add dragon The dragon sleeps.", LoreAdd(("dragon",), "The dragon sleeps.")),
        ("lore add Dragon,Wyrm  Big.\nScaly.", LoreAdd(("Dragon", "Wyrm"), "Big.\nScaly.")),
        ("lore add dragon, wyrm Big.", LoreAdd(("dragon", "wyrm"), "Big.")),
        ("lore add dragon,,wyrm,dragon Big.", LoreAdd(("dragon", "wyrm"), "Big.")),
        ("lore add dragon, Big dragons.", LoreAdd(("dragon", "Big"), "dragons.")),
        ('lore add "dark forest",woods Trees.', LoreAdd(("dark forest", "woods"), "Trees.")),
        ("lore add “Old Town” Cobbles.", LoreAdd(("Old Town",), "Cobbles.")),
        ('lore add Mira She says "no" a lot.', LoreAdd(("Mira",), 'She says "no" a lot.')),
        ("lore remove 3", LoreRemove(3)),
        ("lore rm #3", LoreRemove(3)),
        ("lore DELETE 12", LoreRemove(12)),
    ],
)
def test_lore(text: str, expected: Command) -> None:
    assert parse(text) == expected
    assert expected.name == "lore"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lore add", "Give the lore entry's keys, then its text."),
        ('lore add "" Text', "Give the lore entry's keys"),
        ("lore add dragon", "Write the lore text after the keys."),
        ('lore add "dark forest Trees.', "Unclosed quote in the lore keys."),
        ("lore remove", "Give the number of the lore entry to remove"),
        ("lore remove 0", "(got '0')"),
        ("lore remove three", "(got 'three')"),
        ("lore remove 3 4", "(got '3 4')"),
        ("lore remove " + "9" * 5000, "Give the number"),
        ("lore list all", "/story lore list takes no text."),
        ("lore ad dragon Hi", "Did you mean lore add?"),
        ("lore dragon Hi", "Unknown lore action 'dragon'."),
    ],
)
def test_lore_errors(text: str, fragment: str) -> None:
    message = error_of(text)
    assert fragment in message
    assert "Usage: /story lore add <key,key> <text>" in message


# --- settings -------------------------------------------------------------------------------


def test_setting_keys_describe_types_and_ranges() -> None:
    assert list(SETTING_KEYS) == [
        "temperature", "length", "top_p", "top_k", "repetition_penalty", "candidates", "mode", "rating", "model",
    ]  # fmt: skip
    assert {key: spec.type for key, spec in SETTING_KEYS.items()} == {
        "temperature": float, "length": int, "top_p": float, "top_k": int,
        "repetition_penalty": float, "candidates": int, "mode": Mode, "rating": ContentRating, "model": str,
    }  # fmt: skip
    assert (SETTING_KEYS["length"].minimum, SETTING_KEYS["length"].maximum) == (16, 1024)
    assert (SETTING_KEYS["top_p"].minimum, SETTING_KEYS["top_p"].maximum) == (0.01, 1.0)  # the config's range
    assert SETTING_KEYS["temperature"].allowed == "a number from 0 to 2"


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("settings", ()),
        ("/story SETTINGS  ", ()),
        ("settings temperature:0.7", (("temperature", 0.7),)),
        ("settings temperature:0 length:16", (("temperature", 0.0), ("length", 16))),
        ("settings temperature:2 length:1024", (("temperature", 2.0), ("length", 1024))),
        ("settings temperature:.5", (("temperature", 0.5),)),
        ("settings top_p:1 top_k:0", (("top_p", 1.0), ("top_k", 0))),
        ("settings top_p:0.01 top_k:500", (("top_p", 0.01), ("top_k", 500))),
        ("settings repetition_penalty:1 ", (("repetition_penalty", 1.0),)),
        ("settings Repetition-Penalty=1.15", (("repetition_penalty", 1.15),)),
        ("settings mode:rr", (("mode", Mode.ROUND_ROBIN),)),
        ("settings model:gpt2", (("model", "gpt2"),)),
        ('settings model:"my local model"', (("model", "my local model"),)),
        ("settings model:" + "m" * 200, (("model", "m" * 200),)),
        (
            "settings length:200 TEMPERATURE:1.1 model:Qwen/Qwen2.5-0.5B",
            (("length", 200), ("temperature", 1.1), ("model", "Qwen/Qwen2.5-0.5B")),
        ),
    ],
)
def test_settings(text: str, changes: tuple[tuple[str, object], ...]) -> None:
    command = parse(text)
    assert command == Settings(changes)
    assert command.as_dict == dict(changes)
    for key, value in command.changes:
        assert type(value) is type(dict(changes)[key])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("settings temperature:hot", "temperature must be a number from 0 to 2 (got 'hot')."),
        ("settings temperature:2.01", "temperature must be a number from 0 to 2 (got '2.01')."),
        ("settings temperature:-0.1", "temperature must be a number from 0 to 2 (got '-0.1')."),
        ("settings temperature:nan", "temperature must be a number from 0 to 2 (got 'nan')."),
        ("settings temperature:inf", "temperature must be a number from 0 to 2 (got 'inf')."),
        ("settings temperature:", "temperature must be a number from 0 to 2 (got '')."),
        ("settings length:15", "length must be a whole number from 16 to 1024 (got '15')."),
        ("settings length:1025", "length must be a whole number from 16 to 1024 (got '1025')."),
        ("settings length:200.5", "length must be a whole number from 16 to 1024 (got '200.5')."),
        ("settings length:" + "9" * 5000, "length must be a whole number from 16 to 1024"),
        ("settings top_p:0", "top_p must be a number from 0.01 to 1 (got '0')."),
        ("settings top_p:0.005", "top_p must be a number from 0.01 to 1 (got '0.005')."),
        ("settings top_p:1.5", "top_p must be a number from 0.01 to 1 (got '1.5')."),
        ("settings top_k:501", "top_k must be a whole number from 0 to 500 (got '501')."),
        ("settings top_k:-1", "top_k must be a whole number from 0 to 500 (got '-1')."),
        (
            "settings repetition_penalty:0.9",
            "repetition_penalty must be a number from 1 to 2 (got '0.9').",
        ),
        ("settings mode:fast", "mode must be one of alternate, round-robin, free (got 'fast')."),
        ('settings model:""', "model must be a name of 1 to 200 characters (got '')."),
        ("settings model:" + "m" * 201, "model must be a name of 1 to 200 characters"),
        (
            "settings temp:1",
            "Unknown setting 'temp'. Did you mean temperature? Settings: "
            "temperature, length, top_p, top_k, repetition_penalty, candidates, mode, rating, model.",
        ),
        ("settings lenght:100", "Did you mean length?"),
        ("settings colour:red", "Unknown setting 'colour'. Settings: temperature"),
        ("settings length:100 length:200", "length is given twice; type it once."),
        ("settings hot", "Got 'hot'. Settings are written key:value, like temperature:0.8."),
        ('settings "temperature:1"', "Settings are written key:value"),
        ('settings model:"gpt', "Unclosed quote. Settings are written key:value"),
    ],
)
def test_settings_errors(text: str, message: str) -> None:
    assert message in error_of(text)


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("alternate", Mode.ALTERNATE), ("ALT", Mode.ALTERNATE), ("Alternate", Mode.ALTERNATE),
        ("round-robin", Mode.ROUND_ROBIN), ("round_robin", Mode.ROUND_ROBIN),
        ("roundrobin", Mode.ROUND_ROBIN), ("RR", Mode.ROUND_ROBIN),
        ("Round Robin", Mode.ROUND_ROBIN), ("free", Mode.FREE), (" FREE ", Mode.FREE),
    ],
)  # fmt: skip
def test_mode_aliases(text: str, mode: Mode) -> None:
    assert Mode.parse(text) is mode


def test_mode_is_a_string_enum_with_a_plain_str() -> None:
    assert Mode.ROUND_ROBIN == "round-robin" and Mode("free") is Mode.FREE
    assert f"{Mode.ROUND_ROBIN}" == str(Mode.ROUND_ROBIN) == "round-robin"
    with pytest.raises(ParseError, match=r"^mode must be one of alternate, round-robin, free"):
        Mode.parse("robin")


# --- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("export", Export()),
        ("export md", Export("md")),
        ("/story EXPORT EPUB", Export("epub")),
        ("export format:html", Export("html")),
        ("export markdown", Export("md")),
        ("export text", Export("txt")),
        ("export 12", Export("md", 12)),
        ("export #12", Export("md", 12)),
        ("export id:12", Export("md", 12)),
        ("export json 7", Export("json", 7)),
        ("export #7 txt", Export("txt", 7)),
        ("export ID:7 Format:EPUB", Export("epub", 7)),
    ],
)
def test_export(text: str, expected: Export) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("export pdf", "Unknown export format 'pdf'. Formats: md, txt, html, epub, json."),
        ("export epbu", "Did you mean epub?"),
        ("export format:pdf", "Unknown export format 'format:pdf'."),
        ("export colour:red", "Unknown export format 'colour:red'."),
        ("export md epub", "Give at most one format."),
        ("export 1 2", "Give at most one story id."),
        ("export 0", "A story id is a whole number from 1 up, like 12 (got '0')"),
        ("export #0", "A story id is a whole number from 1 up"),
        ("export md -1", "A story id is a whole number from 1 up, like 12 (got '-1')"),
        ("export id:x", "A story id is a whole number from 1 up, like 12 (got 'id:x')"),
        ("export " + "1" * 30, "A story id is a whole number from 1 up"),
        ('export "epub', "Unclosed quote."),
    ],
)
def test_export_errors(text: str, fragment: str) -> None:
    message = error_of(text)
    assert fragment in message
    assert "Usage: /story export [md|txt|html|epub|json] [story id]" in message


def test_export_formats() -> None:
    assert EXPORT_FORMATS == ("md", "txt", "html", "epub", "json")


# --- help and usage -------------------------------------------------------------------------


@pytest.mark.parametrize("topic", SUBCOMMANDS)
def test_help_topics_are_subcommands_with_a_usage_line(topic: str) -> None:
    assert parse(f"/story help {topic.upper()}") == Help(topic)
    line = usage(topic)
    assert line.startswith(f"/story {topic}") and "\n" not in line
    assert line in HELP_TEXT


def test_help_text_has_one_line_per_subcommand() -> None:
    lines = HELP_TEXT.splitlines()
    assert [line.split()[1] for line in lines] == list(SUBCOMMANDS)
    assert all(" — " in line for line in lines)


@pytest.mark.parametrize(
    ("text", "command"), [("branch", Branch()), ("/story branch 12", Branch(12)), ("branch #3", Branch(3))]
)
def test_branch_takes_an_optional_passage_number(text: str, command: Branch) -> None:
    assert parse(text) == command


@pytest.mark.parametrize("text", ["branch 0", "branch twelve", "branch 1 2"])
def test_branch_refuses_anything_but_one_passage_number(text: str) -> None:
    assert "Usage: /story branch [passage number]" in error_of(text)


def test_every_command_class_names_a_help_topic() -> None:
    classes = [Start, Add, Branch, Continue, Retry, Undo, Join, Leave, Status, End, ListStories,
               Memory, Note, Recap, LoreAdd, LoreList, LoreRemove, Settings, Export, Show, Help]  # fmt: skip
    for cls in classes:
        assert issubclass(cls, Command)
        assert cls.name in SUBCOMMANDS
        assert usage(cls.name)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("help strt", "No help for 'strt'. Did you mean start?"),
        ("help nothing", "No help for 'nothing'. Type /story help for the list of commands."),
        ("help lore add", "Ask about one command at a time. Usage: /story help [command]"),
    ],
)
def test_help_errors(text: str, fragment: str) -> None:
    assert fragment in error_of(text)


def test_usage_of_unknown_name_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="No help for 'nope'"):
        usage("nope")


def test_commands_are_frozen_values() -> None:
    command = parse("add hi")
    assert isinstance(command, Add)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.text = "changed"  # type: ignore[misc]  # writing to a frozen field is what this test checks
    assert {parse("export epub"), parse("export format:epub")} == {Export("epub")}


# --- any input at all -----------------------------------------------------------------------

# Pieces that exercise the grammar far more often than uniformly random text does.
GRAMMAR_PIECES = st.sampled_from(
    [" ", "  ", "\n", "\t", '"', "“", "”", "„", "«", "»", ":", "=", "#", ",", "'", "\x00",
     "\u2028", "title:", "genre:", "mode:", "thread:", "gnre:", "rr", "yes", "1", "12", "0",
     "add", "list", "remove", "clear", "epub", "id:", "format:", "temperature:", "length:",
     "model:", "top_p:", "x", "Dragons", "of", "Autumn", ".", "!", "…", "🐉", "مرحبا"]
).map(str)  # fmt: skip
GRAMMARISH = st.lists(GRAMMAR_PIECES, max_size=30).map("".join)
ANY_TEXT = st.one_of(st.text(), GRAMMARISH)


def parses_or_fails_cleanly(text: str) -> None:
    try:
        command = parse(text)
    except ParseError as error:
        assert len(str(error).splitlines()) == 1
    else:
        assert isinstance(command, Command)


@given(ANY_TEXT)
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    parses_or_fails_cleanly(text)
    parses_or_fails_cleanly("/story " + text)


@given(st.sampled_from(SUBCOMMANDS), ANY_TEXT)
def test_any_text_after_any_subcommand_parses_or_raises_parse_error(word: str, text: str) -> None:
    parses_or_fails_cleanly(f"{word} {text}")
    parses_or_fails_cleanly(f"/story {word}{text}")


@given(st.sampled_from(("lore add", "lore remove", "start", "start \"T\"", "settings", "export")),
       ANY_TEXT)  # fmt: skip
def test_any_text_after_options_parses_or_raises_parse_error(words: str, text: str) -> None:
    parses_or_fails_cleanly(f"{words} {text}")


@given(ANY_TEXT.filter(lambda text: printable(text).strip() != ""))
def test_add_text_round_trips(text: str) -> None:
    assert parse("/story add " + text) == Add(printable(text).strip())


@given(ANY_TEXT)
def test_continue_direction_round_trips(text: str) -> None:
    assert parse("/story continue " + text) == Continue(printable(text).strip() or None)


@given(ANY_TEXT.filter(lambda text: printable(text).strip().lower() != "clear"))
def test_memory_text_round_trips(text: str) -> None:
    assert parse("/story memory " + text) == Memory(printable(text).strip() or None)


@pytest.mark.parametrize(
    "text",
    [
        "add " + "x" * 200_000,
        "start " + "word " * 50_000,
        "start " + "x" * 200_000,
        'start "' + "x" * 200_000,
        "start Dragons " + "genre:a " * 20_000,
        "settings " + '"a" ' * 20_000,
        "export " + "“x” " * 20_000,
        "lore add " + "k," * 20_000 + " text",
        "bogus" * 40_000,
    ],
)
def test_huge_input_is_handled_quickly(text: str) -> None:
    began = time.perf_counter()
    parses_or_fails_cleanly(text)
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("/story add The door\x1b[2J opened.\x07", Add("The door[2J opened.")),
        ("/story add line one\r\nline two\rthree\tfour", Add("line one\nline two\nthree\tfour")),
        (
            '/story start "Night\x1b]0;pwned\x07 Watch" genre:ho\x9brror',
            Start(title="Night]0;pwned Watch", genre="horror"),
        ),
        ("/story memory \x00Ada is\x7f a pilot\x85.", Memory("Ada is a pilot.")),
        ("/story lore add dra\x1bgon A dragon\x08.", LoreAdd(("dragon",), "A dragon.")),
    ],
)
def test_control_characters_never_reach_the_story(typed: str, stored: object) -> None:
    """Escape sequences, bells and backspaces would clear or retitle a terminal that prints the story."""
    assert parse(typed) == stored


def test_commands_built_by_adapters_are_printable_too() -> None:
    """A thread message or a button builds its command without the parser: it is cleaned all the same."""
    assert Add("a\x1b[31mred\x1b[0m").text == "a[31mred[0m"
    assert Continue("go\x07 north").direction == "go north"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/story rate up", Rate(Vote.UP)),
        ("/story rate 👎 3", Rate(Vote.DOWN, 3)),
        ("/story rate +1 #2", Rate(Vote.UP, 2)),
        ("/story rate 👍🏽", Rate(Vote.UP)),
    ],
)
def test_rate_reads_a_vote_and_an_optional_passage_number(line: str, expected: Rate) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/story rate", "up or down"),
        ("/story rate sideways", "(got 'sideways')"),
        ("/story rate up zero", "whole number"),
        ("/story rate up 0", "whole number"),
        ("/story rate up 1 2", "up or down"),
    ],
)
def test_a_bad_rating_is_one_line_with_the_usage(line: str, message: str) -> None:
    with pytest.raises(ParseError) as error:
        parse(line)
    assert message in str(error.value) and "/story rate up|down" in str(error.value)
