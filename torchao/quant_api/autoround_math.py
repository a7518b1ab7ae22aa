"""SignRound's differentiable quantization: rounding perturbation V and min/max clipping factors.

``quant_weight`` quantizes and dequantizes a weight (N, K) in groups of ``group_size`` columns with

    scale = (max * max_scale - min * min_scale) / (qmax - qmin)          (asymmetric)
    zp    = clamp(qmin - round(min * min_scale / scale), qmin, qmax)
    q     = clamp(round_ste(w * (1 / scale) + v) + zp, qmin, qmax),      w ~ (q - zp) * scale

(symmetric: scale = max(-min * min_scale, max * max_scale) / ((qmax - qmin) / 2), no zero point), where
min <= 0 <= max are the group's extremes. With v = 0 and both factors 1 this is torchao's
round-to-nearest bit for bit; gradients reach v through the straight-through round and the factors
through the scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchao.qtensor import qparams_shape
from torchao.qtensor.primitives import round_to_grid
from torchao.quant_api.weight_format import IntFormat, quantized_weight

__all__ = ["LayerSpec", "WrapperLinear", "round_ste", "quant_weight", "quant_weight_asym", "quant_weight_sym", "quant_weight_w_scale",
           "get_scale_shape", "sign_sgd_step"]

_EPS = 1e-8
Factor = Union[float, torch.Tensor]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


def get_scale_shape(weight: torch.Tensor, group_size: int) -> Tuple[int, int]:
    """(N, K // group_size) for a weight (N, K); group_size -1 means one group per row."""
    n, k = weight.shape
    return (n, 1) if group_size in (-1, None) or group_size >= k else (n, k // group_size)


def _qdq_rows(w, fmt: IntFormat, v, min_scale, max_scale, scale_dtype):
    """w (R, g) float32 with per-row factors (R, 1) -> (qdq, scale (R,), zp (R,))."""
    wmin = torch.clamp(w.amin(dim=1, keepdim=True), max=0) * min_scale
    wmax = torch.clamp(w.amax(dim=1, keepdim=True), min=0) * max_scale
    if fmt.sym:
        scale = torch.maximum(-wmin, wmax) / ((fmt.quant_max - fmt.quant_min) / 2)
    else:
        scale = (wmax - wmin) / (fmt.quant_max - fmt.quant_min)
    scale = torch.clamp(scale, min=_EPS)
    if scale_dtype is not None:
        scale = scale + (scale.to(scale_dtype).to(scale.dtype) - scale).detach()  # stored precision, STE
    if fmt.sym:
        zp = torch.zeros_like(scale)
    else:
        zp = torch.clamp(fmt.quant_min - round_ste(wmin / scale), fmt.quant_min, fmt.quant_max)
    q = round_to_grid(w, scale, zp, fmt.quant_min, fmt.quant_max, rounding=lambda t: round_ste(t + v))
    return (q - zp) * scale, scale.squeeze(1), zp.squeeze(1)


def quant_weight(
    weight: torch.Tensor,
    num_bits: int = 4,
    group_size: int = -1,
    scheme: str = "asym",
    v: Factor = 0.0,
    min_scale: Factor = 1.0,
    max_scale: Factor = 1.0,
    scale_dtype: Optional[torch.dtype] = None,
    full_range: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize-dequantize ``weight`` (N, K) per group; returns (weight_qdq (N, K), scale, zp), both
    (N, K // group_size). ``v`` is (N, K) or a scalar; ``min_scale`` / ``max_scale`` (N, K // group_size)
    or scalars; scheme "asym" or "sym"; scale_dtype: round scales to it (the stored precision)."""
    if scheme not in ("asym", "sym"):
        raise ValueError(f"scheme must be 'asym' or 'sym', got {scheme!r}")
    fmt = IntFormat.for_bits(num_bits, scheme == "sym", full_range)
    n, k = weight.shape
    groups = get_scale_shape(weight, group_size)[1]
    if k % groups:
        raise ValueError(f"in_features {k} is not divisible by group_size {group_size}")
    w = weight.to(torch.float32).reshape(n * groups, k // groups)
    as_rows = lambda t, shape: t.reshape(shape) if isinstance(t, torch.Tensor) else t  # noqa: E731
    qdq, scale, zp = _qdq_rows(
        w, fmt, as_rows(v, w.shape), as_rows(min_scale, (n * groups, 1)), as_rows(max_scale, (n * groups, 1)),
        scale_dtype,
    )
    return qdq.reshape(n, k), scale.reshape(n, groups), zp.reshape(n, groups)


def quant_weight_asym(weight, num_bits=4, v=0.0, min_scale=1.0, max_scale=1.0):
    """Asymmetric quantize-dequantize, one group per row of ``weight``."""
    return quant_weight(weight, num_bits, -1, "asym", v, min_scale, max_scale)


def quant_weight_sym(weight, num_bits=4, v=0.0, min_scale=1.0, max_scale=1.0):
    """Symmetric quantize-dequantize, one group per row of ``weight``."""
    return quant_weight(weight, num_bits, -1, "sym", v, min_scale, max_scale)


def quant_weight_w_scale(weight: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, group_size: int = -1,
                         num_bits: int = 4, scheme: str = "asym") -> torch.Tensor:
    """Integers (int32, (N, K)) of ``weight`` for given per-group scale and zero point (N, K // g)."""
    fmt = IntFormat.for_bits(num_bits, scheme == "sym")
    n, k = weight.shape
    g = k // scale.shape[1]
    w = weight.to(torch.float32).reshape(n, scale.shape[1], g)
    q = round_to_grid(w, scale.to(torch.float32).unsqueeze(-1), zp.to(torch.float32).unsqueeze(-1), fmt.quant_min,
                      fmt.quant_max)
    return q.reshape(n, k).to(torch.int32)


@torch.no_grad()
def sign_sgd_step(params, lr: float) -> None:
    """p -= lr * sign(grad) for every parameter with a gradient."""
    for p in params:
        if p.grad is not None:
            p.add_(torch.sign(p.grad), alpha=-lr)


@dataclass(frozen=True)
class LayerSpec:
    """How one layer is quantized: bits, group_size (-1: per channel), scheme "asym" / "sym"."""

    bits: int = 4
    group_size: int = 128
    scheme: str = "asym"
    full_range: bool = False

    def format(self) -> IntFormat:
        return IntFormat.for_bits(self.bits, self.scheme == "sym", self.full_range)

    def group_for(self, in_features: int) -> int:
        return in_features if self.group_size in (-1, None) else self.group_size


class WrapperLinear(nn.Module):
    """A Linear whose weight is quantize-dequantized with learnable V (N, K) and clipping factors."""

    def __init__(self, layer: nn.Linear, spec: LayerSpec, enable_minmax_tuning: bool = True):
        super().__init__()
        self.layer, self.spec = layer, spec
        weight = layer.weight.detach()
        self.scale_dtype = weight.dtype
        self.value = nn.Parameter(torch.zeros(weight.shape, dtype=torch.float32, device=weight.device))
        shape = get_scale_shape(weight, spec.group_for(weight.shape[1]))
        make = (lambda: nn.Parameter(torch.ones(shape, dtype=torch.float32, device=weight.device))) if enable_minmax_tuning \
            else (lambda: None)
        self.min_scale, self.max_scale = make(), make()

    def tuned(self) -> List[nn.Parameter]:
        return [p for p in (self.value, self.min_scale, self.max_scale) if p is not None]

    def qdq(self):
        return quant_weight(
            self.layer.weight, self.spec.bits, self.spec.group_for(self.layer.in_features), self.spec.scheme,
            self.value, 1.0 if self.min_scale is None else self.min_scale,
            1.0 if self.max_scale is None else self.max_scale, self.scale_dtype, self.spec.full_range,
        )

    def forward(self, x):
        weight, _, _ = self.qdq()
        return F.linear(x, weight.to(x.dtype), None if self.layer.bias is None else self.layer.bias.to(x.dtype))

    @torch.no_grad()
    def clamp_factors(self) -> None:
        for p in (self.min_scale, self.max_scale):
            if p is not None:
                p.clamp_(0.0, 1.0)

    @torch.no_grad()
    def quantized(self, layout: Optional[str]):
        """The AffineQuantizedTensor for the current parameters."""
        _, scale, zp = self.qdq()
        fmt = self.spec.format()
        n, k = self.layer.weight.shape
        group = self.spec.group_for(k)
        w = self.layer.weight.to(torch.float32).reshape(n, k // group, group)
        value = self.value.reshape(n, k // group, group)
        q = round_to_grid(w, scale.unsqueeze(-1), zp.unsqueeze(-1), fmt.quant_min, fmt.quant_max,
                          rounding=lambda t: torch.round(t + value))
        q = q.reshape(n, k).to(fmt.storage_dtype)
        shape = qparams_shape((1, group), (n, k))  # (N,) per channel, (N, K // g) per group
        return quantized_weight(q, scale.to(self.scale_dtype).reshape(shape), zp.reshape(shape), fmt, group,
                                self.layer.weight.dtype, layout)
