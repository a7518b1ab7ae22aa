"""The seed era's older entry points, as thin aliases of quantize_ with a config: change_linear_weights_to_*,
the 8da4w quantizer, the tensor-subclass names with ``from_float``, and the module-replacement walk."""

from __future__ import annotations

from typing import Callable, ClassVar, Optional

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
    "Int8WeightOnlyQuantizedLinearWeight",
    "Int8DynamicallyQuantizedLinearWeight",
    "Int4WeightOnlyQuantizedLinearWeight",
    "_replace_with_custom_fn_if_matches_filter",
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


class _FromFloat:
    """The seed era's tensor-subclass names: ``X.from_float(weight)`` returns our AffineQuantizedTensor,
    quantized as the matching config does."""

    config: ClassVar[Callable[..., Callable[[torch.Tensor], torch.Tensor]]]

    @classmethod
    def from_float(cls, input_float: torch.Tensor, **kwargs) -> torch.Tensor:
        return cls.config(**kwargs)(input_float)


class Int8WeightOnlyQuantizedLinearWeight(_FromFloat):
    """``from_float(w)``: int8 weight-only (symmetric per output channel)."""

    config = staticmethod(lambda: int8_weight_only())


class Int8DynamicallyQuantizedLinearWeight(_FromFloat):
    """``from_float(w)``: int8 weights for int8 dynamic activations."""

    config = staticmethod(lambda: int8_dynamic_activation_int8_weight())


class Int4WeightOnlyQuantizedLinearWeight(_FromFloat):
    """``from_float(w, groupsize=128, inner_k_tiles=8)``: int4 weight-only in the int4 kernel layout
    (``inner_k_tiles`` is accepted and ignored)."""

    config = staticmethod(lambda groupsize=128, inner_k_tiles=8: int4_weight_only(group_size=groupsize))


def _replace_with_custom_fn_if_matches_filter(model: nn.Module, replacement_fn: Callable[[nn.Module], nn.Module],
                                              filter_fn: FilterFn, cur_fqn: str = "") -> nn.Module:
    """The era's module walk: ``replacement_fn(module)`` replaces every module for which
    ``filter_fn(module, fqn)`` holds (children first are not visited below a replaced module); returns
    the (possibly replaced) model."""
    if filter_fn(model, cur_fqn[:-1]):
        return replacement_fn(model)
    for name, child in model.named_children():
        new_child = _replace_with_custom_fn_if_matches_filter(child, replacement_fn, filter_fn, f"{cur_fqn}{name}.")
        if new_child is not child:
            setattr(model, name, new_child)
    return model
