"""A compression registry in the spirit of torch_to_nnef: a name -> a function that quantizes a model in place.

Every entry has the signature ``fn(model, tokenizer=None, export_dirpath=None, local_dir=None, **kwargs)``
and returns the model. ``COMPRESSION_REGISTRY`` is a plain dict: add your own entries (or use
``@register_compression("name")``); ``compress(model, "name", ...)`` looks one up with a clear error.

Q4_0 entries quantize Linear and Embedding weights (2-D) to GGUF Q4_0 blocks, and Conv1d / Conv2d weights
to 4-bit symmetric groups of 32 input channels (densely packed; GGUF has no convolution blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Optional, Sequence, Tuple, Type

import torch
import torch.nn as nn

from torchao.qtensor import AffineQuantizedTensor, QuantSpec, ZeroPointDomain
from torchao.qtensor.layouts.q4_0 import BLOCK, choose_q4_0_scale, quantize_q4_0
from torchao.quant_api.apply import quantize_
from torchao.quant_api.configs import (
    WeightConfig,
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    intx_weight_only,
)

__all__ = ["COMPRESSION_REGISTRY", "register_compression", "compress", "Q4_0Config", "DEFAULT_MODULES"]

DEFAULT_MODULES: Tuple[Type[nn.Module], ...] = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class Q4_0Config(WeightConfig):
    """GGUF Q4_0 for a 2-D weight: scale per block of 32 from min/max (GGUF's rule) or, with ``grid_size``,
    the best of ``grid_size`` shrunk scales d * (1 - maxshrink * i / grid_size) by per-block MSE."""

    grid_size: int = 0
    maxshrink: float = 0.8

    def unsupported_reason(self, weight):
        reason = super().unsupported_reason(weight)
        if reason is None and weight.shape[1] % BLOCK:
            reason = f"Q4_0 needs in_features divisible by 32, got {weight.shape[1]}"
        return reason

    def quantize(self, weight):
        d = choose_q4_0_scale(weight)
        if self.grid_size:
            d = _grid_mse_scale(weight, d, self.grid_size, self.maxshrink)
        q = quantize_q4_0(weight, d)
        spec = QuantSpec.of(q.shape, weight.dtype, (1, BLOCK), torch.int4, -8, 7, ZeroPointDomain.NONE, "q4_0")
        return AffineQuantizedTensor.from_plain(q, d.to(torch.float16), None, spec)


def _grid_mse_scale(weight: torch.Tensor, d: torch.Tensor, grid: int, maxshrink: float) -> torch.Tensor:
    n, k = weight.shape
    blocks = weight.to(torch.float32).reshape(n, k // BLOCK, BLOCK)
    best, best_err = d, torch.full_like(d, float("inf"))
    for i in range(grid):
        candidate = d * (1 - maxshrink * i / grid)
        q = quantize_q4_0(weight, candidate).reshape(n, k // BLOCK, BLOCK).to(torch.float32)
        err = ((q * candidate.to(torch.float16).to(torch.float32).unsqueeze(-1) - blocks) ** 2).sum(-1)
        better = err < best_err
        best, best_err = torch.where(better, candidate, best), torch.where(better, err, best_err)
    return best


def _conv_q4(weight: torch.Tensor):
    group = BLOCK if weight.shape[1] % BLOCK == 0 else None
    return intx_weight_only(4, group, sym=True)(weight)


def quantize_modules(
    model: nn.Module,
    linear_config: Callable,
    to_quantize_module_classes: Sequence[Type[nn.Module]] = DEFAULT_MODULES,
    conv_config: Callable = _conv_q4,
    tokenizer=None,
    export_dirpath=None,
    local_dir=None,
) -> nn.Module:
    """Quantize the weights of the given module classes: 2-D weights with ``linear_config``, convolutions
    with ``conv_config``. Shared weights are quantized once (quantize_)."""
    classes = tuple(to_quantize_module_classes)
    unknown = [c for c in classes if not issubclass(c, nn.Module)]
    if unknown:
        raise TypeError(f"to_quantize_module_classes must be nn.Module classes, got {unknown}")
    convs = tuple(c for c in classes if issubclass(c, nn.modules.conv._ConvNd))
    flat = tuple(c for c in classes if c not in convs)
    if flat:
        quantize_(model, linear_config, filter_fn=lambda m, name: isinstance(m, flat))
    if convs:
        quantize_(model, conv_config, filter_fn=lambda m, name: isinstance(m, convs))
    return model


def _config_entry(make: Callable[[], Callable], classes=(nn.Linear,)) -> Callable:
    return partial(quantize_modules, linear_config=make(), to_quantize_module_classes=classes)


COMPRESSION_REGISTRY: Dict[str, Callable] = {
    "min_max_q4_0_all": partial(quantize_modules, linear_config=Q4_0Config()),
    "grid_mse_q4_0_all": partial(quantize_modules, linear_config=Q4_0Config(grid_size=100)),
    "min_max_q4_0_linear": partial(quantize_modules, linear_config=Q4_0Config(), to_quantize_module_classes=(nn.Linear,)),
    "int8wo": _config_entry(int8_weight_only),
    "int4wo_128": _config_entry(lambda: int4_weight_only(group_size=128)),
    "int8dq": _config_entry(int8_dynamic_activation_int8_weight),
    "8da4w_32": _config_entry(lambda: int8_dynamic_activation_int4_weight(32)),
    "hqq_int4_64": _config_entry(lambda: intx_weight_only(4, 64, use_hqq=True)),
    "hqq_int3_64": _config_entry(lambda: intx_weight_only(3, 64, use_hqq=True)),
}


def register_compression(name: str):
    """Decorator: ``@register_compression("my_method")`` on ``fn(model, tokenizer=None, ...)``."""

    def decorator(fn: Callable) -> Callable:
        COMPRESSION_REGISTRY[name] = fn
        return fn

    return decorator


def compress(model: nn.Module, name: str, tokenizer=None, export_dirpath=None, local_dir=None,
             registry: Optional[Dict[str, Callable]] = None, **kwargs) -> nn.Module:
    """Run the registry entry ``name`` on ``model`` (in place) and return the model."""
    registry = COMPRESSION_REGISTRY if registry is None else registry
    if name not in registry:
        raise KeyError(f"unknown compression {name!r}; registered: {sorted(registry)}")
    result = registry[name](model, tokenizer=tokenizer, export_dirpath=export_dirpath, local_dir=local_dir, **kwargs)
    return model if result is None else result
