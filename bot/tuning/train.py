"""Train a LoRA adapter (peft) on the examples, measure it on the held-out stories, write it whole.

The base model is loaded as the bot names it (``bundled:…``, a ``.gguf`` file, a folder or a hub
id, through ``model_files.model_source``) in float32, on the device ``model.device`` picks.
Where ``model.dtype`` comes to bfloat16 (``auto``: a CPU with AVX-512 BF16, a GPU that has it) the
forward and backward passes run under bfloat16 autocast, about 1.45x faster on such a CPU; the
weights, the adapter and the optimizer stay float32. ``model.dtype = "float32"`` turns that off.
Each example is its context (the bot's prompt, framed as the local backend frames it) followed
by its passage and the end-of-text token; the loss is the passage's tokens' only, so the adapter
learns to write the passage, not to predict prompts. Logits are computed only from the first
passage token of the batch on (``logits_to_keep``): the context's are never needed.

Examples are batched by a token budget (padded rows, similar lengths together). AdamW with a
short linear warm-up and a linear decay to zero; gradients clipped at 1.0. The held-out figure
is the mean loss per passage token over every held-out target, before training (the bare base
model) and after, with perplexity = exp(loss).

The folder holds peft's ``save_pretrained`` output (``adapter_config.json``,
``adapter_model.safetensors``), ``README.md`` (the model card) and ``storybot.json`` (the base
model as the user named it, and the frame and context the adapter was trained in).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from bot.config import Config, ModelConfig
from bot.context import COMPLETION
from bot.generation.backend import ModelUnavailable
from bot.generation.local import pick_device, pick_dtype, prompt_frame_for
from bot.generation.model_files import model_source
from bot.progress import progress_bar
from bot.results import UserError
from bot.tuning.examples import Example, SourceStory, prompt_limits, stories_counted, story_examples
from bot.tuning.output import new_folder
from bot.tuning.settings import Settings
from bot.words import counted

LORA_DROPOUT = 0.05
TARGET_MODULES = "all-linear"
WARMUP_FRACTION = 0.05
MAX_GRAD_NORM = 1.0
# A passage longer than this is learned from its beginning (without the end-of-text token).
MAX_TARGET_TOKENS = 512
# Examples are shuffled, then sorted by length within windows of this many, then batched: rows
# of a batch have similar lengths (little padding) and batches still differ from epoch to epoch.
SORT_WINDOW = 64
IGNORE = -100  # labels that count for nothing


@dataclass(frozen=True)
class SplitSummary:
    stories: int
    passages: int
    target_tokens: int  # the passages' tokens (with end-of-text): what the loss is over
    tokens: int  # contexts and passages together: what one pass through them reads


@dataclass(frozen=True)
class Figures:
    loss_before: float
    loss_after: float
    train_seconds: float
    train_tokens: int  # context and passage tokens read in training, every epoch (no padding)
    steps: int

    @property
    def perplexity_before(self) -> float:
        return math.exp(self.loss_before)

    @property
    def perplexity_after(self) -> float:
        return math.exp(self.loss_after)

    @property
    def seconds_per_1k_tokens(self) -> float:
        return self.train_seconds / max(self.train_tokens, 1) * 1000


@dataclass(frozen=True)
class Outcome:
    """What one run did: for the command's last lines, the model card and the benchmark."""

    base: str
    frame: str  # "chat" or "completion"
    device: str
    dtype: str
    threads: int
    train: SplitSummary
    held_out: SplitSummary
    figures: Figures
    folder: Path


@dataclass(frozen=True)
class _Compute:
    """Where the model runs, and whether under bfloat16 autocast (float32 weights either way)."""

    device: str
    autocast: bool

    def __call__(self) -> AbstractContextManager[Any]:
        if not self.autocast:
            return nullcontext()
        return torch.autocast(device_type=self.device, dtype=torch.bfloat16)

    @property
    def dtype(self) -> str:
        return "bfloat16 autocast, float32 weights" if self.autocast else "float32"


@dataclass(frozen=True)
class _Tokenized:
    ids: list[int]
    context_len: int  # the first target token's index


def finetune(
    config: Config,
    base: str,
    train_stories: Sequence[SourceStory],
    held_stories: Sequence[SourceStory],
    out: Path,
    settings: Settings,
    sources: Sequence[str] = (),
    echo: Callable[[str], None] | None = None,
) -> Outcome:
    """Train the adapter, measure it, and write it to ``out`` (which must be new or empty).

    ``sources`` describes where the stories came from, for the model card. Progress bars go to
    stderr; ``echo`` gets the summary lines (default: stdout, flushed). Ctrl-C leaves nothing at ``out``.
    """
    echo = echo or _say
    began = datetime.now(UTC)
    torch.manual_seed(settings.seed)
    if config.model.threads > 0:
        torch.set_num_threads(config.model.threads)
    device = pick_device(config.model.device)
    compute = _Compute(device, device in ("cpu", "cuda") and pick_dtype(config.model.dtype, device) == torch.bfloat16)
    tokenizer, model, source = _load(base, config.model, device)
    try:
        frame = prompt_frame_for(config.model.prompt_style, base, tokenizer)
    except ModelUnavailable as error:
        raise UserError(str(error)) from None
    frame_name = "completion" if frame == COMPLETION else "chat"

    @lru_cache(maxsize=65536)
    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    limits = prompt_limits(settings.context, frame, config.story, count_tokens)
    train_examples = [e for s in train_stories for e in story_examples(s, frame, limits, count_tokens)]
    held_examples = [e for s in held_stories for e in story_examples(s, frame, limits, count_tokens)]
    train_rows = _tokenize(train_examples, tokenizer)
    held_rows = _tokenize(held_examples, tokenizer)
    train_summary = _summary(train_stories, train_rows)
    held_summary = _summary(held_stories, held_rows)
    pad_id = _pad_id(tokenizer)

    echo(
        f"Base model: {base} ({frame_name} frame, context {settings.context} tokens), {compute.dtype} on {device}, "
        f"{counted(torch.get_num_threads(), 'thread')}"
    )
    echo(f"Training on {_describe(train_summary)}")
    echo(f"Held out: {_describe(held_summary)}: {', '.join(s.label for s in held_stories)}")
    left_out = sum(s.turned_down for s in (*train_stories, *held_stories))
    headings = sum(s.headings for s in (*train_stories, *held_stories))
    if left_out or headings:
        echo(
            f"Left out: {counted(left_out, 'bot passage')} people turned down (retried, undone or rated down), "
            f"{counted(headings, 'chapter heading')}"
        )

    with new_folder(out) as folder:
        loss_before = _evaluate(model, held_rows, settings.batch_tokens, pad_id, compute, "held-out loss before")
        echo(f"Held-out loss before: {loss_before:.4f} (perplexity {math.exp(loss_before):.2f})")
        peft_model = _with_lora(model, settings.rank)
        epochs = _epoch_batches(train_rows, settings, random.Random(settings.seed))
        steps = sum(len(batches) for batches in epochs)
        echo(
            f"Training: {counted(settings.epochs, 'epoch')}, {counted(steps, 'step')}, LoRA rank {settings.rank}, "
            f"learning rate {settings.lr:g}"
        )
        train_seconds = _train(peft_model, epochs, settings, pad_id, compute)
        loss_after = _evaluate(peft_model, held_rows, settings.batch_tokens, pad_id, compute, "held-out loss after")
        figures = Figures(loss_before, loss_after, train_seconds, train_summary.tokens * settings.epochs, steps)
        echo(f"Held-out loss after: {loss_after:.4f} (perplexity {math.exp(loss_after):.2f})")
        echo(
            f"Trained in {_duration(train_seconds)}: {figures.train_tokens:,} tokens, "
            f"{figures.seconds_per_1k_tokens:.2f} s per 1,000 training tokens "
            f"({figures.train_tokens / max(train_seconds, 1e-9):,.0f} tokens/s)"
        )
        outcome = Outcome(
            base, frame_name, device, compute.dtype, torch.get_num_threads(), train_summary, held_summary, figures, out
        )
        peft_model.save_pretrained(str(folder), save_embedding_layers=False)
        (folder / "README.md").write_text(
            model_card(outcome, settings, train_stories, held_stories, sources, source, began), encoding="utf-8"
        )
        (folder / "storybot.json").write_text(
            json.dumps(
                {
                    "base_model": base,
                    "prompt_frame": frame_name,
                    "context_tokens": settings.context,
                    "trained_at": began.isoformat(timespec="seconds"),
                    "storybot_version": _version(),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    echo(f"Wrote the adapter to {out}")
    return outcome


# ---------------------------------------------------------------------------- model and data


def _say(line: str) -> None:
    print(line, flush=True)  # each line as it happens, also through a pipe (| tee training.log)


def _load(base: str, settings: ModelConfig, device: str) -> tuple[Any, Any, str]:
    """(tokenizer, float32 model on ``device``, the folder or hub id loaded); one-line errors."""
    try:
        source = model_source(base, settings.cache_dir)
    except ModelUnavailable as unavailable:
        raise UserError(str(unavailable)) from None
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' logging helpers are untyped
    local = settings.local_files_only or Path(source).expanduser().exists()
    reason = ""
    for local_only in (True,) if local else (True, False):
        try:
            tokenizer: Any = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=local_only)
        except Exception as error:  # the loaders raise many kinds; all mean "cannot load it"
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            continue
        return tokenizer, model.to(device), source
    raise UserError(f"cannot load the base model {base} ({reason}); --base names another.")


def _pad_id(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(value, int):
            return value
    return 0


def _tokenize(examples: Sequence[Example], tokenizer: Any) -> list[_Tokenized]:
    """Context and passage tokenized apart, as the bot tokenizes its prompt and then writes the
    passage token by token; the passage ends with end-of-text unless it had to be cut."""
    eos = tokenizer.eos_token_id
    rows = []
    for example in examples:
        context = tokenizer(example.context, add_special_tokens=False)["input_ids"]
        target = tokenizer(example.target, add_special_tokens=False)["input_ids"]
        if isinstance(eos, int):
            target.append(eos)
        if not context:  # a first token has nothing before it to be predicted from
            context = [eos if isinstance(eos, int) else 0]
        rows.append(_Tokenized(context + target[:MAX_TARGET_TOKENS], len(context)))
    return rows


def _summary(stories: Sequence[SourceStory], rows: Sequence[_Tokenized]) -> SplitSummary:
    return SplitSummary(
        stories=len(stories),
        passages=len(rows),
        target_tokens=sum(len(r.ids) - r.context_len for r in rows),
        tokens=sum(len(r.ids) for r in rows),
    )


def _describe(summary: SplitSummary) -> str:
    return (
        f"{stories_counted(summary.stories)}, {counted(summary.passages, 'passage')}, "
        f"{summary.target_tokens:,} passage tokens ({summary.tokens:,} with their contexts)"
    )


def _batches(rows: Sequence[_Tokenized], budget: int, rng: random.Random) -> list[list[_Tokenized]]:
    """One epoch's batches: padded size (rows x longest) within ``budget`` tokens, in random order."""
    order = list(rows)
    rng.shuffle(order)
    batches: list[list[_Tokenized]] = []
    for start in range(0, len(order), SORT_WINDOW):
        batch: list[_Tokenized] = []
        longest = 0
        for row in sorted(order[start : start + SORT_WINDOW], key=lambda r: len(r.ids)):
            wider = max(longest, len(row.ids))
            if batch and wider * (len(batch) + 1) > budget:
                batches.append(batch)
                batch, wider = [], len(row.ids)
            batch.append(row)
            longest = wider
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def _epoch_batches(rows: Sequence[_Tokenized], settings: Settings, rng: random.Random) -> list[list[list[_Tokenized]]]:
    return [_batches(rows, settings.batch_tokens, rng) for _ in range(settings.epochs)]


# ---------------------------------------------------------------------------- loss, training


def _loss_sum(model: Any, batch: Sequence[_Tokenized], pad_id: int, compute: _Compute) -> tuple[torch.Tensor, int]:
    """(summed loss over the batch's target tokens, how many there are)."""
    width = max(len(r.ids) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.ids)
        ids[row, :length] = torch.tensor(example.ids)
        mask[row, :length] = 1
        labels[row, example.context_len : length] = ids[row, example.context_len : length]
    # The logits at position p predict token p + 1: those from the earliest target's position - 1 on.
    keep = width - min(r.context_len for r in batch) + 1
    device = compute.device
    with compute():
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep, use_cache=False
        ).logits
    targets = labels[:, width - keep + 1 :].to(device)
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())


def _evaluate(model: Any, rows: Sequence[_Tokenized], budget: int, pad_id: int, compute: _Compute, label: str) -> float:
    """Mean loss per target token over ``rows``."""
    model.eval()
    batches = _batches(rows, budget, random.Random(0))
    total, count = 0.0, 0
    with torch.no_grad(), progress_bar(total=len(batches), desc=label, unit="batch", leave=False) as bar:
        for batch in batches:
            loss, tokens = _loss_sum(model, batch, pad_id, compute)
            total += float(loss)
            count += tokens
            bar.update(1)
    return total / max(count, 1)


def _with_lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=LORA_DROPOUT,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # Nothing for a person to do about either: peft asks transformers a question transformers 5 renamed,
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        # and sets fan_in_fan_out itself for GPT-2's Conv1D layers, and says so.
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False", category=UserWarning)
        return get_peft_model(model, config)


def _train(
    model: Any, epochs: Sequence[Sequence[Sequence[_Tokenized]]], settings: Settings, pad_id: int, compute: _Compute
) -> float:
    """Run every epoch's batches; returns the seconds it took."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    steps = sum(len(batches) for batches in epochs)
    warmup = max(1, round(WARMUP_FRACTION * steps))

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(steps - warmup, 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    smoothed: float | None = None
    began = time.perf_counter()
    with progress_bar(total=steps, desc="training", unit="step") as bar:
        for number, batches in enumerate(epochs, start=1):
            bar.set_description(f"epoch {number}/{len(epochs)}")
            for batch in batches:
                loss_sum, tokens = _loss_sum(model, batch, pad_id, compute)
                loss = loss_sum / max(tokens, 1)
                loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is untyped
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                value = float(loss.detach())
                smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
                bar.set_postfix(loss=f"{smoothed:.3f}", refresh=False)
                bar.update(1)
    model.eval()
    return time.perf_counter() - began


# ---------------------------------------------------------------------------- the model card


def model_card(
    outcome: Outcome,
    settings: Settings,
    train_stories: Sequence[SourceStory],
    held_stories: Sequence[SourceStory],
    sources: Sequence[str],
    loaded_from: str,
    began: datetime,
) -> str:
    """``README.md`` of the adapter's folder: what it was trained on, how, and what it measured."""
    figures = outcome.figures
    left_out = sum(s.turned_down for s in (*train_stories, *held_stories))
    headings = sum(s.headings for s in (*train_stories, *held_stories))
    loaded = f" (loaded from `{loaded_from}`)" if loaded_from != outcome.base else ""
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {json.dumps(outcome.base)}",
        "tags: [storybot, lora]",
        "---",
        "",
        f"# {outcome.folder.name}: a storybot LoRA adapter",
        "",
        f"Trained by `storybot finetune` (storybot {_version()}) on {began:%Y-%m-%d %H:%M} UTC, "
        f"to write the next passage of a story in storybot's own prompt ({outcome.frame} frame).",
        "",
        "## Base model",
        "",
        f"`{outcome.base}`{loaded}, trained in {outcome.dtype} on {outcome.device} "
        f"({counted(outcome.threads, 'thread')}).",
        "",
        "## Data",
        "",
        "Sources: " + ("; ".join(sources) if sources else "every finished story in the database") + ".",
        "",
        "| split | stories | passages | passage tokens | tokens with contexts |",
        "| --- | ---: | ---: | ---: | ---: |",
        _split_row("training", outcome.train),
        _split_row("held out", outcome.held_out),
        "",
        *_channels_line((*train_stories, *held_stories)),
        "Held out whole (never some passages of a story): " + ", ".join(s.label for s in held_stories) + ".",
        "Trained on: " + ", ".join(s.label for s in train_stories) + ".",
        "",
        f"Left out: {counted(left_out, 'bot passage')} people turned down (retried away, undone, or more 👎 "
        f"than 👍); {counted(headings, 'chapter heading')} (kept as context, never learned).",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| epochs | {settings.epochs} |",
        f"| LoRA rank, alpha, dropout | {settings.rank}, {2 * settings.rank}, {LORA_DROPOUT} |",
        f"| target modules | {TARGET_MODULES} |",
        f"| learning rate | {settings.lr:g} (AdamW, {WARMUP_FRACTION:.0%} warm-up, linear decay) |",
        f"| context | {settings.context} tokens before each passage, frame included |",
        f"| batch | up to {settings.batch_tokens:,} padded tokens ({counted(figures.steps, 'step')} in all) |",
        f"| held out | {settings.holdout:g} of the stories |",
        f"| seed | {settings.seed} |",
        "",
        "## Figures",
        "",
        "Mean loss per passage token on the held-out stories, and perplexity (exp of the loss):",
        "",
        "| | loss | perplexity |",
        "| --- | ---: | ---: |",
        f"| before (base model) | {figures.loss_before:.4f} | {figures.perplexity_before:.2f} |",
        f"| after (with this adapter) | {figures.loss_after:.4f} | {figures.perplexity_after:.2f} |",
        "",
        f"Training took {_duration(figures.train_seconds)} for {figures.train_tokens:,} tokens (contexts and "
        f"passages, every epoch): {figures.seconds_per_1k_tokens:.2f} s per 1,000 training tokens.",
        "",
        "## Use",
        "",
        "In storybot, as a named model in `storybot.toml`:",
        "",
        "```toml",
        f"[models.{_toml_key(outcome.folder.name)}]",
        f"base = {json.dumps(outcome.base)}",
        f"adapter = {json.dumps(str(outcome.folder.absolute()))}",
        "```",
        "",
        "With peft: `PeftModel.from_pretrained(base_model, this_folder)`. `storybot.json` names the base model "
        "as storybot takes it.",
        "",
    ]
    return "\n".join(lines)


def _channels_line(stories: Sequence[SourceStory]) -> list[str]:
    """``Channels: `discord:g:c` (3 stories), …`` for the stored stories; none for text files alone."""
    counts: dict[str, int] = {}
    for story in stories:
        if story.channel:
            counts[story.channel] = counts.get(story.channel, 0) + 1
    if not counts:
        return []
    return ["Channels: " + ", ".join(f"`{key}` ({stories_counted(n)})" for key, n in sorted(counts.items())) + "."]


def _split_row(name: str, summary: SplitSummary) -> str:
    return f"| {name} | {summary.stories} | {summary.passages} | {summary.target_tokens:,} | {summary.tokens:,} |"


def _toml_key(name: str) -> str:
    """A named model's name from the folder's: letters, digits, '-' and '_' (a bare TOML key)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:100] or "adapter"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _version() -> str:
    try:
        return metadata.version("storybot")
    except metadata.PackageNotFoundError:
        return "unknown"
