"""Per-channel KV cache of the last prompt, so a long story is not re-encoded every turn.

A channel's next prompt usually starts with its previous prompt (the context builder keeps the
head byte-stable), so the keys and values of the shared token prefix can be reused and only the
new tail is run through the model. Entries are bounded by total tensor size, least recently
used first out. An entry is good only for prompts written the same way (``variant``: the LoRA
adapter, whose keys and values differ from the base's): a channel that switched is a miss, and its
old entry goes.

Stored tensors are never modified in place: the model's cache layers grow by concatenation,
which makes new tensors, so handing the same tensors to a new cache is safe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [1, heads, tokens, head_dim]
MIN_REUSED_TOKENS = 8  # below this a hit saves less than the bookkeeping costs
MIN_TAIL_TOKENS = 2


@dataclass
class _Entry:
    token_ids: list[int]
    layers: list[LayerKV]
    size: int
    variant: str


class PrefixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def lookup(self, key: str, token_ids: Sequence[int], variant: str = "") -> tuple[list[LayerKV], int] | None:
        """The cached layers cut to the longest prefix shared with ``token_ids``, and its length.

        At least ``MIN_TAIL_TOKENS`` are always left to run: the last one's logits give the next
        token, and a prompt's tail is then encoded the way the whole prompt would be (the compact
        forward encodes several tokens a row with float weights, one token with the int8/int4
        kernels), so the cache never changes the keys and values, nor the text.
        """
        entry = self._entries.get(key)
        if entry is not None and entry.variant != variant:
            self.discard(key)
            entry = None
        shared = _common_prefix(entry.token_ids, token_ids) if entry else 0
        shared = min(shared, len(token_ids) - MIN_TAIL_TOKENS)
        if entry is None or shared < MIN_REUSED_TOKENS:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return [(k[:, :, :shared, :], v[:, :, :shared, :]) for k, v in entry.layers], shared

    def store(self, key: str, token_ids: Sequence[int], layers: list[LayerKV], variant: str = "") -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        self.discard(key)
        if size > self.max_bytes:
            return
        self._entries[key] = _Entry(list(token_ids), layers, size, variant)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def discard(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
