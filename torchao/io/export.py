"""Deployment helpers: torch.export + AOTInductor packaging of quantized models in one call.

A package calls torchao's kernel ops (``torchao::*``, ``quant::*``); load it in a process that has
imported torchao (``load_aoti`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Tuple, Union

import torch
import torch.nn as nn

import torchao.kernels.cpu  # noqa: F401  (registers the torchao:: CPU ops a package calls)
import torchao.qtensor  # noqa: F401  (registers the quant:: ops and the tensor subclass)

__all__ = ["export_quantized", "export_aoti", "load_aoti"]


def _as_args(example_inputs) -> Tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def export_quantized(model: nn.Module, example_inputs, dynamic_batch: bool = True, max_batch: int = 4096):
    """``torch.export.export`` of a (quantized) model; with ``dynamic_batch`` dim 0 of every tensor input
    is one symbolic batch size (2..max_batch in the specialization sense, 1 allowed at run time)."""
    args = _as_args(example_inputs)
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        shapes = tuple({0: batch} if isinstance(a, torch.Tensor) else None for a in args)
    with torch.no_grad():
        return torch.export.export(model, args, dynamic_shapes=shapes)


def export_aoti(model: nn.Module, example_inputs, path: Union[str, Path], dynamic_batch: bool = True) -> str:
    """Export ``model`` and compile it into an AOTInductor package at ``path`` (.pt2); returns the path."""
    exported = export_quantized(model, example_inputs, dynamic_batch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return torch._inductor.aoti_compile_and_package(exported, package_path=str(path))


def load_aoti(path: Union[str, Path]) -> Callable:
    """Load an AOTInductor package made by export_aoti (torchao's ops are registered on import)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_aoti: no AOTInductor package at {path} (make one with torchao.export_aoti)")
    try:
        return torch._inductor.aoti_load_package(str(path))
    except RuntimeError as e:
        raise RuntimeError(f"load_aoti: {path} is not a loadable AOTInductor package: {e}") from e
