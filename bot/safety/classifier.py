"""The content classifier: a Hugging Face text-classification model scores each text, per label.

Choices this module makes:

- Any sequence-classification model, a hub id or a folder (``safety.classifier_model``), with a
  threshold for each label that matters, named as the model names its labels
  (``safety.classifier_thresholds``, e.g. ``toxic=0.8``): a text that scores at or above one is
  refused. The thresholds are checked when the checker is made, against the model's
  ``config.json`` when it is already on this machine (a folder, or the hub cache), else once the
  model has loaded; a label the model lacks is a config error either way, so a typo cannot
  silently switch the check off.
- One threshold set for every rating: the rating decides whether the classifier runs at all
  (``safety.general``, ``teen``, ``mature``), which is how a community says what it wants.
- The model loads on first use, or at start (``load``, from ``Checks.warm_up``), and loads and
  scores on a thread of the checker's own, so the event loop never waits on torch. Not on
  ``MODEL_THREAD`` (``bot.generation.heavy``), where the local backend runs whole generation
  batches: a continuous batch holds that thread for tens of seconds, and a check queued behind it
  would outlast ``safety.timeout_s``, so a person's text would be refused as "checks not
  answering" and the bot's passages withheld. The cost is torch called from two threads: on a
  CPU each keeps its own team of worker threads, and decoding slows while both share the cores
  (``ModelThread`` has the figures). One thread, not a pool, so there are two teams, not more;
  a check cancelled (timed out) before its turn on it is dropped. ``close`` stops the thread.
  Checks that arrive during a load wait for that one load (a cancelled check does not cancel
  it); a failed load is tried again by the next check.
- A multi-label model (``problem_type = "multi_label_classification"``, as toxicity models are)
  scores each label with a sigmoid; any other with a softmax over its labels.
- A text longer than the model's window (512 tokens for BERT) is scored in overlapping windows,
  and each label's highest score counts: what is past the first window is judged too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.config import ConfigError, SafetyConfig
from bot.generation.heavy import heavy_work
from bot.safety.checker import CheckerDown, Standard, Verdict

__all__ = ["ClassifierChecker", "parse_thresholds"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WINDOW_TOKENS = 512  # when neither the tokenizer nor the model says
WINDOW_OVERLAP = 4  # consecutive windows share a quarter of their tokens
_THRESHOLDS_KEY = "safety.classifier_thresholds"
_MAX_DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class _Model:
    """A loaded classifier: what scoring a text needs."""

    tokenizer: Any
    model: Any
    labels: tuple[str, ...]  # by output index
    multi_label: bool
    window: int  # tokens per window, special tokens included


class ClassifierChecker:
    """Refuses a text that the classifier scores at or above a label's threshold (module docstring)."""

    name = "classifier"

    def __init__(self, model_name: str, thresholds: Iterable[str]) -> None:
        if not model_name.strip():
            raise ConfigError(
                "safety.classifier_model is empty: name a Hugging Face text-classification model (hub id or folder)."
            )
        self.model_name = model_name
        self.thresholds = parse_thresholds(thresholds)
        labels = _labels_on_disk(model_name)
        if labels is not None:
            self.thresholds = _matched(self.thresholds, labels, model_name)
        self._model: _Model | None = None
        self._loading: asyncio.Task[_Model] | None = None
        self._misconfigured = ""  # the thresholds name a label the loaded model lacks: no use loading again
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")  # started on first use

    @classmethod
    def from_config(cls, safety: SafetyConfig) -> ClassifierChecker:
        return cls(safety.classifier_model, safety.classifier_thresholds)

    async def load(self) -> None:
        """Load the model, unless loaded; raises ``CheckerDown`` with one line when it cannot."""
        await self._loaded()

    async def close(self) -> None:
        """Stop the classifier's thread without waiting: scoring not yet begun is dropped, and
        what runs finishes on its own."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def scores(self, text: str) -> dict[str, float]:
        """Every label's score for ``text`` (0 to 1; the highest of its windows)."""
        model = await self._loaded()
        try:
            return await self._on_thread(lambda: _score(model, text))
        except Exception as error:  # torch's and the tokenizer's errors: the checker cannot judge
            log.warning("the content classifier failed on a text", exc_info=True)
            raise CheckerDown(f"the content classifier failed: {_detail(error)}") from None

    async def check(self, text: str, standard: Standard) -> Verdict:
        scores = await self.scores(text)
        over = [label for label, threshold in self.thresholds.items() if scores[label] >= threshold]
        if not over:
            return Verdict.PASS
        worst = max(over, key=lambda label: scores[label])
        log.info("the content classifier refused a text: %s scored %.3f", worst, scores[worst])
        return Verdict(
            False,
            self.name,
            f"the content classifier rated it too {worst.replace('_', ' ')} for a story rated {standard.rating.value}",
        )

    async def _loaded(self) -> _Model:
        if self._model is not None:
            return self._model
        if self._misconfigured:
            raise CheckerDown(self._misconfigured)
        if self._loading is None:
            self._loading = asyncio.create_task(self._load())
            self._loading.add_done_callback(_forget_outcome)
        return await asyncio.shield(self._loading)

    async def _load(self) -> _Model:
        try:
            model = await self._on_thread(lambda: _load_model(self.model_name))
            self.thresholds = _matched(self.thresholds, model.labels, self.model_name)
        except ConfigError as error:
            self._misconfigured = str(error)
            raise CheckerDown(self._misconfigured) from None
        finally:
            self._loading = None  # a model that failed to load is tried again by the next check
        self._model = model
        log.info(
            "content classifier %s loaded: labels %s, windows of %d tokens",
            self.model_name,
            ", ".join(model.labels),
            model.window,
        )
        return model

    async def _on_thread(self, function: Callable[[], T]) -> T:
        with heavy_work():
            return await asyncio.wrap_future(self._thread.submit(function))


def parse_thresholds(entries: Iterable[str]) -> dict[str, float]:
    """``label=score`` entries as ``{label: score}``; ``ConfigError`` naming the first bad one."""
    thresholds: dict[str, float] = {}
    for entry in entries:
        label, equals, number = (part.strip() for part in entry.partition("="))
        try:
            score = float(number)
        except ValueError:
            score = math.nan
        if not equals or not label or not 0 <= score <= 1:
            raise ConfigError(
                f"{_THRESHOLDS_KEY} has {entry!r}: each entry must be label=score with a score from 0 to 1,"
                ' e.g. "toxic=0.8".'
            )
        if label in thresholds:
            raise ConfigError(f"{_THRESHOLDS_KEY} names {label!r} twice.")
        thresholds[label] = score
    if not thresholds:
        raise ConfigError(f'{_THRESHOLDS_KEY} is empty: give at least one label=score, e.g. "toxic=0.8".')
    return thresholds


def _matched(thresholds: dict[str, float], labels: Iterable[str], model_name: str) -> dict[str, float]:
    """The thresholds under the model's own spelling of each label (matched ignoring case)."""
    spelled = {label.casefold(): label for label in labels}
    unknown = [label for label in thresholds if label.casefold() not in spelled]
    if unknown:
        raise ConfigError(
            f"{_THRESHOLDS_KEY} names {', '.join(map(repr, unknown))}, which the classifier {model_name} does not"
            f" have; its labels: {', '.join(spelled.values())}."
        )
    return {spelled[label.casefold()]: score for label, score in thresholds.items()}


def _labels_on_disk(model_name: str) -> tuple[str, ...] | None:
    """The model's labels from its ``config.json`` when it is on this machine already (a folder,
    or the hub cache), without loading anything heavy; None when it is not (yet)."""
    found: object
    if _looks_local(model_name):
        found = Path(model_name).expanduser() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError

        try:
            found = try_to_load_from_cache(model_name, "config.json")
        except HFValidationError:
            return None  # not a hub id either: the load says so
    if not isinstance(found, (str, Path)) or not Path(found).is_file():
        return None
    try:
        id2label = json.loads(Path(found).read_text(encoding="utf-8")).get("id2label")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: the load says what is wrong with it
    if not isinstance(id2label, dict):
        return None
    return tuple(str(label) for label in id2label.values())


def _load_model(model_name: str) -> _Model:
    """On the classifier's thread: the tokenizer and the model, or ``CheckerDown`` saying why not."""
    if _looks_local(model_name) and not Path(model_name).expanduser().is_dir():
        raise CheckerDown(
            f"the content classifier's model folder {model_name} does not exist (safety.classifier_model)"
        )
    try:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForSequenceClassification.from_pretrained(model_name).eval()
        config = model.config
        labels = tuple(str(config.id2label[index]) for index in range(config.num_labels))
    except Exception as error:  # the loaders raise many kinds; all mean "cannot load it"
        log.debug("loading the content classifier failed", exc_info=True)
        raise CheckerDown(f"the content classifier could not load {model_name}: {_detail(error)}") from None
    window = min(
        tokenizer.model_max_length or DEFAULT_WINDOW_TOKENS,
        getattr(config, "max_position_embeddings", None) or DEFAULT_WINDOW_TOKENS,
    )
    multi_label = config.problem_type == "multi_label_classification"
    return _Model(tokenizer, model, labels, multi_label, window)


def _score(loaded: _Model, text: str) -> dict[str, float]:
    """On the classifier's thread: each label's highest score over the text's windows.

    The fast tokenizer cuts the windows (``return_overflowing_tokens``), each with the model's
    special tokens; they are scored one at a time, so no padding is needed, whatever the model.
    """
    import torch

    tokenizer = loaded.tokenizer
    room = loaded.window - tokenizer.num_special_tokens_to_add()
    windows = tokenizer(
        text,
        truncation=True,
        max_length=loaded.window,
        stride=room // WINDOW_OVERLAP,
        return_overflowing_tokens=True,
    )
    names = [name for name in tokenizer.model_input_names if name in windows]
    best = torch.zeros(len(loaded.labels), dtype=torch.float64)
    with torch.inference_mode():
        for row in range(len(windows["input_ids"])):
            inputs = {name: torch.tensor([windows[name][row]]) for name in names}
            logits = loaded.model(**inputs).logits[0].double()
            scores = torch.sigmoid(logits) if loaded.multi_label else torch.softmax(logits, dim=-1)
            best = torch.maximum(best, scores)
    return dict(zip(loaded.labels, best.tolist(), strict=True))


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _detail(error: BaseException) -> str:
    """An error's first line, short: what a person can act on."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:_MAX_DETAIL_CHARS]


def _forget_outcome(task: asyncio.Task[_Model]) -> None:
    """Mark a load's failure as seen: the checks waiting on it may all have been cancelled."""
    if not task.cancelled():
        task.exception()
