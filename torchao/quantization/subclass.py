"""Seed-era import path torchao.quantization.subclass: the tensor-subclass names, each with ``from_float(w)``
returning an AffineQuantizedTensor, and the change_linear_weights_to_* functions."""

from torchao.quant_api.legacy import (
    Int4WeightOnlyQuantizedLinearWeight,
    Int8DynamicallyQuantizedLinearWeight,
    Int8WeightOnlyQuantizedLinearWeight,
    change_linear_weights_to_int4_woqtensors,
    change_linear_weights_to_int8_dqtensors,
    change_linear_weights_to_int8_woqtensors,
)

__all__ = ["Int8WeightOnlyQuantizedLinearWeight", "Int8DynamicallyQuantizedLinearWeight",
           "Int4WeightOnlyQuantizedLinearWeight", "change_linear_weights_to_int8_dqtensors",
           "change_linear_weights_to_int8_woqtensors", "change_linear_weights_to_int4_woqtensors"]
