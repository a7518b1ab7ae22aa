"""LinearActivationQuantizedTensor: a weight that quantizes the input of every F.linear it takes part in.

Seed 002's quantization flow: quantize the weight, then ``m.weight = nn.Parameter(to_laq(m.weight,
input_quant_func))``. ``input_quant_func`` maps the activation (..., K) to a quantized tensor (or to
floats). When it is one of ``ACTIVATION_QUANTIZER_FUNCS`` (per-token int8) and the weight is an
AffineQuantizedTensor, the pair runs through the dynamic-activation machinery: the weight carries the
quantizer's name and the integer kernels take it (int8 x int8 on CPU / Triton). Any other function runs
as written: its output is dequantized if it is an AffineQuantizedTensor, then F.linear with the weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

import torch
import torch.nn.functional as F

from torchao.qtensor.act_quant import ACTIVATION_QUANTIZERS
from torchao.qtensor.aqt import AffineQuantizedTensor
from torchao.qtensor.base_tensor import TorchAOBaseTensor

__all__ = ["LinearActivationQuantizedTensor", "to_laq", "ActivationQuantizerFunc", "ACTIVATION_QUANTIZER_FUNCS"]

aten = torch.ops.aten


@dataclass(frozen=True)
class ActivationQuantizerFunc:
    """``input_quant_func`` for a named activation quantizer (ACTIVATION_QUANTIZERS): called, it
    fake-quantizes an activation (..., K) per token; to_laq hands its name to the integer kernels."""

    act_quant: str

    @property
    def __name__(self) -> str:
        return f"{self.act_quant}_activation"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATION_QUANTIZERS[self.act_quant].fake_quantize(x)


#: input_quant_func values that the integer kernels understand, by activation-quantizer name
ACTIVATION_QUANTIZER_FUNCS: Dict[str, ActivationQuantizerFunc] = {
    name: ActivationQuantizerFunc(name) for name in ACTIVATION_QUANTIZERS
}


class LinearActivationQuantizedTensor(TorchAOBaseTensor):
    """``original_weight_tensor`` (N, K) plus ``input_quant_func``; F.linear(x, self, b) computes
    F.linear(input_quant_func(x), original_weight_tensor, b). Everything else (detach, to, t, ...) applies
    to the original weight and keeps the wrapper."""

    @staticmethod
    def __new__(cls, original_weight_tensor: torch.Tensor, input_quant_func: Callable):
        w = original_weight_tensor
        return torch.Tensor._make_wrapper_subclass(cls, w.shape, dtype=w.dtype, device=w.device, requires_grad=False)

    def __init__(self, original_weight_tensor: torch.Tensor, input_quant_func: Callable):
        if not callable(input_quant_func):
            raise TypeError(f"input_quant_func must be callable, got {type(input_quant_func).__name__}")
        self.original_weight_tensor = original_weight_tensor
        self.input_quant_func = input_quant_func

    def __repr__(self):
        name = getattr(self.input_quant_func, "__name__", repr(self.input_quant_func))
        return f"LinearActivationQuantizedTensor({self.original_weight_tensor!r}, input_quant_func={name})"

    def __tensor_flatten__(self):
        return ["original_weight_tensor"], self.input_quant_func

    def _stable_hash_for_caching(self) -> str:
        """Key for torch.compile's AOT caches: the function's identity and the weight's structure."""
        func = self.input_quant_func
        name = repr(func) if isinstance(func, ActivationQuantizerFunc) else \
            f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}"
        inner = self.original_weight_tensor
        inner_key = inner._stable_hash_for_caching() if hasattr(inner, "_stable_hash_for_caching") else \
            f"{inner.dtype}{tuple(inner.shape)}"
        return f"LinearActivationQuantizedTensor({name}, {inner_key})"

    @classmethod
    def __tensor_unflatten__(cls, inner_tensors, input_quant_func, outer_size, outer_stride):
        return cls(inner_tensors["original_weight_tensor"], input_quant_func)

    @classmethod
    def from_float(cls, weight: torch.Tensor, input_quant_func: Callable) -> "LinearActivationQuantizedTensor":
        return cls(weight.detach() if isinstance(weight, torch.nn.Parameter) else weight, input_quant_func)

    def dequantize(self, output_dtype=None) -> torch.Tensor:
        w = self.original_weight_tensor
        return w.dequantize(output_dtype) if isinstance(w, AffineQuantizedTensor) else w.to(output_dtype or w.dtype)

    def _with(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LinearActivationQuantizedTensor":
        return LinearActivationQuantizedTensor(fn(self.original_weight_tensor), self.input_quant_func)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.linear, aten.linear.default):
            x, w = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            return _linear(x, w, bias)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        w = args[0]
        if func in _WRAPPED:
            return w._with(lambda t: func(t, *args[1:], **kwargs))
        if func is aten.copy_.default:
            w.original_weight_tensor.copy_(args[1].original_weight_tensor)
            return w
        raise NotImplementedError(f"LinearActivationQuantizedTensor does not implement {func}; use "
                                  ".original_weight_tensor or .dequantize()")


_WRAPPED = {aten.detach.default, aten.clone.default, aten._to_copy.default, aten.t.default}


def _linear(x: torch.Tensor, w: LinearActivationQuantizedTensor, bias) -> torch.Tensor:
    weight, act_quant = w.original_weight_tensor, getattr(w.input_quant_func, "act_quant", None)
    if act_quant is not None and isinstance(weight, AffineQuantizedTensor):
        return F.linear(x, weight.with_tensors(lambda t: t, act_quant=act_quant), bias)
    qx = w.input_quant_func(x)
    if isinstance(qx, AffineQuantizedTensor):
        qx = qx.dequantize(x.dtype)
    return F.linear(qx, weight, bias)


def to_laq(weight: torch.Tensor, input_quant_func: Callable) -> LinearActivationQuantizedTensor:
    """Wrap ``weight`` so that F.linear quantizes its input with ``input_quant_func`` first."""
    return LinearActivationQuantizedTensor.from_float(weight, input_quant_func)
