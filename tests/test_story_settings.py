"""Each per-story setting is declared once (``bot.story_settings``) and everything else follows:
the config's field, the grammar's checks and usage, the typed values a turn reads and the
backend's defaults. The Discord options are checked in ``test_discord_slash``."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import commands as c
from bot.config import ConfigError, ModelConfig, iter_settings, validate_setting
from bot.generation.backend import Sampling
from bot.identity import Actor, ChannelRef
from bot.sessions import SessionManager
from bot.story_settings import STORY_SETTINGS, StorySetting, StorySettings
from storage.models import Story

# The settings that shape the sampling (``candidates`` says how many passages, not how each is written).
NUMBERS = [s for s in STORY_SETTINGS.values() if s.type is not str and s.key != "candidates"]
CONFIG_DECLARED = [s for s in STORY_SETTINGS.values() if s.config_declared]


def test_the_declarations_are_the_fields_of_story_settings() -> None:
    assert list(STORY_SETTINGS) == [f.name for f in dataclasses.fields(StorySettings)]
    assert list(STORY_SETTINGS) == [
        "temperature", "length", "top_p", "top_k", "repetition_penalty", "model", "candidates",
    ]  # fmt: skip
    assert STORY_SETTINGS["length"].config_key == "max_new_tokens"
    assert STORY_SETTINGS["model"].config_key == "name" and not STORY_SETTINGS["model"].config_declared
    for setting in STORY_SETTINGS.values():
        assert setting.help and "\n" not in setting.help and setting.minimum <= setting.maximum


@pytest.mark.parametrize("setting", CONFIG_DECLARED, ids=lambda s: s.key)
def test_the_config_declares_its_default_help_and_range_from_the_setting(setting: StorySetting) -> None:
    [declared] = [s for s in iter_settings() if (s.section, s.key) == ("model", setting.config_key)]
    assert declared.default == setting.default == getattr(ModelConfig(), setting.config_key)
    assert (declared.metadata["min"], declared.metadata["max"]) == (setting.minimum, setting.maximum)
    assert declared.help.startswith(setting.help) and f"/story settings {setting.key}:" in declared.help


@pytest.mark.parametrize("setting", STORY_SETTINGS.values(), ids=lambda s: s.key)
def test_the_grammar_takes_type_range_and_description_from_the_setting(setting: StorySetting) -> None:
    spec = c.SETTING_KEYS[setting.key]
    assert (spec.type, spec.minimum, spec.maximum, spec.description) == (
        setting.type,
        setting.minimum,
        setting.maximum,
        setting.help,
    )
    assert f"[{setting.key}:{spec.placeholder}]" in c.usage("settings")


@pytest.mark.parametrize("setting", NUMBERS, ids=lambda s: s.key)
def test_the_config_and_the_grammar_accept_and_refuse_the_same_values(setting: StorySetting) -> None:
    step = 1 if setting.type is int else 0.001
    for value in (setting.minimum, setting.maximum):
        typed = setting.type(value)
        assert c.parse(f"settings {setting.key}:{typed}") == c.Settings(((setting.key, typed),))
        assert validate_setting("model", setting.config_key, typed, "test") == typed
    for value in (setting.minimum - step, setting.maximum + step):
        typed = setting.type(value)
        with pytest.raises(c.ParseError, match=f"^{setting.key} must be "):
            c.parse(f"settings {setting.key}:{typed}")
        with pytest.raises(ConfigError, match=rf"^model\.{setting.config_key} = "):
            validate_setting("model", setting.config_key, typed, "test")


def test_top_p_takes_the_configs_range_everywhere() -> None:
    """The grammar once took any top_p above 0; the config 0.01 to 1. Both take 0.01 to 1 now."""
    with pytest.raises(c.ParseError) as refused:
        c.parse("settings top_p:0.001")
    assert str(refused.value) == "top_p must be a number from 0.01 to 1 (got '0.001')."
    with pytest.raises(ConfigError) as invalid:
        validate_setting("model", "top_p", 0.001, "test")
    assert str(invalid.value) == "model.top_p = 0.001 (from test): must be a number from 0.01 to 1.0."


def test_without_overrides_a_story_has_the_configs_values() -> None:
    model = dataclasses.replace(ModelConfig(), temperature=1.3, max_new_tokens=64, top_k=7, name="tiny")
    settings = StorySettings.of(model, {})
    assert settings == StorySettings(
        temperature=1.3, length=64, top_p=0.95, top_k=7, repetition_penalty=1.1, model="tiny"
    )
    assert StorySettings.of(ModelConfig(), {}) == StorySettings(model=ModelConfig().name)  # the declared defaults


def test_a_storys_overrides_win_and_keep_their_types() -> None:
    stored = {
        "temperature": 1, "length": 200, "top_p": 0.5, "top_k": 0, "repetition_penalty": 2, "model": "gpt2",
        "candidates": 3,
    }  # fmt: skip
    settings = StorySettings.of(ModelConfig(), stored)
    assert settings.as_dict() == stored
    assert [type(value) for value in settings.as_dict().values()] == [float, int, float, int, float, str, int]


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ({"top_p": 0.001}, {"top_p": 0.01}),  # stored when the grammar took anything above 0
        ({"length": 5000, "temperature": -1}, {"length": 1024, "temperature": 0.0}),
        ({"top_k": 12.0}, {"top_k": 12}),
        ({"temperature": "hot", "top_k": True, "top_p": float("nan"), "model": ""}, {}),
        ({"model": 3, "colour": "red"}, {}),
    ],
)
def test_stored_values_are_read_leniently(stored: dict[str, object], read: dict[str, object]) -> None:
    """What an older version stored still loads: clamped into today's range, or the default."""
    settings = StorySettings.of(ModelConfig(), stored)
    assert settings == dataclasses.replace(StorySettings.of(ModelConfig(), {}), **read)


def test_every_setting_of_a_story_reaches_the_sampling() -> None:
    model = dataclasses.replace(ModelConfig(), min_new_tokens=3, no_repeat_ngram_size=4, bad_words=("damn",))
    # A value for each setting that is neither its default nor another setting's.
    changed = {"temperature": 0.3, "length": 300, "top_p": 0.4, "top_k": 30, "repetition_penalty": 1.5}
    assert list(changed) == [s.key for s in NUMBERS]
    sampling = Sampling.for_story(StorySettings.of(model, changed), model)
    assert {s.config_key: getattr(sampling, s.config_key) for s in NUMBERS} == {
        s.config_key: changed[s.key] for s in NUMBERS
    }
    assert (sampling.min_new_tokens, sampling.no_repeat_ngram_size, sampling.bad_words) == (3, 4, ("damn",))


def test_the_backends_defaults_are_the_configs() -> None:
    model = ModelConfig()
    assert Sampling() == Sampling.for_story(StorySettings.of(model, {}), model)


CHANNEL = ChannelRef("test", "guild", "general")
ALICE = Actor("u-alice", "Alice")


async def test_a_story_stored_under_a_wider_range_still_loads_and_writes(rules: SessionManager) -> None:
    started = await rules.handle(CHANNEL, ALICE, c.parse('/story start "Old" It was late.'))
    assert started.ok and started.job_id is not None

    async def store_old_settings(tx: AsyncSession) -> None:  # what the grammar let a story keep before
        story = (await tx.execute(select(Story))).scalar_one()
        story.settings = {"top_p": 0.001, "length": 64}

    await rules.db.transaction(store_old_settings)
    shown = await rules.handle(CHANNEL, ALICE, c.parse("/story settings"))
    assert shown.ok and "top_p:0.01," in shown.text and "length:64," in shown.text
    [spec] = await rules.claim_jobs(1)
    assert spec.settings == StorySettings.of(rules.config.model, {"top_p": 0.01, "length": 64})
    sampling = Sampling.for_story(spec.settings, rules.config.model)
    assert (sampling.top_p, sampling.max_new_tokens) == (0.01, 64)
