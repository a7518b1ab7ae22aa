"""Seed import path torchao.quantization.GPTQ (re-exports): the GPTQ quantizer, the 8da4w quantizer, and the
calibration / evaluation helpers of that era's GPTQ example."""

from torchao.quant_api.evaluation import InputRecorder, TransformerEvalWrapper
from torchao.quant_api.gptq import GPTQConfig, Int4WeightOnlyGPTQQuantizer, gptq
from torchao.quant_api.legacy import Int8DynActInt4WeightLinear, Int8DynActInt4WeightQuantizer

__all__ = ["Int4WeightOnlyGPTQQuantizer", "GPTQConfig", "gptq", "Int8DynActInt4WeightQuantizer",
           "Int8DynActInt4WeightLinear", "InputRecorder", "TransformerEvalWrapper"]
