"""Random-weight GPT-2 models with a freshly trained byte-level BPE tokenizer.

Nothing here downloads: the tests and the benchmark build the model they need from text they
carry, save it with ``save_pretrained`` and load it through the product's own loading code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

END_OF_TEXT = "<|endoftext|>"


def build_random_gpt2(folder: Path, texts: Iterable[str], vocab_size: int, **gpt2_config: Any) -> None:
    """Train a tokenizer of up to ``vocab_size`` tokens on ``texts`` and save it with a GPT-2
    of the given shape (``GPT2Config`` fields), seeded so the weights are the same every time."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=fast.vocab_size, bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id, **gpt2_config
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    GPT2LMHeadModel(config).save_pretrained(folder)
