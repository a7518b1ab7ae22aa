"""Small tensor-level helpers: SQNR, the bytes a (quantized) model's weights occupy, and the per-channel /
per-token quantizers that scripts of the seed's era imported from ``torchao.quantization.utils``, written
once here on top of the primitives.
"""

from __future__ import annotations

from typing import Tuple

import torch

from torchao.qtensor.aqt import AffineQuantizedTensor
from torchao.qtensor.primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)

__all__ = ["sqnr", "weight_bytes", "quantize_per_channel_symmetric", "quantize_per_token_absmax",
           "groupwise_affine_qparams", "groupwise_affine_quantize", "groupwise_affine_dequantize",
           "pack_scales_and_zeros", "unpack_scales_and_zeros", "group_qparams_symmetric",
           "groupwise_affine_quantize_tensor", "groupwise_affine_dequantize_tensor"]


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


def weight_bytes(model: torch.nn.Module, skip_embeddings: bool = False, matmul_only: bool = False) -> int:
    """Bytes the parameters of ``model`` occupy, a quantized one counting its packed inner tensors (of a
    sharded DTensor parameter: this process's shard).
    ``skip_embeddings``: leave out nn.Embedding tables (a decode step reads one row of them, not all).
    ``matmul_only``: count only the inner tensors the layout's matmul kernels read (a decode step's bytes)."""
    skipped = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)} if skip_embeddings else set()
    total = 0
    for p in model.parameters():
        if id(p) in skipped:
            continue
        p = p.to_local() if hasattr(p, "to_local") else p
        inner = [p]
        if isinstance(p, AffineQuantizedTensor):
            read = (p.quant_layout.matmul_tensor_names if matmul_only else None) or p.quant_layout.tensor_names
            inner = [t for name, t in p.inner_tensors().items() if name in read]
        total += sum(t.numel() * t.element_size() for t in inner)
    return total


# ---- the era's group-wise helpers (tinygemm-style asymmetric int4 with float zero points) ------------


def _checked_groupsize(w: torch.Tensor, groupsize: int, n_bit: int) -> int:
    if w.dim() != 2:
        raise ValueError(f"group-wise quantization needs a 2-D weight, got shape {tuple(w.shape)}")
    groupsize = min(groupsize, w.shape[-1])
    if groupsize <= 1 or w.shape[-1] % groupsize:
        raise ValueError(f"groupsize {groupsize} must be > 1 and divide in_features {w.shape[-1]}")
    if not 1 <= n_bit <= 8:
        raise ValueError(f"n_bit must be in 1..8, got {n_bit}")
    return groupsize


def groupwise_affine_qparams(w: torch.Tensor, n_bit: int = 4, groupsize: int = 128,
                             dtype: torch.dtype = torch.bfloat16) -> Tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric (scales, zeros), each (N, K // groupsize) in ``dtype``, with float zero points:
    w ~ (q - 2^(n_bit-1)) * scale + zero, q in [0, 2^n_bit - 1]."""
    groupsize = _checked_groupsize(w, groupsize, n_bit)
    scale, zero = choose_qparams_affine(w, MappingType.ASYMMETRIC, (1, groupsize), torch.int32, 0, 2**n_bit - 1, 1e-6,
                                        scale_dtype=dtype, zero_point_dtype=dtype, preserve_zero=False,
                                        zero_point_domain=ZeroPointDomain.FLOAT)
    return scale.to(dtype).reshape(w.shape[0], -1), zero.to(dtype).reshape(w.shape[0], -1)


def groupwise_affine_quantize(w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, n_bit: int = 4,
                              groupsize: int = 128) -> torch.Tensor:
    """int32 (N, K) values in [0, 2^n_bit - 1] for the given float-zero-point qparams."""
    groupsize = _checked_groupsize(w, groupsize, n_bit)
    return quantize_affine(w, (1, groupsize), scales, zeros, torch.int32, 0, 2**n_bit - 1, ZeroPointDomain.FLOAT)


def groupwise_affine_dequantize(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, n_bit: int = 4,
                                groupsize: int = 128) -> torch.Tensor:
    """The (N, K) weight in ``scales.dtype`` for int32 values ``q`` and float-zero-point qparams."""
    groupsize = _checked_groupsize(q, groupsize, n_bit)
    return dequantize_affine(q.to(torch.int32), (1, groupsize), scales, zeros, torch.int32, 0, 2**n_bit - 1,
                             ZeroPointDomain.FLOAT, output_dtype=scales.dtype)


def pack_scales_and_zeros(scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """(N, G) scales and zeros -> the tinygemm (G, N, 2) tensor."""
    if scales.shape != zeros.shape or scales.dtype != zeros.dtype:
        raise ValueError(f"scales {tuple(scales.shape)} {scales.dtype} and zeros {tuple(zeros.shape)} {zeros.dtype} "
                         "must have one shape and dtype")
    return torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()


def unpack_scales_and_zeros(scales_and_zeros: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The tinygemm (G, N, 2) tensor -> (scales, zeros), each (N, G)."""
    if scales_and_zeros.dim() != 3 or scales_and_zeros.shape[-1] != 2:
        raise ValueError(f"expected a (groups, N, 2) tensor, got shape {tuple(scales_and_zeros.shape)}")
    return tuple(t.transpose(0, 1).contiguous() for t in scales_and_zeros.unbind(-1))


def group_qparams_symmetric(w: torch.Tensor, n_bit: int = 4, groupsize: int = 128,
                            precision: torch.dtype = torch.float32,
                            mapping_type: MappingType = MappingType.SYMMETRIC) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-group (scale, zero_point), each (N, K // groupsize) in ``precision``, for signed
    n_bit values in [-2^(n_bit-1), 2^(n_bit-1) - 1] (n_bit 1: [-1, 0])."""
    groupsize = _checked_groupsize(w, groupsize, n_bit)
    qmin, qmax = (-1, 0) if n_bit == 1 else (-(2 ** (n_bit - 1)), 2 ** (n_bit - 1) - 1)
    scale, zero = choose_qparams_affine(w, mapping_type, (1, groupsize), torch.int8, qmin, qmax,
                                        torch.finfo(torch.float32).eps, scale_dtype=precision,
                                        zero_point_dtype=precision)
    return scale.reshape(w.shape[0], -1), zero.reshape(w.shape[0], -1)


def groupwise_affine_quantize_tensor(w: torch.Tensor, n_bit: int = 4, groupsize: int = 128,
                                     dtype: torch.dtype = torch.bfloat16) -> Tuple[torch.Tensor, torch.Tensor]:
    """(int32 (N, K) values, tinygemm (K // groupsize, N, 2) scales_and_zeros in ``dtype``)."""
    scales, zeros = groupwise_affine_qparams(w, n_bit, groupsize, dtype)
    return groupwise_affine_quantize(w, scales, zeros, n_bit, groupsize), pack_scales_and_zeros(scales, zeros)


def groupwise_affine_dequantize_tensor(q: torch.Tensor, scales_and_zeros: torch.Tensor, n_bit: int = 4,
                                       groupsize: int = 128) -> torch.Tensor:
    """The inverse of groupwise_affine_quantize_tensor (up to rounding)."""
    scales, zeros = unpack_scales_and_zeros(scales_and_zeros)
    return groupwise_affine_dequantize(q, scales, zeros, n_bit, groupsize)
