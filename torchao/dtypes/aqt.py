"""Seed import path torchao.dtypes.aqt."""

from torchao.qtensor.aqt import AffineQuantizedTensor, to_affine_quantized, to_aq
from torchao.qtensor.laq import LinearActivationQuantizedTensor, to_laq

__all__ = ["AffineQuantizedTensor", "to_affine_quantized", "to_aq", "to_laq", "LinearActivationQuantizedTensor"]
