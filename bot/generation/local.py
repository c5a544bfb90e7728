"""The local backend: a Hugging Face causal language model run with torch in this process.

Loading runs in a worker thread (the queue starts it in the background at start, and a bot turn
waits for it), so the chat side answers at once; a model that cannot be loaded becomes one
``ModelUnavailable`` line, never a traceback.

One backend serves one base model and every LoRA adapter on it (``bot.generation.lora``): an
adapter is loaded the first time a turn asks for it, kept, and applied to its own rows of a batch.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants as hf_constants
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from bot.config import Adapter, ModelConfig
from bot.context import COMPLETION, PromptFrame, chat_frame
from bot.generation.backend import GenerationRequest, ModelUnavailable
from bot.generation.decoding import Decoder
from bot.generation.llama_forward import compact_forward
from bot.generation.lora import PeftForward
from bot.generation.model_files import model_source
from bot.generation.prefix_cache import PrefixCache

log = logging.getLogger(__name__)

FALLBACK_CONTEXT_LENGTH = 2048
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(setting: str, device: str) -> torch.dtype:
    """``auto``: half precision wherever the hardware computes it natively, else float32.

    On a CPU with AVX-512 BF16 (AMD Zen 4 and later, Intel Cooper Lake and later) bfloat16
    halves the memory each token reads and uses the CPU's bfloat16 dot products: a batch of
    eight rows decodes about 1.9x faster than in float32, one row about 1.4x. Without those
    instructions bfloat16 is emulated and slower than float32, so float32 it is.
    """
    if setting != "auto":
        return _DTYPES[setting]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and _cpu_computes_bfloat16():
        return torch.bfloat16
    return torch.float32


def prompt_frame_for(style: str, model_name: str, tokenizer: Any) -> PromptFrame:
    """``model.prompt_style`` for this model: ``auto`` is chat wherever there is a chat template."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "completion" or (style == "auto" and not has_template):
        return COMPLETION
    if not has_template:
        raise ModelUnavailable(
            f"model.prompt_style is chat, but {model_name} has no chat template: set it to completion or auto."
        )
    return chat_frame(
        lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )


def _cpu_computes_bfloat16() -> bool:
    """The CPU has AVX-512 BF16 and torch's kernels may use AVX-512 (``ATEN_CPU_CAPABILITY=avx2``
    keeps them to AVX2, as on a CPU without it)."""
    # A private helper of torch.cpu (present since torch 2.1); absent, assume no support.
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check()) and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class LocalBackend:
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from a hub id or a local folder."""

    def __init__(self, config: ModelConfig, model_name: str | None = None) -> None:
        self.config = config
        self.model_name = model_name or config.name
        self.device = pick_device(config.device)
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._decoder: Decoder | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._context_length = 0
        self._frame = COMPLETION
        self.quantization = "none"  # what the loaded model's weights are kept as
        self._adapters: set[Adapter] = set()  # loaded on the model

    def load(self, adapter: Adapter | None = None) -> None:
        self._load_model()
        if adapter is not None:
            self._load_adapter(adapter)

    def _load_model(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if self.config.threads > 0:
                torch.set_num_threads(self.config.threads)
            log.info("loading model %s on %s", self.model_name, self.device)
            # A bar per load clutters chat logs.
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' logging helpers are untyped
            tokenizer, model = self._from_pretrained()
            model.to(self.device).eval()
            dtype = pick_dtype(self.config.dtype, self.device)
            forward = compact_forward(model, self.config.quantize, self.device, self.model_name, dtype)
            if forward is None:
                model.to(dtype)
            cache_bytes = self.config.prefix_cache_mb * 1024 * 1024
            prefix_cache = PrefixCache(cache_bytes) if cache_bytes else None
            self._decoder = Decoder(model, tokenizer, self.device, prefix_cache, forward or PeftForward(model))
            if forward is not None:
                # The compact forward holds the weights it needs; the model keeps only its shape.
                model.to("meta")
                _return_freed_memory()
            self._tokenizer, self._model = tokenizer, model
            self.quantization = forward.quantize if forward is not None else "none"
            self._frame = prompt_frame_for(self.config.prompt_style, self.model_name, tokenizer)
            self._context_length = self.config.context_length or _model_context_length(model, tokenizer)
            log.info(
                "model %s ready (context %d tokens, %s)",
                self.model_name,
                self._context_length,
                f"compact forward, weights {forward.quantize}: {forward.weight_bytes // 2**20} MB"
                if forward is not None
                else "the model's own forward",
            )

    def _load_adapter(self, adapter: Adapter) -> None:
        """Put a LoRA adapter on the model, once; one that will not go on is one line, for the
        turns that ask for it (the base and other adapters write on)."""
        with self._lock:
            if adapter in self._adapters:
                return
            if self._decoder is None:
                raise RuntimeError("the model loaded without a decoder")
            log.info("loading adapter %s (%s) on %s", adapter.name, adapter.path, self.model_name)
            try:
                self._decoder.forward.add_adapter(adapter)
            except ModelUnavailable:
                raise
            except Exception as error:  # peft's and torch's errors: all say the adapter does not fit
                reason = (str(error).strip() or type(error).__name__).splitlines()[0]
                raise ModelUnavailable(
                    f"Adapter {adapter.name} ({adapter.path}) cannot be put on {self.model_name}: {reason}"
                ) from None
            self._adapters.add(adapter)

    def _from_pretrained(self) -> tuple[Any, Any]:
        """Cache or local folder first; the hub only when that fails and it can be reached.

        The bundled model and GGUF files are converted once into a local folder first
        (``model_files``). Offline, the hub client retries each file for about a minute before
        giving up; a quick connection check turns that into an immediate, clear answer.
        """
        source = model_source(self.model_name, self.config.cache_dir)
        try:
            return self._load_files(source, local_only=True)
        except Exception as error:  # the loaders raise many kinds; all mean "not here"
            if self.config.local_files_only or _looks_local(source):
                raise ModelUnavailable(_explain_load_failure(self.model_name, error)) from None
        if not _hub_reachable():
            raise ModelUnavailable(
                f"Could not download model {self.model_name!r}: the Hugging Face hub cannot be reached "
                "(no internet?). Set STORYBOT_MODEL_NAME=/path/to/local/model."
            )
        log.info("downloading model %s from the hub", self.model_name)
        try:
            return self._load_files(source, local_only=False)
        except Exception as error:
            log.debug("model download failed", exc_info=True)
            raise ModelUnavailable(_explain_load_failure(self.model_name, error)) from None

    def _load_files(self, source: str, *, local_only: bool) -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self._load_dtype(), local_files_only=local_only)
        return tokenizer, model

    def _load_dtype(self) -> torch.dtype:
        """float32 where the weights may be quantized (rounding to bfloat16 first would lose the
        exact 4-bit values of a model converted from Q4_1); else ``model.dtype``'s choice."""
        if self.device == "cpu" and self.config.quantize != "none":
            return torch.float32
        return pick_dtype(self.config.dtype, self.device)

    @property
    def precision(self) -> str:
        """What the loaded model computes in: its activations' dtype, and its weights' if quantized."""
        self.load()
        decoder = self._decoder
        forward = decoder.forward if decoder is not None else self._model
        dtype = str(forward.dtype).removeprefix("torch.")
        return dtype if self.quantization == "none" else f"{dtype} activations, {self.quantization} weights"

    @property
    def loaded(self) -> bool:
        return self._context_length > 0  # set last, once everything else is ready

    @property
    def context_length(self) -> int:
        self.load()
        return self._context_length

    @property
    def prompt_frame(self) -> PromptFrame:
        self.load()
        return self._frame

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, requests: Sequence[GenerationRequest], more: Callable[[], Sequence[GenerationRequest]] | None = None
    ) -> list[str]:
        """Continue every prompt, batched; each request keeps its own sampling and stop rules.

        A model whose cache cannot be padded and merged (sliding-window attention, ...) writes
        one request at a time and takes nothing from ``more``: the caller's next call gets those.
        A request's adapter is loaded first if it is not yet (the queue loads it before, so that
        only its own turn fails if it cannot be).
        """
        self.load()
        decoder = self._decoder
        if decoder is None:
            raise RuntimeError("the model loaded without a decoder")
        with self._generate_lock:
            if decoder.mergeable:
                joining = (lambda: self._with_adapters(more())) if more is not None else None
                return decoder.run(self._with_adapters(requests), joining)
            return [decoder.run([request])[0] for request in self._with_adapters(requests)]

    def _with_adapters(self, requests: Sequence[GenerationRequest]) -> Sequence[GenerationRequest]:
        for request in requests:
            if request.adapter is not None:
                self._load_adapter(request.adapter)
        return requests


def _return_freed_memory() -> None:
    """Give the float32 model's freed memory back to the system (glibc keeps a thread's freed
    heap otherwise: about 300 MB of the bundled model's, after a load on the model thread)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _model_context_length(model: Any, tokenizer: Any) -> int:
    for attribute in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(model.config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if 0 < limit < 1_000_000 else FALLBACK_CONTEXT_LENGTH


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _hub_reachable(timeout: float = 5.0) -> bool:
    url = urlsplit(hf_constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _explain_load_failure(name: str, error: Exception) -> str:
    looks_local = _looks_local(name)
    if looks_local and not Path(name).expanduser().is_dir():
        return f"Model folder {name!r} does not exist. Set STORYBOT_MODEL_NAME to a folder that holds a saved model."
    if looks_local:
        return (
            f"Model folder {name!r} holds no loadable model ({type(error).__name__}). "
            "Set STORYBOT_MODEL_NAME to a folder saved with save_pretrained()."
        )
    return (
        f"Could not load model {name!r} (no internet, or no such model on the Hugging Face hub). "
        "Set STORYBOT_MODEL_NAME=/path/to/local/model, or check the name and your connection."
    )
