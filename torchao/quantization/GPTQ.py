"""Seed import path torchao.quantization.GPTQ."""

from torchao.quant_api.gptq import GPTQConfig, Int4WeightOnlyGPTQQuantizer, gptq

__all__ = ["Int4WeightOnlyGPTQQuantizer", "GPTQConfig", "gptq"]
