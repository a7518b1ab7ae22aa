"""GGUF Q4_0: blocks of 32 weights along the input dim, 18 bytes each (4.5 bits per weight).

Byte layout of one block (as in GGUF / llama.cpp):

    bytes 0-1   d, the scale, float16 little-endian
    bytes 2-17  qs[j] = u[j] | (u[j + 16] << 4) for j = 0..15, where u = q + 8 in 0..15

and the weight is (u - 8) * d = q * d. The tensor holds a 2-D weight (N, K) as blocks (N, K // 32, 18)
uint8, i.e. the rows of a GGUF Q4_0 tensor; here q is the signed value in [-8, 7] with a float16 scale
per block (symmetric, no zero point). ``choose_q4_0_scale`` gives GGUF's own scale rule.
"""

from __future__ import annotations

import torch

from torchao.qtensor.layouts.base import Layout, register_layout
from torchao.qtensor.primitives import ZeroPointDomain

BLOCK = 32
BLOCK_BYTES = 18


@register_layout
class Q4_0Layout(Layout):
    """blocks: (N, K // 32, 18) uint8 GGUF Q4_0 blocks."""

    name = "q4_0"
    rows_gatherable = True
    tensor_names = ("blocks",)

    @classmethod
    def unsupported_reason(cls, spec, device):
        if len(spec.stored_shape) != 2:
            return f"Q4_0 holds 2-D weights, got shape {spec.stored_shape}"
        if spec.block_size != (1, BLOCK):
            return f"Q4_0 has blocks of (1, 32), got block_size {spec.block_size}"
        if (spec.quant_min, spec.quant_max) != (-8, 7) or spec.zero_point_domain != ZeroPointDomain.NONE:
            return "Q4_0 is symmetric 4-bit: range [-8, 7] and no zero point"
        return super().unsupported_reason(spec, device)

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        n, k = spec.stored_shape
        u = (int_data.to(torch.int16) + 8).to(torch.uint8).reshape(n, k // BLOCK, BLOCK)
        qs = u[..., :16] | (u[..., 16:] << 4)
        d = scale.to(torch.float16).reshape(n, k // BLOCK, 1).contiguous().view(torch.uint8)
        return {"blocks": torch.cat([d, qs], dim=-1)}, ()

    @classmethod
    def unpack(cls, tensors, spec):
        blocks = tensors["blocks"]
        n, k = spec.stored_shape
        scale = blocks[..., :2].contiguous().view(torch.float16).reshape(n, k // BLOCK)
        qs = blocks[..., 2:]
        u = torch.cat([qs & 0xF, qs >> 4], dim=-1).reshape(n, k)
        return (u.to(torch.int16) - 8).to(torch.int8), scale, None


def choose_q4_0_scale(weight: torch.Tensor) -> torch.Tensor:
    """GGUF's Q4_0 scale per block of 32: d = (the value of largest magnitude) / -8, float32 (N, K // 32);
    GGUF rounds with this float32 d and stores it as float16."""
    n, k = weight.shape
    blocks = weight.to(torch.float32).reshape(n, k // BLOCK, BLOCK)
    idx = blocks.abs().argmax(dim=-1, keepdim=True)
    return blocks.gather(-1, idx).squeeze(-1) / -8


def quantize_q4_0(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """GGUF's rounding: u = min(15, trunc(x / d + 8.5)) (d as float32 before the float16 store), q = u - 8."""
    n, k = weight.shape
    blocks = weight.to(torch.float32).reshape(n, k // BLOCK, BLOCK)
    d = scale.to(torch.float32).unsqueeze(-1)
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    u = torch.clamp(torch.trunc(blocks * inv + 8.5), 0, 15)
    return (u - 8).to(torch.int8).reshape(n, k)
