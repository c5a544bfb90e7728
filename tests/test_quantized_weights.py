"""``model.quantize``: which weights the local backend keeps, and what they compute.

The engine's behaviour in each quantization (batching, joining, prefix cache) is checked in
``tests.test_llama_engine``; here: ``auto``'s choice, the clear refusal of an impossible choice,
and the arithmetic of the int8 and int4 weights against the float weights they stand for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from bot.generation.backend import GenerationRequest, ModelUnavailable, Sampling
from bot.generation.local import LocalBackend
from bot.generation.weights import INT4_GROUP, Weight, lossless_in_int4
from tests.conftest import make_config


def backend_for(model_dir: Path, folder: Path, quantize: str, dtype: str = "float32") -> LocalBackend:
    config = make_config(
        folder,
        {
            "STORYBOT_MODEL_NAME": str(model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_MODEL_DEVICE": "cpu",
            "STORYBOT_MODEL_QUANTIZE": quantize,
            "STORYBOT_MODEL_DTYPE": dtype,
        },
    )
    return LocalBackend(config.model)


def four_bit(weight: torch.Tensor) -> torch.Tensor:
    """The weight as a Q4_1 file holds it: each group of 32 inputs at 16 evenly spaced values."""
    outputs, inputs = weight.shape
    groups = weight.float().view(outputs, inputs // INT4_GROUP, INT4_GROUP)
    lows, highs = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scales = (highs - lows) / 15
    return (torch.round((groups - lows) / scales) * scales + lows).view(outputs, inputs)


@pytest.fixture(scope="module")
def four_bit_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with its layers' weights made 4-bit, as the bundled model's are."""
    folder = tmp_path_factory.mktemp("four-bit-llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        for name, parameter in model.model.layers.named_parameters():
            if name.endswith("proj.weight"):
                parameter.copy_(four_bit(parameter))
    model.save_pretrained(folder)
    for tokenizer_file in tiny_llama_dir.glob("tokenizer*"):
        shutil.copy(tokenizer_file, folder)
    return folder


def test_auto_keeps_4_bit_weights_in_int4_and_others_in_int8(
    tiny_llama_dir: Path, four_bit_llama_dir: Path, tmp_path: Path
) -> None:
    four, other = backend_for(four_bit_llama_dir, tmp_path, "auto"), backend_for(tiny_llama_dir, tmp_path, "auto")
    four.load()
    other.load()
    assert (four.quantization, other.quantization) == ("int4", "int8")


def test_quantized_weights_meet_activations_in_the_configured_dtype(four_bit_llama_dir: Path, tmp_path: Path) -> None:
    """bfloat16 where the CPU computes it (``model.dtype`` auto), float32 elsewhere: the weights are
    read in float32 first either way, so int4 still finds them 4-bit."""
    precisions = []
    for dtype in ("float32", "bfloat16"):
        backend = backend_for(four_bit_llama_dir, tmp_path, "auto", dtype)
        assert backend.generate([GenerationRequest("Once upon a time", Sampling(max_new_tokens=4))])[0]
        precisions.append(backend.precision)
    assert precisions == ["float32 activations, int4 weights", "bfloat16 activations, int4 weights"]


def test_a_model_the_compact_forward_does_not_take_runs_as_loaded(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = backend_for(tiny_model_dir, tmp_path, "auto")  # a GPT-2
    backend.load()
    assert backend.quantization == "none"
    sampling = Sampling(max_new_tokens=4, min_new_tokens=4)
    assert backend.generate([GenerationRequest("Once upon a time", sampling)])[0]


@pytest.mark.parametrize("quantize", ["int8", "int4"])
def test_asking_to_quantize_a_model_that_cannot_be_is_one_clear_line(
    tiny_model_dir: Path, tmp_path: Path, quantize: str
) -> None:
    with pytest.raises(ModelUnavailable) as raised:
        backend_for(tiny_model_dir, tmp_path, quantize).load()
    message = str(raised.value)
    assert f"model.quantize = {quantize}" in message and "not Llama" in message and "\n" not in message


def test_int4_holds_4_bit_weights_exactly() -> None:
    torch.manual_seed(0)
    weight = four_bit(torch.randn(64, 96))
    assert lossless_in_int4(weight) and not lossless_in_int4(torch.randn(64, 96))
    int4 = Weight([weight], "int4", torch.float32)
    # A prompt's tokens meet the values in float16: within its rounding, far below a 4-bit step.
    torch.testing.assert_close(int4.widened(), weight, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(("quantize", "tolerance"), [("int8", 0.02), ("int4", 0.01)])
def test_quantized_weights_compute_what_their_float_weights_do(quantize: str, tolerance: float) -> None:
    """One token a row goes through the kernel (activations rounded to bfloat16), several through
    the widened weight; both stay within a percent or two of the float product."""
    torch.manual_seed(0)
    weight = four_bit(torch.randn(96, 64)) if quantize == "int4" else torch.randn(96, 64)
    quantized = Weight([weight], quantize, torch.float32)
    for tokens in (1, 5):
        x = torch.randn(3, tokens, 64)
        exact = x @ weight.T
        error = (quantized(x) - exact).norm() / exact.norm()
        assert error < tolerance, (tokens, float(error))


@pytest.mark.parametrize("quantize", ["int8", "int4"])
def test_a_row_computes_the_same_alone_and_in_a_batch(quantize: str) -> None:
    torch.manual_seed(0)
    weight = Weight([torch.randn(96, 64)], quantize, torch.float32)
    rows = torch.randn(8, 1, 64)
    assert torch.equal(torch.cat([weight(rows[i : i + 1]) for i in range(8)]), weight(rows))
