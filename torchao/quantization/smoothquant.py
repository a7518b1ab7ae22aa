"""Seed import path torchao.quantization.smoothquant."""

from torchao.quant_api.smoothquant import (
    SmoothFakeDynQuantLinear,
    get_scale,
    smooth_fq_linear_to_inference,
    swap_linear_with_smooth_fq_linear,
)

__all__ = ["SmoothFakeDynQuantLinear", "swap_linear_with_smooth_fq_linear", "smooth_fq_linear_to_inference", "get_scale"]
