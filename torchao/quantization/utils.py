"""Seed import path torchao.quantization.utils (re-exports; the helpers live in torchao.qtensor)."""

from torchao.qtensor.helpers import quantize_per_channel_symmetric as dynamically_quantize_per_channel
from torchao.qtensor.helpers import quantize_per_token_absmax as quantize_activation_per_token_absmax
from torchao.qtensor.helpers import sqnr as compute_error
from torchao.qtensor.unwrap import unwrap_tensor_subclass

__all__ = ["unwrap_tensor_subclass", "compute_error", "dynamically_quantize_per_channel",
           "quantize_activation_per_token_absmax"]
