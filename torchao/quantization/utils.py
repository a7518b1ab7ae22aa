"""Seed import path torchao.quantization.utils (re-exports; the helpers live in torchao.qtensor)."""

from torchao.qtensor.helpers import group_qparams_symmetric as get_group_qparams_symmetric
from torchao.qtensor.helpers import groupwise_affine_dequantize as groupwise_affine_dequantize_tensor_from_qparams
from torchao.qtensor.helpers import groupwise_affine_dequantize_tensor, groupwise_affine_quantize_tensor
from torchao.qtensor.helpers import groupwise_affine_qparams as get_groupwise_affine_qparams
from torchao.qtensor.helpers import groupwise_affine_quantize as groupwise_affine_quantize_tensor_from_qparams
from torchao.qtensor.helpers import pack_scales_and_zeros as pack_tinygemm_scales_and_zeros
from torchao.qtensor.helpers import quantize_per_channel_symmetric as dynamically_quantize_per_channel
from torchao.qtensor.helpers import quantize_per_token_absmax as quantize_activation_per_token_absmax
from torchao.qtensor.helpers import sqnr as compute_error
from torchao.qtensor.helpers import unpack_scales_and_zeros as unpack_tinygemm_scales_and_zeros
from torchao.qtensor.unwrap import unwrap_tensor_subclass
from torchao.quant_api.shape_logging import _apply_logging_hook, _quant_logging_hook, fqn_to_op_to_shape_to_count

__all__ = ["unwrap_tensor_subclass", "compute_error", "dynamically_quantize_per_channel",
           "quantize_activation_per_token_absmax", "get_group_qparams_symmetric", "get_groupwise_affine_qparams",
           "groupwise_affine_quantize_tensor", "groupwise_affine_dequantize_tensor",
           "groupwise_affine_quantize_tensor_from_qparams", "groupwise_affine_dequantize_tensor_from_qparams",
           "pack_tinygemm_scales_and_zeros", "unpack_tinygemm_scales_and_zeros", "_apply_logging_hook",
           "_quant_logging_hook", "fqn_to_op_to_shape_to_count"]
