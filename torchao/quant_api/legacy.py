"""The seed README's older entry points, as thin aliases of quantize_ with a config."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from torchao.quant_api.apply import FilterFn, quantize_
from torchao.quant_api.configs import (
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)

__all__ = [
    "change_linear_weights_to_int8_dqtensors",
    "change_linear_weights_to_int8_woqtensors",
    "change_linear_weights_to_int4_woqtensors",
    "Int8DynActInt4WeightQuantizer",
]


def change_linear_weights_to_int8_dqtensors(model: nn.Module, filter_fn: Optional[FilterFn] = None) -> None:
    """int8 dynamic activation x int8 weight on every selected Linear (in place)."""
    quantize_(model, int8_dynamic_activation_int8_weight(), filter_fn)


def change_linear_weights_to_int8_woqtensors(model: nn.Module, filter_fn: Optional[FilterFn] = None) -> None:
    """int8 weight-only on every selected Linear (in place)."""
    quantize_(model, int8_weight_only(), filter_fn)


def change_linear_weights_to_int4_woqtensors(
    model: nn.Module, groupsize: int = 128, filter_fn: Optional[FilterFn] = None
) -> None:
    """int4 weight-only, groups of ``groupsize`` input features, on every selected Linear (in place)."""
    quantize_(model, int4_weight_only(group_size=groupsize), filter_fn)


class Int8DynActInt4WeightQuantizer:
    """8da4w for ExecuTorch-style models: ``Int8DynActInt4WeightQuantizer(groupsize=32).quantize(model)``.

    precision: dtype the Linear weights (and so the activations) are cast to before quantizing (None: keep).
    """

    def __init__(self, groupsize: int = 256, precision: Optional[torch.dtype] = None):
        self.groupsize = groupsize
        self.precision = precision

    def quantize(self, model: nn.Module, filter_fn: Optional[FilterFn] = None) -> nn.Module:
        if self.precision is not None:
            model.to(self.precision)
        quantize_(model, int8_dynamic_activation_int4_weight(group_size=self.groupsize), filter_fn)
        return model
