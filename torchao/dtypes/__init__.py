"""Seed import path torchao.dtypes: the quantized tensor subclass and its short constructor name."""

from torchao.qtensor.aqt import (
    AffineQuantizedTensor,
    to_affine_quantized,
    to_affine_quantized_intx,
    to_affine_quantized_intx_static,
    to_aq,
)
from torchao.qtensor.laq import LinearActivationQuantizedTensor, to_laq
from torchao.qtensor.layouts import (
    LAYOUTS,
    Int4CPULayout,
    Int4PackedLayout,
    Layout,
    PlainLayout,
    SemiSparseLayout,
    TensorCoreTiledLayout,
    register_layout,
)

__all__ = [
    "AffineQuantizedTensor",
    "to_affine_quantized",
    "to_aq",
    "to_laq",
    "LinearActivationQuantizedTensor",
    "to_affine_quantized_intx",
    "to_affine_quantized_intx_static",
    "LAYOUTS",
    "Layout",
    "PlainLayout",
    "TensorCoreTiledLayout",
    "SemiSparseLayout",
    "Int4PackedLayout",
    "Int4CPULayout",
    "register_layout",
]
