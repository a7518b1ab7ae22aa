"""torch.save / torch.load(weights_only=True) support: the classes a quantized state_dict pickles."""

from __future__ import annotations

import torch

from torchao.qtensor.aqt import AffineQuantizedTensor
from torchao.qtensor.layouts.base import QuantSpec
from torchao.qtensor.primitives import MappingType, ZeroPointDomain


def register_safe_globals() -> None:
    """Allow torch.load(..., weights_only=True) to rebuild AffineQuantizedTensor state dicts."""
    torch.serialization.add_safe_globals([AffineQuantizedTensor, QuantSpec, ZeroPointDomain, MappingType])
