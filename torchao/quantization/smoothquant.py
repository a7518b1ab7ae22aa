"""Seed import path torchao.quantization.smoothquant (re-exports of torchao.quant_api.smoothquant)."""

from torchao.quant_api.smoothquant import SmoothFakeDynQuantLinear
from torchao.quant_api.smoothquant import SmoothFakeDynQuantLinear as SmoothFakeDynamicallyQuantizedLinear
from torchao.quant_api.smoothquant import (
    get_scale,
    set_smooth_fq_attribute,
    smooth_fq_linear_to_inference,
    swap_linear_with_smooth_fq_linear,
)

__all__ = ["SmoothFakeDynQuantLinear", "SmoothFakeDynamicallyQuantizedLinear", "swap_linear_with_smooth_fq_linear",
           "smooth_fq_linear_to_inference", "get_scale", "set_smooth_fq_attribute"]
