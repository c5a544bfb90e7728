"""The prompt the model sees: what is in it, in what order, and that it always fits the budget.

Most tests count tokens as whitespace-separated words, which makes budgets easy to reason
about; a few use the tiny model's real tokenizer, whose counts do not add up piece by piece.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.context import COMPLETION, LoreItem, PromptLimits, StorySnapshot, build_prompt, chat_frame
from bot.generation.local import LocalBackend
from tests.conftest import make_config


def words(text: str) -> int:
    return len(text.split())


def story(passages: list[str] | tuple[str, ...] = (), **fields: Any) -> StorySnapshot:
    base: dict[str, Any] = {"title": "The Lighthouse", "genre": None, "memory": "", "note": ""}
    base.update(fields)
    return StorySnapshot(passages=tuple(passages), **base)


def numbered(count: int, length: int = 5) -> list[str]:
    """Passages that are easy to find in a prompt: "<p0> w w w w", "<p1> w w w w", ..."""
    return [" ".join([f"<p{i}>"] + ["wave"] * (length - 1)) for i in range(count)]


def shown(prompt: str, passages: list[str]) -> list[int]:
    return [i for i, passage in enumerate(passages) if f"<p{i}>" in prompt]


ROOMY = PromptLimits(budget_tokens=10_000)


# --- the budget ----------------------------------------------------------------------------

VOCABULARY = ["the", "sea", "was", "loud", "Lamp", "keeper", "dragon", "\n", "cat", "ship", "storm", "!", "."]


def _text(spec: tuple[int, int]) -> str:
    """A few words of the vocabulary; cheap to draw, so the property test stays fast."""
    length, start = spec
    return " ".join(VOCABULARY[(start + 5 * k) % len(VOCABULARY)] for k in range(length))


text = st.tuples(st.integers(0, 8), st.integers(0, 50)).map(_text)
nonblank = st.tuples(st.integers(1, 8), st.integers(0, 50)).map(_text).filter(str.strip)


@st.composite
def stories(draw: st.DrawFn) -> tuple[StorySnapshot, list[str]]:
    bodies = draw(st.lists(text, max_size=10))
    passages = [f"<p{i}> {body}" for i, body in enumerate(bodies)]
    lore = draw(st.lists(st.tuples(st.sampled_from(["cat", "dragon", "ship", "Lamp"]), nonblank), max_size=3))
    snapshot = StorySnapshot(
        title=draw(nonblank),
        genre=draw(st.none() | nonblank),
        memory=draw(text),
        note=draw(text),
        passages=tuple(passages),
        lore=tuple(LoreItem((key,), body) for key, body in lore),
        direction=draw(st.none() | text),
    )
    return snapshot, passages


def _minimal_prompt(snapshot: StorySnapshot) -> str:
    """The parts no prompt can do without: the title and the direction."""
    direction = snapshot.direction.strip() if snapshot.direction else ""
    return f"Title: {snapshot.title}\n\n" + (f"[Next: {direction}]\n\n" if direction else "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=stories(),
    budget=st.integers(0, 120),
    lore_max=st.integers(0, 40),
    depth=st.integers(0, 5),
    scan=st.integers(1, 10),
)
def test_any_story_fits_any_budget_that_can_hold_the_title_and_direction(
    drawn: tuple[StorySnapshot, list[str]], budget: int, lore_max: int, depth: int, scan: int
) -> None:
    snapshot, passages = drawn
    # window_step=1: the window may start at any passage (its steps have their own test).
    limits = PromptLimits(
        budget_tokens=budget, lore_max_tokens=lore_max, note_depth=depth, lore_scan_passages=scan, window_step=1
    )
    prompt = build_prompt(snapshot, limits, words)

    assert build_prompt(snapshot, limits, words) == prompt, "same story and budget, different prompt"
    if words(_minimal_prompt(snapshot)) > budget:
        return
    assert words(prompt) <= budget

    kept = shown(prompt, passages)
    # Newest passages only, with no gap, each one whole.
    assert kept == list(range(len(passages) - len(kept), len(passages)))
    for i in kept:
        assert passages[i].strip() in prompt
    # And no room wasted: the next older passage would not have fitted.
    if len(kept) < len(passages):
        older = passages[len(passages) - len(kept) - 1]
        assert words(prompt) + words(older) > budget


def test_newest_passages_are_kept_and_oldest_dropped() -> None:
    passages = numbered(10)
    title_words = words("Title: The Lighthouse")
    prompt = build_prompt(story(passages), PromptLimits(budget_tokens=title_words + 3 * 5, window_step=1), words)
    assert shown(prompt, passages) == [7, 8, 9]
    assert words(prompt) == title_words + 15


@pytest.mark.parametrize("spare", [0, 1, 4])
def test_a_passage_that_does_not_fit_is_left_out_whole(spare: int) -> None:
    old = "The lighthouse keeper climbed the stairs at dusk and lit the lamp."
    new = "A ship answered with a horn."
    budget = words("Title: The Lighthouse") + words(new) + spare  # room for part of `old`, never all
    prompt = build_prompt(story([old, new]), PromptLimits(budget_tokens=budget), words)
    assert new in prompt
    for word in ("keeper", "stairs", "dusk", "lamp"):
        assert word not in prompt


def test_the_whole_story_is_sent_when_it_fits() -> None:
    passages = numbered(6)
    prompt = build_prompt(story(passages), ROOMY, words)
    assert shown(prompt, passages) == list(range(6))
    for passage in passages:
        assert passage in prompt


def test_a_tiny_budget_drops_memory_and_note_but_keeps_title_direction_and_budget() -> None:
    snapshot = story(
        numbered(3),
        genre="mystery",
        memory="The keeper is a retired sailor who fears the dark.",
        note="Write in short, grim sentences.",
        direction="the ship arrives",
    )
    budget = words(_minimal_prompt(snapshot)) + 5  # one passage, but not the memory or the note
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=budget), words)
    assert words(prompt) <= budget
    assert prompt.startswith("Title: The Lighthouse")
    assert "the ship arrives" in prompt
    assert "retired sailor" not in prompt
    assert "grim sentences" not in prompt


def test_deterministic_output() -> None:
    snapshot = story(
        numbered(8),
        memory="The keeper is old.",
        note="Keep it grim.",
        lore=(LoreItem(("wave",), "Waves here are tall."),),
        direction="night falls",
    )
    limits = PromptLimits(budget_tokens=40, note_depth=2)
    prompts = {build_prompt(snapshot, limits, words) for _ in range(5)}
    assert len(prompts) == 1


# --- the head of the prompt ----------------------------------------------------------------


def test_title_genre_and_memory_come_first_in_that_order() -> None:
    snapshot = story(
        ["The dragon slept beneath the mountain."],
        genre="fantasy",
        memory="The dragon is called Ember.",
        lore=(LoreItem(("dragon",), "Dragons breathe smoke, not fire."),),
        note="Keep it gentle.",
        direction="the dragon wakes",
    )
    prompt = build_prompt(snapshot, ROOMY, words)
    assert prompt.startswith("Title: The Lighthouse")
    order = [
        prompt.index(part)
        for part in (
            "fantasy",
            "The dragon is called Ember.",
            "Dragons breathe smoke",
            "The dragon slept",
            "the dragon wakes",
        )
    ]
    assert order == sorted(order)


def test_a_story_without_genre_or_memory_has_no_empty_lines_for_them() -> None:
    prompt = build_prompt(story(["The sea was loud."], memory="   "), ROOMY, words)
    assert "Genre" not in prompt
    assert "Memory" not in prompt
    assert prompt.startswith("Title: The Lighthouse")


def _reused(limits: PromptLimits, turns: range) -> int:
    """In how many turns the previous prompt, up to its lore and note, starts the next prompt."""
    lore = (LoreItem(("wave",), "Waves here are tall."),)
    passages = [f"<p{i}> The wave {i} broke on the rocks." for i in range(max(turns) + 1)]
    fields = {"genre": "mystery", "memory": "The keeper is old.", "note": "Keep it grim.", "lore": lore}
    prompts = [build_prompt(story(passages[:n], direction="night falls", **fields), limits, words) for n in turns]
    heads = [prompt[: prompt.index("[Waves")] for prompt in prompts]
    # Each head against the next turn's prompt: the last turn has no next one.
    return sum(after.startswith(head) for head, after in zip(heads, prompts[1:], strict=False))


def test_consecutive_turns_share_their_head_so_a_prefix_cache_is_reused() -> None:
    """Once a story outgrows the budget, the window moves in steps: most turns reuse the head."""
    turns = range(12, 36)
    assert _reused(PromptLimits(budget_tokens=90, note_depth=2, window_step=8), turns) >= 20
    assert _reused(PromptLimits(budget_tokens=90, note_depth=2, window_step=1), turns) <= 2


def test_memory_stays_in_the_head_and_lore_moves_next_to_the_note() -> None:
    lore = (LoreItem(("wave",), "Waves here are tall."),)
    passages = [*numbered(6), "A wave rose."]
    prompt = build_prompt(
        story(passages, memory="The keeper is old.", note="Keep it grim.", lore=lore),
        PromptLimits(budget_tokens=500, note_depth=2),
        words,
    )
    assert prompt.index("The keeper is old.") < prompt.index("<p0>")
    assert prompt.index("<p4>") < prompt.index("Waves here are tall.") < prompt.index("Keep it grim.")
    assert prompt.index("Keep it grim.") < prompt.index("<p5>")


# --- lore ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passage", "triggered"),
    [
        ("The cat slept by the fire.", True),
        ("A CAT hissed.", True),
        ("The Cat's bowl was empty.", True),
        ("It ended with the cat.", True),
        ("(cat)", True),
        ("That is another category.", False),
        ("Concatenate the ropes.", False),
        ("The bobcat ran.", False),
        ("The ship sailed.", False),
    ],
)
def test_lore_is_triggered_by_its_key_as_a_whole_word_in_any_case(passage: str, triggered: bool) -> None:
    snapshot = story(["The harbour was quiet.", passage], lore=(LoreItem(("cat",), "The cat is named Soot."),))
    prompt = build_prompt(snapshot, ROOMY, words)
    assert ("The cat is named Soot." in prompt) is triggered


def test_lore_is_triggered_by_the_direction() -> None:
    snapshot = story(
        ["The harbour was quiet."],
        lore=(LoreItem(("lighthouse", "beacon"), "The beacon has been dark for ten years."),),
        direction="someone relights the Beacon",
    )
    assert "dark for ten years" in build_prompt(snapshot, ROOMY, words)


@pytest.mark.parametrize("where", ["memory", "note", "title", "old passage"])
def test_lore_mentioned_only_outside_the_recent_story_stays_out(where: str) -> None:
    passages = ["The dragon slept."] + [f"Quiet day number {i}." for i in range(5)]
    fields: dict[str, object] = {
        "memory": "The dragon sleeps." if where == "memory" else "",
        "note": "Mention the dragon." if where == "note" else "",
    }
    if where == "title":
        fields["title"] = "The Dragon"
    if where != "old passage":
        passages = passages[1:]
    snapshot = story(passages, lore=(LoreItem(("dragon",), "The dragon's name is Ember."),), **fields)
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=10_000, lore_scan_passages=5), words)
    assert "Ember" not in prompt


def test_most_recently_mentioned_lore_comes_first() -> None:
    lore = (
        LoreItem(("dragon",), "LORE-DRAGON"),
        LoreItem(("ship",), "LORE-SHIP"),
        LoreItem(("cat", "kitten"), "LORE-CAT"),
        LoreItem(("storm",), "LORE-STORM"),
    )
    snapshot = story(
        ["The dragon slept.", "A kitten mewed.", "Nothing happened.", "The dragon stirred, and so did the cat."],
        lore=lore,
        direction="a ship appears",
    )
    prompt = build_prompt(snapshot, ROOMY, words)
    positions = {name: prompt.find(f"LORE-{name}") for name in ("SHIP", "DRAGON", "CAT", "STORM")}
    assert positions["STORM"] == -1
    # The ship is in the direction (the newest text); dragon and cat share the newest passage,
    # so they keep the order they were written in.
    assert 0 < positions["SHIP"] < positions["DRAGON"] < positions["CAT"]


def test_lore_stays_within_its_own_budget_and_keeps_the_most_recent() -> None:
    lore = tuple(LoreItem((f"key{i}",), f"LORE-{i} " + "fact " * 8) for i in range(5))  # 9 words each + brackets
    passages = [f"Here key{i} comes up." for i in range(5)]
    prompt = build_prompt(story(passages, lore=lore), PromptLimits(budget_tokens=10_000, lore_max_tokens=20), words)
    lore_lines = [line for line in prompt.splitlines() if line.startswith("[LORE-")]
    assert sum(words(line) for line in lore_lines) <= 20
    assert [line.split()[0] for line in lore_lines] == ["[LORE-4", "[LORE-3"]


def test_lore_is_never_allowed_to_crowd_out_the_whole_budget() -> None:
    lore = (LoreItem(("sea",), "The sea " + "is deep " * 20),)
    snapshot = story(["The sea was loud."], lore=lore)
    budget = words("Title: The Lighthouse") + 10
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=budget, lore_max_tokens=256), words)
    assert words(prompt) <= budget


# --- the author's note and the direction ---------------------------------------------------

NOTE = "Keep it grim."


@pytest.mark.parametrize(("depth", "after", "before"), [(0, 4, None), (1, 3, 4), (3, 1, 2)])
def test_the_authors_note_sits_depth_passages_from_the_end(depth: int, after: int, before: int | None) -> None:
    passages = numbered(5)
    snapshot = story(passages, note=NOTE, direction="the end nears")
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=10_000, note_depth=depth), words)
    note_at = prompt.index(NOTE)
    assert prompt.index(f"<p{after}>") < note_at
    if before is None:
        assert note_at < prompt.index("the end nears")
    else:
        assert note_at < prompt.index(f"<p{before}>")
    assert prompt.count(NOTE) == 1


@pytest.mark.parametrize(("count", "depth"), [(0, 3), (2, 3), (3, 3), (1, 10)])
def test_in_a_story_shorter_than_the_depth_the_note_comes_before_all_passages(count: int, depth: int) -> None:
    passages = numbered(count)
    snapshot = story(passages, memory="The keeper is old.", note=NOTE)
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=10_000, note_depth=depth), words)
    note_at = prompt.index(NOTE)
    assert prompt.index("The keeper is old.") < note_at
    assert all(note_at < prompt.index(f"<p{i}>") for i in range(count))


def test_the_note_counts_from_the_end_of_what_fits_not_of_the_whole_story() -> None:
    passages = numbered(10)
    budget = words("Title: The Lighthouse") + words(f"[Author's note: {NOTE}]") + 4 * 5
    limits = PromptLimits(budget_tokens=budget, note_depth=2, window_step=1)
    prompt = build_prompt(story(passages, note=NOTE), limits, words)
    assert shown(prompt, passages) == [6, 7, 8, 9]
    assert prompt.index("<p7>") < prompt.index(NOTE) < prompt.index("<p8>")


@pytest.mark.parametrize("depth", [0, 2])
def test_the_direction_comes_last(depth: int) -> None:
    snapshot = story(numbered(4), note=NOTE, memory="The keeper is old.", direction="  the ship docks at dawn  ")
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=10_000, note_depth=depth), words)
    end = prompt.index("the ship docks at dawn") + len("the ship docks at dawn")
    assert prompt[end:].strip(" \n]") == ""
    assert prompt.index("<p3>") < end and prompt.index(NOTE) < end


def test_no_direction_leaves_the_newest_passage_last() -> None:
    passages = numbered(3)
    prompt = build_prompt(story(passages, direction="   "), ROOMY, words)
    assert prompt.rstrip().endswith(passages[-1])


# --- the real tokenizer --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_count(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], int]]:
    config = make_config(
        tmp_path_factory.mktemp("context-config"),
        {"STORYBOT_MODEL_NAME": str(tiny_model_dir), "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true"},
    )
    backend = LocalBackend(config.model)
    backend.load()
    yield backend.count_tokens


CORPUS_PASSAGES = [
    "The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud.",
    "She lit the wick and watched the beam sweep across the rocks. A ship answered with a horn.",
    "In the village below, the baker was already awake. Flour drifted through the window light.",
    '"Who goes there?" asked the guard. The traveller smiled and lowered her hood.',
    "When the storm came, the children ran to the harbour. The boats rocked against the ropes.",
    "He opened the letter slowly. Inside was a map, a key, and a single word: remember.",
]


@pytest.mark.parametrize("spare", [0, 15, 40, 70, 120, 370])
def test_real_tokens_never_exceed_the_budget(tokenizer_count: Callable[[str], int], spare: int) -> None:
    snapshot = story(CORPUS_PASSAGES, genre="mystery", direction="the ship docks")
    budget = tokenizer_count(_minimal_prompt(snapshot)) + spare
    prompt = build_prompt(snapshot, PromptLimits(budget_tokens=budget), tokenizer_count)
    assert tokenizer_count(prompt) <= budget
    kept = [p for p in CORPUS_PASSAGES if p in prompt]
    assert kept == CORPUS_PASSAGES[len(CORPUS_PASSAGES) - len(kept) :]
    if spare >= 70:
        assert kept, "a budget this size has room for the newest passage"


@pytest.mark.parametrize(
    "snapshot",
    [
        pytest.param(
            story(
                ["The sea was loud."],
                genre="mystery",
                memory="The keeper is old.",
                note="Keep it dark.",
                direction="the ship arrives",
            ),
            id="with-note",
        ),
        pytest.param(
            story(["ship"], title="sea loud", lore=(LoreItem(("ship",), "was loud loud"),)),
            id="with-lore",
        ),
    ],
)
def test_real_tokens_never_exceed_a_budget_that_holds_title_and_direction(
    tokenizer_count: Callable[[str], int],
    snapshot: StorySnapshot,
) -> None:
    smallest = tokenizer_count(_minimal_prompt(snapshot))
    over = {}
    for budget in range(smallest, smallest + 80):
        prompt = build_prompt(snapshot, PromptLimits(budget_tokens=budget, lore_max_tokens=12), tokenizer_count)
        if tokenizer_count(prompt) > budget:
            over[budget] = tokenizer_count(prompt)
    assert over == {}


# ---------------------------------------------------------------------- the chat frame


def chatml(messages: list[dict[str, str]]) -> str:
    """A ChatML template (SmolLM2's) with the assistant's turn begun, as apply_chat_template renders it."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def test_a_chat_frame_puts_the_story_in_the_persons_turn_and_begins_the_models() -> None:
    frame = chat_frame(chatml)
    prompt = frame.around(build_prompt(story(["The keeper climbed."], genre="mystery"), ROOMY, words))
    assert prompt.startswith("<|im_start|>system\nYou are a novelist")
    assert "<|im_start|>user\nTitle: The Lighthouse\nGenre: mystery\n\nThe keeper climbed.\n\n" in prompt
    assert prompt.endswith(
        "The keeper climbed.\n\nWrite the next passage of the story.<|im_end|>\n<|im_start|>assistant\n"
    )
    # The head does not depend on the story, so the channel's prefix cache still matches.
    other = frame.around(build_prompt(story(["Another start."]), ROOMY, words))
    assert other.startswith(frame.head) and frame.head in prompt


def test_a_chat_frame_asks_in_the_storys_own_language() -> None:
    frame = chat_frame(chatml)
    spanish = frame.around(
        build_prompt(story(["La casa de los relojes estaba en silencio, y el reloj se paró."]), ROOMY, words)
    )
    chinese = frame.around(build_prompt(story(["雾里的茶馆只剩下一盏灯。"]), ROOMY, words))
    assert spanish.endswith(
        "Escribe el siguiente pasaje de la historia, en español.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "请用中文写出故事的下一段。<|im_end|>" in chinese
    assert spanish.startswith(frame.head) and chinese.startswith(frame.head)
    # A budget keeps room for the longest request, whatever the story's language.
    assert all(len(frame.around(body)) - len(body) <= len(frame.overhead()) for body in ("La casa y el reloj.", "雾"))


def test_plain_completion_is_the_story_as_it_is() -> None:
    body = build_prompt(story(["The keeper climbed."]), ROOMY, words)
    assert COMPLETION.around(body) == body


def test_a_template_that_drops_the_story_is_refused() -> None:
    with pytest.raises(ValueError, match="dropped the story"):
        chat_frame(lambda messages: "<|im_start|>assistant\n")
