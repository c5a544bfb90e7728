"""LoRA adapters on the local backend: one base model in memory, each row of a batch with its own adapter.

A named model (``[models.NAME]``) is a base model plus, optionally, a LoRA adapter folder as peft's
``save_pretrained`` writes it. The base is loaded once for all the stories on it; an adapter is
loaded the first time a turn asks for it and kept. A row's adapter adds ``scale * B (A x)`` to
each linear layer it trained, for that row only, so stories on different adapters (and on the base)
are written in one batch, and each row's text is what it would be alone.

Two ways, as the local backend has two forwards:

- the compact forward (``llama_forward.LlamaForward``: Llama models on a CPU) reads the adapter's
  matrices here (``read_lora``) and applies them itself, beside weights that may be int8 or int4.
  The LoRA matrices stay float32, whatever the activations: these matmuls are tiny, and one that
  tiny took about four times as long in bfloat16 (one row, rank 48, SmolLM2's 576 inputs, two
  AVX-512 cores: 52 against 12 microseconds);
- the model's own forward (GPT-2, GPUs) goes through peft (``PeftForward``), whose mixed-adapter
  batches (``adapter_names``) do the same per row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from bot.config import Adapter
from bot.generation.backend import ModelUnavailable

_BASE = "__base__"  # peft's adapter name for the rows of a mixed batch that have none
_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<matrix>[AB])\.weight")
# What peft's LoRA can add that is more than ``B (A x)`` on a linear layer: the compact forward
# refuses adapters that use it, rather than writing with part of them.
_BEYOND_PLAIN_LORA = (
    "use_dora",
    "lora_bias",
    "modules_to_save",
    "trainable_token_indices",
    "alora_invocation_tokens",
    "layer_replication",
)


@dataclass(frozen=True)
class LoraDelta:
    """What an adapter adds to one linear layer (or to layers fused into one): ``B (A x)``, with
    the adapter's scale already in ``up``; float32, returned in ``x``'s dtype."""

    down: torch.Tensor  # A: (rank, inputs)
    up: torch.Tensor  # scale * B: (outputs, rank)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x.float(), self.down), self.up).to(x.dtype)

    @classmethod
    def fused(cls, parts: Sequence[LoraDelta | None], outputs: Sequence[int], inputs: int) -> LoraDelta | None:
        """One delta for layers that share their input and are fused into one weight (query, key
        and value; gate and up): the parts' A stacked, their B block-diagonal, zeros for a part the
        adapter leaves alone. None when it changes none of them."""
        present = [part for part in parts if part is not None]
        if not present:
            return None
        if any(part.down.shape[1] != inputs for part in present):
            raise ValueError(f"a LoRA A matrix does not take the layer's {inputs} inputs")
        down = torch.cat([part.down for part in present])
        up = down.new_zeros(sum(outputs), down.shape[0])
        row = column = 0
        for part, size in zip(parts, outputs, strict=True):
            if part is not None:
                if part.up.shape[0] != size:
                    raise ValueError(f"a LoRA B matrix has {part.up.shape[0]} outputs where the layer has {size}")
                rank = part.down.shape[0]
                up[row : row + size, column : column + rank] = part.up
                column += rank
            row += size
        return cls(down, up)


def lora_config(adapter: Adapter) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``, refused unless it is a LoRA adapter: only LoRA applies
    to its own rows of a batch (peft's other kinds would change every row, the base's included)."""
    try:
        config = json.loads((Path(adapter.path).expanduser() / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"Adapter {adapter.name} ({adapter.path}) cannot be read: {error}") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        kind = config.get("peft_type") if isinstance(config, dict) else None
        raise ModelUnavailable(f"Adapter {adapter.name} is a {kind} adapter; storybot takes LoRA.")
    return config


def read_lora(adapter: Adapter) -> dict[str, LoraDelta]:
    """The adapter's deltas by module (``model.layers.0.self_attn.q_proj``), scaled as peft scales
    them (``lora_alpha / r``, or ``/ sqrt(r)`` with ``use_rslora``; ``alpha_pattern`` per module)."""
    config = lora_config(adapter)
    try:
        tensors = load_file(Path(adapter.path).expanduser() / "adapter_model.safetensors")
    except (OSError, ValueError, SafetensorError) as error:
        raise ModelUnavailable(f"Adapter {adapter.name} ({adapter.path}) cannot be read: {error}") from None
    if used := [feature for feature in _BEYOND_PLAIN_LORA if config.get(feature)]:
        raise ModelUnavailable(f"Adapter {adapter.name} uses {used[0]}, which the compact forward does not apply.")
    matrices: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise ModelUnavailable(f"Adapter {adapter.name} holds {key}, which the compact forward does not apply.")
        matrices.setdefault(match["module"], {})[match["matrix"]] = tensor
    return {module: _delta(config, module, pair) for module, pair in matrices.items()}


def _delta(config: dict[str, Any], module: str, pair: dict[str, torch.Tensor]) -> LoraDelta:
    from peft.utils.other import get_pattern_key  # (peft is imported only where adapters are used)

    if set(pair) != {"A", "B"}:
        raise ValueError(f"{module} has a LoRA A matrix without its B, or a B without its A")
    rank = pair["A"].shape[0]
    alphas: dict[str, float] = config.get("alpha_pattern") or {}
    alpha = float(alphas.get(get_pattern_key(list(alphas), module), config["lora_alpha"]))
    scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
    return LoraDelta(pair["A"].float(), pair["B"].float() * scale)


def adapter_rows(
    adapters: Sequence[str | None], device: torch.device, dtype: torch.dtype
) -> list[tuple[str, torch.Tensor | None]]:
    """Each adapter in a batch and its rows as a (rows, 1, 1) mask of ones and zeros (None: every
    row), leaving out the base's rows. A delta is computed for every row and masked: at rank 8 to
    64 that costs less than gathering an adapter's rows and adding them back in every layer."""
    names = sorted({name for name in adapters if name is not None})
    if len(names) == 1 and None not in adapters:
        return [(names[0], None)]
    return [
        (name, torch.tensor([row == name for row in adapters], device=device, dtype=dtype).view(-1, 1, 1))
        for name in names
    ]


class PeftForward:
    """The model's own forward; once an adapter is added, through peft, every row with its own
    adapter (peft's mixed-adapter batches: ``adapter_names``, ``__base__`` for the base)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._peft: Any = None

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = self.model.dtype
        return dtype

    def add_adapter(self, adapter: Adapter) -> None:
        from peft import PeftModel

        lora_config(adapter)
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.model, adapter.path, adapter_name=adapter.name)
            else:
                self._peft.load_adapter(adapter.path, adapter_name=adapter.name)
        except BaseException:
            self._forget(adapter.name)
            raise
        self._peft.eval()

    def _forget(self, name: str) -> None:
        """Take out what a failed load put into the model: until a first adapter loads, the model
        runs without peft, and a half-made adapter would run in every row."""
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                module.delete_adapter(name)
        configs = self.model.__dict__.get("peft_config", {})  # (peft's note of the adapters it put in)
        configs.pop(name, None)
        if not configs and self._peft is None:
            self.model.__dict__.pop("peft_config", None)

    def __call__(self, *, adapters: Sequence[str | None], **inputs: Any) -> Any:
        if self._peft is None:
            return self.model(**inputs)
        return self._peft(**inputs, adapter_names=[name or _BASE for name in adapters])
