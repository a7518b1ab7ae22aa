"""Integer weight formats by bit width, and the AffineQuantizedTensor that calibrated methods produce.

GPTQ, AutoRound and HQQ compute their own integers; ``IntFormat`` says which range and zero point a
(bits, symmetric) choice means, and ``quantized_weight`` stores the result in the kernel layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from torchao.qtensor import AffineQuantizedTensor, MappingType, ZeroPointDomain
from torchao.qtensor.layouts import QuantSpec, best_layout, can_hold
from torchao.qtensor.primitives import round_to_grid, storage_dtype

__all__ = ["IntFormat", "fastest_layout", "quantized_weight"]


@dataclass(frozen=True)
class IntFormat:
    """bits in 1..8. Asymmetric: unsigned [0, 2^bits - 1] with an integer zero point (8 bits: the signed
    int8 range, so the int8 kernels apply). Symmetric: signed [-2^(bits-1), 2^(bits-1) - 1], no zero point;
    with ``full_range=False`` the range is [-(2^(bits-1) - 1), 2^(bits-1) - 1], symmetric about zero."""

    bits: int
    sym: bool
    full_range: bool = True

    @classmethod
    def for_bits(cls, bits: int, sym: bool = False, full_range: bool = True) -> "IntFormat":
        if not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
        if sym and bits == 1:
            raise ValueError("symmetric quantization needs at least 2 bits")
        return cls(bits, sym, full_range or not sym)

    @property
    def target_dtype(self) -> torch.dtype:
        if self.bits == 8:
            return torch.int8
        return getattr(torch, f"{'int' if self.sym else 'uint'}{self.bits}")

    @property
    def quant_min(self) -> int:
        if self.sym and not self.full_range:
            return -(2 ** (self.bits - 1) - 1)
        return -(2 ** (self.bits - 1)) if (self.sym or self.bits == 8) else 0

    @property
    def quant_max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if (self.sym or self.bits == 8) else 2**self.bits - 1

    @property
    def mapping_type(self) -> MappingType:
        return MappingType.SYMMETRIC if self.sym else MappingType.ASYMMETRIC

    @property
    def zero_point_domain(self) -> ZeroPointDomain:
        return ZeroPointDomain.NONE if self.sym else ZeroPointDomain.INT

    @property
    def storage_dtype(self) -> torch.dtype:
        return storage_dtype(self.target_dtype)

    def quantize_column(self, w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """Integers (int32) for values ``w`` with per-row scale / zero point (same shape), as quantize_affine."""
        return round_to_grid(w, scale, zero, self.quant_min, self.quant_max).to(torch.int32)

    def dequantize_column(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        return (q.to(scale.dtype) - zero) * scale


def quantized_weight(
    int_data: torch.Tensor,
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    fmt: IntFormat,
    group_size: int,
    dtype: torch.dtype,
    layout: Optional[str] = None,
    act_quant: Optional[str] = None,
    float_zero: bool = False,
) -> AffineQuantizedTensor:
    """An (N, K) AffineQuantizedTensor from integers computed elsewhere, in ``layout`` or else the fastest
    layout for the device (the CPU int4 kernel / the packed Triton layout for <= 4 bits, plain otherwise).

    Values are (int_data - zero_point) * scale. zero_point: None for symmetric formats; for asymmetric
    ones integers (any dtype), or with ``float_zero`` any floats (stored as ZeroPointDomain.FLOAT's offset
    (mid - zero_point) * scale in ``dtype``); act_quant: a dynamic activation quantizer's name (None:
    weight-only)."""
    domain = ZeroPointDomain.FLOAT if float_zero else fmt.zero_point_domain
    spec = QuantSpec.of(int_data.shape, dtype, (1, group_size), fmt.target_dtype, fmt.quant_min, fmt.quant_max,
                        domain, "plain", act_quant)
    if fmt.sym:
        zp = None
    elif float_zero:
        zp = ((spec.mid - zero_point.float()) * scale.float()).to(dtype)
    else:
        zp = zero_point.round().to(torch.int32)
    layout = layout or fastest_layout(spec, int_data.device)
    return AffineQuantizedTensor.from_plain(int_data, scale, zp, replace(spec, layout=layout))


def fastest_layout(spec: QuantSpec, device: torch.device) -> str:
    """The layout a weight of ``spec`` runs fastest in on ``device``: for <= 4 bits the CPU int4 kernel's or
    the packed Triton layout where they can hold it, else plain."""
    if spec.bits > 4:
        return "plain"
    fallback = "int4_packed" if can_hold("int4_packed", spec, device) else "plain"
    return best_layout(spec, device, fallback)
