"""Small helpers with the seed era's import path torchao.utils: benchmark_model, version flags, unwrap_tensor_subclass."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from torchao._compat import is_fbcode, torch_version_at_least
from torchao.qtensor.unwrap import unwrap_tensor_subclass

__all__ = ["benchmark_model", "device_sync", "weight_bytes", "unwrap_tensor_subclass", "is_fbcode",
           "torch_version_at_least"] + [f"TORCH_VERSION_AT_LEAST_2_{minor}" for minor in range(2, 14)]

# the era's version flags: TORCH_VERSION_AT_LEAST_2_2 ... _2_13
globals().update({f"TORCH_VERSION_AT_LEAST_2_{minor}": torch_version_at_least(f"2.{minor}") for minor in range(2, 14)})


def device_sync(device_type: str) -> None:
    """Wait for queued work on ``device_type`` ("cuda", "xpu", "mps"; no-op on CPU)."""
    backend = getattr(torch, device_type, None)
    if device_type != "cpu" and backend is not None and hasattr(backend, "synchronize"):
        backend.synchronize()


def benchmark_model(model: Callable, num_runs: int, *args: Any, warmup: int = 2, **kwargs: Any) -> float:
    """Median wall time of ``model(*args, **kwargs)`` over ``num_runs`` runs, in milliseconds.

    ``args`` may also be a single tuple of inputs (``benchmark_model(m, 10, (x, y))``). Two warm-up
    runs first (compilation, caches); device work is synchronized around each run.
    """
    if len(args) == 1 and isinstance(args[0], tuple):
        args = args[0]
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    device_type = tensors[0].device.type if tensors else "cpu"
    times = []
    with torch.no_grad():
        for i in range(warmup + num_runs):
            device_sync(device_type)
            start = time.perf_counter()
            model(*args, **kwargs)
            device_sync(device_type)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def weight_bytes(model: torch.nn.Module, skip_embeddings: bool = False) -> int:
    """Bytes the parameters of ``model`` occupy, a quantized one counting its packed inner tensors.
    ``skip_embeddings``: leave out nn.Embedding tables (a decode step reads one row of them, not all)."""
    from torchao.dtypes import AffineQuantizedTensor

    skipped = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)} if skip_embeddings else set()
    total = 0
    for p in model.parameters():
        if id(p) in skipped:
            continue
        inner = p.inner_tensors().values() if isinstance(p, AffineQuantizedTensor) else [p]
        total += sum(t.numel() * t.element_size() for t in inner)
    return total
