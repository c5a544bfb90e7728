"""The per-story settings (``/story settings``), each declared once, here.

A story's sampling setting used to be written down in seven places (the config, the grammar,
the Discord options, the sessions, the queue, the backend's defaults), and their ranges drifted
apart. Now each field of :class:`StorySettings` is the one declaration of a setting: its name
(the word people type), type, range, help text and default, plus the ``[model]`` config key
that holds the default for every story. Everything else is derived from it:

- ``bot.config.ModelConfig`` declares the config field (default, help, limits) from it, so the
  config's checks and ``config.example.toml`` follow;
- ``bot.commands.SETTING_KEYS`` builds the grammar's checks, error messages and usage from it,
  and the Discord ``/story settings`` options take their ranges and descriptions from those;
- the queue reads a story's values as a typed :class:`StorySettings`, built by
  :meth:`StorySettings.of` from the config and the story's stored overrides;
- ``bot.generation.backend.Sampling`` takes its defaults from the config's.

This module imports nothing of the bot at run time, so that ``bot.config`` can import it.
"""

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from bot.config import ModelConfig

__all__ = ["STORY_SETTINGS", "StorySetting", "StorySettings"]


def _declare(
    help: str, *, minimum: float, maximum: float, default: Any = dataclasses.MISSING, config_key: str = ""
) -> Any:
    """A field of :class:`StorySettings` with what the rest of the bot derives from it.

    ``minimum``/``maximum`` bound a number, or a name's length; ``config_key`` is the
    ``[model]`` field holding every story's default (the field's own name when not given).
    A field without a default is not declared by the config here (``model.name`` has its own
    declaration, wider than what a story may choose), so it is keyword-only.
    """
    return dataclasses.field(
        default=default,
        kw_only=default is dataclasses.MISSING,
        metadata={"help": help, "min": minimum, "max": maximum, "config_key": config_key},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class StorySettings:
    """How the bot writes one story's passages: the config's defaults, changed per story.

    The defaults below are the config's (``[model]``); a story's ``/story settings`` overrides
    them. The field order is the order people see them in (usage, ``/story settings``).
    """

    temperature: float = _declare("randomness; lower is more predictable", minimum=0, maximum=2, default=0.8)
    length: int = _declare(
        "new tokens per bot passage", minimum=16, maximum=1024, default=120, config_key="max_new_tokens"
    )
    top_p: float = _declare(
        "sample from the likeliest tokens up to this total probability", minimum=0.01, maximum=1.0, default=0.95
    )
    top_k: int = _declare("sample from the k likeliest tokens; 0 = no limit", minimum=0, maximum=500, default=50)
    repetition_penalty: float = _declare("discourage repeats; 1 = none", minimum=1, maximum=2, default=1.1)
    model: str = _declare("the model that writes the bot's passages", minimum=1, maximum=200, config_key="name")
    candidates: int = _declare(
        "passages the bot writes per turn for the channel to vote on; 1 = no vote", minimum=1, maximum=4, default=1
    )

    @classmethod
    def of(cls, model: "ModelConfig", overrides: Mapping[str, object]) -> "StorySettings":
        """A story's settings: its stored ``overrides`` over the config's ``model`` defaults.

        Stored values are read leniently (:meth:`StorySetting.stored`): a story keeps working
        whatever an older version let it store. Keys that are not settings are ignored.
        """
        values: dict[str, Any] = {
            s.key: s.stored(overrides.get(s.key), getattr(model, s.config_key)) for s in STORY_SETTINGS.values()
        }
        return cls(**values)

    def as_dict(self) -> dict[str, object]:
        """Setting -> value, in declaration order: what ``/story settings`` shows and a passage records."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class StorySetting(NamedTuple):
    """One declared setting, read from its :class:`StorySettings` field."""

    key: str
    type: type[int] | type[float] | type[str]
    default: Any  # the config's default; MISSING where the config declares it itself
    minimum: float
    maximum: float
    help: str
    config_key: str

    @property
    def config_declared(self) -> bool:
        """Whether ``bot.config`` declares the ``[model]`` field from this setting."""
        return self.default is not dataclasses.MISSING

    def stored(self, value: object, default: Any) -> Any:
        """``value``, as a story stored it, made a valid value of this setting; else ``default``.

        A number outside the range is clamped into it rather than refused: the range may have
        narrowed since it was stored (``top_p`` once took anything above 0, now 0.01 to 1), and
        an old story must still load and write.
        """
        if self.type is str:
            return value if isinstance(value, str) and value else default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return default
        return self.type(min(max(value, self.minimum), self.maximum))


def _declared() -> Mapping[str, StorySetting]:
    settings = {}
    for f in dataclasses.fields(StorySettings):
        meta = f.metadata
        settings[f.name] = StorySetting(
            key=f.name,
            type=f.type,  # type: ignore[arg-type]  # a real class: this module does not postpone annotations
            default=f.default,
            minimum=meta["min"],
            maximum=meta["max"],
            help=meta["help"],
            config_key=meta["config_key"] or f.name,
        )
    return MappingProxyType(settings)


STORY_SETTINGS: Mapping[str, StorySetting] = _declared()
