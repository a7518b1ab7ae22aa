"""Seed-era import path torchao.quantization.autoquant (re-exports of torchao.quant_api.autoquant)."""

from torchao.quant_api.autoquant import (
    CANDIDATES,
    DEFAULT_AUTOQUANT_CLASS_LIST,
    DEFAULT_CANDIDATES,
    DEFAULT_INT4_AUTOQUANT_CLASS_LIST,
    AQDefaultLinearWeight,
    AQInt4G32WeightOnlyQuantizedLinearWeight,
    AQInt4G64WeightOnlyQuantizedLinearWeight,
    AQInt4G128WeightOnlyQuantizedLinearWeight,
    AQInt4G256WeightOnlyQuantizedLinearWeight,
    AQInt8DynamicallyQuantizedLinearWeight,
    AQWeightOnlyQuantizedLinearWeight,
    AQWeightOnlyQuantizedLinearWeight2,
    AQWeightOnlyQuantizedLinearWeight3,
    autoquant,
)
from torchao.quant_api.autoquant_cache import AUTOQUANT_CACHE

__all__ = ["AUTOQUANT_CACHE", "autoquant", "CANDIDATES", "DEFAULT_CANDIDATES", "DEFAULT_AUTOQUANT_CLASS_LIST",
           "DEFAULT_INT4_AUTOQUANT_CLASS_LIST", "AQDefaultLinearWeight", "AQWeightOnlyQuantizedLinearWeight",
           "AQWeightOnlyQuantizedLinearWeight2", "AQWeightOnlyQuantizedLinearWeight3",
           "AQInt8DynamicallyQuantizedLinearWeight", "AQInt4G32WeightOnlyQuantizedLinearWeight",
           "AQInt4G64WeightOnlyQuantizedLinearWeight", "AQInt4G128WeightOnlyQuantizedLinearWeight",
           "AQInt4G256WeightOnlyQuantizedLinearWeight"]
