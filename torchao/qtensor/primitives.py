"""Affine quantization primitives: choose_qparams_affine, quantize_affine, dequantize_affine.

One formula covers every granularity through ``block_size``, the shape of the block of elements
that share one scale (and zero point)::

    per-tensor            block_size = input.shape
    per-channel (Linear)  block_size = (1, K)            for a weight of shape (N, K)
    per-group             block_size = (1, group_size)
    per-token             block_size = (1, ..., 1, K)    for activations of shape (..., K)

Quantization parameters have one entry per block. Their shape follows the input dims: a dim whose
block is 1 keeps its size, a dim covered entirely by one block is dropped, a dim split into several
blocks becomes the number of blocks (so a (N, K) weight gives scales of shape (N,) per channel and
(N, K // group_size) per group). Any scale with the right number of elements is accepted back.

The integer mapping (``ZeroPointDomain.INT``)::

    q = clamp(round(x * (1 / scale)) + zero_point, quant_min, quant_max)
    x ~ (q - zero_point) * scale

matches ``torch.ops.quantized_decomposed`` bit for bit. ``ZeroPointDomain.FLOAT`` stores the zero
point as a float offset (the tinygemm convention: ``x ~ (q - mid) * scale + zero_point`` with
``mid = (quant_min + quant_max + 1) / 2``); ``ZeroPointDomain.NONE`` has no zero point.

The three functions are registered as custom ops in the ``quant`` namespace (CompositeImplicitAutograd,
so ``torch.export`` keeps them by name and Inductor / AOTInductor compile them into fused code).
"""

from __future__ import annotations

import math
from enum import Enum, auto
from typing import Callable, Optional, Sequence, Tuple

import torch

__all__ = [
    "MappingType",
    "ZeroPointDomain",
    "choose_qparams_affine",
    "quantize_affine",
    "dequantize_affine",
    "fake_quantize_affine",
    "fake_quantize_affine_cachemask",
    "QuantArgumentError",
    "QuantDtypeError",
    "round_to_grid",
    "mid_point",
    "choose_qparams_affine_with_min_max",
    "qparams_shape",
    "quant_range",
    "storage_dtype",
]


class MappingType(Enum):
    """How the float range maps onto the integer range.

    SYMMETRIC: scale from max(|min|, |max|) spread over the whole integer range, zero point at its middle.
    SYMMETRIC_NO_CLIPPING_ERR: scale = max(min / quant_min, max / quant_max), so neither end clips.
    ASYMMETRIC: scale from (max - min), zero point chosen so that min maps to quant_min.
    """

    SYMMETRIC = auto()
    SYMMETRIC_NO_CLIPPING_ERR = auto()
    ASYMMETRIC = auto()


class ZeroPointDomain(Enum):
    """Where the zero point lives: INT (added before rounding), FLOAT (a float offset), NONE (absent)."""

    INT = auto()
    FLOAT = auto()
    NONE = auto()


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

# Integer target dtypes: dtype -> (storage dtype, default quant_min, default quant_max).
# Sub-byte dtypes (torch.uint4, torch.int3, ...) are held unpacked in one byte each.
_INT_TARGETS = {
    torch.int8: (torch.int8, -128, 127),
    torch.uint8: (torch.uint8, 0, 255),
    torch.int16: (torch.int16, -(2**15), 2**15 - 1),
    torch.int32: (torch.int32, -(2**31), 2**31 - 1),
}
for _bits in range(1, 8):
    _INT_TARGETS[getattr(torch, f"uint{_bits}")] = (torch.uint8, 0, 2**_bits - 1)
    _INT_TARGETS[getattr(torch, f"int{_bits}")] = (torch.int8, -(2 ** (_bits - 1)), 2 ** (_bits - 1) - 1)
# float8 targets: stored as themselves, range +-their largest finite value; quantizing scales and casts
# (the cast rounds to the nearest float8), symmetric, no zero point
FLOAT8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
for _f8 in FLOAT8_DTYPES:
    _INT_TARGETS[_f8] = (_f8, -int(torch.finfo(_f8).max), int(torch.finfo(_f8).max))


def storage_dtype(target_dtype: torch.dtype) -> torch.dtype:
    """The dtype that holds values of ``target_dtype`` (torch.uint4 -> torch.uint8, int8 -> int8)."""
    _check_target_dtype(target_dtype)
    return _INT_TARGETS[target_dtype][0]


def _check_target_dtype(target_dtype: torch.dtype) -> None:
    if target_dtype not in _INT_TARGETS:
        known = ", ".join(str(d) for d in _INT_TARGETS)
        raise ValueError(f"unsupported quantized dtype {target_dtype}; supported: {known}")


def quant_range(
    target_dtype: torch.dtype, quant_min: Optional[int] = None, quant_max: Optional[int] = None
) -> Tuple[int, int]:
    """(quant_min, quant_max) with defaults from ``target_dtype``; raises if outside its storage range."""
    _check_target_dtype(target_dtype)
    storage, lo, hi = _INT_TARGETS[target_dtype]
    qmin = lo if quant_min is None else int(quant_min)
    qmax = hi if quant_max is None else int(quant_max)
    if qmin < lo or qmax > hi:
        old = (f"quant_min out of bound for dtype, quant_min_lower_bound: {lo} quant_min: {qmin}" if qmin < lo
               else f"quant_max out of bound for dtype, quant_max_upper_bound: {hi} quant_max: {qmax}")
        raise QuantArgumentError(
            f"quant range [{qmin}, {qmax}] does not fit {target_dtype} (range [{lo}, {hi}], stored as {storage}); {old}"
        )
    if qmin >= qmax:
        raise ValueError(f"quant_min ({qmin}) must be smaller than quant_max ({qmax})")
    return qmin, qmax


def _reduction_shapes(block_size: Sequence[int], shape: Sequence[int]):
    """Split ``shape`` into (blocks, within-block) dims.

    Returns (view_shape, reduce_dims, qparams_view_shape, qparams_shape): the input viewed as
    ``view_shape`` has its blocks along ``reduce_dims``; qparams broadcast against it when viewed as
    ``qparams_view_shape``; ``qparams_shape`` is the public (squeezed) shape of scale / zero_point.
    """
    if len(block_size) != len(shape):
        raise QuantArgumentError(
            f"block_size {tuple(block_size)} has {len(block_size)} dims but the input has shape "
            f"{tuple(shape)} ({len(shape)} dims); give one block extent per input dim "
            f"(Got input dim:{len(shape)}, block_size: {tuple(block_size)})"
        )
    view_shape, reduce_dims, qp_view, qp_shape = [], [], [], []
    for dim, (b, n) in enumerate(zip(block_size, shape)):
        b = int(b)
        if b == 1:  # decided on the block alone, so a symbolic (dynamic) dim is never specialized
            view_shape.append(n)
            qp_view.append(n)
            qp_shape.append(n)
        elif b < 1 or b > n or n % b != 0:
            raise ValueError(
                f"block_size {tuple(block_size)} does not tile input shape {tuple(shape)}: dim {dim} "
                f"has size {n}, which is not divisible into blocks of {b}"
            )
        elif b == n:
            reduce_dims.append(len(view_shape))
            view_shape.append(n)
            qp_view.append(1)
        else:
            view_shape += [n // b, b]
            reduce_dims.append(len(view_shape) - 1)
            qp_view += [n // b, 1]
            qp_shape.append(n // b)
    return view_shape, reduce_dims, qp_view, qp_shape


def qparams_shape(block_size: Sequence[int], shape: Sequence[int]) -> Tuple[int, ...]:
    """The shape of the scale / zero point that ``choose_qparams_affine`` returns for this input shape."""
    return tuple(_reduction_shapes(block_size, shape)[3])


def _as_qparam_view(t: torch.Tensor, name: str, qp_view: Sequence[int]) -> torch.Tensor:
    want = math.prod(qp_view)
    if t.numel() != want:
        raise ValueError(
            f"{name} has {t.numel()} elements (shape {tuple(t.shape)}) but the block_size gives "
            f"{want} blocks; expected a {name} of shape {tuple(d for d in qp_view if d != 1) or ()}"
        )
    return t.reshape(qp_view)


def _compute_dtype(*tensors: Optional[torch.Tensor]) -> torch.dtype:
    """float64 if any float input is float64, else float32 (never compute quantization in 16 bits)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


class QuantArgumentError(ValueError, AssertionError):
    """Bad arguments to the primitives. A ValueError with a message that says what to do, and also an
    AssertionError whose text contains the seed era's assertion message, so old ``except AssertionError``
    code keeps working."""


class QuantDtypeError(TypeError, AssertionError):
    """A tensor of the wrong dtype for a primitive (a TypeError, and an AssertionError as above)."""


def _check_float_input(input: torch.Tensor, fn: str) -> None:
    if input.dtype not in FLOAT_DTYPES:
        raise QuantDtypeError(f"{fn} expects a floating point input (float32/float16/bfloat16/float64), got "
                              f"{input.dtype} (Unsupported input dtype: {input.dtype})")


def round_to_grid(x: torch.Tensor, scale, zero_point, quant_min: int, quant_max: int,
                  rounding: Callable[[torch.Tensor], torch.Tensor] = torch.round) -> torch.Tensor:
    """``clamp(rounding(x * (1 / scale)) + zero_point, quant_min, quant_max)``: the one rounding rule of
    integer (or no, ``zero_point=0``) zero points, as floats; arguments broadcast. ``rounding`` may add a
    learned offset or pass gradients straight through (AutoRound)."""
    return torch.clamp(rounding(x * (1.0 / scale)) + zero_point, quant_min, quant_max)


def mid_point(qmin: int, qmax: int) -> float:
    """The middle of [qmin, qmax] that ZeroPointDomain.FLOAT measures from: (qmin + qmax + 1) / 2."""
    return (qmax + qmin + 1) / 2


# ----------------------------------------------------------------------------------------------
# implementations (string-typed enums so that they can sit behind a torch.library schema)
# ----------------------------------------------------------------------------------------------


def _choose_qparams_impl(
    input: torch.Tensor,
    mapping_type: str,
    block_size: Sequence[int],
    target_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    eps: Optional[float] = None,
    scale_dtype: Optional[torch.dtype] = None,
    zero_point_dtype: Optional[torch.dtype] = None,
    preserve_zero: bool = True,
    zero_point_domain: str = "INT",
) -> Tuple[torch.Tensor, torch.Tensor]:
    _check_float_input(input, "choose_qparams_affine")
    view_shape, reduce_dims, _, qp_shape = _reduction_shapes(block_size, input.shape)
    x = input.reshape(view_shape).to(_compute_dtype(input))
    # with no dim to reduce (every block is one element) amin/amax would reduce everything
    min_val = (torch.amin(x, dim=reduce_dims) if reduce_dims else x).reshape(qp_shape)
    max_val = (torch.amax(x, dim=reduce_dims) if reduce_dims else x).reshape(qp_shape)
    return _qparams_from_min_max(min_val, max_val, mapping_type, target_dtype, quant_min, quant_max,
                                 torch.finfo(input.dtype).eps if eps is None else eps,
                                 input.dtype if scale_dtype is None else scale_dtype,
                                 input.dtype if zero_point_dtype is None else zero_point_dtype,
                                 preserve_zero, zero_point_domain)


def _qparams_from_min_max(min_val, max_val, mapping_type: str, target_dtype, quant_min, quant_max, eps: float,
                          scale_dtype, zero_point_dtype, preserve_zero: bool, zero_point_domain: str):
    """(scale, zero_point) from each block's min and max (tensors of the qparams' shape)."""
    qmin, qmax = quant_range(target_dtype, quant_min, quant_max)
    if preserve_zero:
        min_val = torch.clamp(min_val, max=0.0)
        max_val = torch.clamp(max_val, min=0.0)

    if mapping_type in ("SYMMETRIC", "SYMMETRIC_NO_CLIPPING_ERR"):
        if not preserve_zero:
            raise QuantArgumentError(f"{mapping_type} mapping always preserves zero; preserve_zero=False needs "
                                     "ASYMMETRIC (preserve_zero == False is not supported for symmetric quantization)")
        if zero_point_domain == "FLOAT":
            raise ValueError(f"{mapping_type} mapping has an integer (or no) zero point, not ZeroPointDomain.FLOAT")
        if mapping_type == "SYMMETRIC":
            scale = torch.maximum(-min_val, max_val) / ((qmax - qmin) / 2)
        else:
            if qmin >= 0:
                raise ValueError(
                    f"SYMMETRIC_NO_CLIPPING_ERR needs a signed quant range, got [{qmin}, {qmax}]"
                )
            scale = torch.maximum(min_val / qmin, max_val / qmax)
        scale = torch.clamp(scale, min=eps).to(scale_dtype)
        zero_point = torch.full_like(scale, int((qmax + qmin + 1) / 2), dtype=zero_point_dtype)
    elif mapping_type == "ASYMMETRIC":
        if zero_point_domain == "NONE":
            raise ValueError("ASYMMETRIC mapping needs a zero point; use ZeroPointDomain.INT or FLOAT")
        if zero_point_domain == "INT" and not preserve_zero:
            raise ValueError("preserve_zero=False needs ZeroPointDomain.FLOAT (an integer zero point preserves zero)")
        scale = torch.clamp((max_val - min_val) / (qmax - qmin), min=eps).to(scale_dtype)
        exact_scale = scale.to(min_val.dtype)
        if zero_point_domain == "INT":
            zero_point = torch.clamp(qmin - torch.round(min_val / exact_scale), qmin, qmax)
        else:
            zero_point = min_val + exact_scale * mid_point(qmin, qmax)
        zero_point = zero_point.to(zero_point_dtype)
    else:
        raise QuantArgumentError(f"unknown mapping_type {mapping_type}; expected one of "
                                 f"{[m.name for m in MappingType]} (Unsupported mapping type: {mapping_type})")

    if zero_point_domain == "NONE":
        zero_point = torch.zeros((0,), dtype=zero_point_dtype, device=min_val.device)
    return scale, zero_point


def _quantize_impl(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    output_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: str = "INT",
) -> torch.Tensor:
    _check_float_input(input, "quantize_affine")
    qmin, qmax = quant_range(output_dtype, quant_min, quant_max)
    view_shape, _, qp_view, _ = _reduction_shapes(block_size, input.shape)
    cdtype = _compute_dtype(input, scale)
    x = input.reshape(view_shape).to(cdtype)
    s = _as_qparam_view(scale, "scale", qp_view).to(cdtype)
    if output_dtype in FLOAT8_DTYPES:
        if zero_point_domain == "INT" and zero_point is not None and zero_point.numel() and bool(zero_point.any()):
            raise QuantArgumentError("float8 targets are symmetric: pass no zero point (ZeroPointDomain.NONE)")
        q = torch.clamp(x * (1.0 / s), qmin, qmax)  # the cast below rounds to the float8 grid
    elif zero_point_domain == "FLOAT":
        zp = _as_qparam_view(_require_zero_point(zero_point), "zero_point", qp_view).to(cdtype)
        q = torch.round((x - (zp - s * mid_point(qmin, qmax))) / s)
        q = torch.clamp(q, qmin, qmax)
    else:
        zp = 0.0
        if zero_point_domain == "INT":
            zp = _as_qparam_view(_require_zero_point(zero_point), "zero_point", qp_view).to(cdtype)
        q = round_to_grid(x, s, zp, qmin, qmax)
    return q.to(storage_dtype(output_dtype)).reshape(input.shape)


def _dequantize_impl(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    input_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: str = "INT",
    output_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    qmin, qmax = quant_range(input_dtype, quant_min, quant_max)
    if input.dtype != storage_dtype(input_dtype):
        raise QuantDtypeError(
            f"dequantize_affine: input has dtype {input.dtype} but input_dtype {input_dtype} "
            f"is stored as {storage_dtype(input_dtype)} (Expected: {storage_dtype(input_dtype)}, got: {input.dtype})"
        )
    if output_dtype not in FLOAT_DTYPES:
        raise QuantDtypeError(f"dequantize_affine: output_dtype must be a float dtype, got {output_dtype} "
                              f"(Unsupported output dtype: {output_dtype})")
    view_shape, _, qp_view, _ = _reduction_shapes(block_size, input.shape)
    cdtype = _compute_dtype(scale)
    if input_dtype in FLOAT8_DTYPES:
        s = _as_qparam_view(scale, "scale", qp_view).to(cdtype)
        return (input.reshape(view_shape).to(cdtype) * s).to(output_dtype).reshape(input.shape)
    q = input.reshape(view_shape).to(torch.int32)
    s = _as_qparam_view(scale, "scale", qp_view)
    if zero_point_domain == "FLOAT":
        zp = _as_qparam_view(_require_zero_point(zero_point), "zero_point", qp_view).to(cdtype)
        x = (q.to(cdtype) - mid_point(qmin, qmax)) * s.to(cdtype) + zp
    else:
        if zero_point_domain == "INT":
            q = q - _as_qparam_view(_require_zero_point(zero_point), "zero_point", qp_view).to(torch.int32)
        x = q.to(cdtype) * s.to(cdtype)
    return x.to(output_dtype).reshape(input.shape)


def _require_zero_point(zero_point: Optional[torch.Tensor]) -> torch.Tensor:
    if zero_point is None or zero_point.numel() == 0:
        raise ValueError("zero_point is required for ZeroPointDomain.INT / FLOAT; pass ZeroPointDomain.NONE to omit it")
    return zero_point


# ----------------------------------------------------------------------------------------------
# torch.library registration: quant::choose_qparams_affine, quant::quantize_affine, quant::dequantize_affine
# ----------------------------------------------------------------------------------------------

_lib = torch.library.Library("quant", "DEF")
_lib.define(
    "choose_qparams_affine(Tensor input, str mapping_type, SymInt[] block_size, ScalarType target_dtype, "
    "int? quant_min=None, int? quant_max=None, float? eps=None, ScalarType? scale_dtype=None, "
    "ScalarType? zero_point_dtype=None, bool preserve_zero=True, str zero_point_domain='INT') -> (Tensor, Tensor)"
)
_lib.define(
    "quantize_affine(Tensor input, SymInt[] block_size, Tensor scale, Tensor? zero_point, ScalarType output_dtype, "
    "int? quant_min=None, int? quant_max=None, str zero_point_domain='INT') -> Tensor"
)
_lib.define(
    "dequantize_affine(Tensor input, SymInt[] block_size, Tensor scale, Tensor? zero_point, ScalarType input_dtype, "
    "int? quant_min=None, int? quant_max=None, str zero_point_domain='INT', *, "
    "ScalarType output_dtype=float) -> Tensor"
)
_lib.impl("choose_qparams_affine", _choose_qparams_impl, "CompositeImplicitAutograd")
_lib.impl("quantize_affine", _quantize_impl, "CompositeImplicitAutograd")
_lib.impl("dequantize_affine", _dequantize_impl, "CompositeImplicitAutograd")


def _enum_name(value, enum_cls) -> str:
    if isinstance(value, enum_cls):
        return value.name
    if isinstance(value, str) and value in enum_cls.__members__:
        return value
    raise ValueError(f"expected a {enum_cls.__name__}, got {value!r}")


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def choose_qparams_affine(
    input: torch.Tensor,
    mapping_type: MappingType,
    block_size: Sequence[int],
    target_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    eps: Optional[float] = None,
    scale_dtype: Optional[torch.dtype] = None,
    zero_point_dtype: Optional[torch.dtype] = None,
    preserve_zero: bool = True,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Scale and zero point for each block of ``input``.

    Args:
        input: float tensor (float32 / float16 / bfloat16 / float64), any rank.
        mapping_type: a ``MappingType``.
        block_size: one extent per input dim; each must divide that dim (see the module docstring).
        target_dtype: the quantized dtype (torch.int8, torch.uint8, torch.uint4, torch.int3, ...).
        quant_min, quant_max: the integer range (default: the full range of ``target_dtype``), so
            ``torch.uint8`` with ``quant_max=15`` is 4-bit.
        eps: smallest scale (default ``torch.finfo(input.dtype).eps``).
        scale_dtype, zero_point_dtype: default ``input.dtype``.
        preserve_zero: whether 0.0 is exactly representable (False needs ZeroPointDomain.FLOAT).
        zero_point_domain: a ``ZeroPointDomain``.

    Returns:
        (scale, zero_point), each of shape ``qparams_shape(block_size, input.shape)``;
        zero_point is None for ``ZeroPointDomain.NONE``.
    """
    domain = _enum_name(zero_point_domain, ZeroPointDomain)
    scale, zero_point = torch.ops.quant.choose_qparams_affine(
        input,
        _enum_name(mapping_type, MappingType),
        [int(b) for b in block_size],
        target_dtype,
        quant_min,
        quant_max,
        eps,
        scale_dtype,
        zero_point_dtype,
        preserve_zero,
        domain,
    )
    return scale, (None if domain == "NONE" else zero_point)


def quantize_affine(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    output_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
) -> torch.Tensor:
    """Quantize ``input`` (float, any shape) to integers of ``output_dtype`` (held in its storage dtype).

    ``scale`` / ``zero_point`` have one element per block (any shape with that many elements).
    Arithmetic runs in float32 (float64 if input or scale is float64). Returns a tensor of
    ``input.shape`` and dtype ``storage_dtype(output_dtype)``.
    """
    return torch.ops.quant.quantize_affine(
        input,
        [int(b) for b in block_size],
        scale,
        zero_point,
        output_dtype,
        quant_min,
        quant_max,
        _enum_name(zero_point_domain, ZeroPointDomain),
    )


def dequantize_affine(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    input_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
    *,
    output_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Map integers back to floats: ``(q - zero_point) * scale`` (or the FLOAT-domain form).

    ``input`` holds values of ``input_dtype`` in its storage dtype; the result has ``input.shape``
    and ``output_dtype``.
    """
    return torch.ops.quant.dequantize_affine(
        input,
        [int(b) for b in block_size],
        scale,
        zero_point,
        input_dtype,
        quant_min,
        quant_max,
        _enum_name(zero_point_domain, ZeroPointDomain),
        output_dtype=output_dtype,
    )


def choose_qparams_affine_with_min_max(
    min_val: torch.Tensor,
    max_val: torch.Tensor,
    mapping_type: MappingType,
    block_size: Sequence[int],
    target_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    eps: Optional[float] = None,
    scale_dtype: Optional[torch.dtype] = None,
    zero_point_dtype: Optional[torch.dtype] = None,
    preserve_zero: bool = True,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """choose_qparams_affine from observed per-block ``min_val`` / ``max_val`` (same shape, e.g. from an
    observer) instead of the input; ``block_size`` is accepted for the old signature and not needed.
    Defaults as in choose_qparams_affine, with ``min_val``'s dtype standing in for the input's."""
    del block_size
    if min_val.shape != max_val.shape:
        raise ValueError(f"min_val {tuple(min_val.shape)} and max_val {tuple(max_val.shape)} need the same shape")
    _check_float_input(min_val, "choose_qparams_affine_with_min_max")
    domain = _enum_name(zero_point_domain, ZeroPointDomain)
    cdtype = _compute_dtype(min_val)
    scale, zero_point = _qparams_from_min_max(
        min_val.to(cdtype), max_val.to(cdtype), _enum_name(mapping_type, MappingType), target_dtype, quant_min,
        quant_max, torch.finfo(min_val.dtype).eps if eps is None else eps,
        min_val.dtype if scale_dtype is None else scale_dtype,
        min_val.dtype if zero_point_dtype is None else zero_point_dtype, preserve_zero, domain)
    return scale, (None if domain == "NONE" else zero_point)


def fake_quantize_affine_cachemask(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    quant_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(fake_quantize_affine(...), mask): the bool mask (input's shape) is True where the value fell inside
    [quant_min, quant_max] before clamping, i.e. where a straight-through gradient should flow."""
    qmin, qmax = quant_range(quant_dtype, quant_min, quant_max)
    # the integers before clamping (a range wide enough to tell outside from inside, exact in float32)
    wide = quantize_affine(input, block_size, scale, zero_point, torch.int32, -(2**24), 2**24, zero_point_domain)
    mask = (wide >= qmin) & (wide <= qmax)
    out = fake_quantize_affine(input, block_size, scale, zero_point, quant_dtype, quant_min, quant_max,
                               zero_point_domain)
    return out, mask


def fake_quantize_affine(
    input: torch.Tensor,
    block_size: Sequence[int],
    scale: torch.Tensor,
    zero_point: Optional[torch.Tensor],
    quant_dtype: torch.dtype,
    quant_min: Optional[int] = None,
    quant_max: Optional[int] = None,
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
) -> torch.Tensor:
    """quantize_affine followed by dequantize_affine, returned in ``input.dtype``."""
    q = quantize_affine(input, block_size, scale, zero_point, quant_dtype, quant_min, quant_max, zero_point_domain)
    return dequantize_affine(
        q, block_size, scale, zero_point, quant_dtype, quant_min, quant_max, zero_point_domain,
        output_dtype=input.dtype,
    )
