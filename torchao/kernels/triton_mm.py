"""Triton mixed-precision matmul kernels: x (M, K) float @ W.T with W quantized, and int8 x int8.

Two kernels share one weight-tile loader:

* ``gemv_kernel``: one program per (row of x, block of N, K split); products reduced with ``tl.sum``.
  For decode (M <= 16), where a (16, K) dot tile would mostly be padding.
* ``dot_kernel``: (BLOCK_M, BLOCK_N) output tiles with ``tl.dot``, optionally split along K.
  Split-K for small batches, one split for prefill.

Weight formats (``W_FORMAT``):

* 0, int8 per channel: ``w`` (N, K) int8, ``scale`` (N,), zero point (N,) or none.
* 1, int4 grouped: ``w`` (N, K // 2) uint8, element 2j of a row in the low nibble of byte j and 2j + 1 in
  the high nibble, each an offset u = q - quant_min in [0, 15]; ``scale`` / ``zero`` (N, K // GROUP).
  Dequantization is one FMA per element: ``w = (u + A) * s + B`` with A = quant_min - zero_point,
  B = 0 (ZP_MODE 1, integer zero point); A = quant_min, B = 0 (ZP_MODE 0, none); A = quant_min - mid,
  B = zero_point (ZP_MODE 2, float zero point).
* 2, int8 x int8 (dynamic activations): ``x`` int8, accumulate in int32 (exact), then
  ``acc * x_scale[m] * w_scale[n]`` in the epilogue.

With SPLIT_K > 1 each split writes fp32 partial sums to ``out`` viewed as (SPLIT_K, M, N) (scales
already applied, so the partials just add); otherwise ``out`` is (M, N) in the output dtype.
``INTERPRET`` (TRITON_INTERPRET=1 on CPU) computes in fp32 throughout, since the interpreter holds bf16
as raw integers.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _weight_tile(w_ptr, s_ptr, z_ptr, offs_n, k0, N, K, stride_wn, stride_sn,
                 W_FORMAT: tl.constexpr, ZP_MODE: tl.constexpr, GROUP: tl.constexpr,
                 QMIN: tl.constexpr, MID: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """(BLOCK_N, BLOCK_K) weight tile: fp32 values (int8 per channel still unscaled), or int32 for W_FORMAT 2."""
    mask_n = offs_n < N
    offs_k = k0 + tl.arange(0, BLOCK_K)
    if W_FORMAT == 1:
        offs_kp = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        mask = mask_n[:, None] & (offs_kp[None, :] < K // 2)
        packed = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_kp[None, :], mask=mask, other=0).to(tl.int32)
        u = tl.join(packed & 0xF, packed >> 4).reshape(BLOCK_N, BLOCK_K).to(tl.float32)
        mask2 = mask_n[:, None] & (offs_k[None, :] < K)
        qp = offs_n[:, None] * stride_sn + offs_k[None, :] // GROUP
        s = tl.load(s_ptr + qp, mask=mask2, other=0.0).to(tl.float32)
        if ZP_MODE == 1:
            z = tl.load(z_ptr + qp, mask=mask2, other=0).to(tl.float32)
            w = (u + (QMIN - z)) * s
        elif ZP_MODE == 2:
            z = tl.load(z_ptr + qp, mask=mask2, other=0.0).to(tl.float32)
            w = (u + (QMIN - MID)) * s + z
        else:
            w = (u + QMIN) * s
    else:
        mask = mask_n[:, None] & (offs_k[None, :] < K)
        q = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :], mask=mask, other=0)
        if W_FORMAT == 2:
            w = q.to(tl.int32)
        elif ZP_MODE == 1:
            z = tl.load(z_ptr + offs_n, mask=mask_n, other=0).to(tl.float32)
            w = q.to(tl.float32) - z[:, None]
        else:
            w = q.to(tl.float32)
    return w


@triton.jit
def _epilogue(acc, out_ptr, xs_ptr, ws_ptr, offs_m, offs_n, M, N, pid_k,
              W_FORMAT: tl.constexpr, SPLIT_K: tl.constexpr):
    """Apply per-channel (and per-token) scales and store (BLOCK_M, BLOCK_N) or a split's partial sums."""
    mask_m = offs_m < M
    mask_n = offs_n < N
    if W_FORMAT != 1:
        ws = tl.load(ws_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        acc = acc.to(tl.float32) * ws[None, :]
    if W_FORMAT == 2:
        xs = tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0).to(tl.float32)
        acc = acc * xs[:, None]
    ptrs = out_ptr + pid_k * M * N + offs_m[:, None] * N + offs_n[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K == 1:
        tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(ptrs, acc.to(tl.float32), mask=mask)


@triton.jit
def dot_kernel(x_ptr, w_ptr, s_ptr, z_ptr, xs_ptr, out_ptr, M, N, K,
               stride_xm, stride_wn, stride_sn,
               W_FORMAT: tl.constexpr, ZP_MODE: tl.constexpr, GROUP: tl.constexpr, QMIN: tl.constexpr,
               MID: tl.constexpr, INTERPRET: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_per_split = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K) * BLOCK_K
    k_begin = pid_k * k_per_split
    k_end = tl.minimum(k_begin + k_per_split, K)
    if W_FORMAT == 2:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_begin, k_end, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x_mask = (offs_m[:, None] < M) & (offs_k[None, :] < k_end)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=x_mask, other=0)
        w = _weight_tile(w_ptr, s_ptr, z_ptr, offs_n, k0, N, k_end, stride_wn, stride_sn,
                         W_FORMAT, ZP_MODE, GROUP, QMIN, MID, BLOCK_N, BLOCK_K)
        if W_FORMAT == 2:
            if INTERPRET:
                acc += tl.dot(x.to(tl.float32), tl.trans(w.to(tl.float32))).to(tl.int32)
            else:
                acc += tl.dot(x, tl.trans(w.to(tl.int8)))
        elif INTERPRET:
            acc += tl.dot(x.to(tl.float32), tl.trans(w))
        else:
            acc += tl.dot(x, tl.trans(w.to(x.dtype)))
    _epilogue(acc, out_ptr, xs_ptr, s_ptr, offs_m, offs_n, M, N, pid_k, W_FORMAT, SPLIT_K)


@triton.jit
def gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, xs_ptr, out_ptr, M, N, K,
                stride_xm, stride_wn, stride_sn,
                W_FORMAT: tl.constexpr, ZP_MODE: tl.constexpr, GROUP: tl.constexpr, QMIN: tl.constexpr,
                MID: tl.constexpr, INTERPRET: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    row = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_per_split = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K) * BLOCK_K
    k_begin = pid_k * k_per_split
    k_end = tl.minimum(k_begin + k_per_split, K)
    if W_FORMAT == 2:
        acc = tl.zeros((BLOCK_N,), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(k_begin, k_end, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + row * stride_xm + offs_k, mask=offs_k < k_end, other=0)
        w = _weight_tile(w_ptr, s_ptr, z_ptr, offs_n, k0, N, k_end, stride_wn, stride_sn,
                         W_FORMAT, ZP_MODE, GROUP, QMIN, MID, BLOCK_N, BLOCK_K)
        if W_FORMAT == 2:
            acc += tl.sum(w * x.to(tl.int32)[None, :], axis=1)
        else:
            acc += tl.sum(w * x.to(tl.float32)[None, :], axis=1)
    offs_m = row + tl.arange(0, 1)
    _epilogue(acc[None, :], out_ptr, xs_ptr, s_ptr, offs_m, offs_n, M, N, pid_k, W_FORMAT, SPLIT_K)
