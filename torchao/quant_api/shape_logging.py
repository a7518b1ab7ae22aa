"""Which activation shapes each module sees: the seed era's ``_apply_logging_hook`` debugging aid.

``_apply_logging_hook(model)`` adds a forward pre-hook to every module; each call then counts, under the
module's fully qualified name and its class, the shapes of its tensor inputs in
``fqn_to_op_to_shape_to_count[fqn][op][shapes]``. Use it to see which shapes a model's layers get
before choosing what to quantize (autoquant records the same for Linear layers).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Tuple

import torch
import torch.nn as nn

__all__ = ["fqn_to_op_to_shape_to_count", "_apply_logging_hook", "_quant_logging_hook"]

#: fqn -> module class name -> tuple of input shapes -> calls
fqn_to_op_to_shape_to_count: Dict[str, Dict[str, Dict[Tuple, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))


def _quant_logging_hook(module: nn.Module, inputs) -> None:
    """Forward pre-hook: count this call's input shapes under the module's ``_fqn``."""
    shapes = tuple(tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor))
    fqn_to_op_to_shape_to_count[getattr(module, "_fqn", "")][type(module).__name__][shapes] += 1


def _apply_logging_hook(model: nn.Module) -> list:
    """Log the input shapes of every module of ``model``; returns the hook handles (``.remove()`` them)."""
    handles = []
    for fqn, module in model.named_modules():
        module._fqn = fqn
        handles.append(module.register_forward_pre_hook(_quant_logging_hook))
    return handles
