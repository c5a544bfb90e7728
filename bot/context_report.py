"""``/story context``: the prompt the bot would use next, part by part, with token counts.

The rule reads the story's next turn exactly as the queue would claim it (``JobBook._turn_spec``:
the open turn's, or a plain ``/story continue``'s) and asks the queue to build and measure its
prompt (``GenerationQueue.preview``, registered by ``bot.app``): the queue owns the model's
tokenizer, context length and frame, and builds the report with the same ``compose_prompt`` it
sends, so the answer cannot drift from what the model reads. Counting runs in a thread; the
answer is plain text kept under Discord's 2000 characters (the lore list is cut first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.context import ContextReport, LoreMatch, StorySnapshot
from bot.handlers import Handlers
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import Result, UserError
from bot.rule_base import StoryRules
from storage import queries as q
from storage.models import GenerationJob, JobKind, JobStatus

CONTEXT: Handlers[ContextRules] = Handlers()

MODEL_LOADING = "The model is still loading; try again in a moment."
MAX_CHARS = 1900  # Discord's limit is 2000; the rest is room for the platform's own wrapping
QUOTED_CHARS = 60  # a key or a direction is quoted up to this many characters
MORE_LINE_CHARS = 50  # room kept for the line that counts the lore entries left unlisted

Preview = Callable[[JobSpec], Awaitable[ContextReport | None]]


class ContextRules(StoryRules):
    """The rule that shows what the model sees."""

    _preview: Preview | None = None  # the queue's, registered by bot.app; without one, as if not loaded

    def preview_prompts_with(self, preview: Preview) -> None:
        """Register what builds and measures a turn's prompt (None while its model is not loaded)."""
        self._preview = preview

    @CONTEXT.handles(c.Context)
    async def _context(self, tx: AsyncSession, channel: ChannelRef, actor: Actor, cmd: c.Context) -> Result:
        story = await self._story(tx, channel, lock=False)
        job = await q.open_job(tx, story.id)
        report = await self._preview(await self._turn_spec(tx, story, job)) if self._preview is not None else None
        if report is None:
            raise UserError(MODEL_LOADING)
        return Result(_describe(report, _which_turn(job)), private=True, story_id=story.id)


def _which_turn(job: GenerationJob | None) -> str:
    if job is None:
        return "the next /story continue (without a direction)"
    turn = "rewrite" if job.kind == JobKind.RETRY else "turn"
    if job.status == JobStatus.VOTING:
        return f"the bot's {turn} whose candidates the channel is voting on"
    return f"the bot's {turn} being written now" if job.status == JobStatus.RUNNING else f"the bot's queued {turn}"


def _describe(report: ContextReport, turn: str) -> str:
    """The report as people read it: one line per part of the prompt, in the prompt's order."""
    prompt, story, budget = report.prompt, report.prompt.story, report.budget
    matches = list(zip(prompt.lore, report.lore, strict=True))
    head = [
        f"What the model would read for {turn}:",
        f"Budget: {budget.tokens:,} tokens (context {budget.context_length:,} − passage {budget.passage:,}"
        f" − frame {budget.frame:,}).",
        f"Preamble: {_tokens(report.preamble)}.",
        _optional("Memory", story.memory, prompt.memory, report.memory),
        _optional("Recap (the story so far)", story.recap, prompt.recap, report.recap, _covers(story)),
        _lore_heading(matches, len(story.lore)),
    ]
    tail = [
        _optional("Author's note", story.note, prompt.note, report.note, f" ({_place(prompt.note_depth)})"),
        _passages(report),
        _optional(
            "Direction", story.direction or "", prompt.direction, report.direction, f" {_quoted(story.direction)}"
        ),
        f"Total: {report.total:,} of {budget.tokens:,} tokens.",
    ]
    lore = [_lore_line(match, tokens, report) for match, tokens in matches]
    room = MAX_CHARS - len("\n".join(head + tail)) - 1
    return "\n".join(head + _fitting(lore, room, matches) + tail)


def _tokens(count: int) -> str:
    return f"{count:,} token" + ("" if count == 1 else "s")


def _optional(label: str, stored: str, shown: str, tokens: int, place: str = "") -> str:
    """A part the story may leave empty, and the budget may push out."""
    if not stored.strip():
        return f"{label}: none."
    return f"{label}{place}: {_tokens(tokens)}." if shown else f"{label}: left out (no room)."


def _covers(story: StorySnapshot) -> str:
    """Which passages the recap summarises, as people number them."""
    if not story.recap_covers:
        return ""
    return f" (passages up to {story.number(story.recap_covers - 1):,})"


def _place(depth: int) -> str:
    if depth == 0:
        return "at the end"
    return "1 passage from the end" if depth == 1 else f"{depth} passages from the end"


def _lore_heading(matches: Sequence[tuple[LoreMatch, int]], entries: int) -> str:
    if not entries:
        return "Lore: none."
    if not matches:
        return f"Lore: none of the {entries} entries triggered (no key in the recent passages or the direction)."
    fitted = [tokens for match, tokens in matches if match.included]
    fit = "fits" if len(fitted) == 1 else "fit"
    return f"Lore: {len(matches)} of {entries} entries triggered; {len(fitted)} {fit}, {_tokens(sum(fitted))}:"


def _lore_line(match: LoreMatch, tokens: int, report: ContextReport) -> str:
    number = f"#{match.item.number}" if match.item.number is not None else "an entry"
    where = "the direction" if match.passage is None else f"passage {report.prompt.story.number(match.passage)}"
    cost = _tokens(tokens) if match.included else f"no room ({_tokens(tokens)})"
    return f"• {number} (key {_quoted(match.key)} in {where}): {cost}"


def _fitting(lines: list[str], room: int, matches: Sequence[tuple[LoreMatch, int]]) -> list[str]:
    """The lore lines that fit ``room`` characters; past that, one line counts the rest."""
    if len("\n".join(lines)) <= room:
        return lines
    kept: list[str] = []
    for line in lines:
        if len("\n".join([*kept, line])) + MORE_LINE_CHARS > room:
            break
        kept.append(line)
    rest = matches[len(kept) :]
    return [*kept, f"• … and {len(rest)} more ({sum(match.included for match, _ in rest)} of them fit)"]


def _passages(report: ContextReport) -> str:
    prompt = report.prompt
    total, kept = len(prompt.story.passages), len(prompt.passages)
    if not total:
        return "Passages: none yet."
    if kept == total:
        fit = "the one passage fits" if total == 1 else f"all {total:,} fit"
        return f"Passages: {fit}, {_tokens(report.passages)}."
    if not kept:
        return f"Passages: none of {total:,} fit (no room)."
    first = prompt.story.number(prompt.first_passage)
    # The window's start moves in steps (bot.context), so a prompt may have room to spare.
    steps = f"; the cut moves {prompt.window_step} passages at a time" if prompt.window_step > 1 else ""
    return (
        f"Passages: {kept:,} of {total:,} fit, from passage {first:,} on ({total - kept:,} left out, the oldest"
        f"{steps}): {_tokens(report.passages)}."
    )


def _quoted(text: str | None) -> str:
    words = " ".join((text or "").split())
    return "“" + (words if len(words) <= QUOTED_CHARS else words[: QUOTED_CHARS - 1].rstrip() + "…") + "”"
