"""Random-weight GPT-2 and Llama models, and BERT text classifiers, with a freshly trained
byte-level BPE tokenizer.

Nothing here downloads: the tests and the benchmark build the model they need from text they
carry, save it with ``save_pretrained`` and load it through the product's own loading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

END_OF_TEXT = "<|endoftext|>"


def build_random_gpt2(folder: Path, texts: Iterable[str], vocab_size: int, **gpt2_config: Any) -> None:
    """Train a tokenizer of up to ``vocab_size`` tokens on ``texts`` and save it with a GPT-2
    of the given shape (``GPT2Config`` fields), seeded so the weights are the same every time."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _build(folder, texts, vocab_size, GPT2Config, GPT2LMHeadModel, gpt2_config)


def build_random_llama(folder: Path, texts: Iterable[str], vocab_size: int, **llama_config: Any) -> None:
    """The same with a Llama (``LlamaConfig`` fields: grouped-query attention, rotary positions,
    tied embeddings, ...), the architecture of SmolLM2 and most current small models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _build(folder, texts, vocab_size, LlamaConfig, LlamaForCausalLM, llama_config)


def build_random_classifier(
    folder: Path, texts: Iterable[str], vocab_size: int, labels: Sequence[str], **bert_config: Any
) -> None:
    """A BERT text classifier (``BertConfig`` fields) whose outputs are ``labels``, multi-label
    (a sigmoid per label) unless ``problem_type`` says otherwise, for the content classifier
    (``bot.safety.classifier``)."""
    from transformers import BertConfig, BertForSequenceClassification

    shape = {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "problem_type": "multi_label_classification",
        **bert_config,
    }
    _build(folder, texts, vocab_size, BertConfig, BertForSequenceClassification, shape)


def _build(
    folder: Path, texts: Iterable[str], vocab_size: int, config_class: Any, model_class: Any, shape: dict[str, Any]
) -> None:
    import torch

    tokenizer = _train_tokenizer(texts, vocab_size)
    torch.manual_seed(0)
    config = config_class(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model_class(config).save_pretrained(folder)


def _train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer of up to ``vocab_size`` tokens, ``END_OF_TEXT`` its only special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

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
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT)  # type: ignore[no-untyped-call]  # transformers' tokenizer constructor is untyped
