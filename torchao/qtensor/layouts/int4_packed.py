"""The portable int4 layout: a 2-D weight (N, K) packed two values per byte along K.

This is the layout of the Triton kernels and of checkpoints; it holds any range of at most 16
values (quant_max - quant_min <= 15), symmetric or asymmetric, grouped along K.
"""

from __future__ import annotations

from typing import Optional

import torch

from torchao.qtensor.layouts.base import Layout, QuantSpec, register_layout
from torchao.qtensor.layouts.nibbles import pack_nibbles, unpack_nibbles
from torchao.qtensor.primitives import storage_dtype


def int4_weight_reason(spec: QuantSpec) -> Optional[str]:
    """Why a 2-D, K-grouped, <= 4-bit weight layout cannot hold ``spec`` (None if it can)."""
    shape = spec.stored_shape
    if len(shape) != 2:
        return f"needs a 2-D weight, got shape {shape}"
    if spec.group_size is None:
        return f"needs per-group/per-channel blocks (1, g) along K, got block_size {spec.block_size}"
    if spec.quant_max - spec.quant_min > 15:
        return f"holds at most 16 levels, got range [{spec.quant_min}, {spec.quant_max}]"
    if shape[1] % 2:
        return f"needs an even in_features (K), got K={shape[1]}"
    return None


def offsets_from_min(int_data: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """int_data - quant_min as uint8 in [0, 15]."""
    return (int_data.to(torch.int16) - spec.quant_min).to(torch.uint8)


def values_from_offsets(offsets: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Inverse of offsets_from_min, in the storage dtype of spec.target_dtype."""
    return (offsets.to(torch.int16) + spec.quant_min).to(storage_dtype(spec.target_dtype))


@register_layout
class Int4PackedLayout(Layout):
    """packed: (N, K // 2) uint8 (see nibbles.py); scale, zero_point: (N, K // group_size) or (N,)."""

    name = "int4_packed"
    rows_gatherable = True
    tensor_names = ("packed", "scale", "zero_point")
    preferred_on = ("cuda",)
    linear_kernels = ("triton_int4_weight_only",)

    @classmethod
    def unsupported_reason(cls, spec, device):
        return super().unsupported_reason(spec, device) or int4_weight_reason(spec)

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        return {"packed": pack_nibbles(offsets_from_min(int_data, spec)), "scale": scale, "zero_point": zero_point}, ()

    @classmethod
    def unpack(cls, tensors, spec):
        return values_from_offsets(unpack_nibbles(tensors["packed"]), spec), tensors["scale"], tensors.get("zero_point")
