"""Small tensor-level helpers: SQNR, the bytes a (quantized) model's weights occupy, and the per-channel /
per-token quantizers that scripts of the seed's era imported from ``torchao.quantization.utils``, written
once here on top of the primitives.
"""

from __future__ import annotations

from typing import Tuple

import torch

from torchao.qtensor.aqt import AffineQuantizedTensor
from torchao.qtensor.primitives import MappingType, choose_qparams_affine, quantize_affine

__all__ = ["sqnr", "weight_bytes", "quantize_per_channel_symmetric", "quantize_per_token_absmax"]


def sqnr(reference: torch.Tensor, approximation: torch.Tensor) -> torch.Tensor:
    """Signal-to-quantization-noise ratio in dB: 20 log10(||reference|| / ||reference - approximation||),
    computed in float64 (inf when they are equal). Returns a 0-dim float32 tensor."""
    ref, approx = reference.detach().double(), approximation.detach().double()
    return (20 * torch.log10(ref.norm() / (ref - approx).norm())).float()


def quantize_per_channel_symmetric(x: torch.Tensor, quant_min: int, quant_max: int,
                                   target_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization of a 2-D ``x`` (N, K): (q (N, K) of ``target_dtype``, scale (N,)
    float32, zero_point (N,) int64), with the float32 eps as the smallest scale."""
    if x.dim() != 2:
        raise ValueError(f"per-channel quantization needs a 2-D tensor, got shape {tuple(x.shape)}")
    block = (1, x.shape[1])
    scale, zero_point = choose_qparams_affine(x, MappingType.SYMMETRIC, block, target_dtype, quant_min, quant_max,
                                              torch.finfo(torch.float32).eps, torch.float32, torch.int64)
    q = quantize_affine(x, block, scale, zero_point, target_dtype, quant_min, quant_max)
    return q, scale, zero_point


def quantize_per_token_absmax(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """int8 per-token absmax quantization of ``t`` (..., K): (q int8 of t's shape, scale (..., 1) in t's
    dtype), q in [-127, 127] and t ~ q * scale."""
    block = (1,) * (t.dim() - 1) + (t.shape[-1],)
    eps = torch.finfo(torch.float32).eps
    scale, zero_point = choose_qparams_affine(t, MappingType.SYMMETRIC, block, torch.int8, -127, 127, eps,
                                              scale_dtype=t.dtype, zero_point_dtype=torch.int64)
    q = quantize_affine(t, block, scale, zero_point, torch.int8, -127, 127)
    return q, scale.reshape(*t.shape[:-1], 1)


def weight_bytes(model: torch.nn.Module, skip_embeddings: bool = False) -> int:
    """Bytes the parameters of ``model`` occupy, a quantized one counting its packed inner tensors.
    ``skip_embeddings``: leave out nn.Embedding tables (a decode step reads one row of them, not all)."""
    skipped = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)} if skip_embeddings else set()
    total = 0
    for p in model.parameters():
        if id(p) in skipped:
            continue
        inner = p.inner_tensors().values() if isinstance(p, AffineQuantizedTensor) else [p]
        total += sum(t.numel() * t.element_size() for t in inner)
    return total
