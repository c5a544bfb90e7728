"""``storybot stats``: how people judged the bot's passages, per model, adapter and sampling setting.

The figures a community tunes by: which model (or adapter) and which settings write passages
people approve of, keep, and do not retry or undo. Approval is 👍 votes over all votes cast;
retry and undo rates are shares of all the bot's passages in the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any

from bot.feedback.judged import JudgedPassage
from bot.feedback.signals import Fate
from bot.story_settings import STORY_SETTINGS

SAMPLING_KEYS = tuple(key for key in STORY_SETTINGS if key != "model")


@dataclass(frozen=True, slots=True)
class Group:
    """One line of the stats: the bot's passages written by one model and adapter with one setting."""

    model: str
    adapter: str | None
    settings: str  # the sampling settings as /story settings shows them, e.g. "temperature:0.8 length:120 …"
    passages: int
    rated: int  # passages with at least one vote
    up: int
    down: int
    approval: float | None  # 👍 / votes; None when nobody voted
    retry_rate: float
    undo_rate: float
    mean_words: float
    mean_seconds: float | None  # None when no passage recorded its time (written before it was)


def group_key(passage: JudgedPassage) -> tuple[str, str | None, str]:
    """(model, adapter, sampling settings) of a passage, from what was stored when it was written."""
    generation = passage.generation
    settings = " ".join(f"{key}:{generation[key]}" for key in SAMPLING_KEYS if key in generation)
    adapter = generation.get("adapter")
    return str(generation.get("model", "unknown")), str(adapter) if adapter else None, settings or "unknown"


def groups(passages: Iterable[JudgedPassage]) -> list[Group]:
    """The passages counted per (model, adapter, settings), most passages first."""
    grouped: dict[tuple[str, str | None, str], list[JudgedPassage]] = {}
    for passage in passages:
        grouped.setdefault(group_key(passage), []).append(passage)
    return sorted((_group(key, members) for key, members in grouped.items()), key=lambda g: (-g.passages, g.model))


def _group(key: tuple[str, str | None, str], members: Sequence[JudgedPassage]) -> Group:
    up = sum(p.up for p in members)
    down = sum(p.down for p in members)
    seconds = [float(s) for p in members if isinstance(s := p.generation.get("seconds"), int | float)]
    return Group(
        model=key[0],
        adapter=key[1],
        settings=key[2],
        passages=len(members),
        rated=sum(bool(p.ballots) for p in members),
        up=up,
        down=down,
        approval=up / (up + down) if up + down else None,
        retry_rate=sum(p.fate is Fate.RETRIED for p in members) / len(members),
        undo_rate=sum(p.fate is Fate.UNDONE for p in members) / len(members),
        mean_words=fmean(p.words for p in members),
        mean_seconds=fmean(seconds) if seconds else None,
    )


def table(rows: Sequence[Group]) -> str:
    """The groups as an aligned text table, for a terminal."""
    header = (
        "model",
        "adapter",
        "settings",
        "passages",
        "rated",
        "approval",
        "retried",
        "undone",
        "words",
        "s/passage",
    )
    lines = [header]
    for g in rows:
        lines.append(
            (
                g.model,
                g.adapter or "-",
                g.settings,
                str(g.passages),
                str(g.rated),
                _percent(g.approval),
                _percent(g.retry_rate),
                _percent(g.undo_rate),
                f"{g.mean_words:.0f}",
                "-" if g.mean_seconds is None else f"{g.mean_seconds:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def as_json(rows: Sequence[Group], passages: Sequence[JudgedPassage]) -> dict[str, Any]:
    """The groups and every passage with its votes and fate: what ``storybot stats --json`` prints."""
    return {"groups": [asdict(g) for g in rows], "passages": [_passage_json(p) for p in passages]}


def _passage_json(p: JudgedPassage) -> dict[str, Any]:
    """One passage with its votes and fate, as ``storybot stats --json`` gives it."""
    model, adapter, _ = group_key(p)
    return {
        "id": p.id,
        "story_id": p.story_id,
        "story_title": p.story_title,
        "channel": p.channel_key,
        "seq": p.seq,
        "created_at": p.created_at.isoformat(),
        "model": model,
        "adapter": adapter,
        "settings": {key: p.generation[key] for key in SAMPLING_KEYS if key in p.generation},
        "seconds": p.generation.get("seconds"),
        "words": p.words,
        "fate": p.fate.value,
        "up": p.up,
        "down": p.down,
        "votes": [
            {"voter_id": b.voter_id, "voter": b.voter_name, "value": b.value, "at": b.at.isoformat()} for b in p.ballots
        ],
    }
