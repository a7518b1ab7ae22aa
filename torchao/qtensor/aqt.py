"""AffineQuantizedTensor: a tensor subclass that holds affine-quantized integers in a layout.

It looks like a float tensor of the original shape and dtype (``shape``, ``dtype``) and holds the
layout's inner tensors (packed integers, scale, zero point) plus a hashable ``QuantSpec``. Ops reach
it through one table, ``OPS``, filled by ``@implements(...)`` (see ops.py); an op without an entry
raises an error naming it, rather than computing on the wrong representation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Type, Union

import torch

from torchao.qtensor.base_tensor import TorchAOBaseTensor
from torchao.qtensor.layouts import Layout, QuantSpec, get_layout, layout_name
from torchao.qtensor.primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    qparams_shape,
    quantize_affine,
    quant_range,
    storage_dtype,
)

__all__ = ["AffineQuantizedTensor", "implements", "to_affine_quantized", "to_aq", "to_affine_quantized_intx",
           "to_affine_quantized_intx_static", "OPS"]

#: torch functions and aten ops -> handler(func, types, args, kwargs)
OPS: Dict[Callable, Callable] = {}


def implements(*ops: Callable):
    """Register a handler for torch functions (e.g. F.linear) and aten ops on AffineQuantizedTensor."""

    def decorator(handler):
        for op in ops:
            OPS[op] = handler
        return handler

    return decorator


LayoutArg = Union[str, Type[Layout]]


def _layout_name(layout: LayoutArg) -> str:
    return layout_name(layout, "plain")


class AffineQuantizedTensor(TorchAOBaseTensor):
    """A quantized tensor: ``dequantize()`` gives ``(q - zero_point) * scale`` per block.

    Build one with ``AffineQuantizedTensor.from_float`` (alias ``to_affine_quantized`` / ``to_aq``)
    or ``from_plain`` (integers computed elsewhere, e.g. by GPTQ). Attributes: ``spec`` (QuantSpec) and
    one attribute per inner tensor of the layout (``LAYOUTS[spec.layout].tensor_names``).
    """

    spec: QuantSpec

    @staticmethod
    def __new__(cls, tensors: Dict[str, Optional[torch.Tensor]], spec: QuantSpec):
        ref = next(t for t in tensors.values() if t is not None)
        return torch.Tensor._make_wrapper_subclass(
            cls, spec.shape, dtype=spec.dtype, device=ref.device, requires_grad=False
        )

    def __init__(self, tensors: Dict[str, Optional[torch.Tensor]], spec: QuantSpec):
        self.spec = spec
        for name in get_layout(spec.layout).tensor_names:
            setattr(self, name, tensors.get(name))

    # ---- structure -------------------------------------------------------------------------

    @property
    def quant_layout(self) -> Type[Layout]:
        """The Layout class holding the data (``torch.Tensor.layout`` stays torch.strided)."""
        return get_layout(self.spec.layout)

    @property
    def block_size(self) -> Tuple[int, ...]:
        return self.spec.block_size

    def inner_tensors(self) -> Dict[str, torch.Tensor]:
        """The layout's inner tensors that are present, by name."""
        return {n: getattr(self, n) for n in self.quant_layout.tensor_names if getattr(self, n) is not None}

    def __tensor_flatten__(self):
        return list(self.inner_tensors()), self.spec

    @classmethod
    def __tensor_unflatten__(cls, inner_tensors, spec, outer_size, outer_stride):
        return cls(dict(inner_tensors), spec)

    def _stable_hash_for_caching(self) -> str:
        """Key for torch.compile's AOT caches: everything but the tensor values."""
        return repr(self.spec)

    def with_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor], **spec_changes) -> "AffineQuantizedTensor":
        """A new tensor with ``fn`` applied to every inner tensor and the spec fields replaced."""
        spec = dataclasses.replace(self.spec, **spec_changes)
        return self.__class__({n: fn(t) for n, t in self.inner_tensors().items()}, spec)

    def get_plain(self) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(int_data, scale, zero_point) of the stored (untransposed) shape, unpacked from the layout."""
        return self.quant_layout.unpack(self.inner_tensors(), self.spec)

    def dequantize(self, output_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The float tensor (``self.shape``, ``output_dtype`` or ``self.dtype``)."""
        int_data, scale, zero_point = self.get_plain()
        s = self.spec
        out = dequantize_affine(
            int_data, s.block_size, scale, zero_point, s.target_dtype, s.quant_min, s.quant_max,
            s.zero_point_domain, output_dtype=output_dtype or s.dtype,
        )
        return out.t() if s.transposed else out

    def __repr__(self):
        s = self.spec
        act = f", act_quant={s.act_quant}" if s.act_quant else ""
        return (
            f"AffineQuantizedTensor(shape={tuple(s.shape)}, dtype={s.dtype}, layout={s.layout}, "
            f"block_size={tuple(s.block_size)}, target_dtype={s.target_dtype}, "
            f"quant_range=[{s.quant_min}, {s.quant_max}], zero_point_domain={s.zero_point_domain.name}"
            f"{', transposed' if s.transposed else ''}{act}, device={self.device})"
        )

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_plain(cls, int_data: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                   spec: QuantSpec) -> "AffineQuantizedTensor":
        """Wrap integers that are already quantized, stored in ``spec.layout``.

        int_data: integers in the storage dtype of ``spec.target_dtype``, of shape ``spec.shape`` (an
        untransposed spec, e.g. ``QuantSpec.of(...)``); scale / zero_point: one element per block
        (zero_point is dropped for ZeroPointDomain.NONE). The spec's layout_extra is the layout's to set.
        """
        if spec.transposed:
            raise ValueError("from_plain takes an untransposed spec; transpose the result with .t()")
        if tuple(int_data.shape) != spec.shape:
            raise ValueError(f"int_data has shape {tuple(int_data.shape)}, the spec says {spec.shape}")
        quant_range(spec.target_dtype, spec.quant_min, spec.quant_max)  # raises if the range does not fit
        if int_data.dtype != storage_dtype(spec.target_dtype):
            raise TypeError(f"int_data has dtype {int_data.dtype}; {spec.target_dtype} is stored as "
                            f"{storage_dtype(spec.target_dtype)}")
        if spec.zero_point_domain == ZeroPointDomain.NONE:
            zero_point = None
        blocks = math.prod(qparams_shape(spec.block_size, spec.shape))
        for name, qparam in (("scale", scale), ("zero_point", zero_point)):
            if qparam is not None and qparam.numel() != blocks:
                raise ValueError(f"{name} has {qparam.numel()} elements (shape {tuple(qparam.shape)}), but block_size "
                                 f"{spec.block_size} splits shape {spec.shape} into {blocks} blocks")
        spec = dataclasses.replace(spec, layout_extra=())
        layout_cls = get_layout(spec.layout)
        reason = layout_cls.unsupported_reason(spec, int_data.device)
        if reason:
            raise ValueError(f"cannot store a tensor of shape {spec.shape} in layout '{spec.layout}': {reason}")
        tensors, extra = layout_cls.pack(int_data, scale, zero_point, spec)
        return cls(tensors, dataclasses.replace(spec, layout_extra=extra))

    @classmethod
    def from_float(
        cls,
        input_float: torch.Tensor,
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
        layout: LayoutArg = "plain",
        act_quant: Optional[str] = None,
    ) -> "AffineQuantizedTensor":
        """Quantize a float tensor (any rank; see choose_qparams_affine for the arguments).

        layout: a name in LAYOUTS or a Layout class; act_quant: a name in ACTIVATION_QUANTIZERS for
        dynamic activation quantization in linear (None: weight-only).
        """
        if isinstance(input_float, AffineQuantizedTensor):
            raise TypeError("input is already an AffineQuantizedTensor; dequantize() it first to requantize")
        input_float = input_float.detach()
        scale, zero_point = choose_qparams_affine(
            input_float, mapping_type, block_size, target_dtype, quant_min, quant_max, eps,
            scale_dtype, zero_point_dtype, preserve_zero, zero_point_domain,
        )
        int_data = quantize_affine(
            input_float, block_size, scale, zero_point, target_dtype, quant_min, quant_max, zero_point_domain
        )
        spec = QuantSpec.of(int_data.shape, input_float.dtype, block_size, target_dtype, quant_min, quant_max,
                            zero_point_domain, _layout_name(layout), act_quant)
        return cls.from_plain(int_data, scale, zero_point, spec)

    def relayout(self, layout: str, device: Optional[torch.device] = None) -> "AffineQuantizedTensor":
        """The same quantized values stored in ``layout`` (on ``device``; default: this tensor's), exactly,
        through the plain integers; a transposed tensor stays transposed."""
        device = self.device if device is None else torch.device(device)
        int_data, scale, zero_point = self.get_plain()
        s = self.spec
        spec = dataclasses.replace(s, shape=s.stored_shape, layout=layout, transposed=False)
        out = AffineQuantizedTensor.from_plain(int_data.to(device), scale.to(device),
                                               None if zero_point is None else zero_point.to(device), spec)
        return out.t() if s.transposed else out

    # ---- dispatch --------------------------------------------------------------------------

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = OPS.get(func)
        if handler is not None:
            return handler(func, types, args, kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        handler = OPS.get(func)
        if handler is None:
            raise NotImplementedError(
                f"AffineQuantizedTensor does not implement {func}; call .dequantize() first if a float "
                f"tensor is what you need"
            )
        return handler(func, types, args, kwargs or {})


to_affine_quantized = AffineQuantizedTensor.from_float
to_aq = AffineQuantizedTensor.from_float


def to_affine_quantized_intx(input_float: torch.Tensor, mapping_type: MappingType, block_size: Sequence[int],
                             target_dtype: torch.dtype, quant_min: Optional[int] = None,
                             quant_max: Optional[int] = None, eps: Optional[float] = None,
                             scale_dtype: Optional[torch.dtype] = None, zero_point_dtype: Optional[torch.dtype] = None,
                             preserve_zero: bool = True, zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
                             _layout=None, layout_type=None) -> AffineQuantizedTensor:
    """The seed era's constructor: ``from_float`` with the layout passed as ``_layout`` (or, older,
    ``layout_type``): a name, a Layout class or instance; default plain."""
    layout = layout_name(_layout if _layout is not None else layout_type, "plain")
    return AffineQuantizedTensor.from_float(input_float, mapping_type, block_size, target_dtype, quant_min, quant_max,
                                            eps, scale_dtype, zero_point_dtype, preserve_zero, zero_point_domain,
                                            layout=layout)


def to_affine_quantized_intx_static(input_float: torch.Tensor, scale: torch.Tensor,
                                    zero_point: Optional[torch.Tensor], block_size: Sequence[int],
                                    target_dtype: torch.dtype, quant_min: Optional[int] = None,
                                    quant_max: Optional[int] = None,
                                    zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
                                    _layout=None, layout_type=None) -> AffineQuantizedTensor:
    """Quantize ``input_float`` with given (e.g. calibrated) ``scale`` / ``zero_point`` (one element per
    block) instead of choosing them from the input."""
    if isinstance(input_float, AffineQuantizedTensor):
        raise TypeError("input is already an AffineQuantizedTensor; dequantize() it first to requantize")
    input_float = input_float.detach()
    int_data = quantize_affine(input_float, block_size, scale, zero_point, target_dtype, quant_min, quant_max,
                               zero_point_domain)
    spec = QuantSpec.of(int_data.shape, input_float.dtype, block_size, target_dtype, quant_min, quant_max,
                        zero_point_domain, layout_name(_layout if _layout is not None else layout_type, "plain"))
    return AffineQuantizedTensor.from_plain(int_data, scale, zero_point, spec)
