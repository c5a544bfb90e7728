"""The generation engine on a Llama model: SmolLM2's architecture (grouped-query attention,
rotary positions, tied embeddings), tiny and with random weights.

The engine's GPT-2 tests run here unchanged on the Llama, through the compact forward with its
weights as loaded, in int8 and in int4: batching, joining a running batch late and reusing a
channel's cached prefix never change the greedy text.

Rotary models add the classic left-padding failure: a row shorter than its neighbours is
padded on the left, and if its positions counted the padding, its new tokens would meet the
keys already in its cache at the wrong angles. So every row of a padded batch is also compared,
token by token, with a plain reference: the model run on the row's whole text at each step, with
no cache, no batch and no padding. Token by token because random weights write mostly stray
bytes, and two different tokens can both decode to U+FFFD. The reference is the model's own
forward (transformers'), so this also checks the compact forward's arithmetic against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from bot.generation import decoding
from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.llama_forward import LlamaForward
from bot.generation.local import LocalBackend
from tests import test_engine as engine_tests
from tests import test_local_backend as backend_tests
from tests.conftest import CORPUS

Backends = tuple[LocalBackend, LocalBackend]

LINES = CORPUS.splitlines()
STORY = engine_tests.STORY
# Three channels' stories of very different lengths, so each row is left-padded by a different
# amount. The longest row writes the fewest tokens: when it leaves, the others' padding is cut.
STORIES = {
    "short": [STORY[3], "Once upon a time"],
    "middle": LINES[3:6],
    "long": [*LINES[:3], *LINES[6:]],
}
NEW_TOKENS = {"short": 24, "middle": 16, "long": 8}


@pytest.fixture(scope="module", params=["none", "int8", "int4"])
def backends(
    request: pytest.FixtureRequest, tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Backends:
    """The Llama twice, as ``tests.test_engine`` has GPT-2: with the prefix cache, and without it;
    with each ``model.quantize``."""
    return engine_tests.load_twice(tiny_llama_dir, tmp_path_factory.mktemp("llama-engine"), request.param)


@pytest.fixture(scope="module")
def float_backends(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Backends:
    """Weights as loaded: what the model's own forward computes, so it can be the reference."""
    return engine_tests.load_twice(tiny_llama_dir, tmp_path_factory.mktemp("llama-float"), "none")


@pytest.fixture(scope="module")
def own_forward(tiny_llama_dir: Path) -> Any:
    """The model with transformers' own forward: the reference."""
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


def test_the_model_is_a_llama_that_the_engine_batches(backends: Backends) -> None:
    """Otherwise the tests below would pass without testing anything: a cache the decoder cannot
    merge makes the backend write one request at a time, and never use the prefix cache; a model
    the compact forward does not take runs through the model's own."""
    cached, _ = backends
    model_config, decoder = cached._model.config, cached._decoder
    assert model_config.model_type == "llama" and model_config.tie_word_embeddings
    assert model_config.num_key_value_heads < model_config.num_attention_heads  # grouped-query attention
    assert decoder is not None and decoder.mergeable and decoder.prefix_cache is not None
    assert isinstance(decoder.forward, LlamaForward) and decoder.forward.quantize == cached.quantization


# --- what the GPT-2 tests check, on the Llama ----------------------------------------------

ENGINE_TESTS = [
    engine_tests.test_prefix_cache_reuses_the_story_and_never_changes_the_text,
    engine_tests.test_requests_that_arrive_mid_batch_join_it_and_keep_their_text,
    engine_tests.test_rows_in_one_batch_keep_their_own_settings_and_leave_when_done,
]
BACKEND_TESTS = [
    backend_tests.test_greedy_generation_is_deterministic,
    backend_tests.test_a_batch_gives_the_same_texts_as_each_request_alone,
    backend_tests.test_a_batch_with_different_settings_keeps_the_request_order,
    backend_tests.test_top_k_and_top_p_narrow_each_rows_choice_in_a_mixed_batch,
]


@pytest.mark.parametrize("gpt2_test", ENGINE_TESTS, ids=lambda test: test.__name__)
def test_the_gpt2_engine_test_holds_for_llama(gpt2_test: Callable[[Backends], None], backends: Backends) -> None:
    gpt2_test(backends)


@pytest.mark.parametrize("gpt2_test", BACKEND_TESTS, ids=lambda test: test.__name__)
def test_the_gpt2_backend_test_holds_for_llama(gpt2_test: Callable[[LocalBackend], None], backends: Backends) -> None:
    gpt2_test(backends[1])


# --- left padding, token by token ----------------------------------------------------------


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[int]]:
    """The tokens each request wrote, by ``id(request)``, recorded as its row finishes."""
    tokens: dict[int, list[int]] = {}
    finish = decoding._finish

    def record(row: decoding._Row) -> None:
        tokens[id(row.request)] = list(row.generated)
        finish(row)

    monkeypatch.setattr(decoding, "_finish", record)
    return tokens


def prompt(passages: list[str]) -> str:
    return "\n\n".join(passages) + "\n\n"


def reference(backend: LocalBackend, model: Any, text: str, new_tokens: int) -> list[int]:
    """Greedy tokens from the model run on the whole text at each step: no cache, no batch, no
    padding, and the positions the model counts itself. The end of text is banned, as the
    engine bans it before ``min_new_tokens``."""
    ids = backend._tokenizer(text, add_special_tokens=False)["input_ids"]
    assert backend._decoder is not None
    with torch.inference_mode():
        for _ in range(new_tokens):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            logits[backend._decoder.eos_ids] = -math.inf
            ids.append(int(logits.argmax()))
    return ids[-new_tokens:]


def greedy(new_tokens: int) -> Sampling:
    return replace(engine_tests.GREEDY, max_new_tokens=new_tokens, min_new_tokens=new_tokens)


@pytest.mark.parametrize("arrival", ["one batch", "joining late", "from the prefix cache"])
def test_left_padded_rows_write_the_reference_tokens(
    float_backends: Backends, own_forward: Any, written: dict[int, list[int]], arrival: str
) -> None:
    """Rows of different lengths, left-padded together, each write the tokens the model writes
    for its text alone. ``joining late``: the middle row starts alone, the short one joins at the
    second step (the joining row is padded), the long one at the fifth (the running rows are).
    ``from the prefix cache``: each channel's previous turn was written first, so each row
    encodes only its new passage, after its reused prefix, before it is padded."""
    cached, _ = float_backends
    prefix_cache = cached._decoder.prefix_cache if cached._decoder else None
    assert prefix_cache is not None
    lengths = [cached.count_tokens(prompt(story)) for story in STORIES.values()]
    assert lengths == sorted(set(lengths))  # three different paddings
    reuse = arrival == "from the prefix cache"
    requests = {
        name: GenerationRequest(prompt(story), greedy(NEW_TOKENS[name]), cache_key=name if reuse else None)
        for name, story in STORIES.items()
    }

    if arrival == "joining late":
        steps = 0

        def more() -> list[GenerationRequest]:
            nonlocal steps
            steps += 1
            return {2: [requests["short"]], 5: [requests["long"]]}.get(steps, [])

        cached.generate([requests["middle"]], more)
    else:
        if reuse:  # the channels' previous turns
            cached.generate(
                [GenerationRequest(prompt(story[:-1]), greedy(1), cache_key=name) for name, story in STORIES.items()]
            )
        hits = prefix_cache.hits
        cached.generate(list(requests.values()))
        assert prefix_cache.hits - hits == (len(STORIES) if reuse else 0)

    names = {id(request): name for name, request in requests.items()}
    assert [names[key] for key in written if key in names] == ["long", "middle", "short"]  # together, then apart
    for name, request in requests.items():
        assert written[id(request)] == reference(cached, own_forward, request.prompt, NEW_TOKENS[name]), name
