"""Timing of a callable on any device: median milliseconds, device work synchronized."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

__all__ = ["benchmark_model", "device_sync"]


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
