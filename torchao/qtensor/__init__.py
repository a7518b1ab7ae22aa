"""How a tensor is quantized: primitives, the AffineQuantizedTensor subclass, its layouts and ops."""

from torchao.qtensor.primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    fake_quantize_affine,
    qparams_shape,
    quantize_affine,
)
from torchao.qtensor.layouts import LAYOUTS, Layout, QuantSpec, get_layout, register_layout
from torchao.qtensor.aqt import AffineQuantizedTensor, implements, to_affine_quantized, to_aq
from torchao.qtensor.act_quant import ACTIVATION_QUANTIZERS
from torchao.qtensor.linear import LINEAR_KERNELS, register_linear_kernel, select_linear_kernel
from torchao.qtensor import ops as _ops  # noqa: F401  (registers the op handlers)
from torchao.qtensor.laq import ACTIVATION_QUANTIZER_FUNCS, LinearActivationQuantizedTensor, to_laq
from torchao.qtensor.serialization import register_safe_globals

register_safe_globals()

__all__ = [
    "MappingType",
    "ZeroPointDomain",
    "choose_qparams_affine",
    "quantize_affine",
    "dequantize_affine",
    "fake_quantize_affine",
    "qparams_shape",
    "LAYOUTS",
    "Layout",
    "QuantSpec",
    "get_layout",
    "register_layout",
    "AffineQuantizedTensor",
    "implements",
    "to_affine_quantized",
    "to_aq",
    "ACTIVATION_QUANTIZERS",
    "LINEAR_KERNELS",
    "register_linear_kernel",
    "LinearActivationQuantizedTensor",
    "to_laq",
    "ACTIVATION_QUANTIZER_FUNCS",
    "select_linear_kernel",
]
