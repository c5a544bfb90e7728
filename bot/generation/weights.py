"""Linear-layer weights as the compact forward keeps them: float as loaded, int8 or int4.

Decoding one token reads every weight of the model once, so on a CPU a step costs what moving the
weights through memory and widening them costs: 540 MB in float32 for SmolLM2-135M. Weight-only
quantization (activations stay in float) moves less:

- ``int8``: one scale per output row (``torch._weight_int8pack_mm``); a quarter of float32.
- ``int4``: 4-bit values with a scale and an offset per group of 32 inputs
  (``torch._weight_int4pack_mm_for_cpu``); an eighth. This is the layout of llama.cpp's Q4_1, so
  a model converted from a Q4_1 file (the bundled SmolLM2) goes back to its own 4-bit values
  exactly: each group's smallest and largest weight are its 0 and its 15.

The kernels serve decoding (one token a row). Both are several times faster with bfloat16
activations than with float32 ones, on AVX2 as on AVX-512, so rows are rounded to bfloat16 going
in; the residual stream stays in the model's dtype. For a prompt (hundreds of tokens) they are
slower than widening the weight back to float for one ordinary matmul (900 tokens of SmolLM2:
3.3 s against 1.75 s on 2 AVX2 cores), so prompts go that way; int4 keeps a float16 copy of its
values for it (widening that takes a fifth of the time unpacking 4-bit values does), or a bfloat16
one on CPUs that compute bfloat16 (AVX-512 BF16, AMX), where a prompt's matmuls run about four
times faster than in float32. Each row is multiplied on its own,
so a row's result does not depend on its batch-mates: greedy text stays the same alone and batched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERNEL_DTYPE = torch.bfloat16
INT4_GROUP = 32


class Weight:
    """One linear layer's weight, ``(outputs, inputs)``, applied as ``x @ weight.T``.

    Several layers that read the same input (query, key and value; gate and up) are concatenated
    into one weight, so they cost one operation instead of two or three.
    """

    def __init__(self, parts: list[torch.Tensor], quantize: str, dtype: torch.dtype) -> None:
        weight = torch.cat([part.detach() for part in parts]) if len(parts) > 1 else parts[0].detach()
        self.outputs, self.inputs = int(weight.shape[0]), int(weight.shape[1])
        self.part_outputs = tuple(int(part.shape[0]) for part in parts)  # where each fused layer's outputs are
        self.dtype = dtype  # of the activations, in and out
        self.quantize = quantize if quantize == "none" or self.inputs % INT4_GROUP == 0 else "int8"
        self.tensors: tuple[torch.Tensor, ...]
        self._widened_int4: torch.Tensor | None = None  # int4's values, for prompts
        if self.quantize == "int4":
            self.tensors, values = quantize_groups(weight.float())
            # float16 (half of float32's memory, widened per prompt) unless the activations are
            # narrower already: then the copy is kept in their dtype and used as it is.
            self._widened_int4 = values.to(torch.float16 if dtype == torch.float32 else dtype)
        elif self.quantize == "int8":
            self.tensors = quantize_rows(weight.float())
        else:
            self.tensors = (weight.to(dtype).contiguous(),)

    @property
    def nbytes(self) -> int:
        extra = () if self._widened_int4 is None else (self._widened_int4,)
        return sum(t.numel() * t.element_size() for t in (*self.tensors, *extra))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(rows, tokens, inputs)``. Several tokens a row (a prompt) are multiplied with
        the weight widened to float, one token a row (decoding) with the kernels: the choice depends
        on the row alone, never on its batch-mates, so batching cannot change a row's result."""
        rows = x.reshape(-1, self.inputs)
        if self.quantize != "none" and x.shape[-2] > 1:
            out = F.linear(rows, self.widened())
        elif self.quantize == "int4":
            packed, scales_zeros = self.tensors
            out = torch._weight_int4pack_mm_for_cpu(rows.to(KERNEL_DTYPE), packed, INT4_GROUP, scales_zeros)
        elif self.quantize == "int8":
            values, scales = self.tensors
            out = torch._weight_int8pack_mm(rows.to(KERNEL_DTYPE), values, scales)
        else:
            out = F.linear(rows, self.tensors[0])
        return out.to(self.dtype).view(*x.shape[:-1], self.outputs)

    def widened(self) -> torch.Tensor:
        """The weight in the activations' dtype, for one float matmul over many rows."""
        if self._widened_int4 is not None:
            return self._widened_int4.to(self.dtype)
        if self.quantize == "int8":
            values, scales = self.tensors
            return values.to(self.dtype) * scales.to(self.dtype).unsqueeze(1)
        return self.tensors[0]

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of the weight (an embedding table's lookup), in the activations' dtype."""
        if self.quantize == "int8":
            values, scales = self.tensors
            return values[ids].to(self.dtype) * scales[ids].to(self.dtype).unsqueeze(-1)
        if self.quantize == "none":
            return self.tensors[0][ids]
        raise ValueError("an embedding table is kept as int8 or float, not int4")


def lossless_in_int4(weight: torch.Tensor) -> bool:
    """Whether the weight is 4-bit already (converted from a Q4_1 file), so int4 loses nothing."""
    if weight.shape[1] % INT4_GROUP:
        return False
    weight = weight.detach().float()
    q, scales, lows = _int4_groups(weight)
    values = (q * scales.unsqueeze(-1) + lows.unsqueeze(-1)).view_as(weight)
    # Within float32 rounding of the recomputed scales; anything not 4-bit is off by far more.
    return bool((values - weight).abs().max() <= 1e-5 * weight.abs().max())


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: ``weight ≈ int8 * scale``, the row's largest value at ±127."""
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    values = torch.round(weight / scales.unsqueeze(1)).clamp(-127, 127).to(torch.int8).contiguous()
    return values, scales.to(KERNEL_DTYPE)


def quantize_groups(weight: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """4-bit per group of ``INT4_GROUP`` inputs (``_int4_groups``). Returns the kernel's form
    (packed values; scales and zeros, the zero being the value at q = 8) and the values it
    stands for."""
    outputs, inputs = weight.shape
    q, scales, lows = _int4_groups(weight)
    packed = torch._convert_weight_to_int4pack_for_cpu(q.view(outputs, inputs).to(torch.int32), 1)
    zeros = lows + 8 * scales
    scales_zeros = torch.stack([scales.t(), zeros.t()], dim=-1).to(KERNEL_DTYPE).contiguous()
    values = q * scales.unsqueeze(-1) + lows.unsqueeze(-1)
    return (packed, scales_zeros), values.view(outputs, inputs)


def _int4_groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``weight ≈ q * scale + low`` per group of ``INT4_GROUP`` inputs, each group's minimum at
    q = 0 and maximum at q = 15: ``q`` as ``(outputs, groups, INT4_GROUP)``, scales and lows as
    ``(outputs, groups)``."""
    outputs, inputs = weight.shape
    groups = weight.view(outputs, inputs // INT4_GROUP, INT4_GROUP)
    lows, highs = groups.amin(dim=-1), groups.amax(dim=-1)
    scales = ((highs - lows) / 15).clamp(min=1e-12)
    q = torch.round((groups - lows.unsqueeze(-1)) / scales.unsqueeze(-1)).clamp(0, 15)
    return q, scales, lows
