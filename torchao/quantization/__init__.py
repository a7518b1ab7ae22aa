"""Seed import path: the public quantization API (re-exports of torchao.quant_api and torchao.qtensor)."""

from torchao.qtensor.primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)
from torchao.quant_api import *  # noqa: F401,F403
from torchao.quant_api import __all__ as _quant_api_all
from torchao.qtensor.laq import ACTIVATION_QUANTIZER_FUNCS, LinearActivationQuantizedTensor, to_laq
from torchao.qtensor.laq import to_laq as to_linear_activation_quantized
from torchao.qtensor.unwrap import unwrap_tensor_subclass
from torchao.quant_api.gptq import GPTQConfig, Int4WeightOnlyGPTQQuantizer, gptq
from torchao.quant_api.autoquant_cache import AUTOQUANT_CACHE, load_autoquant_cache, save_autoquant_cache
# the submodule torchao.quantization.autoquant (the era's import path); the package attribute stays the
# function, as it was then
from torchao.quantization.autoquant import DEFAULT_AUTOQUANT_CLASS_LIST, DEFAULT_CANDIDATES, autoquant
from torchao.quant_api.autoround import AutoAdamRound, AutoOPTRound, AutoRound, AutoRoundConfig, autoround
from torchao.quant_api.registry import COMPRESSION_REGISTRY, Q4_0Config, compress, register_compression

__all__ = list(_quant_api_all) + [
    "MappingType",
    "ZeroPointDomain",
    "choose_qparams_affine",
    "quantize_affine",
    "dequantize_affine",
    "unwrap_tensor_subclass",
    "to_laq",
    "to_linear_activation_quantized",
    "LinearActivationQuantizedTensor",
    "ACTIVATION_QUANTIZER_FUNCS",
    "gptq",
    "GPTQConfig",
    "Int4WeightOnlyGPTQQuantizer",
    "autoround",
    "AutoRoundConfig",
    "AutoRound",
    "AutoOPTRound",
    "AutoAdamRound",
    "autoquant",
    "DEFAULT_CANDIDATES",
    "DEFAULT_AUTOQUANT_CLASS_LIST",
    "AUTOQUANT_CACHE",
    "save_autoquant_cache",
    "load_autoquant_cache",
    "COMPRESSION_REGISTRY",
    "Q4_0Config",
    "compress",
    "register_compression",
]
