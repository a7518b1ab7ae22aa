"""How the integer data and qparams of an AffineQuantizedTensor are stored: the Layout base and its table.

A layout turns the plain triple (int_data, scale, zero_point) into the named inner tensors a kernel
wants, and back, exactly. Adding a layout is one new module with a ``@register_layout`` class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple, Type

import torch

from torchao.qtensor.primitives import ZeroPointDomain, mid_point


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
