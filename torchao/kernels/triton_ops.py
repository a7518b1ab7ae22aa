"""The Triton kernels as torch ops (``torch.library.triton_op``), with launch configs chosen by M bucket.

Ops (all return (M, N) in the activation dtype, or ``out_dtype``):

* ``torchao::int8_weight_only_mm_triton(x, w_int8, scale, zero_point)``
* ``torchao::int4_weight_only_mm_triton(x, packed, scale, zero_point, group_size, quant_min, zp_mode, mid)``
* ``torchao::int8_dynamic_mm_triton(x_int8, x_scale, w_int8, w_scale, out_dtype)``

M is bucketed explicitly (decode M <= 16, small 17..63, prefill >= 64). Each bucket has a short list of
candidate configs; on CUDA, outside torch.compile tracing, the first call for a (device, op, bucket, N,
K, group) times the candidates and stores the fastest in AUTOTUNE_CACHE (JSON, see autotune_cache.py).
Without a cached entry (tracing, the interpreter, TORCHAO_AUTOTUNE=0) the bucket's first config runs.
"""

from __future__ import annotations

import os
from typing import List, Optional

import torch
import triton
from torch.library import triton_op, wrap_triton

from torchao.kernels.autotune_cache import AUTOTUNE_CACHE, KernelConfig
from torchao.kernels import ZP_FLOAT, ZP_INT, ZP_NONE
from torchao.kernels.triton_mm import dot_kernel, gemv_kernel

__all__ = [
    "int8_weight_only_mm_triton",
    "int4_weight_only_mm_triton",
    "int8_dynamic_mm_triton",
    "m_bucket",
    "CANDIDATES",
    "INTERPRET",
    "ZP_NONE",
    "ZP_INT",
    "ZP_FLOAT",
]

INTERPRET = bool(triton.knobs.runtime.interpret) if hasattr(triton, "knobs") else os.environ.get("TRITON_INTERPRET") == "1"
W_INT8, W_INT4, W_INT8_DYNAMIC = 0, 1, 2
#: fill outputs with NaN before launching (tests: an element a kernel fails to write stays NaN)
POISON_OUTPUTS = False

_C = KernelConfig
CANDIDATES = {
    "decode": [
        _C("gemv", 1, 64, 128, split_k=4), _C("gemv", 1, 128, 128, split_k=2), _C("gemv", 1, 64, 256, split_k=8),
        _C("gemv", 1, 128, 256, split_k=1), _C("dot", 16, 64, 128, split_k=4), _C("dot", 16, 128, 64, split_k=8),
    ],
    "small": [
        _C("dot", 32, 64, 64, split_k=4), _C("dot", 16, 64, 128, split_k=4), _C("dot", 64, 64, 64, split_k=2),
        _C("dot", 32, 128, 64, split_k=2), _C("dot", 64, 128, 64, split_k=1, num_warps=8),
    ],
    "prefill": [
        _C("dot", 64, 64, 64, num_stages=3), _C("dot", 128, 128, 64, num_warps=8, num_stages=3),
        _C("dot", 128, 64, 32, num_stages=4), _C("dot", 64, 128, 32, num_stages=4),
        _C("dot", 128, 256, 64, num_warps=8, num_stages=3),
    ],
}
_INTERPRETER_CONFIG = {  # small tiles keep the interpreter quick and exercise masking and split-K
    "decode": _C("gemv", 1, 16, 32, split_k=2),
    "small": _C("dot", 16, 16, 32, split_k=2),
    "prefill": _C("dot", 16, 32, 32),
}


def m_bucket(m: int) -> str:
    """'decode' (M <= 16), 'small' (17..63) or 'prefill' (>= 64)."""
    return "decode" if m <= 16 else ("small" if m < 64 else "prefill")


def _autotune_enabled() -> bool:
    return os.environ.get("TORCHAO_AUTOTUNE", "1") != "0"


def _launch(cfg: KernelConfig, x, w, s, z, xs, out_dtype, n, k, w_format, zp_mode, group, qmin, mid):
    m = x.shape[0]
    split = cfg.split_k
    shape = (split, m, n) if split > 1 else (m, n)
    dtype = torch.float32 if split > 1 else out_dtype
    out = torch.full(shape, float("nan"), dtype=dtype, device=x.device) if POISON_OUTPUTS else \
        torch.empty(shape, dtype=dtype, device=x.device)
    kernel = gemv_kernel if cfg.kernel == "gemv" else dot_kernel
    rows = m if cfg.kernel == "gemv" else triton.cdiv(m, cfg.block_m)
    grid = (rows, triton.cdiv(n, cfg.block_n), split)
    launcher = kernel if INTERPRET else wrap_triton(kernel)
    launcher[grid](
        x, w, s, z if z is not None else s, xs if xs is not None else s, out, m, n, k,
        x.stride(0), w.stride(0), s.stride(0) if s.dim() > 1 else 1,
        W_FORMAT=w_format, ZP_MODE=zp_mode, GROUP=group, QMIN=qmin, MID=mid, INTERPRET=INTERPRET,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, SPLIT_K=split,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out.sum(0).to(out_dtype) if split > 1 else out


def _choose_config(key_prefix: str, bucket: str, n: int, k: int, group: int, run) -> KernelConfig:
    if INTERPRET:
        return _INTERPRETER_CONFIG[bucket]
    device = torch.cuda.get_device_name()
    key = f"{key_prefix}|{bucket}|N{n}|K{k}|G{group}"
    cached = AUTOTUNE_CACHE.lookup(device, key)
    if cached is not None:
        return cached
    candidates: List[KernelConfig] = CANDIDATES[bucket]
    if torch.compiler.is_compiling() or not _autotune_enabled():
        return candidates[0]
    timings = {}
    for cfg in candidates:
        try:
            timings[cfg] = triton.testing.do_bench(lambda: run(cfg), warmup=5, rep=20, return_mode="median")
        except Exception:  # a config the device cannot run (shared memory, registers): skip it
            continue
    best = min(timings, key=timings.get) if timings else candidates[0]
    AUTOTUNE_CACHE.store(device, key, best)
    return best


def _run(key_prefix, x, w, s, z, xs, out_dtype, n, k, w_format, zp_mode, group, qmin, mid):
    def run(cfg):
        return _launch(cfg, x, w, s, z, xs, out_dtype, n, k, w_format, zp_mode, group, qmin, mid)

    return run(_choose_config(key_prefix, m_bucket(x.shape[0]), n, k, group, run))


@triton_op("torchao::int8_weight_only_mm_triton", mutates_args=())
def int8_weight_only_mm_triton(
    x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor]
) -> torch.Tensor:
    """x (M, K) bf16/fp16 @ ((w_int8 (N, K) - zero_point (N,)) * scale (N,)).T -> (M, N) in x.dtype."""
    n, k = w_int8.shape
    return _run("int8_wo", x.contiguous(), w_int8, scale, zero_point, None, x.dtype, n, k,
                W_INT8, ZP_NONE if zero_point is None else ZP_INT, 1, 0, 0.0)


@triton_op("torchao::int4_weight_only_mm_triton", mutates_args=())
def int4_weight_only_mm_triton(
    x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
    group_size: int, quant_min: int, zp_mode: int, mid: float,
) -> torch.Tensor:
    """x (M, K) @ W.T for W (N, K) packed as in Int4PackedLayout: packed (N, K // 2) uint8,
    scale / zero_point (N, K // group_size); zp_mode ZP_NONE / ZP_INT / ZP_FLOAT (see triton_mm.py)."""
    n, k = packed.shape[0], packed.shape[1] * 2
    return _run("int4_wo", x.contiguous(), packed, scale.reshape(n, -1), None if zero_point is None else
                zero_point.reshape(n, -1), None, x.dtype, n, k, W_INT4, zp_mode, group_size, quant_min, mid)


@triton_op("torchao::int8_dynamic_mm_triton", mutates_args=())
def int8_dynamic_mm_triton(
    x_int8: torch.Tensor, x_scale: torch.Tensor, w_int8: torch.Tensor, w_scale: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """(x_int8 (M, K) @ w_int8 (N, K).T, int32 accumulate) * x_scale (M,) * w_scale (N,) -> (M, N)."""
    n, k = w_int8.shape
    return _run("int8_dyn", x_int8.contiguous(), w_int8, w_scale.reshape(-1), None, x_scale.reshape(-1),
                out_dtype, n, k, W_INT8_DYNAMIC, ZP_NONE, 1, 0, 0.0)
