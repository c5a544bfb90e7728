"""Named models: ``[models.NAME]`` tables, a base model with a LoRA adapter, chosen per story.

The adapters are made here with peft on the tiny models (``init_lora_weights=False``, so they
change the text) and saved as ``storybot finetune`` saves them. peft is the reference: the compact
forward's logits with an adapter are peft's, on the same weights; a batch of rows on different
adapters (and on the base) gives each row the text it gets alone; a story switched to a named model
writes the text peft writes, which is not the base's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from sqlalchemy import select
from transformers import AutoModelForCausalLM, AutoTokenizer

from bot import commands as c
from bot.app import open_app
from bot.config import Adapter, Config, ConfigError, NamedModel, Writer, load_config
from bot.generation.backend import GenerationRequest, ModelUnavailable
from bot.generation.decoding import growing_cache
from bot.generation.llama_forward import LlamaForward
from bot.generation.local import LocalBackend
from bot.generation.text import clean_passage, speaker_stops
from bot.identity import Actor, ChannelRef
from bot.results import BOT_NAME
from storage.models import Passage
from tests.conftest import TurnRecorder, make_config, sqlite_url, tiny_model_env
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.test_engine import GREEDY, STORY
from tests.test_openai_backend import app_config

ALICE = Actor("u-alice", "Alice")
PROMPTS = ["\n\n".join(STORY[:2]) + "\n\n", STORY[3] + "\n\n", "\n\n".join(STORY) + "\n\n"]
NEW_TOKENS = 16


def save_adapter(model_dir: Path, folder: Path, seed: int, **lora: Any) -> Path:
    """A LoRA adapter on the model, saved as ``save_pretrained`` saves it (as ``storybot finetune`` does)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    get_peft_model(model, LoraConfig(init_lora_weights=False, **lora)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Adapter]:
    """``a`` on every linear layer, as ``storybot finetune`` trains them; ``b`` on a few (key and
    gate left alone), with rank and alpha patterns and rsLoRA scaling, so fused weights get partial,
    differently scaled deltas."""
    folder = tmp_path_factory.mktemp("llama-adapters")
    a = save_adapter(
        tiny_llama_dir, folder / "a", 1, r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    b = save_adapter(
        tiny_llama_dir,
        folder / "b",
        2,
        r=2,
        lora_alpha=3,
        use_rslora=True,
        target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        rank_pattern={"up_proj": 3},
        alpha_pattern={"o_proj": 5},
    )
    return {"a": Adapter("a", str(a)), "b": Adapter("b", str(b))}


@pytest.fixture(scope="module")
def gpt2_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Adapter:
    folder = tmp_path_factory.mktemp("gpt2-adapter") / "g"
    lora = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "fan_in_fan_out": True, "task_type": "CAUSAL_LM"}
    return Adapter("g", str(save_adapter(tiny_model_dir, folder, 3, **lora)))


def local_backend(tmp_path: Path, model_dir: Path, quantize: str = "none") -> LocalBackend:
    config = make_config(
        tmp_path,
        {
            "STORYBOT_MODEL_NAME": str(model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_MODEL_DTYPE": "float32",  # texts are compared exactly
            "STORYBOT_MODEL_QUANTIZE": quantize,
        },
    )
    backend = LocalBackend(config.model)
    backend.load()
    return backend


def greedy(prompt: str, adapter: Adapter | None = None, cache_key: str | None = None) -> GenerationRequest:
    sampling = replace(GREEDY, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    return GenerationRequest(prompt, sampling, cache_key=cache_key, adapter=adapter)


# --- the config ------------------------------------------------------------------------------


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, where ./storybot.toml is the config."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(folder: Path, toml: str, **env: str) -> Config:
    (folder / "storybot.toml").write_text(toml, encoding="utf-8")
    return load_config(env={f"STORYBOT_{k.upper()}": v for k, v in env.items()})


def test_models_tables_name_a_base_and_an_adapter(here: Path) -> None:
    """A relative adapter folder is found from where storybot runs, like model.name's."""
    (here / "adapters" / "noir").mkdir(parents=True)
    (here / "adapters" / "noir" / "adapter_config.json").write_text("{}")
    config = load(
        here,
        '[model]\nallowed = ["other"]\n[models.noir]\nadapter = "adapters/noir"\ndescription = "hard-boiled"\n'
        '[models.big-15]\nbase = "some/hub-model"\n',
        model_name="base-model",
    )
    assert config.models == {
        "noir": NamedModel(base="base-model", adapter="adapters/noir", description="hard-boiled"),
        "big-15": NamedModel(base="some/hub-model"),
    }
    assert config.model_choices == ("base-model", "other", "noir", "big-15")
    noir = config.writer("noir")
    assert noir == Writer("noir", "base-model", Adapter("noir", "adapters/noir"), "hard-boiled")
    assert str(noir) == "noir (base base-model + adapter adapters/noir): hard-boiled"
    assert str(config.writer("big-15")) == "big-15 (base some/hub-model)"
    assert config.writer("other") == Writer("other", "other") and str(config.writer("other")) == "other"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("models = 3\n", "models = 3 (from storybot.toml): must be tables [models.NAME]."),
        ("[models]\nnoir = 3\n", "models.noir = 3 (from storybot.toml): must be a table [models.noir]."),
        *(
            (
                f"[models.{json.dumps(name)}]\n",
                f"[models.{json.dumps(name)}] (from storybot.toml): a model's name is letters, digits, '-' and '_' "
                "(not starting with '__'), at most 100 of them.",
            )
            for name in ("film noir", "noir-1.5", "__base__")  # peft takes no '.', and "__base__" means no adapter
        ),
        (
            "[models.noir]\nadaptor = 'x'\n",
            "unknown setting models.noir.adaptor in storybot.toml; did you mean models.noir.adapter?",
        ),
        ("[models.noir]\nbase = 3\n", "models.noir.base = 3 (from storybot.toml): must be a string."),
        (
            "[models.noir]\n[models.pulp]\nbase = 'noir'\n",
            "models.pulp.base = 'noir' (from storybot.toml): a base is a model as model.name takes it, "
            "not another [models] table.",
        ),
        (
            "[model]\nallowed = ['gpt2']\n[models.gpt2]\n",
            "[models.gpt2] (from storybot.toml): gpt2 is model.allowed already; give this model another name.",
        ),
    ],
)
def test_a_bad_models_table_is_one_line_naming_it(here: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(here, toml)
    assert str(error.value) == message


def test_an_adapter_folder_is_read_when_a_story_first_writes_with_it(here: Path) -> None:
    """So the config loads while storybot finetune is still writing the adapter it names."""
    config = load(here, "[models.noir]\nadapter = 'adapters/noir'\n")
    assert config.writer("noir").adapter == Adapter("noir", "adapters/noir")


def test_an_adapter_served_by_an_openai_server_need_not_be_here(here: Path) -> None:
    config = load(here, "[models.noir]\nadapter = '/srv/adapters/noir'\n", model_backend="openai")
    assert config.writer("noir").adapter == Adapter("noir", "/srv/adapters/noir")


# --- the compact forward against peft --------------------------------------------------------


def reference_model(backend: LocalBackend, model_dir: Path) -> Any:
    """The model with the weights the compact forward computes a prompt with (int8 and int4
    widened back to float), so that the comparison with peft measures the LoRA arithmetic alone."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    forward = backend._decoder.forward if backend._decoder else None
    assert isinstance(forward, LlamaForward)
    for layer, compact in zip(model.model.layers, forward.layers, strict=True):
        attention, mlp = layer.self_attn, layer.mlp
        fused = {
            "qkv": (attention.q_proj, attention.k_proj, attention.v_proj),
            "out": (attention.o_proj,),
            "gate_up": (mlp.gate_proj, mlp.up_proj),
            "down": (mlp.down_proj,),
        }
        for name, modules in fused.items():
            weight = getattr(compact, name)
            for module, part in zip(modules, torch.split(weight.widened(), weight.part_outputs), strict=True):
                module.weight.data = part.float().clone()
    model.model.embed_tokens.weight.data = forward.head.widened().float().clone()  # tied: the output layer too
    return model


@pytest.mark.parametrize("quantize", ["none", "int8", "int4"])
def test_the_compact_forward_with_an_adapter_computes_peft_s_logits(
    quantize: str, tiny_llama_dir: Path, llama_adapters: dict[str, Adapter], tmp_path: Path
) -> None:
    backend = local_backend(tmp_path, tiny_llama_dir, quantize)
    assert backend.quantization == quantize
    forward = backend._decoder.forward if backend._decoder else None
    assert isinstance(forward, LlamaForward)
    reference = reference_model(backend, tiny_llama_dir)
    ids = torch.tensor([backend._tokenizer(PROMPTS[2], add_special_tokens=False)["input_ids"]])

    def compact(adapter: str | None) -> torch.Tensor:
        with torch.inference_mode():
            return forward(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                position_ids=torch.arange(ids.shape[1]).unsqueeze(0),
                cache=growing_cache(len(forward.layers)),
                adapters=[adapter],
            ).logits

    with torch.inference_mode():
        base = reference(input_ids=ids).logits
    torch.testing.assert_close(compact(None), base, rtol=1e-4, atol=1e-4)
    for adapter in llama_adapters.values():
        backend.load(adapter)
        peft_model = PeftModel.from_pretrained(reference, adapter.path).eval()
        with torch.inference_mode():
            expected = peft_model(input_ids=ids).logits
        assert (expected - base).abs().max() > 0.1  # the adapter changes something
        torch.testing.assert_close(compact(adapter.name), expected, rtol=1e-4, atol=1e-4)
        reference = peft_model.unload()  # the base again, for the next adapter


# --- mixed batches ---------------------------------------------------------------------------


def assert_mixed_batches_keep_each_rows_text(backend: LocalBackend, adapters: list[Adapter | None]) -> None:
    """Every prompt on every adapter (and the base), alone, then all in one batch, then joining a
    running batch one by one: each row writes its own text, and the adapters change it."""
    requests = [greedy(prompt, adapter) for prompt in PROMPTS for adapter in adapters]
    alone = [backend.generate([request])[0] for request in requests]
    for prompt in range(len(PROMPTS)):
        texts = alone[prompt * len(adapters) : (prompt + 1) * len(adapters)]
        assert len(set(texts)) == len(adapters), "an adapter did not change the greedy text"
    assert backend.generate(requests) == alone
    waiting = list(requests[1:])
    assert backend.generate(requests[:1], lambda: [waiting.pop(0)] if waiting else []) == alone[:1]


def test_rows_on_different_adapters_batch_together_in_the_compact_forward(
    tiny_llama_dir: Path, llama_adapters: dict[str, Adapter], tmp_path: Path
) -> None:
    backend = local_backend(tmp_path, tiny_llama_dir, "int8")
    base_before = backend.generate([greedy(PROMPTS[0])])
    assert_mixed_batches_keep_each_rows_text(backend, [llama_adapters["a"], None, llama_adapters["b"]])
    assert backend.generate([greedy(PROMPTS[0])]) == base_before  # the base is still the base


def test_the_model_s_own_forward_takes_adapters_through_peft(
    tiny_model_dir: Path, gpt2_adapter: Adapter, tmp_path: Path
) -> None:
    """GPT-2 has no compact forward: peft's mixed-adapter batches do the same, and a broken
    adapter leaves nothing behind in the model."""
    backend = local_backend(tmp_path, tiny_model_dir)
    base_before = backend.generate([greedy(PROMPTS[0])])
    broken = tmp_path / "broken"
    save_adapter(tiny_model_dir, broken, 4, r=4, target_modules="all-linear", fan_in_fan_out=True)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))  # the matrices are rank 4
    with pytest.raises(ModelUnavailable) as error:
        backend.load(Adapter("broken", str(broken)))
    assert str(error.value).startswith(f"Adapter broken ({broken}) cannot be put on {tiny_model_dir}: ")
    assert "\n" not in str(error.value)
    assert backend.generate([greedy(PROMPTS[0])]) == base_before
    assert_mixed_batches_keep_each_rows_text(backend, [gpt2_adapter, None])
    assert backend.generate([greedy(PROMPTS[0])]) == base_before


def test_a_channel_s_cached_prompt_is_not_reused_on_another_adapter(
    tiny_llama_dir: Path, llama_adapters: dict[str, Adapter], tmp_path: Path
) -> None:
    backend = local_backend(tmp_path, tiny_llama_dir)
    cache = backend._decoder.prefix_cache if backend._decoder else None
    assert cache is not None
    adapter = llama_adapters["a"]
    uncached = backend.generate([greedy(PROMPTS[2], adapter)])
    backend.generate([greedy(PROMPTS[0], cache_key="channel")])  # the channel's last turn, on the base
    hits = cache.hits
    assert backend.generate([greedy(PROMPTS[2], adapter, cache_key="channel")]) == uncached
    assert cache.hits == hits  # the base's keys and values were not taken...
    assert backend.generate([greedy(PROMPTS[2], adapter, cache_key="channel")]) == uncached
    assert cache.hits == hits + 1  # ...but the adapter's own are


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda folder: (folder / "adapter_model.safetensors").unlink(), "cannot be read"),
        (lambda folder: (folder / "adapter_model.safetensors").write_bytes(b"not tensors"), "cannot be read"),
    ],
)
def test_an_adapter_that_will_not_load_is_one_line(
    spoil: Callable[[Path], None], reason: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    folder = save_adapter(tiny_llama_dir, tmp_path / "spoilt", 5, r=2, target_modules="all-linear")
    spoil(folder)
    backend = local_backend(tmp_path, tiny_llama_dir)
    with pytest.raises(ModelUnavailable) as error:
        backend.load(Adapter("spoilt", str(folder)))
    assert str(error.value).startswith(f"Adapter spoilt ({folder}) {reason}") and "\n" not in str(error.value)


@pytest.mark.parametrize("model", ["llama", "gpt2"])
def test_an_adapter_of_another_kind_than_lora_is_refused_on_both_paths(
    model: str, tiny_llama_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Only LoRA keeps to its own rows of a batch: an IA3 adapter would change the base's stories too."""
    model_dir = tiny_llama_dir if model == "llama" else tiny_model_dir
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    get_peft_model(base, IA3Config(task_type="CAUSAL_LM")).save_pretrained(tmp_path / "ia3")
    backend = local_backend(tmp_path, model_dir)
    with pytest.raises(ModelUnavailable) as error:
        backend.load(Adapter("ia3", str(tmp_path / "ia3")))
    assert str(error.value) == "Adapter ia3 is a IA3 adapter; storybot takes LoRA."


def test_an_adapter_on_embeddings_is_refused_by_the_compact_forward(tiny_llama_dir: Path, tmp_path: Path) -> None:
    folder = save_adapter(tiny_llama_dir, tmp_path / "embed", 6, r=2, target_modules=["q_proj", "embed_tokens"])
    backend = local_backend(tmp_path, tiny_llama_dir)
    with pytest.raises(ModelUnavailable) as error:
        backend.load(Adapter("embed", str(folder)))
    message = str(error.value)
    assert message.startswith("Adapter embed holds base_model.model.model.embed_tokens.")
    assert message.endswith(", which the compact forward does not apply.")


# --- stories --------------------------------------------------------------------------------


def peft_passage(model_dir: Path, adapter: Adapter, prompt: str, eos_ids: list[int]) -> str:
    """What peft writes greedily, as the engine would store it: ``NEW_TOKENS`` tokens, no end of
    text before them, cleaned into whole sentences."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter.path).eval()
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            logits[eos_ids] = -math.inf
            ids.append(int(logits.argmax()))
    raw = tokenizer.decode(ids[-NEW_TOKENS:], skip_special_tokens=True)
    return clean_passage(raw, speaker_stops((ALICE.name, BOT_NAME)))


async def test_a_story_switched_to_a_named_model_writes_with_its_adapter(
    tiny_llama_dir: Path, llama_adapters: dict[str, Adapter], tmp_path: Path
) -> None:
    """Three stories on one base: one on the base, one on ``noir`` (adapter ``a``), one on a named
    model whose adapter cannot be read, whose turn alone fails."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (tmp_path / "storybot.toml").write_text(
        f'[models.noir]\nadapter = "{llama_adapters["a"].path}"\ndescription = "hard-boiled"\n'
        f'[models.broken]\nadapter = "{broken}"\n'
    )
    env = {
        **tiny_model_env(sqlite_url(tmp_path), tiny_llama_dir),
        "STORYBOT_MODEL_QUANTIZE": "none",  # float32 throughout, as peft computes
        "STORYBOT_MODEL_DTYPE": "float32",
        "STORYBOT_MODEL_TEMPERATURE": "0",
        "STORYBOT_MODEL_REPETITION_PENALTY": "1",
        "STORYBOT_MODEL_MAX_NEW_TOKENS": str(NEW_TOKENS),
        "STORYBOT_MODEL_MIN_NEW_TOKENS": str(NEW_TOKENS),
    }
    config = make_config(tmp_path, env)
    channels = {model: ChannelRef("test", "guild", f"room-{model or 'base'}") for model in (None, "noir", "broken")}
    turns = TurnRecorder()
    async with open_app(config) as running:
        running.queue.add_listener(turns)
        for model, channel in channels.items():
            await running.sessions.handle(channel, ALICE, c.parse('/story start "Tavern" mode:free'))
            if model is not None:
                switched = await running.sessions.handle(channel, ALICE, c.parse(f"/story settings model:{model}"))
                assert switched.ok and f"model:{model}" in switched.text
            await running.sessions.handle(channel, ALICE, c.Add(STORY[0]))
        refused = await running.sessions.handle(channels[None], ALICE, c.parse("/story settings model:film"))
        assert refused.text == f"model must be one of: {tiny_llama_dir}, noir, broken."
        asked = {
            model: await running.sessions.handle(channel, ALICE, c.Continue()) for model, channel in channels.items()
        }
        results = {model: await turns.wait(result.job_id) for model, result in asked.items()}
        status = await running.sessions.handle(channels["noir"], ALICE, c.Status())
        backend = await running.queue.backend("noir")
        eos_ids = backend._decoder.eos_ids if isinstance(backend, LocalBackend) and backend._decoder else []
        async with running.db.read() as tx:
            stored = {p.story_id: p for p in (await tx.execute(select(Passage))).scalars() if p.author_kind == "bot"}

    assert results["broken"] is not None and not results["broken"].ok
    assert results["broken"].text.startswith(f"Adapter broken ({broken}) cannot be read: ")
    base, noir = (results[model] for model in (None, "noir"))
    assert base is not None and base.passage is not None and noir is not None and noir.passage is not None
    assert noir.passage.text != base.passage.text
    written = stored[noir.story_id]
    assert noir.passage.text == peft_passage(
        tiny_llama_dir, llama_adapters["a"], written.generation["story_prompt"], eos_ids
    )
    assert written.generation["model"] == "noir"
    assert written.generation["base"] == str(tiny_llama_dir)
    assert written.generation["adapter"] == llama_adapters["a"].path
    assert stored[base.story_id].generation["adapter"] is None
    assert f"Written by noir (base {tiny_llama_dir} + adapter {llama_adapters['a'].path}): hard-boiled." in status.text


async def test_the_openai_backend_asks_the_server_for_the_adapter_by_name(tmp_path: Path) -> None:
    async with running_fake_openai() as fake:
        await write_one_turn_each(fake, tmp_path)
    assert sorted(request["body"]["model"] for request in fake.requests) == ["noir", "served-model"]


async def write_one_turn_each(fake: FakeOpenAI, tmp_path: Path) -> None:
    """One turn on the default model, one on ``noir``, whose adapter is on the server."""
    (tmp_path / "storybot.toml").write_text('[models.noir]\nadapter = "/srv/adapters/noir"\n')
    turns = TurnRecorder()
    async with open_app(app_config(tmp_path, fake.url)) as running:
        running.queue.add_listener(turns)
        for model in ("", "noir"):
            channel = ChannelRef("test", "guild", f"room-{model}")
            await running.sessions.handle(channel, ALICE, c.parse('/story start "Tavern" mode:free'))
            if model:
                await running.sessions.handle(channel, ALICE, c.parse(f"/story settings model:{model}"))
            await running.sessions.handle(channel, ALICE, c.Add(STORY[0]))
            result = await turns.wait((await running.sessions.handle(channel, ALICE, c.Continue())).job_id)
            assert result is not None and result.ok
