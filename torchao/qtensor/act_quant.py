"""Dynamic activation quantizers, named so that a quantized weight can say how its input is quantized.

A weight's ``QuantSpec.act_quant`` names one of ACTIVATION_QUANTIZERS; the linear kernels quantize the
input with it at every call (per token: one scale per row of the (..., K) activation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from torchao.kernels import cpu as cpu_kernels
from torchao.qtensor.primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)


@dataclass(frozen=True)
class PerTokenActivationQuantizer:
    """Per-token int8 quantization of activations (..., K): one scale (and zero point) per row."""

    name: str
    mapping_type: MappingType
    quant_min: int
    quant_max: int
    target_dtype: torch.dtype = torch.int8

    @property
    def zero_point_domain(self) -> ZeroPointDomain:
        return ZeroPointDomain.INT if self.mapping_type == MappingType.ASYMMETRIC else ZeroPointDomain.NONE

    def quantize(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """x (..., K) float -> (target_dtype values of x.shape (int8 storage, or float8), float32 scale (...),
        int32 zero point (...) or None). int8 on CPU in eager mode: the same numbers from one C++ pass per row."""
        if self.target_dtype == torch.int8 and cpu_kernels.quantize_int8_per_token_runs(x):
            return cpu_kernels.quantize_int8_per_token(x, self.mapping_type == MappingType.SYMMETRIC)
        block = (1,) * (x.dim() - 1) + (x.shape[-1],)
        scale, zero_point = choose_qparams_affine(
            x, self.mapping_type, block, self.target_dtype, self.quant_min, self.quant_max,
            eps=1e-5, scale_dtype=torch.float32, zero_point_dtype=torch.int32,
            zero_point_domain=self.zero_point_domain,
        )
        q = quantize_affine(x, block, scale, zero_point, self.target_dtype, self.quant_min, self.quant_max,
                            self.zero_point_domain)
        return q, scale, zero_point

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """quantize then dequantize, in x.dtype (what the integer kernel sees, as floats)."""
        q, scale, zero_point = self.quantize(x)
        block = (1,) * (x.dim() - 1) + (x.shape[-1],)
        return dequantize_affine(q, block, scale, zero_point, self.target_dtype, self.quant_min, self.quant_max,
                                 self.zero_point_domain, output_dtype=x.dtype)


ACTIVATION_QUANTIZERS: Dict[str, PerTokenActivationQuantizer] = {
    q.name: q
    for q in (
        PerTokenActivationQuantizer("int8_per_token_sym", MappingType.SYMMETRIC, -127, 127),
        PerTokenActivationQuantizer("int8_per_token_asym", MappingType.ASYMMETRIC, -128, 127),
        *(PerTokenActivationQuantizer(f"{str(f8).replace('torch.', '')}_per_token", MappingType.SYMMETRIC,
                                      -int(torch.finfo(f8).max), int(torch.finfo(f8).max), f8)
          for f8 in (torch.float8_e4m3fn, torch.float8_e5m2)),
    )
}


def get_activation_quantizer(name: str) -> PerTokenActivationQuantizer:
    try:
        return ACTIVATION_QUANTIZERS[name]
    except KeyError:
        raise ValueError(f"unknown activation quantizer '{name}'; known: {sorted(ACTIVATION_QUANTIZERS)}") from None
