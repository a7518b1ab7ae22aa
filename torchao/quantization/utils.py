"""Seed import path torchao.quantization.utils."""

from torchao.qtensor.unwrap import unwrap_tensor_subclass

__all__ = ["unwrap_tensor_subclass"]
