"""Seed import path torchao.dtypes.aqt."""

from torchao.qtensor.aqt import AffineQuantizedTensor, to_affine_quantized, to_aq

__all__ = ["AffineQuantizedTensor", "to_affine_quantized", "to_aq"]
