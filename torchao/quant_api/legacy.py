"""The seed era's older entry points, as thin aliases of quantize_ with a config: change_linear_weights_to_*,
the 8da4w quantizer, the tensor-subclass names with ``from_float``, and the module-replacement walk."""

from __future__ import annotations

from typing import Callable, ClassVar, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchao.qtensor import AffineQuantizedTensor, QuantSpec, ZeroPointDomain

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
    "Int8DynActInt4WeightLinear",
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


class Int8DynActInt4WeightLinear(nn.Module):
    """The era's 8da4w module: int4 values held in int8 ``weight`` (N, K) with per-group ``scales`` and
    ``zeros`` (N, K // groupsize) as buffers, so its state_dicts load as they did. ``forward`` runs the one
    8da4w path: int8 per-token asymmetric activations, weight = (q - zero) * scale, in ``precision``.
    ``from_linear`` quantizes an nn.Linear the way ``int8_dynamic_activation_int4_weight`` does."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, groupsize: int = 256,
                 precision: torch.dtype = torch.float32, scales_precision: torch.dtype = torch.float32):
        super().__init__()
        if in_features % groupsize:
            raise ValueError(f"Int8DynActInt4WeightLinear: in_features {in_features} is not divisible by "
                             f"groupsize {groupsize}")
        self.in_features, self.out_features, self.groupsize, self.precision = in_features, out_features, groupsize, precision
        groups = (out_features, in_features // groupsize)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(groups, dtype=scales_precision, device=device))
        self.register_buffer("zeros", torch.zeros(groups, dtype=scales_precision, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=precision, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, groupsize: int = 256, precision: torch.dtype = torch.float32,
                    scales_precision: torch.dtype = torch.float32) -> "Int8DynActInt4WeightLinear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, groupsize,
                     precision, scales_precision)
        q, scale, _ = int8_dynamic_activation_int4_weight(group_size=groupsize)(linear.weight.detach().to(precision)).get_plain()
        module.weight.copy_(q)
        module.scales.copy_(scale.reshape(module.scales.shape))
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def quantized_weight(self) -> torch.Tensor:
        """The buffers as our AffineQuantizedTensor (plain layout, int4 values, per-token int8 activations)."""
        spec = QuantSpec.of(self.weight.shape, self.precision, (1, self.groupsize), torch.int4, -8, 7,
                            ZeroPointDomain.INT, "plain", act_quant="int8_per_token_asym")
        return AffineQuantizedTensor.from_plain(self.weight, self.scales, self.zeros.round().to(torch.int32), spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.precision)
        return F.linear(x.to(self.precision), self.quantized_weight(), bias)
