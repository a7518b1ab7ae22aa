"""F.linear on an AffineQuantizedTensor weight: an ordered list of (applies, run) kernels.

The first kernel whose ``applies(x, weight)`` holds runs (a kernel applies only to weights whose layout
lists it in ``Layout.linear_kernels``, plus its own conditions: device, bits, block shape); if none does,
the weight is dequantized (and the activation fake-quantized, for dynamic-activation weights) and F.linear
runs on floats. The CPU kernels wrap aten ops (kernels/cpu.py), the CUDA ones are Triton (kernels/triton_ops.py).
Non-float inputs are refused, empty ones give empty outputs, and float64 inputs (which no kernel takes)
run the fallback in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import guard_or_false

from torchao.kernels import cpu as cpu_kernels
from torchao.kernels import ZP_MODES, triton_available
from torchao.qtensor.act_quant import get_activation_quantizer
from torchao.qtensor.aqt import AffineQuantizedTensor
from torchao.qtensor.layouts import get_layout
from torchao.qtensor.primitives import ZeroPointDomain

__all__ = ["LinearKernel", "LINEAR_KERNELS", "register_linear_kernel", "quantized_linear", "select_linear_kernel"]

#: activation dtypes the kernels take; others (float64) run the dequantize fallback in their own dtype
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

Applies = Callable[[torch.Tensor, AffineQuantizedTensor], bool]
Run = Callable[[torch.Tensor, AffineQuantizedTensor], torch.Tensor]


@dataclass(frozen=True)
class LinearKernel:
    """``run(x2d, weight)`` computes x2d (M, K) @ weight.T -> (M, N) in x2d.dtype, without bias."""

    name: str
    applies: Applies
    run: Run


#: in priority order; the first that applies wins
LINEAR_KERNELS: List[LinearKernel] = []


def register_linear_kernel(name: str, applies: Applies, *, first: bool = False):
    """Decorator adding ``run`` to LINEAR_KERNELS (at the front with ``first=True``)."""

    def decorator(run: Run) -> Run:
        kernel = LinearKernel(name, applies, run)
        LINEAR_KERNELS.insert(0, kernel) if first else LINEAR_KERNELS.append(kernel)
        return run

    return decorator


def select_linear_kernel(x: torch.Tensor, weight: AffineQuantizedTensor) -> Optional[LinearKernel]:
    """The kernel F.linear(x, weight) would use (None: dequantize fallback)."""
    return next((k for k in LINEAR_KERNELS if k.applies(x, weight)), None)


def quantized_linear(x: torch.Tensor, weight: AffineQuantizedTensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """x (..., K) float, weight (N, K) AffineQuantizedTensor, bias (N,) or None -> (..., N) in x.dtype."""
    if x.shape[-1] != weight.shape[-1]:
        raise RuntimeError(
            f"linear: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but the quantized weight "
            f"has shape {tuple(weight.shape)}"
        )
    if weight.spec.transposed:
        raise RuntimeError("linear: the quantized weight is transposed; pass the (out_features, in_features) tensor")
    if not x.is_floating_point():
        raise TypeError(f"linear: the input is {x.dtype} (shape {tuple(x.shape)}); a quantized linear of shape "
                        f"{tuple(weight.shape)} takes float activations, as nn.Linear does")
    # nothing to multiply (the kernels need rows); a symbolic batch is never assumed empty, so that
    # torch.export keeps it dynamic
    if guard_or_false(math.prod(x.shape[:-1]) == 0) or guard_or_false(weight.shape[0] == 0):
        out = x.new_zeros(*x.shape[:-1], weight.shape[0])
        return out if bias is None else out + bias.to(out.dtype)
    kernel = select_linear_kernel(x, weight) if x.dtype in KERNEL_DTYPES else None
    if kernel is None:
        out = _dequantize_linear(x, weight)
    else:
        # the kernels read dense rows: a strided input (e.g. a column slice) is made contiguous first
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        out = kernel.run(rows, weight).reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias.to(out.dtype)


def _dequantize_linear(x: torch.Tensor, weight: AffineQuantizedTensor) -> torch.Tensor:
    if weight.spec.act_quant is not None:
        x = get_activation_quantizer(weight.spec.act_quant).fake_quantize(x)
    return F.linear(x, weight.dequantize(x.dtype))


# ---- conditions ------------------------------------------------------------------------------------


def _on_cpu(x, w) -> bool:
    return x.device.type == "cpu" and w.device.type == "cpu"


def _layout_runs(w: AffineQuantizedTensor, kernel: str) -> bool:
    """Whether the weight's layout declares that ``kernel`` can run it (Layout.linear_kernels)."""
    return kernel in get_layout(w.spec.layout).linear_kernels


def _is_int8_per_channel(w: AffineQuantizedTensor) -> bool:
    """2-D int8 weights with one scale per output channel (no or integer zero point): the int8 kernels'
    weights, when the layout also says so."""
    s = w.spec
    return (
        len(s.shape) == 2
        and s.block_size == (1, s.shape[1])
        and w.int_data.dtype == torch.int8
        and s.zero_point_domain in (ZeroPointDomain.INT, ZeroPointDomain.NONE)
    )


def _is_int8_dynamic(w: AffineQuantizedTensor) -> bool:
    """int8 per-token activations x int8 per-channel symmetric weights: the integer-GEMM case."""
    return (
        w.spec.act_quant == "int8_per_token_sym"
        and _is_int8_per_channel(w)
        and w.spec.zero_point_domain == ZeroPointDomain.NONE
    )


def _on_cuda(x, w) -> bool:
    return x.is_cuda and w.is_cuda and x.dtype in (torch.bfloat16, torch.float16, torch.float32) and triton_available()


def _weight_only(w) -> bool:
    return w.spec.act_quant is None


def _cpu_int8_weight_only(x, w) -> bool:
    return _on_cpu(x, w) and _weight_only(w) and _layout_runs(w, "cpu_int8_weight_only") and _is_int8_per_channel(w)


def _cpu_int4_weight_only(x, w) -> bool:
    return _on_cpu(x, w) and _weight_only(w) and _layout_runs(w, "cpu_int4_weight_only")


def _cpu_int8_dynamic(x, w) -> bool:
    return _on_cpu(x, w) and _layout_runs(w, "cpu_int8_dynamic") and _is_int8_dynamic(w)


def _cpu_int8_dynamic_int4(x, w) -> bool:
    """int8 per-token activations x int4 weights (8da4w) on our C++ integer kernel."""
    return (
        _on_cpu(x, w) and w.spec.act_quant in ("int8_per_token_asym", "int8_per_token_sym")
        and _layout_runs(w, "cpu_int8_dynamic_int4")
        and cpu_kernels.int8_dynamic_int4_runs(w.shape[0], w.spec.extra("kernel_group_size"), w.scales_and_zeros.dtype)
    )


def _triton_int8_weight_only(x, w) -> bool:
    return _on_cuda(x, w) and _weight_only(w) and _layout_runs(w, "triton_int8_weight_only") and _is_int8_per_channel(w)


def _triton_int4_weight_only(x, w) -> bool:
    return _on_cuda(x, w) and _weight_only(w) and _layout_runs(w, "triton_int4_weight_only")


def _triton_int8_dynamic(x, w) -> bool:
    return _on_cuda(x, w) and _layout_runs(w, "triton_int8_dynamic") and _is_int8_dynamic(w)


def _dynamic_without_integer_kernel(x, w) -> bool:
    """A dynamic-activation weight that no integer kernel takes: fake-quantize x, then weight-only."""
    return (
        not _weight_only(w)
        and not (_cpu_int8_dynamic(x, w) or _cpu_int8_dynamic_int4(x, w) or _triton_int8_dynamic(x, w))
        and select_linear_kernel(x, w.with_tensors(lambda t: t, act_quant=None)) is not None
    )


# ---- kernels -----------------------------------------------------------------------------------


@register_linear_kernel("triton_int8_weight_only", _triton_int8_weight_only)
def _run_triton_int8_weight_only(x, w):
    zero_point = w.zero_point.reshape(-1) if w.spec.zero_point_domain == ZeroPointDomain.INT else None
    return torch.ops.torchao.int8_weight_only_mm_triton(x, w.int_data, w.scale.reshape(-1), zero_point)


@register_linear_kernel("triton_int4_weight_only", _triton_int4_weight_only)
def _run_triton_int4_weight_only(x, w):
    s = w.spec
    zero_point = None if s.zero_point_domain == ZeroPointDomain.NONE else w.zero_point
    return torch.ops.torchao.int4_weight_only_mm_triton(
        x, w.packed, w.scale, zero_point, s.group_size, s.quant_min, ZP_MODES[s.zero_point_domain.name], s.mid
    )


@register_linear_kernel("triton_int8_dynamic", _triton_int8_dynamic)
def _run_triton_int8_dynamic(x, w):
    q, scale, _ = get_activation_quantizer(w.spec.act_quant).quantize(x.detach())
    return torch.ops.torchao.int8_dynamic_mm_triton(q, scale, w.int_data, w.scale, x.dtype)



@register_linear_kernel("cpu_int8_weight_only", _cpu_int8_weight_only)
def _run_cpu_int8_weight_only(x, w):
    scale = w.scale.reshape(-1)
    out = cpu_kernels.int8_weight_only_mm(x, w.int_data, scale)
    if w.zero_point is not None and w.spec.zero_point_domain == ZeroPointDomain.INT:
        # (q - zp) * s = q * s - zp * s: subtract rowsum(x) * zp * s per output channel
        correction = w.zero_point.reshape(-1).to(torch.float32) * scale.to(torch.float32)
        out = (out.to(torch.float32) - x.to(torch.float32).sum(-1, keepdim=True) * correction).to(x.dtype)
    return out


@register_linear_kernel("cpu_int4_weight_only", _cpu_int4_weight_only)
def _run_cpu_int4_weight_only(x, w):
    return cpu_kernels.int4_weight_only_mm(x, w.packed, w.spec.extra("kernel_group_size"), w.scales_and_zeros)


@register_linear_kernel("cpu_int8_dynamic", _cpu_int8_dynamic)
def _run_cpu_int8_dynamic(x, w):
    # rounding has no useful gradient: the integer path is inference-only with respect to x
    q, scale, _ = get_activation_quantizer(w.spec.act_quant).quantize(x.detach())
    return cpu_kernels.int8_dynamic_mm(q, scale, w.int_data, w.scale, x.dtype)


@register_linear_kernel("cpu_int8_dynamic_int4", _cpu_int8_dynamic_int4)
def _run_cpu_int8_dynamic_int4(x, w):
    q, scale, zero_point = get_activation_quantizer(w.spec.act_quant).quantize(x.detach())
    return cpu_kernels.int8_dynamic_int4_mm(q, scale, zero_point, w.packed, w.spec.extra("kernel_group_size"),
                                            w.scales_and_zeros, x.dtype)


@register_linear_kernel("fake_quantized_activation", _dynamic_without_integer_kernel)
def _run_fake_quantized_activation(x, w):
    x_fq = get_activation_quantizer(w.spec.act_quant).fake_quantize(x)
    weight_only = w.with_tensors(lambda t: t, act_quant=None)
    return select_linear_kernel(x_fq, weight_only).run(x_fq, weight_only)
