"""What to do per layer: apply functions and configs, and the quantize_ entry point."""

from torchao.quant_api.apply import default_filter_fn, quantize, quantize_
from torchao.quant_api.configs import (
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt4WeightConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    UnsupportedWeight,
    WeightConfig,
    get_apply_int4wo_quant,
    get_apply_int8dyn_quant,
    get_apply_int8wo_quant,
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    intx_weight_only,
)
from torchao.quant_api.legacy import (
    Int8DynActInt4WeightQuantizer,
    change_linear_weights_to_int4_woqtensors,
    change_linear_weights_to_int8_dqtensors,
    change_linear_weights_to_int8_woqtensors,
)

__all__ = [
    "quantize_",
    "quantize",
    "default_filter_fn",
    "WeightConfig",
    "UnsupportedWeight",
    "Int8WeightOnlyConfig",
    "Int4WeightOnlyConfig",
    "Int8DynamicActivationInt8WeightConfig",
    "Int8DynamicActivationInt4WeightConfig",
    "IntxWeightOnlyConfig",
    "intx_weight_only",
    "int8_weight_only",
    "int4_weight_only",
    "int8_dynamic_activation_int8_weight",
    "int8_dynamic_activation_int4_weight",
    "get_apply_int8wo_quant",
    "get_apply_int4wo_quant",
    "get_apply_int8dyn_quant",
    "change_linear_weights_to_int8_dqtensors",
    "change_linear_weights_to_int8_woqtensors",
    "change_linear_weights_to_int4_woqtensors",
    "Int8DynActInt4WeightQuantizer",
]
