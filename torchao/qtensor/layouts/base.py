"""How the integer data and qparams of an AffineQuantizedTensor are stored: the Layout base and its table.

A layout turns the plain triple (int_data, scale, zero_point) into the named inner tensors a kernel
wants, and back, exactly. Adding a layout is one new module with a ``@register_layout`` class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Dict, Optional, Tuple, Type

import torch

from torchao.qtensor.primitives import ZeroPointDomain, mid_point, quant_range


@dataclass(frozen=True)
class QuantSpec:
    """Everything about a quantized tensor that is not a tensor (hashable; travels in flatten ctx).

    shape: logical (float) shape; dtype: logical float dtype; block_size: one extent per dim of the
    stored (untransposed) data; target_dtype: the quantized dtype (torch.int8, torch.uint4, ...);
    quant_min / quant_max: the integer range; zero_point_domain: a ZeroPointDomain; layout: name in
    LAYOUTS; transposed: the logical tensor is the stored one transposed (after ``.t()``);
    act_quant: name of a dynamic activation quantizer (None for weight-only);
    layout_extra: layout-specific constants (tuple of (key, value) pairs).
    """

    shape: Tuple[int, ...]
    dtype: torch.dtype
    block_size: Tuple[int, ...]
    target_dtype: torch.dtype
    quant_min: int
    quant_max: int
    zero_point_domain: ZeroPointDomain
    layout: str
    transposed: bool = False
    act_quant: Optional[str] = None
    layout_extra: Tuple = ()

    @property
    def stored_shape(self) -> Tuple[int, ...]:
        """Shape of the untransposed data (what block_size refers to)."""
        return tuple(reversed(self.shape)) if self.transposed else self.shape

    @property
    def mid(self) -> float:
        """The middle of the integer range, where ZeroPointDomain.FLOAT puts the float zero point."""
        return mid_point(self.quant_min, self.quant_max)

    @property
    def bits(self) -> int:
        return (self.quant_max - self.quant_min).bit_length()

    @property
    def group_size(self) -> Optional[int]:
        """The block extent along the last stored dim for 2-D weights with (1, g) blocks, else None."""
        if len(self.block_size) == 2 and self.block_size[0] == 1:
            return self.block_size[1]
        return None

    def extra(self, key, default=None):
        return dict(self.layout_extra).get(key, default)

    @classmethod
    def of(cls, shape, dtype: torch.dtype, block_size, target_dtype: torch.dtype, quant_min: Optional[int] = None,
           quant_max: Optional[int] = None, zero_point_domain: ZeroPointDomain = ZeroPointDomain.INT,
           layout: str = "plain", act_quant: Optional[str] = None) -> "QuantSpec":
        """The spec of an untransposed tensor, the quant range defaulting to ``target_dtype``'s (checked)."""
        qmin, qmax = quant_range(target_dtype, quant_min, quant_max)
        return cls(tuple(int(s) for s in shape), dtype, tuple(int(b) for b in block_size), target_dtype, qmin, qmax,
                   zero_point_domain, layout, act_quant=act_quant)


PlainTriple = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]


class Layout:
    """A storage format. Subclasses set ``name`` and ``tensor_names`` and implement pack / unpack.

    ``tensor_names`` lists the inner tensors (attribute names on the AffineQuantizedTensor); an entry
    may be None at runtime (e.g. no zero point), and then it is not flattened.
    """

    name: ClassVar[str]
    tensor_names: ClassVar[Tuple[str, ...]]
    #: device types this layout's data can live on (None: any)
    device_types: ClassVar[Optional[Tuple[str, ...]]] = None
    #: every inner tensor has the weight's rows as dim 0 (so rows can be gathered without unpacking all)
    rows_gatherable: ClassVar[bool] = False
    #: the layout a checkpoint stores instead of this one (for machine-specific formats; None: this one)
    portable: ClassVar[Optional[str]] = None
    #: device types on which this is the fastest layout for the weights it can hold (kernel formats)
    preferred_on: ClassVar[Tuple[str, ...]] = ()
    #: names of the linear kernels (qtensor/linear.py) that can run a weight stored in this layout
    linear_kernels: ClassVar[Tuple[str, ...]] = ()
    #: the inner tensors those kernels read (None: all; others are kept for exact unpacking only)
    matmul_tensor_names: ClassVar[Optional[Tuple[str, ...]]] = None

    @classmethod
    def unsupported_reason(cls, spec: QuantSpec, device: torch.device) -> Optional[str]:
        """Why this layout cannot hold a tensor of ``spec`` on ``device`` (None if it can)."""
        if cls.device_types is not None and device.type not in cls.device_types:
            return f"layout '{cls.name}' lives on {'/'.join(cls.device_types)}, not {device.type}"
        return None

    @classmethod
    def pack(cls, int_data: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
             spec: QuantSpec) -> Tuple[Dict[str, Optional[torch.Tensor]], Tuple]:
        """(inner tensors by name, layout_extra) from plain data of ``spec.stored_shape``."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, tensors: Dict[str, Optional[torch.Tensor]], spec: QuantSpec) -> PlainTriple:
        """The exact plain (int_data, scale, zero_point) that ``pack`` was given."""
        raise NotImplementedError


LAYOUTS: Dict[str, Type[Layout]] = {}


def register_layout(cls: Type[Layout]) -> Type[Layout]:
    """Class decorator: add a Layout to the table under ``cls.name``."""
    shadowed = [n for n in cls.tensor_names if hasattr(torch.Tensor, n)]
    if shadowed:
        raise ValueError(f"layout '{cls.name}': tensor_names {shadowed} shadow torch.Tensor attributes; "
                         "pick other names (they become attributes of the quantized tensor)")
    if cls.name in LAYOUTS and LAYOUTS[cls.name] is not cls:
        raise ValueError(f"layout name '{cls.name}' is already registered by {LAYOUTS[cls.name].__qualname__}")
    LAYOUTS[cls.name] = cls
    return cls


def get_layout(name: str) -> Type[Layout]:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout '{name}'; registered layouts: {sorted(LAYOUTS)}") from None


@dataclass(frozen=True)
class TensorCoreTiledLayout:
    """The seed era's layout value for "the int4 kernel's format": it resolves to the device's preferred
    int4 layout (``int4_cpu`` on CPU, ``int4_packed`` for the Triton kernels on CUDA). ``inner_k_tiles``
    is accepted and ignored (our kernels choose their own tiling)."""

    inner_k_tiles: int = 8


@dataclass(frozen=True)
class SemiSparseLayout:
    """The seed era's 2:4 semi-structured sparse layout value. There is no sparse kernel here: configs
    refuse it with a clear error."""


def layout_name(layout, default: Optional[str] = None) -> Optional[str]:
    """A layout argument as a registered name: a name, a Layout class or instance (``PlainLayout()``),
    or ``TensorCoreTiledLayout(...)`` / None, which mean ``default`` (None: the best for the device)."""
    if layout is None or isinstance(layout, TensorCoreTiledLayout):
        return default
    if isinstance(layout, SemiSparseLayout):
        raise ValueError("SemiSparseLayout (2:4 sparsity) is not supported on this device: there is no sparse "
                         "kernel in this build; use PlainLayout()")
    name = layout if isinstance(layout, str) else getattr(layout, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"layout must be a layout name, a Layout class or instance, got {layout!r}")
    get_layout(name)  # raises with the list of known layouts
    return name


def can_hold(layout: str, spec: QuantSpec, device: torch.device) -> bool:
    """Whether ``layout`` can store a tensor of ``spec`` (whatever its current layout) on ``device``."""
    return get_layout(layout).unsupported_reason(replace(spec, layout=layout, layout_extra=()), device) is None


def best_layout(spec: QuantSpec, device: torch.device, fallback: str) -> str:
    """The layout preferred on ``device`` (its kernel format) that can hold ``spec``, else ``fallback``."""
    return next((name for name, cls in LAYOUTS.items() if device.type in cls.preferred_on
                 and can_hold(name, spec, device)), fallback)


def portable_layout(spec: QuantSpec, device: torch.device) -> str:
    """Where ``spec``'s tensor goes to leave its machine-specific layout: the layout's portable form,
    else plain, the first that can hold it on ``device``; the layout itself when it is portable."""
    cls = get_layout(spec.layout)
    if cls.portable is None and can_hold(spec.layout, spec, device):
        return spec.layout
    return next(name for name in (cls.portable, "plain") if name is not None and can_hold(name, spec, device))


def restored_layout(spec: QuantSpec, device: torch.device) -> str:
    """The layout to rebuild a stored tensor in on ``device``: the preferred layout whose portable form was
    stored, when it can hold the tensor, else the stored layout."""
    return next((name for name, cls in LAYOUTS.items() if cls.portable == spec.layout
                 and device.type in cls.preferred_on and can_hold(name, spec, device)), spec.layout)
