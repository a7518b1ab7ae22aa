"""Storage layouts of AffineQuantizedTensor, one module each, registered in LAYOUTS by name."""

from torchao.qtensor.layouts.base import (
    LAYOUTS,
    Layout,
    QuantSpec,
    best_layout,
    can_hold,
    get_layout,
    portable_layout,
    register_layout,
    restored_layout,
    SemiSparseLayout,
    TensorCoreTiledLayout,
    layout_name,
)
from torchao.qtensor.layouts.plain import PlainLayout
from torchao.qtensor.layouts.int4_packed import Int4PackedLayout
from torchao.qtensor.layouts.int4_cpu import Int4CPULayout
from torchao.qtensor.layouts.bitpacked import BitPackedLayout
from torchao.qtensor.layouts.q4_0 import Q4_0Layout

__all__ = [
    "LAYOUTS",
    "Layout",
    "QuantSpec",
    "get_layout",
    "register_layout",
    "can_hold",
    "best_layout",
    "portable_layout",
    "restored_layout",
    "SemiSparseLayout",
    "TensorCoreTiledLayout",
    "layout_name",
    "PlainLayout",
    "Int4PackedLayout",
    "Int4CPULayout",
    "BitPackedLayout",
    "Q4_0Layout",
]
