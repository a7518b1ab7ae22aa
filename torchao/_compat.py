"""Names the seed README imports from torch that newer torch releases removed, and torch version checks.

The seed's int4 example does ``from torch._inductor.runtime.runtime_utils import do_bench_gpu``; torch
2.11+ no longer has it, so importing torchao provides it (median milliseconds, like the original).
"""

from __future__ import annotations

import re

import torch


def install() -> None:
    try:
        from torch._inductor.runtime import runtime_utils
    except ImportError:  # pragma: no cover - torch without inductor
        return
    if not hasattr(runtime_utils, "do_bench_gpu"):
        runtime_utils.do_bench_gpu = _do_bench_gpu


def _do_bench_gpu(fn, warmup: int = 25, rep: int = 100, **kwargs) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def torch_version_at_least(version: str) -> bool:
    """Whether the installed torch (release part, ignoring dev / local suffixes) is at least ``version``."""
    installed = tuple(int(p) for p in re.findall(r"\d+", torch.__version__.split("+")[0])[:3])
    wanted = tuple(int(p) for p in version.split("."))
    return installed[: len(wanted)] >= wanted


def is_fbcode() -> bool:
    """False: this package is never Meta's internal build (scripts of the seed's era branch on it)."""
    return False
