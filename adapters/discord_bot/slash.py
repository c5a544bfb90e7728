"""The ``/story`` app-command group: every subcommand of the grammar, with typed options.

Discord allows a group at most 25 subcommands, so the moderators' passage tools (``MOD_TOOLS``)
sit one level down, as ``/story mod hide`` and so on, the way ``/story lore add`` does, and the
finished stories and the web archive (``ARCHIVE_TOOLS``) as ``/story archive list`` and so on;
the grammar (and so ``/story help``, and every other platform) keeps them as ``/story hide``.

Discord hands over typed values (choices, numbers in range, flags), so each subcommand builds
the core's command object from them directly; the option types carry the limits Discord checks
(a genre's length, ids from 1 up), and the grammar's helpers convert what it owns (a mode, a
setting's value and range). Three subcommands still hand their words to the grammar, because
it owns a rule about them that it applies only while parsing, and the asker must get its error:
``add`` (an empty passage), ``export`` (``body`` is HTML, and refuses another format) and
``mod words`` (an action needs an entry; no patterns; the entry's length).
A value the rules refuse is answered with the one-line error, shown only to the asker.
"""

import re
from collections.abc import Callable
from typing import Any, cast

import discord
from discord import app_commands

from adapters.discord_bot.runner import CommandRunner
from bot import commands as c
from bot.moderation import MAX_REASON_CHARS

# The subcommand words, in help order, read from the grammar's own help text.
SUBCOMMANDS: tuple[str, ...] = tuple(dict.fromkeys(re.findall(r"^/story (\w+)", c.HELP_TEXT, re.MULTILINE)))
# The grammar's subcommands that Discord has one level down (the group is full without): under
# ``/story mod`` and under ``/story archive``.
MOD_GROUP = "mod"
MOD_TOOLS: tuple[str, ...] = ("hide", "unhide", "words")
ARCHIVE_GROUP = "archive"
ARCHIVE_TOOLS: tuple[str, ...] = ("list", "show", "publish", "unpublish", "share")
_NESTED = {MOD_GROUP: MOD_TOOLS, ARCHIVE_GROUP: ARCHIVE_TOOLS}


def slash_path(word: str) -> tuple[str, ...]:
    """Where the grammar's subcommand ``word`` is under ``/story`` on Discord."""
    group = next((name for name, words in _NESTED.items() if word in words), None)
    return (word,) if group is None else (group, word)


_MODES = [app_commands.Choice(name=mode.value, value=mode.value) for mode in c.Mode]
# Who each rating is for (the fiction archives' scale), as the picker shows it.
_RATING_NAMES = {
    c.ContentRating.GENERAL: "general: general audiences",
    c.ContentRating.TEEN: "teen: teen and up audiences",
    c.ContentRating.MATURE: "mature: adults only (age-restricted channels)",
}
_RATINGS = [app_commands.Choice(name=_RATING_NAMES[rating], value=rating.value) for rating in c.ContentRating]
_VOTES = [app_commands.Choice(name=f"{vote.emoji} {vote.value}", value=vote.value) for vote in c.Vote]
# What ``/story words`` does with its entry; left empty, it shows the channel's list.
_WORD_ACTIONS = [
    app_commands.Choice(name="ban: refuse it in this channel's stories", value=c.WordRule.BAN.value),
    app_commands.Choice(name="allow: let this channel use a word of the built-in lists", value=c.WordRule.ALLOW.value),
    app_commands.Choice(name="clear: take back the channel's rule on it", value="clear"),
]
_FORMATS = [app_commands.Choice(name=fmt, value=fmt) for fmt in c.EXPORT_FORMATS]
# The story the archive's commands act on, as the grammar picks it when no id is given.
_STORY_ID = "A story's id from /story archive list (default: the running story, else the latest)"
# Help on each subcommand, named as it is typed on Discord; not on ``help`` itself. There are more
# than Discord's 25 fixed choices, so they are offered as the person types (``help_topics``).
_TOPICS = [app_commands.Choice(name=" ".join(slash_path(word)), value=word) for word in SUBCOMMANDS if word != "help"]
MAX_CHOICES = 25  # what Discord shows of a list of choices


def help_topics(typed: str) -> list[app_commands.Choice[str]]:
    """The help topics whose Discord name holds what was typed so far, at most 25, in help order."""
    return [topic for topic in _TOPICS if typed.strip().lower() in topic.name][:MAX_CHOICES]


def _range(key: str) -> Any:
    """An option type of the setting ``key``'s type, bounded like it (Discord's picker enforces it too)."""
    spec = c.SETTING_KEYS[key]
    return app_commands.Range[spec.type, spec.type(spec.minimum), spec.type(spec.maximum)]


async def _run(interaction: discord.Interaction[Any], build: Callable[[], c.Command]) -> None:
    runner = cast(CommandRunner, interaction.client)
    try:
        command = build()
    except c.ParseError as error:
        await runner.reject(interaction, str(error))
        return
    await runner.run_command(interaction, command)


def _start(
    title: str | None, genre: str | None, mode: str | None, rating: str | None, opening: str | None, thread: bool
) -> c.Start:
    return c.Start(
        title=(title or "").strip() or None,
        genre=(genre or "").strip() or None,
        mode=c.Mode.parse(mode) if mode else None,
        opening=(opening or "").strip() or None,
        thread=thread,
        rating=c.parse_rating(rating) if rating else None,
    )


def _lore_add(keys: str, text: str) -> c.LoreAdd:
    names = tuple(dict.fromkeys(key.strip() for key in keys.split(",") if key.strip()))
    if not names or not text.strip():
        raise c.ParseError(f"Give the lore entry's keys and its text. Usage: {c.usage('lore')}")
    return c.LoreAdd(names, text.strip())


def _memo(kind: type[c.Memory] | type[c.Note] | type[c.Recap], text: str | None) -> c.Memory | c.Note | c.Recap:
    """The text option as its description reads: left empty shows, ``clear`` clears, else sets."""
    text = (text or "").strip()
    if not text:
        return kind(None)
    return kind("" if text.lower() == "clear" else text)


def _settings(values: dict[str, object]) -> c.Settings:
    changes = tuple(
        (key, c.SETTING_KEYS[key].convert(str(value))) for key, value in values.items() if value is not None
    )
    return c.Settings(changes)


class StoryCommands(app_commands.Group):
    """``/story ...``: write a story together with the bot."""

    def __init__(self) -> None:
        super().__init__(
            name="story",
            description="Write a story together with the bot (moderators' tools: /story mod; stories: /story archive)",
        )

    @app_commands.command(name="start", description="Start a new story in this channel")
    @app_commands.describe(
        title="The story's title",
        genre="A genre, e.g. mystery or fantasy",
        mode="Turn order: alternate (default), round-robin or free",
        rating="Who the story is for (default general); mature only in an age-restricted channel",
        opening="The first passage, written by you",
        thread="Run the story in a new thread",
    )
    @app_commands.choices(mode=_MODES, rating=_RATINGS)
    async def start(
        self,
        interaction: discord.Interaction,
        title: app_commands.Range[str, 1, 100] | None = None,
        genre: app_commands.Range[str, 1, c.MAX_GENRE_LENGTH] | None = None,
        mode: str | None = None,
        rating: str | None = None,
        opening: str | None = None,
        thread: bool = False,
    ) -> None:
        await _run(interaction, lambda: _start(title, genre, mode, rating, opening, thread))

    @app_commands.command(name="add", description="Write the next passage yourself")
    @app_commands.describe(text="Your passage")
    async def add(self, interaction: discord.Interaction, text: str) -> None:
        await _run(interaction, lambda: c.parse(f"add {text}"))

    @app_commands.command(name="continue", description="Ask the bot to write next")
    @app_commands.describe(direction="Where the story should go next (optional)")
    async def continue_(self, interaction: discord.Interaction, direction: str | None = None) -> None:
        await _run(interaction, lambda: c.Continue((direction or "").strip() or None))

    @app_commands.command(name="retry", description="Replace the bot's last passage with a new one")
    async def retry(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Retry)

    @app_commands.command(name="pick", description="Choose among the bot's alternatives for its latest passage")
    @app_commands.describe(number="The alternative's number, oldest first (its message shows them, e.g. 2 / 3)")
    async def pick(self, interaction: discord.Interaction, number: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.Pick(number))

    @app_commands.command(name="vote", description="Vote for one of the bot's candidates for its next passage")
    @app_commands.describe(number="The candidate's number, as the bot's candidates show it")
    async def vote(self, interaction: discord.Interaction, number: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.VoteFor(number))

    @app_commands.command(name="branch", description="A new story, in a new thread, sharing this one up to a passage")
    @app_commands.describe(passage="The last passage to share, from /story status (default: the latest)")
    async def branch(self, interaction: discord.Interaction, passage: app_commands.Range[int, 1] | None = None) -> None:
        await _run(interaction, lambda: c.Branch(passage))

    @app_commands.command(name="undo", description="Withdraw the last passage (its author or a moderator)")
    async def undo(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Undo)

    @app_commands.command(name="rate", description="👍 or 👎 on the bot's last passage, or on the one with that number")
    @app_commands.describe(
        vote="Up or down", passage="The passage's number, from /story status (default: the bot's last)"
    )
    @app_commands.choices(vote=_VOTES)
    async def rate(
        self, interaction: discord.Interaction, vote: str, passage: app_commands.Range[int, 1] | None = None
    ) -> None:
        await _run(interaction, lambda: c.Rate(c.Vote.parse(vote), passage))

    @app_commands.command(name="report", description="Flag a passage to the story's moderators")
    @app_commands.describe(passage="The passage's number, from /story status", reason="What is wrong with it")
    async def report(
        self,
        interaction: discord.Interaction,
        passage: app_commands.Range[int, 1],
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS] | None = None,
    ) -> None:
        await _run(interaction, lambda: c.Report(passage, (reason or "").strip()))

    mod = app_commands.Group(
        name=MOD_GROUP, description="Moderators' tools: hide or unhide a passage, this channel's word list"
    )

    @mod.command(
        name="hide", description="Take a passage out of the story, its exports and what the bot reads (moderators)"
    )
    @app_commands.describe(passage="The passage's number, from /story status")
    async def hide(self, interaction: discord.Interaction, passage: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.Hide(passage))

    @mod.command(name="unhide", description="Put a hidden passage back (moderators)")
    @app_commands.describe(passage="The passage's number, from /story status")
    async def unhide(self, interaction: discord.Interaction, passage: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.Unhide(passage))

    @mod.command(
        name="words", description="This channel's own word list: show it, or ban, allow or clear a word (moderators)"
    )
    @app_commands.describe(action="What to do with the entry; leave empty to see the list", entry="A word or phrase")
    @app_commands.choices(action=_WORD_ACTIONS)
    async def words(
        self, interaction: discord.Interaction, action: str | None = None, entry: str | None = None
    ) -> None:
        await _run(interaction, lambda: c.parse(f"words {action or ''} {entry or ''}"))

    @app_commands.command(name="join", description="Take part in round-robin turns")
    async def join(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Join)

    @app_commands.command(name="leave", description="Stop taking round-robin turns")
    async def leave(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Leave)

    @app_commands.command(name="turn", description="Whose round-robin turn it is, and how long they have")
    async def turn(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Turn)

    @app_commands.command(name="memory", description="Show, set or clear the facts the bot always keeps in mind")
    @app_commands.describe(text="The facts; 'clear' clears them; leave empty to see them")
    async def memory(self, interaction: discord.Interaction, text: str | None = None) -> None:
        await _run(interaction, lambda: _memo(c.Memory, text))

    @app_commands.command(name="note", description="Show, set or clear the author's note (style, tone)")
    @app_commands.describe(text="The note; 'clear' clears it; leave empty to see it")
    async def note(self, interaction: discord.Interaction, text: str | None = None) -> None:
        await _run(interaction, lambda: _memo(c.Note, text))

    @app_commands.command(name="recap", description="The story so far and where it stands; replace or clear it")
    @app_commands.describe(text="The new recap; 'clear' clears it; leave empty to see it (only you see it)")
    async def recap(self, interaction: discord.Interaction, text: str | None = None) -> None:
        await _run(interaction, lambda: _memo(c.Recap, text))

    lore = app_commands.Group(name="lore", description="World facts the bot recalls when a key comes up")

    @lore.command(name="add", description="Add a lore entry")
    @app_commands.describe(keys="Words that bring it up, comma-separated", text="What the bot should know")
    async def lore_add(self, interaction: discord.Interaction, keys: str, text: str) -> None:
        await _run(interaction, lambda: _lore_add(keys, text))

    @lore.command(name="list", description="List the lore entries")
    async def lore_list(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.LoreList)

    @lore.command(name="remove", description="Remove a lore entry")
    @app_commands.describe(number="The entry's number, from /story lore list")
    async def lore_remove(self, interaction: discord.Interaction, number: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.LoreRemove(number))

    @app_commands.command(name="settings", description="Show or change how the bot writes")
    @app_commands.describe(**{key: spec.description for key, spec in c.SETTING_KEYS.items()})
    @app_commands.choices(mode=_MODES, rating=_RATINGS)
    async def settings(
        self,
        interaction: discord.Interaction,
        temperature: _range("temperature") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        length: _range("length") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        top_p: _range("top_p") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        top_k: _range("top_k") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        repetition_penalty: _range("repetition_penalty") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        candidates: _range("candidates") | None = None,  # type: ignore[valid-type]  # a Range made at run time: a type to discord.py, not to mypy
        mode: str | None = None,
        rating: str | None = None,
        model: str | None = None,
    ) -> None:
        values = {
            "temperature": temperature,
            "length": length,
            "top_p": top_p,
            "top_k": top_k,
            "repetition_penalty": repetition_penalty,
            "candidates": candidates,
            "mode": mode,
            "rating": rating,
            "model": model,
        }
        await _run(interaction, lambda: _settings(values))

    @app_commands.command(name="status", description="Recent passages, whose turn it is, word count")
    async def status(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Status)

    @app_commands.command(name="context", description="What the bot would read next: each part, with token counts")
    async def context(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.Context)

    @app_commands.command(name="end", description="Finish the story (its starter or a moderator)")
    async def end(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.End)

    @app_commands.command(name="export", description="Download this story, or a finished one by its id")
    @app_commands.describe(
        format="File format (default md)",
        story_id="A finished story's id, from /story archive list",
        authors="Name each passage's author (default on)",
        body="HTML to paste into AO3's work body",
    )
    @app_commands.choices(format=_FORMATS)
    async def export(
        self,
        interaction: discord.Interaction,
        format: str | None = None,
        story_id: app_commands.Range[int, 1] | None = None,
        authors: bool | None = None,
        body: bool | None = None,
    ) -> None:
        words = [format or "", str(story_id or "")]
        words += [
            f"{key}:{'on' if value else 'off'}"
            for key, value in (("authors", authors), ("body", body))
            if value is not None
        ]
        await _run(interaction, lambda: c.parse("export " + " ".join(words)))

    archive = app_commands.Group(
        name=ARCHIVE_GROUP, description="Finished stories of this channel, and the web archive where people read them"
    )

    @archive.command(name="list", description="Finished stories of this channel")
    async def list_(self, interaction: discord.Interaction) -> None:
        await _run(interaction, c.ListStories)

    @archive.command(name="show", description="A finished story's summary and opening")
    @app_commands.describe(story_id="The story's id, from /story archive list")
    async def show(self, interaction: discord.Interaction, story_id: app_commands.Range[int, 1]) -> None:
        await _run(interaction, lambda: c.Show(story_id))

    @archive.command(
        name="publish", description="List a story in the web archive for anyone to read (its starter or a moderator)"
    )
    @app_commands.describe(
        story_id=_STORY_ID,
        authors="Show who wrote each passage (default on)",
    )
    async def publish(
        self,
        interaction: discord.Interaction,
        story_id: app_commands.Range[int, 1] | None = None,
        authors: bool = True,
    ) -> None:
        await _run(interaction, lambda: c.Publish(story_id, authors=authors))

    @archive.command(name="unpublish", description="Take a story out of the web archive (its starter or a moderator)")
    @app_commands.describe(story_id=_STORY_ID)
    async def unpublish(
        self, interaction: discord.Interaction, story_id: app_commands.Range[int, 1] | None = None
    ) -> None:
        await _run(interaction, lambda: c.Unpublish(story_id))

    @archive.command(name="share", description="A link that opens one story to whoever has it, published or not")
    @app_commands.describe(
        story_id=_STORY_ID,
        revoke="Stop every link made so far (its starter or a moderator)",
    )
    async def share(
        self,
        interaction: discord.Interaction,
        story_id: app_commands.Range[int, 1] | None = None,
        revoke: bool = False,
    ) -> None:
        await _run(interaction, lambda: c.Share(story_id, revoke=revoke))

    @app_commands.command(name="help", description="The commands, or how to use one")
    @app_commands.describe(command="The command to explain")
    async def help(self, interaction: discord.Interaction, command: str | None = None) -> None:
        await _run(interaction, lambda: c.Help(command))

    @help.autocomplete("command")
    async def _help_topics(self, interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        return help_topics(typed)
