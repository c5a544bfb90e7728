"""The local backend on a real (tiny, random-weight) GPT-2 model, loaded the way users load one.

The model's text is gibberish, but greedy decoding of fixed weights is fully deterministic, so
what matters is checkable: lengths, streaming, stopping, batching, banned words, load errors.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.config import Config
from bot.generation.backend import GenerationRequest, ModelUnavailable, Sampling
from bot.generation.local import LocalBackend
from tests.conftest import make_config

PROMPTS = [
    "The lighthouse keeper climbed",
    "It was a dark and stormy night. The wind howled",
    "Once upon a time",
]

# Lines like the fixture's training text; `fluent_prompt` picks one the model continues in plain ASCII.
CANDIDATES = [
    "The lighthouse keeper climbed",
    "She lit the wick and watched",
    "The dragon slept beneath the mountain",
    "In the village below, the baker",
    "Once upon a time",
    "The sea",
    "A ship answered with a horn.",
    "When the storm came, the children",
]


def greedy(max_new_tokens: int = 16, min_new_tokens: int = 0, **changes: Any) -> Sampling:
    return Sampling(temperature=0, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, **changes)


def tiny_config(folder: Path, model_dir: Path | str, **env: str) -> Config:
    return make_config(
        folder,
        {"STORYBOT_MODEL_NAME": str(model_dir), "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true", **env},
    )


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    # float32: these tests compare texts exactly, and in bfloat16 (the default on CPUs that
    # compute it) a batch of three may round differently from a batch of one.
    config = tiny_config(tmp_path_factory.mktemp("backend-config"), tiny_model_dir, STORYBOT_MODEL_DTYPE="float32")
    loaded = LocalBackend(config.model)
    loaded.load()
    yield loaded


def run(backend: LocalBackend, prompt: str, sampling: Sampling, **request: Any) -> str:
    return backend.generate([GenerationRequest(prompt, sampling, **request)])[0]


@pytest.fixture(scope="module")
def fluent_prompt(backend: LocalBackend) -> str:
    """A prompt whose greedy continuation is printable ASCII whose first token is a word.

    The weights are random, so many prompts come out as stray bytes (U+FFFD); with plain ASCII
    every new token visibly adds text, which makes lengths and stop texts exact.
    """
    for prompt in CANDIDATES:
        streamed: list[str] = []
        text = run(backend, prompt, greedy(40, min_new_tokens=40), on_text=streamed.append)
        if (
            text.isascii()
            and text.isprintable()
            and len(streamed) == 40
            and streamed[0].strip().isalpha()
            and len(streamed[0].strip()) >= 2
        ):
            return prompt
    pytest.fail("the fixture model continues none of the candidate prompts in plain ASCII")


# --- loading -------------------------------------------------------------------------------


def model_positions(model_dir: Path) -> int:
    return json.loads((model_dir / "config.json").read_text())["n_positions"]


def test_the_context_length_comes_from_the_model(backend: LocalBackend, tiny_model_dir: Path) -> None:
    assert backend.context_length == model_positions(tiny_model_dir)


def test_a_configured_context_length_wins(tiny_model_dir: Path, tmp_path: Path) -> None:
    wanted = model_positions(tiny_model_dir) // 2
    config = tiny_config(tmp_path, tiny_model_dir, STORYBOT_MODEL_CONTEXT_LENGTH=str(wanted))
    assert LocalBackend(config.model).context_length == wanted


def test_the_model_name_argument_overrides_the_configured_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tmp_path / "not-a-model")
    chosen = LocalBackend(config.model, str(tiny_model_dir))
    assert chosen.model_name == str(tiny_model_dir)
    assert chosen.context_length == model_positions(tiny_model_dir)


def test_token_counts_come_from_the_model_tokenizer(backend: LocalBackend) -> None:
    assert backend.count_tokens("") == 0
    short, longer = backend.count_tokens("The sea"), backend.count_tokens("The sea was loud tonight.")
    assert 0 < short < longer


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("{tmp}/no-such-folder", id="missing-folder"),
        pytest.param("{tmp}", id="folder-without-a-model"),
        pytest.param("storybot-tests/no-such-model", id="unknown-hub-name"),
    ],
)
def test_a_model_that_cannot_be_loaded_is_one_clear_line(tmp_path: Path, name: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tiny_config(tmp_path, name.format(tmp=empty))
    model = LocalBackend(config.model)
    with pytest.raises(ModelUnavailable) as caught:
        model.load()
    message = str(caught.value)
    assert "\n" not in message
    assert "STORYBOT_MODEL_NAME" in message
    with pytest.raises(ModelUnavailable):  # and again on the next turn, not a half-loaded model
        model.generate([GenerationRequest("The sea", greedy())])


# --- generating ----------------------------------------------------------------------------


def test_greedy_generation_is_deterministic(backend: LocalBackend) -> None:
    first = [run(backend, prompt, greedy()) for prompt in PROMPTS]
    second = [run(backend, prompt, greedy()) for prompt in PROMPTS]
    assert first == second
    assert all(first)


@pytest.mark.parametrize("max_new_tokens", [1, 5, 12])
def test_generation_stops_at_max_new_tokens(backend: LocalBackend, fluent_prompt: str, max_new_tokens: int) -> None:
    streamed: list[str] = []
    short = run(backend, fluent_prompt, greedy(max_new_tokens, max_new_tokens), on_text=streamed.append)
    longer = run(backend, fluent_prompt, greedy(max_new_tokens + 20, max_new_tokens + 20))
    assert len(streamed) == max_new_tokens  # one visible step per token, and no more tokens
    assert longer.startswith(short) and len(longer) > len(short)
    for prompt in PROMPTS:  # whatever the model writes, it never takes more steps than asked
        steps: list[str] = []
        run(backend, prompt, greedy(max_new_tokens), on_text=steps.append)
        assert len(steps) <= max_new_tokens


def test_precision_is_bfloat16_by_default_only_where_the_cpu_computes_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    default = LocalBackend(tiny_config(tmp_path, tiny_model_dir, STORYBOT_MODEL_DEVICE="cpu").model)
    default.load()
    native = torch.cpu._is_avx512_bf16_supported() and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    assert default._model.dtype == (torch.bfloat16 if native else torch.float32)
    assert run(default, PROMPTS[0], greedy(8, 8))  # writes in either precision


def test_sampling_at_a_temperature_also_works(backend: LocalBackend) -> None:
    sampling = Sampling(temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=8, min_new_tokens=2)
    texts = backend.generate([GenerationRequest(prompt, sampling) for prompt in PROMPTS])
    assert len(texts) == len(PROMPTS)
    assert all(isinstance(text, str) for text in texts)


def test_top_k_and_top_p_narrow_each_rows_choice_in_a_mixed_batch(backend: LocalBackend) -> None:
    """Sampling with top_k=1, or a top_p below the top token's share, can only pick the top token:
    so those rows write exactly their greedy text, next to a freely sampled row."""
    greedy_texts = [run(backend, prompt, greedy(12, 12)) for prompt in PROMPTS[:2]]
    only_top_k = Sampling(temperature=1.5, top_k=1, top_p=1.0, max_new_tokens=12, min_new_tokens=12)
    only_top_p = Sampling(temperature=1.5, top_k=0, top_p=1e-6, max_new_tokens=12, min_new_tokens=12)
    free = Sampling(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=12, min_new_tokens=12)
    texts = backend.generate(
        [
            GenerationRequest(PROMPTS[0], only_top_k),
            GenerationRequest(PROMPTS[1], only_top_p),
            GenerationRequest(PROMPTS[2], free),
        ]
    )
    assert texts[:2] == greedy_texts and texts[2]


def test_text_streams_as_it_grows(backend: LocalBackend, fluent_prompt: str) -> None:
    streamed: list[str] = []
    final = run(backend, fluent_prompt, greedy(20), on_text=streamed.append)
    assert len(streamed) >= 5
    for before, after in itertools.pairwise(streamed):
        assert after.startswith(before) and len(after) > len(before)
    assert final == streamed[-1]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_returned_text_is_the_last_streamed_text(backend: LocalBackend, prompt: str) -> None:
    streamed: list[str] = []
    final = run(backend, prompt, greedy(12), on_text=streamed.append)
    assert streamed and final == streamed[-1]


def test_a_cancelled_request_stops_after_one_token(backend: LocalBackend, fluent_prompt: str) -> None:
    sampling = Sampling(temperature=0, max_new_tokens=64, min_new_tokens=32)  # cancel beats the minimum
    full: list[str] = []
    run(backend, fluent_prompt, sampling, on_text=full.append)
    cancelled = threading.Event()
    cancelled.set()
    streamed: list[str] = []
    text = run(backend, fluent_prompt, sampling, cancelled=cancelled, on_text=streamed.append)
    assert len(full) >= 32
    assert streamed == [full[0]]
    assert text == full[0]


def test_cancelling_during_generation_stops_at_the_next_token(backend: LocalBackend) -> None:
    cancelled = threading.Event()
    streamed: list[str] = []

    def on_text(text: str) -> None:
        streamed.append(text)
        if len(streamed) == 3:
            cancelled.set()  # e.g. /story undo arrives while the bot is writing

    text = run(backend, PROMPTS[0], greedy(64, 32), on_text=on_text, cancelled=cancelled)
    assert len(streamed) == 3
    assert text == streamed[-1]


def test_a_stop_text_stops_only_its_own_row(backend: LocalBackend, fluent_prompt: str) -> None:
    sampling = greedy(40, 40)
    other_prompt = PROMPTS[1] if fluent_prompt != PROMPTS[1] else PROMPTS[2]
    streamed: list[str] = []
    alone = run(backend, fluent_prompt, sampling, on_text=streamed.append)
    other_alone = run(backend, other_prompt, sampling)
    stop = streamed[2]  # what the row has written after three tokens

    stopped, other = backend.generate(
        [GenerationRequest(fluent_prompt, sampling, stop_texts=(stop,)), GenerationRequest(other_prompt, sampling)]
    )
    assert stopped == stop
    assert len(stopped) < len(alone) / 2
    assert other == other_alone


def test_a_batch_gives_the_same_texts_as_each_request_alone(backend: LocalBackend) -> None:
    sampling = greedy(16)
    alone = [run(backend, prompt, sampling) for prompt in PROMPTS]
    together = backend.generate([GenerationRequest(prompt, sampling) for prompt in PROMPTS])
    assert together == alone


def test_a_batch_with_different_settings_keeps_the_request_order(backend: LocalBackend) -> None:
    settings = [greedy(4), greedy(16), greedy(4, repetition_penalty=1.3)]
    alone = [run(backend, prompt, s) for prompt, s in zip(PROMPTS, settings, strict=True)]
    together = backend.generate([GenerationRequest(p, s) for p, s in zip(PROMPTS, settings, strict=True)])
    assert together == alone


def test_banned_words_from_the_config_never_appear(
    backend: LocalBackend, fluent_prompt: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    streamed: list[str] = []
    unbanned = run(backend, fluent_prompt, greedy(30), on_text=streamed.append)
    word = streamed[0].strip()  # the model's favourite first word for this prompt
    assert word in unbanned

    config = tiny_config(tmp_path, tiny_model_dir, STORYBOT_MODEL_BAD_WORDS=word)
    assert config.model.bad_words == (word,)
    banned = run(backend, fluent_prompt, greedy(30, bad_words=tuple(config.model.bad_words)))
    assert banned
    assert word not in banned
