"""Settings: defaults, file discovery, environment overrides, one-line errors, the example file."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from bot.config import (
    Config,
    ConfigError,
    env_var_name,
    iter_settings,
    load_config,
    render_example,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
    """Run in a directory without storybot.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(empty_dir):
    config = load_config(env={})
    assert config == Config()
    assert config.database.url == "sqlite+aiosqlite:///storybot.db"
    assert config.model.name == "bundled:smollm2-135m"
    assert config.model.temperature == 0.8
    assert config.model.bad_words == ()
    assert config.story.default_mode == "alternate"
    assert config.logging.level == "INFO"


def test_storybot_toml_in_cwd_is_picked_up(empty_dir):
    write(empty_dir / "storybot.toml", '[model]\nname = "tiny"\n')
    assert load_config(env={}).model.name == "tiny"


def test_explicit_path(empty_dir, tmp_path):
    path = write(tmp_path / "other.toml", "[story]\nmax_title_chars = 50\n")
    config = load_config(path, env={})
    assert config.story.max_title_chars == 50
    assert load_config(str(path), env={}) == config


def test_missing_explicit_path_is_an_error(empty_dir):
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(empty_dir / "nope.toml", env={})


def test_invalid_toml_names_the_file(empty_dir):
    path = write(empty_dir / "bad.toml", "[model\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(path, env={})


def test_file_values_are_typed(empty_dir):
    path = write(
        empty_dir / "c.toml",
        '[model]\ntemperature = 1\nbad_words = ["damn", "heck"]\nlocal_files_only = true\n'
        "[generation]\njob_timeout_s = 5\n",
    )
    config = load_config(path, env={})
    assert config.model.temperature == 1.0 and isinstance(config.model.temperature, float)
    assert config.model.bad_words == ("damn", "heck")
    assert config.model.local_files_only is True
    assert config.generation.job_timeout_s == 5.0


@pytest.mark.parametrize(
    ("var", "text", "section", "key", "expected"),
    [
        ("STORYBOT_DATABASE_URL", "postgresql+asyncpg://u@h/db", "database", "url", "postgresql+asyncpg://u@h/db"),
        ("STORYBOT_MODEL_MAX_NEW_TOKENS", " 64 ", "model", "max_new_tokens", 64),
        ("STORYBOT_MODEL_TEMPERATURE", "1.5", "model", "temperature", 1.5),
        ("STORYBOT_GENERATION_JOB_TIMEOUT_S", "30", "generation", "job_timeout_s", 30.0),
        ("STORYBOT_DATABASE_ECHO", "yes", "database", "echo", True),
        ("STORYBOT_DATABASE_ECHO", "On", "database", "echo", True),
        ("STORYBOT_DATABASE_ECHO", "1", "database", "echo", True),
        ("STORYBOT_MODEL_LOCAL_FILES_ONLY", "off", "model", "local_files_only", False),
        ("STORYBOT_MODEL_LOCAL_FILES_ONLY", "0", "model", "local_files_only", False),
        ("STORYBOT_MODEL_ALLOWED", "a/b, c ,", "model", "allowed", ("a/b", "c")),
        ("STORYBOT_MODEL_BAD_WORDS", '["x, y", "z"]', "model", "bad_words", ("x, y", "z")),
        ("STORYBOT_MODEL_BAD_WORDS", "", "model", "bad_words", ()),
        ("STORYBOT_DISCORD_TOKEN", "abc", "discord", "token", "abc"),
        ("STORYBOT_SLACK_BOT_TOKEN", "xoxb-1", "slack", "bot_token", "xoxb-1"),
        ("STORYBOT_STORY_DEFAULT_MODE", "round-robin", "story", "default_mode", "round-robin"),
    ],
)
def test_env_overrides(empty_dir, var, text, section, key, expected):
    config = load_config(env={var: text})
    assert getattr(getattr(config, section), key) == expected


def test_env_wins_over_file_and_other_keys_keep_file_values(empty_dir):
    write(empty_dir / "storybot.toml", '[model]\nname = "from-file"\ntop_k = 7\n')
    config = load_config(env={"STORYBOT_MODEL_NAME": "from-env"})
    assert config.model.name == "from-env"
    assert config.model.top_k == 7


def test_unknown_env_vars_are_ignored(empty_dir):
    env = {"STORYBOT_MODEL_TEMPRATURE": "9", "STORYBOT_HOME": "/x", "STORYBOT_FOO_BAR": "1"}
    assert load_config(env=env) == Config()


FILE_ERRORS = [
    ("[model]\ntemperature = 'hot'", "model.temperature = 'hot'", "a number from 0 to 2"),
    ("[model]\ntemperature = 2.5", "model.temperature = 2.5", "a number from 0 to 2"),
    ("[model]\ntemperature = nan", "model.temperature = nan", "a number from 0 to 2"),
    ("[model]\ntop_k = true", "model.top_k = True", "a whole number from 0 to 500"),
    ("[model]\ntop_k = 1.5", "model.top_k = 1.5", "a whole number from 0 to 500"),
    ("[model]\nmax_new_tokens = 8", "model.max_new_tokens = 8", "a whole number from 16 to 1024"),
    ("[model]\ntop_p = 0.0", "model.top_p = 0.0", "a number from 0.01 to 1.0"),
    ("[model]\nthreads = -1", "model.threads = -1", "a whole number >= 0"),
    ("[model]\ndevice = 'tpu'", "model.device = 'tpu'", "one of auto, cpu, cuda, mps"),
    ("[model]\nbad_words = 'x'", "model.bad_words = 'x'", "a list of strings"),
    ("[model]\nbad_words = [1]", "model.bad_words = [1]", "a list of strings"),
    ("[model]\nlocal_files_only = 'yes'", "model.local_files_only = 'yes'", "true or false"),
    ("[model]\nname = 3", "model.name = 3", "a string"),
    ("[generation]\njob_timeout_s = 0", "generation.job_timeout_s = 0", "a number > 0"),
    ("[generation]\nmax_pending = 0", "generation.max_pending = 0", "a whole number >= 1"),
    ("[story]\ndefault_mode = 'fast'", "story.default_mode = 'fast'", "one of alternate, round-robin, free"),
    ("[logging]\nlevel = 'info'", "logging.level = 'info'", "one of DEBUG, INFO, WARNING, ERROR"),
]


@pytest.mark.parametrize(("text", "head", "allowed"), FILE_ERRORS)
def test_bad_file_values(empty_dir, text, head, allowed):
    write(empty_dir / "storybot.toml", text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert str(info.value) == f"{head} (from storybot.toml): must be {allowed}."


ENV_ERRORS = [
    ("STORYBOT_MODEL_TEMPERATURE", "hot", "model.temperature = 'hot'", "a number from 0 to 2"),
    ("STORYBOT_MODEL_TEMPERATURE", "inf", "model.temperature = inf", "a number from 0 to 2"),
    ("STORYBOT_MODEL_TOP_K", "1.5", "model.top_k = '1.5'", "a whole number from 0 to 500"),
    ("STORYBOT_MODEL_TOP_K", "", "model.top_k = ''", "a whole number from 0 to 500"),
    ("STORYBOT_MODEL_TOP_K", "501", "model.top_k = 501", "a whole number from 0 to 500"),
    ("STORYBOT_DATABASE_ECHO", "maybe", "database.echo = 'maybe'", "true or false"),
    ("STORYBOT_MODEL_DTYPE", "int8", "model.dtype = 'int8'", "one of auto, float32, float16, bfloat16"),
    ("STORYBOT_MODEL_ALLOWED", "[1, 2]", "model.allowed = [1, 2]", "a list of strings"),
    ("STORYBOT_MODEL_ALLOWED", "[oops", "model.allowed = '[oops'", "a list of strings"),
    ("STORYBOT_STORY_ROUND_ROBIN_TIMEOUT_S", "-1", "story.round_robin_timeout_s = -1.0", "a number > 0"),
]


@pytest.mark.parametrize(("var", "text", "head", "allowed"), ENV_ERRORS)
def test_bad_env_values(empty_dir, var, text, head, allowed):
    with pytest.raises(ConfigError) as info:
        load_config(env={var: text})
    assert str(info.value) == f"{head} (from {var}): must be {allowed}."


def test_bad_secret_value_is_not_echoed(empty_dir):
    write(empty_dir / "storybot.toml", "[discord]\ntoken = 12345678\n")
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert "12345678" not in str(info.value)
    assert str(info.value).startswith("discord.token = <hidden> (from storybot.toml)")


def test_error_messages_are_one_line(empty_dir):
    write(empty_dir / "storybot.toml", '[model]\nname = ["a\\nb"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[model]\ntemprature = 1\n",
            "unknown setting model.temprature in storybot.toml; did you mean model.temperature?",
        ),
        ("[modle]\nname = 'x'\n", "unknown section [modle] in storybot.toml; did you mean [model]?"),
        ("[zzz]\n", "unknown section [zzz] in storybot.toml."),
        ("model = 3\n", "model = 3 (from storybot.toml): must be a table [model]."),
    ],
)
def test_unknown_keys_and_sections_in_file(empty_dir, text, message):
    write(empty_dir / "storybot.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert str(info.value) == message


def test_secrets_are_not_in_repr(empty_dir):
    env = {
        "STORYBOT_DISCORD_TOKEN": "discord-secret",
        "STORYBOT_SLACK_BOT_TOKEN": "xoxb-secret",
        "STORYBOT_SLACK_APP_TOKEN": "xapp-secret",
        "STORYBOT_SLACK_SIGNING_SECRET": "signing-secret",
        "STORYBOT_WEB_SECRET": "web-secret",
    }
    config = load_config(env=env)
    assert config.slack.signing_secret == "signing-secret"
    text = repr(config) + str(config)
    for secret in env.values():
        assert secret not in text
    assert "sqlite+aiosqlite" in text


def test_every_setting_has_help_and_a_valid_default():
    settings = list(iter_settings())
    # (models holds the [models.NAME] tables, no settings)
    assert {s.section for s in settings} == {f.name for f in dataclasses.fields(Config)} - {"models"}
    for s in settings:
        assert s.help and "\n" not in s.help
        assert s.metadata["help"] == s.help
    secrets = {f"{s.section}.{s.key}" for s in settings if s.metadata.get("secret")}
    assert secrets == {
        "discord.token",
        "slack.bot_token",
        "slack.app_token",
        "slack.signing_secret",
        "openai.api_key",
        "safety.moderation_api_key",
        "web.secret",
    }
    assert env_var_name("slack", "bot_token") == "STORYBOT_SLACK_BOT_TOKEN"


def test_example_file_matches_the_code_and_gives_the_defaults(empty_dir):
    example = REPO / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    assert text == render_example(), "regenerate config.example.toml from render_example()"
    assert load_config(example, env={}) == Config()
    data = tomllib.loads(text)
    assert [(s.section, s.key) for s in iter_settings()] == [
        (section, key) for section, table in data.items() for key in table
    ]
