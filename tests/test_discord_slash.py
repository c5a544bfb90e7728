"""The ``/story`` app commands build the core's commands from Discord's typed options: each one
must be the command the grammar reads from the same words typed as a line, and a value the
rules refuse gets the grammar's own one-line error. No Discord here: each subcommand's callback
is called with a stand-in interaction whose client records what it was asked to run."""

from __future__ import annotations

import re
from typing import Any

import discord
import pytest
from discord import app_commands

from adapters.discord_bot.slash import StoryCommands, help_topics
from bot import commands as c
from bot.moderation import MAX_REASON_CHARS


class Runner:
    """The client's side of a subcommand (``CommandRunner``): what it was asked to run or refuse."""

    def __init__(self) -> None:
        self.ran: list[c.Command] = []
        self.refused: list[str] = []

    async def run_command(self, interaction: Any, command: c.Command, *, story_id: int | None = None) -> None:
        self.ran.append(command)

    async def reject(self, interaction: Any, text: str) -> None:
        self.refused.append(text)


class Interaction:
    def __init__(self) -> None:
        self.client = Runner()


def subcommand(group: StoryCommands, *path: str) -> app_commands.Command[Any, ..., Any]:
    """The subcommand ``/story <path>`` of ``group``."""
    node: app_commands.Group | app_commands.Command[Any, ..., Any] | None = group
    for name in path:
        assert isinstance(node, app_commands.Group)
        node = node.get_command(name)
    assert isinstance(node, app_commands.Command), path
    return node


async def invoke(*path: str, **options: Any) -> Runner:
    """Run ``/story <path>`` with ``options`` as Discord would hand them over."""
    group = StoryCommands()
    node = subcommand(group, *path)
    interaction = Interaction()
    await node.callback(group, interaction, **options)  # type: ignore[arg-type]  # a stand-in for discord.Interaction
    return interaction.client


SAME_AS_TYPED: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
    (
        ("start",),
        {
            "title": "The Lighthouse",
            "genre": " mystery ",
            "mode": "free",
            "opening": "The keeper climbed.",
            "thread": True,
        },
        'start "The Lighthouse" genre:mystery mode:free thread:yes The keeper climbed.',
    ),
    (("start",), {}, "start"),
    (("start",), {"title": "Dark", "rating": "mature"}, 'start "Dark" rating:mature'),
    (("add",), {"text": "  The keeper climbed the stairs.  "}, "add The keeper climbed the stairs."),
    (("continue",), {"direction": " north "}, "continue north"),
    (("continue",), {}, "continue"),
    (("memory",), {}, "memory"),
    (("memory",), {"text": "   "}, "memory"),
    (("memory",), {"text": "clear"}, "memory clear"),
    (("memory",), {"text": " CLEAR "}, "memory CLEAR"),
    (("memory",), {"text": " The storm lasts all night. "}, "memory The storm lasts all night."),
    (("note",), {}, "note"),
    (("note",), {"text": "Clear"}, "note Clear"),
    (("note",), {"text": "Keep it tense."}, "note Keep it tense."),
    (("recap",), {}, "recap"),
    (("recap",), {"text": "clear"}, "recap clear"),
    (("recap",), {"text": " The keeper lit the lamp. "}, "recap The keeper lit the lamp."),
    (
        ("lore", "add"),
        {"keys": "dragon, wyrm", "text": " Dragons sleep here. "},
        "lore add dragon,wyrm Dragons sleep here.",
    ),
    (("lore", "list"), {}, "lore list"),
    (("lore", "remove"), {"number": 3}, "lore remove 3"),
    (
        ("settings",),
        {"temperature": 0.5, "length": 200, "mode": "round-robin"},
        "settings temperature:0.5 length:200 mode:round-robin",
    ),
    (("settings",), {}, "settings"),
    (("export",), {}, "export"),
    (("export",), {"format": "epub", "story_id": 12, "authors": False}, "export epub 12 authors:off"),
    (("export",), {"body": True}, "export body:on"),
    (("archive", "show"), {"story_id": 12}, "show 12"),
    (("archive", "list"), {}, "list"),
    (("archive", "publish"), {}, "publish"),
    (("archive", "publish"), {"story_id": 12, "authors": False}, "publish 12 without-authors"),
    (("archive", "unpublish"), {"story_id": 12}, "unpublish 12"),
    (("archive", "share"), {}, "share"),
    (("archive", "share"), {"story_id": 12, "revoke": True}, "share 12 revoke"),
    (("help",), {}, "help"),
    (("help",), {"command": "retry"}, "help retry"),
    (("retry",), {}, "retry"),
    (("turn",), {}, "turn"),
    (("pick",), {"number": 2}, "pick 2"),
    (("rate",), {"vote": "up"}, "rate up"),
    (("rate",), {"vote": "down", "passage": 3}, "rate down 3"),
    (("report",), {"passage": 2}, "report 2"),
    (("report",), {"passage": 2, "reason": " Too gory for this channel. "}, "report 2 Too gory for this channel."),
    (("mod", "hide"), {"passage": 4}, "hide 4"),
    (("mod", "unhide"), {"passage": 4}, "unhide 4"),
    (("mod", "words"), {}, "words"),
    (("mod", "words"), {"action": "ban", "entry": " dark  lord "}, "words ban dark lord"),
    (("mod", "words"), {"action": "allow", "entry": "bloody"}, "words allow bloody"),
    (("mod", "words"), {"action": "clear", "entry": "bloody"}, "words clear bloody"),
    (("branch",), {}, "branch"),
    (("branch",), {"passage": 12}, "branch 12"),
    (("settings",), {"rating": "teen"}, "settings rating:teen"),
    (("settings",), {"mode": "free", "rating": "mature"}, "settings mode:free rating:mature"),
    (("context",), {}, "context"),
    (("end",), {}, "end"),
]


@pytest.mark.parametrize(("path", "options", "typed"), SAME_AS_TYPED, ids=[typed for _, _, typed in SAME_AS_TYPED])
async def test_typed_options_build_what_the_grammar_reads_from_the_words(
    path: tuple[str, ...], options: dict[str, Any], typed: str
) -> None:
    runner = await invoke(*path, **options)
    assert runner.ran == [c.parse(typed)] and not runner.refused


@pytest.mark.parametrize(
    ("path", "options", "error"),
    [
        (("add",), {"text": "   "}, "Write your passage after /story add."),
        (("settings",), {"temperature": 5.0}, "temperature must be a number from 0 to 2"),
        (("settings",), {"top_p": 0.0}, "top_p must be a number from 0.01 to 1"),
        (("export",), {"format": "md", "body": True}, "body:on is HTML to paste into AO3; use it with html."),
        (("lore", "add"), {"keys": " , ", "text": "Dragons sleep here."}, "Give the lore entry's keys and its text."),
        (("rate",), {"vote": "sideways"}, "Rate a passage up or down (got"),
        (("mod", "words"), {"action": "ban"}, "Give the word or phrase to ban."),
        (("mod", "words"), {"entry": "dragon"}, "Say ban, allow or clear (got 'dragon')."),
        (("mod", "words"), {"action": "ban", "entry": "re:dr[a4]gon"}, "Patterns (re:…) are set in the config's"),
        (("mod", "words"), {"action": "ban", "entry": "x" * 101}, "A word list entry is at most 100 characters."),
    ],
)
async def test_a_refused_value_gets_the_one_line_error_and_runs_nothing(
    path: tuple[str, ...], options: dict[str, Any], error: str
) -> None:
    runner = await invoke(*path, **options)
    assert not runner.ran
    [refusal] = runner.refused
    assert refusal.startswith(error) and "\n" not in refusal


def test_the_settings_options_are_the_grammars_keys_with_its_ranges_and_descriptions() -> None:
    """The options of ``/story settings`` come from the grammar, which has them from the declarations."""
    settings = StoryCommands().get_command("settings")
    assert isinstance(settings, app_commands.Command)
    options = {parameter.name: parameter for parameter in settings.parameters}
    assert list(options) == list(c.SETTING_KEYS)
    for key, spec in c.SETTING_KEYS.items():
        assert options[key].description == spec.description and not options[key].required
        if spec.type in (int, float):
            kind = discord.AppCommandOptionType.integer if spec.type is int else discord.AppCommandOptionType.number
            assert options[key].type == kind
            assert (options[key].min_value, options[key].max_value) == (spec.minimum, spec.maximum)
    assert [choice.value for choice in options["rating"].choices] == [rating.value for rating in c.ContentRating]


def test_the_passage_options_are_numbers_from_one_and_a_reason_fits_the_rules_limit() -> None:
    """Discord's picker refuses what the rules would: passage 0, a reason past the rules' limit."""
    group = StoryCommands()
    for path in (("report",), ("mod", "hide"), ("mod", "unhide"), ("branch",)):
        passage = next(parameter for parameter in subcommand(group, *path).parameters if parameter.name == "passage")
        assert passage.type == discord.AppCommandOptionType.integer and passage.min_value == 1
        assert passage.required == (path != ("branch",))  # a branch shares the whole story by default
    reason = next(parameter for parameter in subcommand(group, "report").parameters if parameter.name == "reason")
    assert not reason.required and reason.max_value == MAX_REASON_CHARS  # (max_length, to Discord)
    [number] = subcommand(group, "pick").parameters
    assert number.type == discord.AppCommandOptionType.integer and number.min_value == 1 and number.required
    action = next(parameter for parameter in subcommand(group, "mod", "words").parameters if parameter.name == "action")
    assert [choice.value for choice in action.choices] == ["ban", "allow", "clear"] and not action.required


# The grammar's words that Discord has one level down: the moderators' tools, and the archive's.
NESTED = {"mod": ("hide", "unhide", "words"), "archive": ("list", "show", "publish", "unpublish", "share")}


def nested_group(word: str) -> str | None:
    return next((group for group, words in NESTED.items() if word in words), None)


def test_every_subcommand_of_the_grammar_is_under_story_in_help_order_with_the_nested_groups() -> None:
    """Discord's menu holds 25 subcommands a group: every word of the help is one of them, in the
    help's order, save the moderators' tools and the archive's, which are under ``/story mod`` and
    ``/story archive`` where their first word was."""
    group = StoryCommands()
    grammar = list(dict.fromkeys(re.findall(r"^/story (\w+)", c.HELP_TEXT, re.MULTILINE)))
    top = list(dict.fromkeys(nested_group(word) or word for word in grammar))
    assert [command.name for command in group.commands] == top and len(top) <= 25
    for name, words in NESTED.items():
        nested = group.get_command(name)
        assert isinstance(nested, app_commands.Group) and [command.name for command in nested.commands] == list(words)
    for word in grammar:
        parent = group.get_command(nested) if (nested := nested_group(word)) else group
        assert isinstance(parent, app_commands.Group) and parent.get_command(word) is not None, word


def test_help_offers_each_command_named_as_discord_has_it() -> None:
    """The help picker (at most 25 choices, offered as one types) names each command by its place
    on Discord, and asks the grammar for its usage by the grammar's own word."""
    grammar_words = re.findall(r"^/story (\w+)", c.HELP_TEXT, re.MULTILINE)
    assert len(help_topics("")) == 25
    choices = {choice.name: choice.value for word in grammar_words for choice in help_topics(word)}
    assert help_topics("recap") == [app_commands.Choice(name="recap", value="recap")]
    assert choices["mod hide"] == "hide" and choices["mod words"] == "words" and choices["branch"] == "branch"
    assert choices["archive list"] == "list" and choices["archive share"] == "share"
    grammar = set(re.findall(r"^/story (\w+)", c.HELP_TEXT, re.MULTILINE))
    assert set(choices.values()) == grammar - {"help"}
