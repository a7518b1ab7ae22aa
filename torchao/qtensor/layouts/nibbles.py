"""Two 4-bit values per byte along the last dim: byte j of a row holds element 2j in its low
nibble and element 2j + 1 in its high nibble. Values are offsets from quant_min (0..15)."""

from __future__ import annotations

import torch


def pack_nibbles(values: torch.Tensor) -> torch.Tensor:
    """(..., K) integers in [0, 15], K even -> (..., K // 2) uint8."""
    if values.shape[-1] % 2:
        raise ValueError(f"nibble packing needs an even last dim, got shape {tuple(values.shape)}")
    v = values.to(torch.uint8)
    return v[..., 0::2] | (v[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """(..., K // 2) uint8 -> (..., K) uint8 in [0, 15]."""
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
