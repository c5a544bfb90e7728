"""Batched decoding with per-row sampling, streaming, stopping, prefix reuse and joining.

``model.generate`` takes one set of sampling settings for a whole batch, keeps finished rows in
it until the longest one ends, and cannot take a new row once it has started. Story channels
each have their own settings and passages of different lengths, and ask at any moment, so this
small loop does what the bot needs instead:

1. each prompt is prefilled on its own, reusing the channel's cached prefix when there is one;
2. the rows' caches are left-padded into one batch and decoded together, one token a step;
3. each row samples with its own temperature/top-k/top-p/penalties, streams its text, and
   leaves the batch as soon as it is done (end of text, length, a stop text, or cancelled);
4. between steps, requests that arrived meanwhile are prefilled and padded into the running
   batch (continuous batching), so a turn asked mid-passage starts at once.

Greedy decoding gives the same text batched or alone, joined late or not, with or without the
prefix cache: the padding is masked out and every row gets its true positions. Each row may name
a LoRA adapter (``GenerationRequest.adapter``); the forward applies it to that row alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.prefix_cache import LayerKV, PrefixCache


@dataclass
class _Row:
    request: GenerationRequest
    prompt_ids: list[int]
    seen: torch.Tensor  # vocabulary mask of tokens in prompt and output (repetition penalty)
    bad_word_ids: list[list[int]]
    generated: list[int] = field(default_factory=list)
    ngrams: dict[tuple[int, ...], set[int]] = field(default_factory=dict)
    text: str = ""
    done: bool = False

    @property
    def sampling(self) -> Sampling:
        return self.request.sampling

    @property
    def adapter(self) -> str | None:
        """The LoRA adapter the row is written with; None for the base model alone."""
        adapter = self.request.adapter
        return adapter.name if adapter is not None else None

    @property
    def position(self) -> int:
        """Position of the next token fed to the model (after the last one produced)."""
        return len(self.prompt_ids) + len(self.generated) - 1


@dataclass
class _Batch:
    """Rows decoded together: their left-padded cache and its attention mask (0 = padding)."""

    rows: list[_Row]
    cache: DynamicCache
    mask: torch.Tensor


def _finish(row: _Row) -> None:
    if row.request.on_done is not None:
        row.request.on_done(row.text)


class Decoder:
    """Runs batches of requests on a loaded causal LM."""

    def __init__(self, model: Any, tokenizer: Any, device: str, prefix_cache: PrefixCache | None, forward: Any) -> None:
        """``model`` gives the configuration; ``forward`` computes, called like the model plus each
        row's adapter (``adapters``): ``LlamaForward``, or the model's own through ``lora.PeftForward``."""
        self.model = model
        self.forward = forward
        self.tokenizer = tokenizer
        self.device = device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.eos_ids = _eos_ids(model, tokenizer)
        # Plain full-attention models get growing caches that can be merged, split and reused;
        # any other cache type (sliding windows, ...) is left to the library, one row at a time.
        self.mergeable = cache_is_mergeable(model)
        self.num_layers = len(DynamicCache(config=model.config).layers)
        self.prefix_cache = prefix_cache if self.mergeable else None

    @torch.inference_mode()
    def run(
        self, requests: Sequence[GenerationRequest], more: Callable[[], Sequence[GenerationRequest]] | None = None
    ) -> list[str]:
        """Write every request, and every request ``more`` hands over between steps."""
        first = [self._row(request) for request in requests]
        arriving, batch = first, None
        while arriving or batch is not None:
            if arriving:
                batch = self._join(batch, arriving)
            if batch is not None:
                batch = self._step(batch)
            arriving = [self._row(request) for request in more()] if more is not None else []
        return [row.text for row in first]

    # ------------------------------------------------------------------ prefill

    def _bad_word_ids(self, words: Sequence[str]) -> list[list[int]]:
        """Token sequences of each banned word, with and without a leading space (BPE tells them apart)."""
        variants = sorted({variant for word in words if word.strip() for variant in (word, " " + word)})
        return [ids for ids in (self.tokenizer(v, add_special_tokens=False)["input_ids"] for v in variants) if ids]

    def _row(self, request: GenerationRequest) -> _Row:
        ids = self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"] or [self.eos_ids[0]]
        seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
        seen[torch.tensor(ids, device=self.device)] = True
        row = _Row(
            request=request,
            prompt_ids=list(ids),
            seen=seen,
            bad_word_ids=self._bad_word_ids(request.sampling.bad_words),
        )
        n = request.sampling.no_repeat_ngram_size
        if n:
            for i in range(len(ids) - n + 1):
                row.ngrams.setdefault(tuple(ids[i : i + n - 1]), set()).add(ids[i + n - 1])
        return row

    def _prefill(self, row: _Row) -> tuple[DynamicCache, torch.Tensor]:
        """Encode the prompt (only its new tail when the channel's prefix is cached)."""
        key, variant = row.request.cache_key, row.adapter or ""  # (an adapter's keys and values are its own)
        hit = self.prefix_cache.lookup(key, row.prompt_ids, variant) if self.prefix_cache and key else None
        reused = 0
        cache = growing_cache(self.num_layers) if self.mergeable else DynamicCache(config=self.model.config)
        if hit is not None:
            cached_layers, reused = hit
            cache = growing_cache(self.num_layers, cached_layers)
        tail = torch.tensor([row.prompt_ids[reused:]], device=self.device)
        positions = torch.arange(reused, len(row.prompt_ids), device=self.device).unsqueeze(0)
        output = self.forward(
            input_ids=tail,
            attention_mask=torch.ones(1, len(row.prompt_ids), dtype=torch.long, device=self.device),
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,  # only the last position's logits are needed: skips most of the LM head
            adapters=[row.adapter],
        )
        if self.prefix_cache is not None and key:
            # A copy: the live cache's storage has spare room the stored entry should not keep.
            layers = [(k.clone(), v.clone()) for k, v in _layers(output.cache)]
            self.prefix_cache.store(key, row.prompt_ids, layers, variant)
        return output.cache, output.logits[0, -1]

    # ------------------------------------------------------------------ decode

    def _join(self, batch: _Batch | None, rows: list[_Row]) -> _Batch | None:
        """Prefill the new rows, choose their first tokens, and pad the unfinished ones into the batch."""
        started: list[tuple[_Row, DynamicCache]] = []
        for row in rows:
            cache, logits = self._prefill(row)
            self._accept(row, self._choose([row], logits.unsqueeze(0))[0])
            if row.done:
                _finish(row)
            else:
                started.append((row, cache))
        if not started:
            return batch
        if batch is None and len(started) == 1:
            # Alone, the row keeps its own cache object: no copy, and any cache type works.
            row, cache = started[0]
            return _Batch([row], cache, self._ones(len(row.prompt_ids)))
        groups = [] if batch is None else [(_layers(batch.cache), batch.mask)]
        groups += [(_layers(cache), self._ones(len(row.prompt_ids))) for row, cache in started]
        cache, mask = _merge(groups)
        return _Batch([*(batch.rows if batch else []), *(row for row, _ in started)], cache, mask)

    def _step(self, batch: _Batch) -> _Batch | None:
        """One new token for every row; finished rows leave. None when no row is left."""
        rows = batch.rows
        last = torch.tensor([[row.generated[-1]] for row in rows], device=self.device)
        positions = torch.tensor([[row.position] for row in rows], device=self.device)
        mask = torch.cat([batch.mask, torch.ones(len(rows), 1, dtype=batch.mask.dtype, device=self.device)], dim=1)
        logits = self.forward(
            input_ids=last,
            attention_mask=mask,
            position_ids=positions,
            cache=batch.cache,
            use_cache=True,
            logits_to_keep=1,
            adapters=[row.adapter for row in rows],
        ).logits[:, -1]
        for row, token in zip(rows, self._choose(rows, logits), strict=True):
            self._accept(row, token)
        keep = [i for i, row in enumerate(rows) if not row.done]
        for row in rows:
            if row.done:
                _finish(row)
        if len(keep) == len(rows):
            return _Batch(rows, batch.cache, mask)
        if not keep:
            return None
        cache, mask = _select(batch.cache, mask, keep, self.device)
        return _Batch([rows[i] for i in keep], cache, mask)

    def _ones(self, length: int) -> torch.Tensor:
        return torch.ones(1, length, dtype=torch.long, device=self.device)

    def _accept(self, row: _Row, token: int) -> None:
        """Add a token to the row, stream its text, and decide whether the row is done."""
        request = row.request
        if token in self.eos_ids and len(row.generated) >= request.sampling.min_new_tokens:
            row.done = True
            return
        row.generated.append(token)
        row.seen[token] = True
        n = request.sampling.no_repeat_ngram_size
        if n and len(row.generated) + len(row.prompt_ids) >= n:
            tail = (row.prompt_ids + row.generated)[-n:]
            row.ngrams.setdefault(tuple(tail[:-1]), set()).add(tail[-1])
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        if text != row.text:
            row.text = text
            if request.on_text is not None:
                request.on_text(text)
        row.done = (
            len(row.generated) >= request.sampling.max_new_tokens
            or request.cancelled.is_set()
            or any(stop in "\n" + text for stop in request.stop_texts)  # output starts a line
        )

    def _choose(self, rows: list[_Row], logits: torch.Tensor) -> list[int]:
        """Each row's next token under its own sampling settings, for all rows at once.

        One set of tensor operations over the batch rather than one per row: on a CPU, eight
        rows sampled one by one cost about a tenth of a decoding step.
        """
        logits = logits.float().clone()  # (rows, vocabulary)
        vocabulary, device = logits.shape[1], logits.device
        penalty = torch.tensor([[row.sampling.repetition_penalty] for row in rows], device=device)
        if bool((penalty != 1.0).any()):
            seen = torch.stack([row.seen[:vocabulary] for row in rows])
            logits = torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)
        banned = [(i, token) for i, row in enumerate(rows) for token in self._banned(row)]
        if banned:
            logits[tuple(torch.tensor(banned, device=device).T)] = -math.inf
        chosen = torch.argmax(logits, dim=-1)
        sampled = [i for i, row in enumerate(rows) if row.sampling.temperature > 0]
        if sampled:
            chosen[sampled] = self._sample([rows[i].sampling for i in sampled], logits[sampled])
        return chosen.tolist()

    @staticmethod
    def _sample(settings: list[Sampling], logits: torch.Tensor) -> torch.Tensor:
        """Temperature, then top-k, then top-p, per row. Only the top-k candidates are sorted
        (fifty values, not the whole vocabulary); a row without top-k sorts everything."""
        device, vocabulary = logits.device, logits.shape[1]
        top_k = torch.tensor([s.top_k if 0 < s.top_k < vocabulary else vocabulary for s in settings], device=device)
        temperature = torch.tensor([[s.temperature] for s in settings], device=device)
        values, candidates = torch.topk(logits / temperature, int(top_k.max()))
        values[torch.arange(values.shape[1], device=device) >= top_k.unsqueeze(1)] = -math.inf
        top_p = torch.tensor([[s.top_p] for s in settings], device=device)
        probabilities = torch.softmax(values, dim=-1)
        # The token that crosses top_p stays; a row with top_p = 1 keeps all its candidates.
        dropped = (probabilities.cumsum(dim=-1) - probabilities > top_p) & (top_p < 1.0)
        values[dropped] = -math.inf
        picks = torch.multinomial(torch.softmax(values, dim=-1), 1)
        return candidates.gather(1, picks).squeeze(1)

    def _banned(self, row: _Row) -> set[int]:
        """Tokens the row may not write next: n-gram repeats, banned words' ends, and the end of
        text while the passage is shorter than its minimum."""
        banned: set[int] = set(self.eos_ids) if len(row.generated) < row.sampling.min_new_tokens else set()
        n = row.sampling.no_repeat_ngram_size
        if n:
            history = row.prompt_ids + row.generated
            banned |= row.ngrams.get(tuple(history[len(history) - n + 1 :]), set()) if n > 1 else set()
        for word_ids in row.bad_word_ids:
            prefix = word_ids[:-1]
            if not prefix or row.generated[-len(prefix) :] == prefix:
                banned.add(word_ids[-1])
        return banned


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init_subclass__ is untyped
    """A full-attention cache layer whose storage doubles when full.

    ``DynamicLayer`` appends each token with ``torch.cat``, copying the whole cache every step;
    on a CPU that copy costs more than the model's matmuls once a story is a few hundred tokens
    long. Here a token is written into spare room, and the cache is copied only when it doubles.
    Positions below the current length are never written again, so views handed out earlier
    (a stored prefix) keep their contents.
    """

    _view: torch.Tensor | None = None
    # The storage ``keys`` and ``values`` are views of; set on the first update, read only after it.
    _key_room: torch.Tensor
    _value_room: torch.Tensor

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.keys is None or self.values is None:
            raise RuntimeError("an initialized cache layer has no key or value tensor")
        length, new = self.get_seq_length(), key_states.shape[-2]
        if self._view is not self.keys or self._key_room.shape[-2] < length + new:
            capacity = _room_for(length + new)
            self._key_room = _with_room(self.keys, key_states, length, capacity)
            self._value_room = _with_room(self.values, value_states, length, capacity)
        self._key_room[:, :, length : length + new] = key_states
        self._value_room[:, :, length : length + new] = value_states
        self.keys = self._view = self._key_room[:, :, : length + new]
        self.values = self._value_room[:, :, : length + new]
        return self.keys, self.values

    @classmethod
    def stacked(cls, parts: list[LayerKV], length: int) -> GrowingLayer:
        """The rows of several caches in one layer, each left-padded with zeros to ``length``.

        Written straight into the new storage: one copy of each cache, which matters when a
        turn joins a batch of eight long stories.
        """
        keys, values = parts[0]
        layer = cls()
        layer.lazy_initialization(keys, values)
        rows, capacity = sum(part[0].shape[0] for part in parts), _room_for(length)
        layer._key_room = keys.new_empty(rows, keys.shape[1], capacity, keys.shape[3])
        layer._value_room = values.new_empty(rows, values.shape[1], capacity, values.shape[3])
        row = 0
        for part in parts:
            count, pad = part[0].shape[0], length - part[0].shape[2]
            for room, tensor in zip((layer._key_room, layer._value_room), part, strict=True):
                room[row : row + count, :, :pad] = 0  # masked out, but never garbage (0 x NaN is NaN)
                room[row : row + count, :, pad:length] = tensor
            row += count
        layer.keys = layer._view = layer._key_room[:, :, :length]
        layer.values = layer._value_room[:, :, :length]
        return layer


def _room_for(length: int) -> int:
    """Storage for ``length`` positions and as many again, so the cache is copied rarely."""
    return max(64, 2 * length)


def _with_room(old: torch.Tensor, like: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    room = like.new_empty(like.shape[0], like.shape[1], capacity, like.shape[3])
    if length:
        room[:, :, :length] = old
    return room


def growing_cache(num_layers: int, layers: list[LayerKV] | None = None) -> DynamicCache:
    """A cache of ``GrowingLayer``s, filled with ``layers`` when given."""
    growing = [GrowingLayer() for _ in range(num_layers)]  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init__ is untyped
    # Without ``layers`` the cache starts empty: nothing to fill, so the lengths differ on purpose.
    for layer, (keys, values) in zip(growing, layers or [], strict=False):
        layer.update(keys, values)
    cache = DynamicCache()
    cache.layers = [*growing]
    return cache


def cache_is_mergeable(model: Any) -> bool:
    """Only plain full-attention caches can be padded, merged and reused across turns."""
    probe = DynamicCache(config=model.config)
    return all(type(layer) is DynamicLayer for layer in probe.layers)


def _layers(cache: DynamicCache) -> list[LayerKV]:
    """Each layer's keys and values; only filled full-attention caches are merged, split or stored."""
    layers: list[LayerKV] = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError(f"expected a filled full-attention cache layer, got {layer!r}")
        layers.append((layer.keys, layer.values))
    return layers


def _merge(groups: list[tuple[list[LayerKV], torch.Tensor]]) -> tuple[DynamicCache, torch.Tensor]:
    """Left-pad each group of rows (its cache layers and mask) to the longest and stack them."""
    longest = max(mask.shape[1] for _, mask in groups)
    cache = DynamicCache()
    cache.layers = [
        GrowingLayer.stacked([layers[i] for layers, _ in groups], longest) for i in range(len(groups[0][0]))
    ]
    mask = torch.cat([F.pad(mask, (longest - mask.shape[1], 0)) for _, mask in groups])
    return cache, mask


def _select(cache: DynamicCache, mask: torch.Tensor, keep: list[int], device: str) -> tuple[DynamicCache, torch.Tensor]:
    """Drop finished rows, and the padding columns no remaining row needs any more."""
    index = torch.tensor(keep, device=device)
    mask = mask[index]
    unused = int((mask.cumsum(dim=1) == 0).sum(dim=1).min())
    layers = [(keys[index][:, :, unused:, :], values[index][:, :, unused:, :]) for keys, values in _layers(cache)]
    return growing_cache(len(layers), layers), mask[:, unused:]


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id if model.generation_config else None
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None] or [tokenizer.eos_token_id]
    return [int(i) for i in ids if i is not None]
