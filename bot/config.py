"""Typed settings from a TOML file plus ``STORYBOT_<SECTION>_<KEY>`` environment variables.

Every setting is declared once, below, with its default, a one-line help text and its
limits (``choices``, ``min``/``max``, ``min_exclusive``, ``secret``) in the field metadata.
Loading, validation, error messages and ``config.example.toml`` are all derived from
those declarations, so the example file and the code cannot drift apart. The ``[model]``
defaults that a story may change (``/story settings``) are declared in ``bot.story_settings``
and taken from there (``_story_setting``), so the config and the grammar accept the same values.

Secret fields are left out of ``repr()`` so that a ``Config`` can be logged safely.
"""

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from bot.story_settings import STORY_SETTINGS

__all__ = [
    "DEFAULT_PATH",
    "ENV_PREFIX",
    "Adapter",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "DatabaseConfig",
    "DiscordConfig",
    "ExportConfig",
    "GenerationConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "NamedModel",
    "OpenAIConfig",
    "SafetyConfig",
    "Setting",
    "SlackConfig",
    "StoryConfig",
    "WebConfig",
    "Writer",
    "env_var_name",
    "iter_settings",
    "load_config",
    "render_example",
    "validate_setting",
]

DEFAULT_PATH = "storybot.toml"
ENV_PREFIX = "STORYBOT_"

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_MAX_SHOWN_VALUE = 60
_MODELS = "models"  # the [models.NAME] tables: named models, not a section of settings
# No "." (peft's adapter names may not hold one) and no leading "__" (peft's "__base__" means none).
_MODEL_NAME = re.compile(r"(?!__)[A-Za-z0-9_-]{1,100}")


class ConfigError(ValueError):
    """A setting is invalid; the one-line message names the key, the source and what is allowed."""


def _setting(default: Any, help: str, **limits: Any) -> Any:
    """Declare a setting: ``limits`` go into the metadata; secrets are kept out of ``repr``."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, **limits},
        repr=not limits.get("secret", False),
    )


def _story_setting(key: str) -> Any:
    """Declare the ``[model]`` default of a per-story setting from its one declaration.

    Its default, help and range are those of ``bot.story_settings.StorySettings``, so the
    config, ``/story settings`` and the Discord options accept the same values; the help names
    the story's key, which may differ from the config's (``length``, ``max_new_tokens``).
    """
    s = STORY_SETTINGS[key]
    return _setting(
        s.default, f"{s.help}; each story's default for `/story settings {key}:`", min=s.minimum, max=s.maximum
    )


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    """Where stories are stored."""

    url: str = _setting(
        "sqlite+aiosqlite:///storybot.db",
        "SQLAlchemy URL: a SQLite file or postgresql+asyncpg://user@host/db",
    )
    echo: bool = _setting(False, "log every SQL statement")
    busy_timeout_ms: int = _setting(5000, "SQLite busy timeout in milliseconds", min=0)
    write_deadline_s: float = _setting(
        20.0, 'seconds a change waits for a busy database before the bot answers "busy, try again"', min=0
    )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which language model writes the bot's passages, and how it samples."""

    backend: str = _setting(
        "local",
        "generation backend: this process, or an OpenAI-compatible server ([openai])",
        choices=("local", "openai"),
    )
    name: str = _setting(
        "bundled:smollm2-135m",
        "bundled:smollm2-135m (installed by make run; works offline), a .gguf file, a model folder or a hub id",
    )
    prompt_style: str = _setting(
        "auto",
        "how the story is put to the model: as text to continue (completion), or as a request through "
        "its chat template (chat); auto = chat for models that have a chat template",
        choices=("auto", "completion", "chat"),
    )
    cache_dir: str = _setting(
        "", "where the bundled model and .gguf files are kept once converted; empty = ~/.cache/storybot/models"
    )
    device: str = _setting("auto", "where the model runs", choices=("auto", "cpu", "cuda", "mps"))
    dtype: str = _setting(
        "auto",
        "weight precision; auto = half on CUDA, bfloat16 on CPUs with AVX-512 BF16, else float32",
        choices=("auto", "float32", "float16", "bfloat16"),
    )
    quantize: str = _setting(
        "auto",
        "weights in memory on a CPU (Llama-architecture models): int4 (4-bit groups of 32, llama.cpp's Q4_1), "
        "int8, or none (as loaded); auto = int4 when the weights are 4-bit already (the bundled model: "
        "nothing lost), else int8; on a GPU or for other architectures, none",
        choices=("auto", "none", "int8", "int4"),
    )
    threads: int = _setting(0, "torch CPU threads; 0 = torch's default", min=0)
    context_length: int = _setting(0, "prompt + output token budget; 0 = the model's own maximum", min=0)
    max_new_tokens: int = _story_setting("length")
    min_new_tokens: int = _setting(8, "minimum tokens per bot passage", min=0, max=1024)
    temperature: float = _story_setting("temperature")
    top_k: int = _story_setting("top_k")
    top_p: float = _story_setting("top_p")
    repetition_penalty: float = _story_setting("repetition_penalty")
    candidates: int = _story_setting("candidates")
    no_repeat_ngram_size: int = _setting(0, "never repeat an n-gram of this size; 0 = off", min=0, max=10)
    bad_words: tuple[str, ...] = _setting((), "words or phrases the model must not write")
    allowed: tuple[str, ...] = _setting((), "other model names `/story settings model:` may choose; empty = only name")
    local_files_only: bool = _setting(False, "never contact the Hugging Face hub")
    prefix_cache_mb: int = _setting(
        1024, "memory for each channel's reusable prompt cache (local backend; 0 = off)", min=0
    )


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """A ``[models.NAME]`` table: a model a story may choose by NAME, a base model with (or without)
    a LoRA adapter. Stories on the same base share one copy of it in memory, whatever adapter
    each one writes with."""

    base: str = _setting("", "the base model, as model.name takes it; empty = model.name")
    adapter: str = _setting(
        "",
        "a LoRA adapter folder (peft's save_pretrained: adapter_config.json, adapter_model.safetensors) put on "
        "the base; empty = the base alone. With model.backend = openai the server must serve it as NAME "
        "(vLLM: --lora-modules NAME=path)",
    )
    description: str = _setting("", "a few words on what it writes, shown by /story status")


@dataclasses.dataclass(frozen=True)
class Adapter:
    """A LoRA adapter on a base model: the name it is served by (its named model's) and its folder."""

    name: str
    path: str


@dataclasses.dataclass(frozen=True)
class Writer:
    """What writes the passages of a story whose ``model`` setting is ``model``: the base model,
    loaded once for every story on it, and the adapter on it (None: the base alone)."""

    model: str
    base: str
    adapter: Adapter | None = None
    description: str = ""

    def __str__(self) -> str:
        """``noir (base X + adapter Y): what it writes``, or the base's name when it writes alone."""
        if self.model == self.base and self.adapter is None:
            return self.base
        parts = f"base {self.base}" + (f" + adapter {self.adapter.path}" if self.adapter else "")
        return f"{self.model} ({parts})" + (f": {self.description}" if self.description else "")


@dataclasses.dataclass(frozen=True)
class OpenAIConfig:
    """An OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI, OpenAI) for ``model.backend = "openai"``."""

    base_url: str = _setting("http://127.0.0.1:8000/v1", "the server's API root, ending in /v1")
    api_key: str = _setting("", "sent as a Bearer token; empty = none", secret=True)
    endpoint: str = _setting(
        "completions", "continue the story as raw text, or as a chat message", choices=("completions", "chat")
    )
    model: str = _setting("", "the model name the server knows; empty = model.name")
    timeout_s: float = _setting(60.0, "seconds to wait for the server's next streamed text", min=0, min_exclusive=True)
    connect_timeout_s: float = _setting(5.0, "seconds to wait for a connection", min=0, min_exclusive=True)
    retries: int = _setting(
        2, "retries of a failed request (no connection, 5xx, 429) before any text came", min=0, max=10
    )
    retry_backoff_s: float = _setting(0.5, "wait before the first retry; doubled for each further one", min=0)
    send_extra_sampling: bool = _setting(
        True, "also send top_k, repetition_penalty, min_tokens, bad_words (vLLM accepts them; OpenAI does not)"
    )


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How the generation queue treats waiting and running jobs."""

    max_pending: int = _setting(64, 'jobs waiting before the bot answers "busy"', min=1)
    max_batch: int = _setting(8, "bot turns of different channels written together, at most", min=1, max=64)
    job_timeout_s: float = _setting(300.0, "seconds before a bot turn is abandoned", min=0, min_exclusive=True)
    stream_interval_s: float = _setting(
        1.5,
        "seconds between updates of a bot passage as it streams in, counted from the end of the last one "
        "(each edits a chat message; Slack allows about 50 edits a minute); ratings' new counts keep the same pace",
        min=0,
    )
    job_lease_s: float = _setting(
        60.0,
        "a bot turn whose process has not been heard from for this long is run again by another",
        min=0,
        min_exclusive=True,
    )


@dataclasses.dataclass(frozen=True)
class StoryConfig:
    """The story rules: modes, limits and what goes into the prompt."""

    default_mode: str = _setting("alternate", "turn mode of a new story", choices=("alternate", "round-robin", "free"))
    default_rating: str = _setting(
        "general",
        "content rating of a new story unless /story start says rating:…; mature is only ever asked for",
        choices=("general", "teen"),
    )
    max_passage_chars: int = _setting(4000, "longest passage a person may add", min=1)
    max_title_chars: int = _setting(200, "longest story title", min=1)
    max_memory_chars: int = _setting(2000, "longest /story memory text", min=1)
    max_note_chars: int = _setting(500, "longest author's note", min=1)
    max_lore_chars: int = _setting(1000, "longest lore entry", min=1)
    max_lore_entries: int = _setting(100, "lore entries per story", min=1)
    passages_per_minute: int = _setting(6, "passages per person per minute; 0 = unlimited", min=0)
    round_robin_timeout_s: float = _setting(
        600.0,
        "a round-robin participant who does not write within this many seconds is skipped",
        min=0,
        min_exclusive=True,
    )
    remind_after_s: float = _setting(
        300.0,
        "seconds into a round-robin turn before the bot reminds its writer, once; 0 = never "
        "(nor when it is round_robin_timeout_s or more: the skip comes first)",
        min=0,
    )
    vote_timeout_s: float = _setting(
        180.0,
        "seconds a vote on the bot's candidates stays open (/story settings candidates); it closes sooner "
        "once every participant has voted",
        min=5,
    )
    note_depth: int = _setting(3, "the author's note is inserted this many passages from the end", min=0)
    lore_max_tokens: int = _setting(256, "token budget for triggered lore", min=0)
    recap_max_tokens: int = _setting(
        200,
        "token budget for the recap (the story so far: a summary of the passages that no longer fit); 0 turns it off",
        min=0,
    )


SAFETY_CHECKERS = ("words", "classifier", "moderation")


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    """The checks on what people and the bot write (``bot/safety``): which checkers each rating
    uses, the word lists' additions and exceptions, the classifier, the moderation endpoint."""

    general: tuple[str, ...] = _setting(
        ("words",),
        "checkers for stories rated general, in order: words, classifier, moderation",
        choices=SAFETY_CHECKERS,
    )
    teen: tuple[str, ...] = _setting(("words",), "checkers for stories rated teen", choices=SAFETY_CHECKERS)
    mature: tuple[str, ...] = _setting(("words",), "checkers for stories rated mature", choices=SAFETY_CHECKERS)
    lists_dir: str = _setting(
        "", "a folder whose general.txt, teen.txt, mature.txt replace the shipped word lists; empty = shipped"
    )
    ban_general: tuple[str, ...] = _setting((), "more words, phrases or re: patterns refused in general stories")
    ban_teen: tuple[str, ...] = _setting((), "more entries refused in teen (and general) stories")
    ban_mature: tuple[str, ...] = _setting((), "more entries refused in every story")
    allow: tuple[str, ...] = _setting(
        (), "entries of the shipped lists not to use anywhere, as the lists write them (fuck*)"
    )
    decode_bans: bool = _setting(True, "the rating's plain banned words are also bad words for the model")
    timeout_s: float = _setting(5.0, "seconds a checker may take on one text", min=0, min_exclusive=True)
    human_when_down: str = _setting(
        "refuse",
        "a person's text when a checker is down: refuse it, or allow it unchecked by that checker"
        " (a bot passage always waits for its checks)",
        choices=("refuse", "allow"),
    )
    classifier_model: str = _setting("", "a Hugging Face text-classification model (hub id or folder)")
    classifier_thresholds: tuple[str, ...] = _setting(
        (), 'label=score pairs: a text whose label scores at or above it is refused, e.g. "toxic=0.8"'
    )
    moderation_url: str = _setting("", "an OpenAI-compatible API root for /moderations; empty = openai.base_url")
    moderation_api_key: str = _setting("", "its Bearer token; empty = openai.api_key", secret=True)
    moderation_model: str = _setting("", "the moderation model to name; empty = the server's default")
    moderation_allow_teen: tuple[str, ...] = _setting(
        ("violence",), "moderation categories a teen story may be flagged for"
    )
    moderation_allow_mature: tuple[str, ...] = _setting(
        ("sexual", "violence", "violence/graphic", "harassment"),
        "moderation categories a mature story may be flagged for",
    )


@dataclasses.dataclass(frozen=True)
class ConsoleConfig:
    """The terminal channel."""

    user: str = _setting("", 'your name in the console; empty = $USER or "you"')
    channel: str = _setting("console", "the console's channel id; a different id gives a separate story")
    mature: bool = _setting(False, "the console is for adults: stories rated mature may run here")


@dataclasses.dataclass(frozen=True)
class DiscordConfig:
    """The Discord bot: credentials, where Discord is, sharding, command sync, thread messages."""

    token: str = _setting("", "Discord bot token", secret=True)
    api_base_url: str = _setting(
        "https://discord.com/api/v10", "REST API root (an HTTP proxy for large bots, or a test server)"
    )
    gateway_url: str = _setting(
        "wss://gateway.discord.gg/", "gateway websocket URL (unsharded; sharded bots ask the API for it)"
    )
    sharding: str = _setting(
        "off",
        "off = one gateway connection; auto = as many shards as Discord recommends",
        choices=("off", "auto"),
    )
    guild_ids: tuple[str, ...] = _setting(
        (), "servers (guild ids) that `storybot discord --sync` registers /story in; empty = globally"
    )
    message_content_thread_turns: bool = _setting(
        False, "plain messages in a story's thread count as /story add (needs the Message Content intent)"
    )
    moderators_channel: str = _setting(
        "", "the channel id where /story report flags passages; empty = a direct message to the story's starter"
    )


@dataclasses.dataclass(frozen=True)
class SlackConfig:
    """The Slack app: credentials (``app_token`` for Socket Mode, ``signing_secret`` for HTTP mode),
    where the Web API is, rate limits."""

    bot_token: str = _setting("", "Slack bot token, xoxb-...", secret=True)
    app_token: str = _setting("", "Slack app-level token, xapp-..., for Socket Mode", secret=True)
    signing_secret: str = _setting("", "Slack signing secret for HTTP mode", secret=True)
    api_base_url: str = _setting(
        "https://slack.com/api/", "Web API root, ending in / (an HTTP proxy, or a test server)"
    )
    rate_limit_retries: int = _setting(
        3, "times a Web API call answered 429 is retried, after the Retry-After it names", min=0, max=10
    )
    mature_channels: tuple[str, ...] = _setting(
        (), "ids of the channels that are for adults (C0123…): only there may a story be rated mature"
    )
    moderators_channel: str = _setting(
        "", "the channel id where /story report flags passages; empty = a direct message to the story's starter"
    )
    user_cache_s: float = _setting(
        300.0, "seconds a person's name and admin role (from users.info) are remembered", min=0
    )


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """GET /healthz and /metrics from `storybot discord` and `storybot slack` (the web archive and Slack's
    HTTP mode serve them on their own port too)."""

    port: int = _setting(
        0,
        "the port where `storybot discord` and `storybot slack` serve /healthz and /metrics; 0 = none",
        min=0,
        max=65535,
    )
    host: str = _setting("127.0.0.1", "the address that port listens on (0.0.0.0: every interface)")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """How stories are exported as files (/story export, storybot export)."""

    language: str = _setting(
        "en", "language of the stories, as a BCP 47 tag (en, fr, zh-Hans, ar); EPUB and HTML declare it"
    )
    chapter_passages: int = _setting(
        10, "EPUB: passages per chapter, where participants marked no chapters", min=1, max=1000
    )


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """The web archive (``storybot web``) and the links the bot gives to it."""

    public_url: str = _setting(
        "",
        "the archive's address as people reach it, e.g. https://stories.example.org; empty = the bot gives "
        "paths, not links",
    )
    secret: str = _setting("", "signs share links; empty = a random secret the bot keeps in the database", secret=True)
    host: str = _setting("127.0.0.1", "the address `storybot web` listens on")
    port: int = _setting(8080, "the port `storybot web` listens on", min=1, max=65535)


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    """How much the bot logs."""

    level: str = _setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclasses.dataclass(frozen=True)
class Config:
    """All settings, one attribute per TOML section."""

    database: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
    openai: OpenAIConfig = dataclasses.field(default_factory=OpenAIConfig)
    story: StoryConfig = dataclasses.field(default_factory=StoryConfig)
    safety: SafetyConfig = dataclasses.field(default_factory=SafetyConfig)
    console: ConsoleConfig = dataclasses.field(default_factory=ConsoleConfig)
    discord: DiscordConfig = dataclasses.field(default_factory=DiscordConfig)
    slack: SlackConfig = dataclasses.field(default_factory=SlackConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    # The [models.NAME] tables, by NAME (not a section of settings: ``_section_classes`` skips it).
    models: Mapping[str, NamedModel] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}), hash=False, metadata={"tables": NamedModel}
    )

    @property
    def model_choices(self) -> tuple[str, ...]:
        """What ``/story settings model:`` may choose: model.name, model.allowed, the [models] names."""
        return (self.model.name, *self.model.allowed, *self.models)

    def writer(self, model: str) -> Writer:
        """What writes for a story whose ``model`` setting is ``model``: a [models] name is its base
        and adapter; any other name is a base model by itself. The queue, the rules and the status
        all ask here."""
        named = self.models.get(model)
        if named is None:
            return Writer(model, model)
        adapter = Adapter(model, named.adapter) if named.adapter else None
        return Writer(model, named.base, adapter, named.description)


class Setting(NamedTuple):
    """One declared setting, as yielded by :func:`iter_settings`."""

    section: str
    key: str
    default: Any
    help: str
    metadata: Mapping[str, Any]


def _section_classes() -> dict[str, type]:
    """Section name -> its dataclass, in declaration order ([models.NAME] tables are no section)."""
    return {f.name: f.default_factory for f in dataclasses.fields(Config) if "tables" not in f.metadata}  # type: ignore[misc]


def _fields(section: str) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(_section_classes()[section])}


def iter_settings() -> Iterator[Setting]:
    """Every setting in declaration order, for the example file, docs and checks."""
    for section, cls in _section_classes().items():
        for f in dataclasses.fields(cls):
            yield Setting(section, f.name, f.default, f.metadata["help"], f.metadata)


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


# --- validation ---------------------------------------------------------------------------


def _range_text(meta: Mapping[str, Any]) -> str:
    """Describe the numeric limits: ``0 to 2``, ``>= 0`` or ``> 0`` (empty when unlimited)."""
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"> {low}" if meta.get("min_exclusive") else f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def _allowed(f: dataclasses.Field[Any]) -> str:
    """What a value of this field must be, for error messages."""
    meta = f.metadata
    if "choices" in meta:
        choices = ", ".join(meta["choices"])
        return f"one of {choices}" if f.type is str else f"a list of {choices}"
    if f.type is bool:
        return "true or false"
    if f.type in (int, float):
        noun = "a whole number" if f.type is int else "a number"
        limits = _range_text(meta)
        if limits.startswith(("<", ">")):
            return f"{noun} {limits}"
        return f"{noun} from {limits}" if limits else noun
    if f.type is str:
        return "a string"
    return "a list of strings"


def _shown(value: Any, secret: bool) -> str:
    """The value as quoted in an error message: secrets hidden, long values cut."""
    if secret:
        return "<hidden>"
    text = repr(value)
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[: _MAX_SHOWN_VALUE - 3] + "..."
    return text


def _error(section: str, key: str, value: Any, source: str, f: dataclasses.Field[Any]) -> ConfigError:
    shown = _shown(value, f.metadata.get("secret", False))
    return ConfigError(f"{section}.{key} = {shown} (from {source}): must be {_allowed(f)}.")


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value <= low if meta.get("min_exclusive") else value < low):
        return False
    return high is None or value <= high


def validate_setting(section: str, key: str, value: Any, source: str) -> Any:
    """Check a typed value (as TOML gives it) against the field; return it normalised.

    Strict on types: an int is accepted for a float field, but a string is not a number and
    a bool is not an int. Lists become tuples so that the frozen config stays immutable.
    """
    return _validated(_fields(section)[key], section, key, value, source)


def _validated(f: dataclasses.Field[Any], section: str, key: str, value: Any, source: str) -> Any:
    """``validate_setting`` for a field of any declared table (a section, or a [models.NAME] table)."""
    bad = _error(section, key, value, source, f)
    meta = f.metadata
    if f.type is bool:
        if not isinstance(value, bool):
            raise bad
    elif f.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if f.type is int and not isinstance(value, int):
            raise bad
        if f.type is float:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if not _in_range(value, meta):
            raise bad
    elif f.type is str:
        if not isinstance(value, str):
            raise bad
        if "choices" in meta and value not in meta["choices"]:
            raise bad
    else:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad
        if "choices" in meta and any(v not in meta["choices"] for v in value):
            raise bad
        value = tuple(value)
    return value


def _from_env_text(section: str, key: str, text: str, source: str) -> Any:
    """Convert an environment string to the field's type, then validate it."""
    f = _fields(section)[key]
    value: Any = text
    if f.type is bool:
        word = text.strip().lower()
        value = True if word in _TRUE_WORDS else False if word in _FALSE_WORDS else text
    elif f.type is int:
        try:
            value = int(text.strip())
        except ValueError:
            pass
    elif f.type is float:
        try:
            value = float(text.strip())
        except ValueError:
            pass
    elif f.type is not str:
        value = _parse_list(text)
    return validate_setting(section, key, value, source)


def _parse_list(text: str) -> Any:
    """A JSON array, or comma-separated items (blank items dropped); the raw text if neither."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return [item.strip() for item in stripped.split(",") if item.strip()]


# --- loading ------------------------------------------------------------------------------


def _sentence_end(word: str, options: list[str], template: str) -> str:
    """End an "unknown ..." message: a did-you-mean question when a close match exists."""
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {template.format(close[0])}?" if close else "."


def _read_file(path: Path, source: str) -> dict[str, dict[str, Any]]:
    """Parse and validate the TOML file into ``{section: {key: value}}``."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the file: {exc.strerror or exc}") from None

    sections = [*_section_classes(), _MODELS]
    values: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section == _MODELS:
            values[_MODELS] = _read_models(table, source)
            continue
        if section not in sections:
            end = _sentence_end(section, sections, "[{}]")
            raise ConfigError(f"unknown section [{section}] in {source}{end}")
        if not isinstance(table, dict):
            shown = _shown(table, False)
            raise ConfigError(f"{section} = {shown} (from {source}): must be a table [{section}].")
        keys = list(_fields(section))
        for key, value in table.items():
            if key not in keys:
                end = _sentence_end(key, keys, section + ".{}")
                raise ConfigError(f"unknown setting {section}.{key} in {source}{end}")
            values.setdefault(section, {})[key] = validate_setting(section, key, value, source)
    return values


def _read_models(tables: Any, source: str) -> dict[str, dict[str, Any]]:
    """The [models.NAME] tables as ``{NAME: {key: value}}``, each value checked like a setting."""
    if not isinstance(tables, dict):
        raise ConfigError(f"{_MODELS} = {_shown(tables, False)} (from {source}): must be tables [{_MODELS}.NAME].")
    fields = {f.name: f for f in dataclasses.fields(NamedModel)}
    read: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        section = f"{_MODELS}.{name}"
        if not _MODEL_NAME.fullmatch(name):
            raise ConfigError(
                f"[{_MODELS}.{json.dumps(name)}] (from {source}): a model's name is letters, digits, '-' and '_' "
                "(not starting with '__'), at most 100 of them."
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{section} = {_shown(table, False)} (from {source}): must be a table [{section}].")
        read[name] = {}
        for key, value in table.items():
            if key not in fields:
                end = _sentence_end(key, list(fields), section + ".{}")
                raise ConfigError(f"unknown setting {section}.{key} in {source}{end}")
            read[name][key] = _validated(fields[key], section, key, value, source)
    return read


def _named_models(tables: Mapping[str, Mapping[str, Any]], model: ModelConfig, source: str) -> Mapping[str, NamedModel]:
    """The [models] tables as ``NamedModel``s: the base defaults to model.name, and a name may not be
    one model.name or model.allowed has, nor a base another table's name. An adapter folder is only
    read when a story first writes with it (a missing one fails that story's turn, with one line):
    the config must load while ``storybot finetune`` is still writing the adapter it names."""
    taken = {**{name: "model.allowed" for name in model.allowed}, model.name: "model.name"}
    models = {}
    for name, values in tables.items():
        if name in taken:
            raise ConfigError(
                f"[{_MODELS}.{name}] (from {source}): {name} is {taken[name]} already; give this model another name."
            )
        named = NamedModel(**{**values, "base": values.get("base") or model.name})
        if named.base in tables:
            raise ConfigError(
                f"{_MODELS}.{name}.base = {_shown(named.base, False)} (from {source}): a base is a model as "
                "model.name takes it, not another [models] table."
            )
        if named.adapter:
            named = dataclasses.replace(named, adapter=os.path.expanduser(named.adapter))
        models[name] = named
    return MappingProxyType(models)


def _read_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``STORYBOT_<SECTION>_<KEY>`` overrides; other variables are ignored."""
    values: dict[str, dict[str, Any]] = {}
    for s in iter_settings():
        name = env_var_name(s.section, s.key)
        if name in env:
            value = _from_env_text(s.section, s.key, env[name], name)
            values.setdefault(s.section, {})[s.key] = value
    return values


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load settings: defaults, then the TOML file, then environment overrides.

    With no ``path``, ``./storybot.toml`` is read when it exists (otherwise defaults only);
    an explicit ``path`` must exist. ``env`` defaults to ``os.environ``.
    Raises :class:`ConfigError` with a one-line message on any invalid setting.
    """
    if path is None:
        file: Path | None = Path(DEFAULT_PATH) if Path(DEFAULT_PATH).is_file() else None
        source = DEFAULT_PATH
    else:
        file, source = Path(path), os.fspath(path)
        if not file.exists():
            raise ConfigError(f"{source}: config file not found.")

    merged = _read_file(file, source) if file is not None else {}
    for section, overrides in _read_env(os.environ if env is None else env).items():
        merged.setdefault(section, {}).update(overrides)

    tables = merged.pop(_MODELS, {})
    sections = {name: cls(**merged.get(name, {})) for name, cls in _section_classes().items()}
    return Config(**sections, models=_named_models(tables, sections["model"], source))


# --- the example file ---------------------------------------------------------------------

_EXAMPLE_HEADER = """\
# storybot configuration; every setting is shown with its default.
#
# Copy this file to storybot.toml in the directory storybot runs from (or pass its path)
# and change what you need; settings left out keep their defaults.
# Any setting can be overridden by an environment variable STORYBOT_<SECTION>_<KEY>,
# e.g. STORYBOT_MODEL_NAME or STORYBOT_DATABASE_URL; lists take a JSON array or a,b,c.
# Keep secrets (tokens) out of this file: set them in the environment instead.
"""


def _toml_value(value: Any) -> str:
    """Write a default as TOML (JSON strings and arrays are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def _comment(s: Setting) -> str:
    """The help line for a setting, with its choices, range or secret hint."""
    if "choices" in s.metadata:
        extra = ("each " if isinstance(s.default, tuple) else "") + "one of " + ", ".join(s.metadata["choices"])
    elif s.metadata.get("secret"):
        extra = "secret: better set " + env_var_name(s.section, s.key)
    else:
        extra = _range_text(s.metadata)
    return f"# {s.help} ({extra})" if extra else f"# {s.help}"


def render_example() -> str:
    """The text of ``config.example.toml``, generated from the declarations above."""
    lines = [_EXAMPLE_HEADER.rstrip("\n")]
    section = None
    for s in iter_settings():
        if s.section != section:
            section = s.section
            lines += ["", f"[{section}]"]
        lines += [_comment(s), f"{s.key} = {_toml_value(s.default)}"]
    return "\n".join([*lines, "", *_models_example()]) + "\n"


_MODELS_EXAMPLE = {"base": "bundled:smollm2-135m", "adapter": "adapters/noir", "description": "hard-boiled noir"}


def _models_example() -> list[str]:
    """A commented [models.NAME] table: there are none by default, and they take no environment overrides."""
    lines = [
        "# Named models: /story settings model:NAME (the starter or a moderator) switches a story to one.",
        "# NAME is letters, digits, '-' and '_'; these tables are read from this file only.",
        f"# [{_MODELS}.noir]",
    ]
    for f in dataclasses.fields(NamedModel):
        lines += [f"# # {f.metadata['help']}", f"# {f.name} = {_toml_value(_MODELS_EXAMPLE[f.name])}"]
    return lines
