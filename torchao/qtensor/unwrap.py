"""unwrap_tensor_subclass: hold a model's quantized weights as plain tensors for torch.export / AOTI.

Each tensor-subclass parameter becomes a parametrization whose stored parameters are the subclass's
inner tensors (``__tensor_flatten__``) and whose forward rebuilds the subclass (``__tensor_unflatten__``),
so tracing sees only plain tensors and the ops the subclass dispatches to.
"""

from __future__ import annotations

from typing import List, Type

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

__all__ = ["unwrap_tensor_subclass"]


class _RebuildSubclass(nn.Module):
    """Parametrization: inner tensors (in flatten order) -> the tensor subclass."""

    def __init__(self, cls: Type[torch.Tensor], names: List[str], ctx):
        super().__init__()
        self.cls, self.names, self.ctx = cls, names, ctx

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.cls.__tensor_unflatten__(dict(zip(self.names, tensors)), self.ctx, None, None)

    def right_inverse(self, tensor: torch.Tensor) -> List[torch.Tensor]:
        names, _ = tensor.__tensor_flatten__()
        return [getattr(tensor, n) for n in names]


def unwrap_tensor_subclass(model: nn.Module) -> nn.Module:
    """Replace every tensor-subclass parameter of ``model`` (in place) by a parametrization over plain
    tensors; returns the model. Outputs are unchanged; the state_dict keys gain ``parametrizations``."""
    for module in list(model.modules()):
        for name, param in list(module.named_parameters(recurse=False)):
            if is_traceable_wrapper_subclass(param):
                names, ctx = param.__tensor_flatten__()
                param.requires_grad_(False)  # the inner tensors are integers; a frozen weight either way
                parametrize.register_parametrization(
                    module, name, _RebuildSubclass(type(param), list(names), ctx), unsafe=True
                )
    return model
