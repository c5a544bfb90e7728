"""How story text looks in Slack: escaping, Block Kit layout, limits, and where long text splits.

Pure functions, no Web API calls. Two rules hold for everything the bot sends:

- Text from people and from the model is escaped with Slack's three entities (``&``, ``<``,
  ``>``), so it can never form ``<!channel>``, ``<!here>``, ``<!everyone>``, ``<@U…>`` or a link.
  Sections are ``verbatim`` and messages go out with ``link_names`` off, so a plain ``@here`` stays
  plain text too.
- Every section holds at most :data:`SECTION_LIMIT` characters *after* escaping, cut at the last
  sentence end that fits (``adapters.common.split``), and a message carries at most
  :data:`BLOCKS_PER_MESSAGE` blocks.

Text arriving from Slack (a slash command's text, a message in a story thread) is in Slack's
markup; :func:`plain_text` turns it back into what the person typed.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.common import split
from adapters.common.wording import ballot_heading, candidate_label
from bot.commands import Vote
from bot.results import Ballot, PassageView

Block = dict[str, Any]

SECTION_LIMIT = 3000  # characters in a section block's text
BLOCKS_PER_MESSAGE = 50
FALLBACK_LIMIT = 3000  # the notification text beside the blocks; Slack cuts it at 40 000
ACTION_PREFIX = "story_"
BUTTONS: dict[str, tuple[str, str | None]] = {  # action -> label, style
    "continue": ("Continue", "primary"),
    "retry": ("Retry", None),
    "undo": ("Undo", None),
    "end": ("End", "danger"),
}
# ◀ ▶ under the bot's latest passage when it has alternatives: the alternative before or after it.
PICK_BUTTONS = {"older": "◀", "newer": "▶"}
BALLOT_ACTION = "ballot"  # a vote for one of the bot's candidates (``ballot_value``)
ACTIONS_PER_BLOCK = 25  # elements in one actions block: the eight buttons under a passage fit

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Slack markup in incoming text: <@U1|name>, <#C1|general>, <!here>, <https://x|label>.
_REFERENCE = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def escape(text: str) -> str:
    """``text`` as Slack shows it literally: ``&``, ``<`` and ``>`` become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_text(markup: str) -> str:
    """Incoming Slack markup as the person typed it: references by their label, entities decoded."""

    def label(match: re.Match[str]) -> str:
        target, text = match[1], match[2]
        if text:
            prefix = {"@": "@", "#": "#"}.get(target[:1], "")
            return prefix + text if prefix and not text.startswith(prefix) else text
        if target.startswith("!"):
            return "@" + target[1:].split("^")[0]
        return target

    text = _REFERENCE.sub(label, markup)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _fitting_length(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` once escaped."""
    used = 0
    for index, char in enumerate(text):
        used += len(_ENTITIES.get(char, char))
        if used > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """``text`` as consecutive pieces whose escaped form is at most ``limit`` characters (at least one)."""
    return split.split_text(text, limit, _fitting_length)


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn, "verbatim": True}}


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn, "verbatim": True}]}


def text_blocks(text: str, *, byline: str = "") -> list[Block]:
    """Sections showing ``text`` (escaped), the first one led by ``byline`` in bold."""
    lead = f"*{escape(byline)}:* " if byline else ""
    pieces = split_text(text or " ", SECTION_LIMIT - len(lead))
    return [_section((lead if index == 0 else "") + escape(piece)) for index, piece in enumerate(pieces)]


def _button(action: str, label: str, value: str, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": ACTION_PREFIX + action,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def rating_value(passage: PassageView) -> str:
    """What a 👍 / 👎 button carries: ``<story id>:<passage id>``, the passage named exactly."""
    return f"{passage.story_id}:{passage.id}"


def pick_value(passage: PassageView, number: int) -> str:
    """What ◀ / ▶ carry: ``<story id>:<passage id>:<number>``, the passage the message shows (a
    click changes nothing once it is no longer the story's) and the alternative to pick."""
    return f"{passage.story_id}:{passage.id}:{number}"


def _pick_buttons(passage: PassageView) -> list[Block]:
    """◀ / ▶ while the passage is the latest of several alternatives; Slack greys no button out,
    so the one with nowhere to go is left out."""
    alternatives = passage.alternatives
    if alternatives is None or not alternatives.browsable:
        return []
    targets = {"older": alternatives.older, "newer": alternatives.newer}
    return [
        _button(action, label, pick_value(passage, number))
        for action, label in PICK_BUTTONS.items()
        if (number := targets[action]) is not None
    ]


def buttons(passage: PassageView) -> Block:
    """Continue / Retry / Undo / End for the passage's story (the value: the story id), ◀ / ▶ when
    it has alternatives (``pick_value``), then 👍 / 👎 for the passage itself (``rating_value``)."""
    elements = [_button(action, label, str(passage.story_id), style) for action, (label, style) in BUTTONS.items()]
    elements += _pick_buttons(passage)
    elements += [_button(vote.value, vote.emoji, rating_value(passage)) for vote in Vote]
    return {"type": "actions", "block_id": f"story-{passage.story_id}", "elements": elements}


def passage_blocks(passage: PassageView, footer: str, *, with_buttons: bool) -> list[Block]:
    """A stored passage: attributed text, a small footer, and the buttons under a bot passage."""
    blocks = text_blocks(passage.text, byline=passage.author_name)
    if footer:
        blocks.append(_context(escape(footer)))
    if with_buttons:
        blocks.append(buttons(passage))
    return blocks


def ballot_value(ballot: Ballot, number: int) -> str:
    """What a candidate's vote button carries: ``<story id>:<job id>:<number>``, the turn named
    exactly (a click changes nothing once its vote closed) and the candidate."""
    return f"{ballot.story_id}:{ballot.job_id}:{number}"


def ballot_blocks(ballot: Ballot) -> list[Block]:
    """The bot's candidates for a vote: the heading (the deadline in each reader's own clock), each
    candidate led by its number, and a vote button per candidate."""
    deadline = f"by <!date^{int(ballot.closes_at.timestamp())}^{{time}}|{ballot.closes_at:%H:%M} UTC>"
    blocks = [_section(escape(ballot_heading(ballot, "\0")).replace("\0", deadline))]
    for candidate in ballot.candidates:
        blocks += text_blocks(candidate.text, byline=candidate_label(candidate.number))
    elements = [
        _button(BALLOT_ACTION, candidate_label(c.number), ballot_value(ballot, c.number), "primary")
        for c in ballot.candidates
    ]
    blocks.append({"type": "actions", "block_id": f"ballot-{ballot.job_id}", "elements": elements})
    return blocks


def note_blocks(text: str) -> list[Block]:
    """A small grey line (the bot is writing, a turn was withdrawn)."""
    return [_context(escape(text))]


def fallback(text: str) -> str:
    """The plain notification text sent beside blocks: escaped, and short."""
    one_line = " ".join(text.split())
    if len(one_line) > FALLBACK_LIMIT // 5:  # room for every character to become an entity
        one_line = one_line[: FALLBACK_LIMIT // 5 - 1] + "…"
    return escape(one_line)


def batches(blocks: list[Block]) -> list[list[Block]]:
    """``blocks`` in messages of at most :data:`BLOCKS_PER_MESSAGE` blocks each."""
    return [blocks[i : i + BLOCKS_PER_MESSAGE] for i in range(0, len(blocks), BLOCKS_PER_MESSAGE)] or [[]]
