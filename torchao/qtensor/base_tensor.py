"""TorchAOBaseTensor: the common base of this package's tensor subclasses.

``isinstance(w, TorchAOBaseTensor)`` answers "is this one of torchao's quantized tensors?" (transformers'
torchao integration asks it, as ``torchao.utils.TorchAOBaseTensor``, to describe a Linear's weight).
It adds no behaviour: each subclass has its own op table and ``__tensor_flatten__``.
"""

from __future__ import annotations

import torch

__all__ = ["TorchAOBaseTensor"]


class TorchAOBaseTensor(torch.Tensor):
    """Marker base of AffineQuantizedTensor and LinearActivationQuantizedTensor (wrapper subclasses: their
    data lives in inner tensors, not in a storage of their own)."""
