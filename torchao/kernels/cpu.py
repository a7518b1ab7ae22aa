"""CPU matmul kernels for quantized weights: thin wrappers of PyTorch's own aten CPU kernels, and our C++
kernels (``csrc/``, built on first use by ``cpp_build``) for int8 activations x int4 / int8 weights and, for
weight-only decode, float x int8 and bf16 x int4 weights.

The wrappers pick a kernel and a compute dtype by batch size M and are registered as ``torchao::*``
ops, so export and AOTInductor show them by name. The weight-only ones are opaque custom ops (Inductor's
own lowering of aten._weight_int8pack_mm fails on unrealized inputs in torch 2.13, and the choice by M
then happens on concrete shapes); the int8 dynamic one is CompositeImplicitAutograd, so Inductor sees
aten._int_mm and fuses the scaling epilogue (only its small-M path is opaque). None of this imports the
tensor subclass.

Compute dtype: the aten weight-only kernels are fast with bf16 activations and slow with fp32 ones
(measured ~7x apart at M=1 on AVX-512), so fp32 activations are rounded to bf16, multiplied with
fp32 accumulation, and the result cast back to fp32.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

from .cpp_build import cpp_kernels_available

__all__ = [
    "INT4_CPU_GROUP_SIZES",
    "int4_cpu_kernel_group_size",
    "int4_cpu_pack",
    "int4_cpu_unpack",
    "int8_weight_only_mm",
    "int4_weight_only_mm",
    "int8_dynamic_mm",
    "int8_dynamic_int4_mm",
    "int8_dynamic_int4_runs",
    "quantize_int8_per_token",
    "quantize_int8_per_token_runs",
    "int4_cpu_dequantize",
    "weight_only_compute_dtype",
]

#: group sizes the aten int4 CPU kernel accepts
INT4_CPU_GROUP_SIZES = (256, 128, 64, 32)
#: the int4 CPU packing interleaves output channels in blocks; N must be a multiple of this
INT4_CPU_N_MULTIPLE = 16
#: from this many rows on the int8 dynamic path uses aten._int_mm; below it (M > 1) the bf16 weight-only
#: kernel on exact integer activations is ~4x faster (4096x4096, AVX-512: 0.9 vs 3.6 ms at M=2; even at M=8)
_INT_MM_MIN_ROWS = 8
#: up to this many rows (decode) int8 x int8 runs our C++ VNNI kernel (csrc/int8_int8_gemm.cpp), each weight row
#: streamed once per 4 rows. 5632 x 2048 from memory, 2 cores: M = 1 25-30 GB/s (aten._int_mm 24-28), M = 2..8
#: 2-3x faster than aten._int_mm, M = 16 even
_CPP_INT8_MAX_ROWS = 16
#: on AMX CPUs aten._int_mm (oneDNN's AMX-INT8 GEMM) takes over sooner: 4096x4096, 2 cores of a Xeon with AMX,
#: ours 0.52 / 0.78 / 0.97 ms at M = 4 / 6 / 8, aten._int_mm 0.78 / 0.78 / 0.79 ms
_CPP_INT8_MAX_ROWS_AMX = 5
#: up to this many rows float x int8 weight-only runs our C++ kernel (csrc/float_int8_gemv.cpp). From memory,
#: 2 cores, bf16 activations, against aten._weight_int8pack_mm on 5632x2048, 2048x5632, 4096x4096, 256x2048:
#: M = 1 (float32 FMA) 23-33 GB/s, 1.06-1.9x; M = 2..16 (bf16 dot products, 4 channels x 4 rows a tile)
#: 0.97-1.45x, limited by widening the weights to bf16. bf16 x on AVX-512 BF16 CPUs runs our kernels at every M:
#: up to 31 rows (or K not a multiple of 32) the 4 x 4 tiles, which convert each 4-channel tile's weights once
#: for all rows (1.03-1.32x bf16 F.linear at M = 17-63, measured before the GEMM took 32 rows and up); from 32
#: rows csrc/bf16_int8_gemm.cpp, which widens the weight into bf16 pair tiles once per call for the 6-row x
#: 64-channel tile GEMM (pair_tile_gemm.h). 2 cores of an AMD EPYC (Zen 4), 4096x4096 / 4096x11008 / 11008x4096:
#: M = 128 0.99-1.05x and M = 512 0.99-1.03x bf16 F.linear, where aten._weight_int8pack_mm gave 0.29-0.56x and
#: converting the weight for F.linear 0.18-0.75x
_CPP_GEMV_MAX_ROWS = 16
#: from this many rows, 16-bit int8 weight-only without our bf16 kernel (fp16 x, or no AVX-512 BF16) converts the
#: weight and runs F.linear (M=128, 4096x4096: 26 ms against 33 ms for aten._weight_int8pack_mm; fp32
#: activations stay on the aten kernel, 2x faster there)
_DEQUANTIZE_MIN_ROWS = 64


def weight_only_compute_dtype(x_dtype: torch.dtype) -> torch.dtype:
    """Activation dtype the aten weight-only CPU kernels run in: bf16 for fp32 input, else the input's."""
    return torch.bfloat16 if x_dtype == torch.float32 else x_dtype


def _int8pack_dtype(x_dtype: torch.dtype, k: int) -> torch.dtype:
    """Compute dtype for aten._weight_int8pack_mm: its bf16 path crashes (segfault, torch 2.13, AVX-512)
    when K is not a multiple of 16, so such shapes run in fp32 there."""
    cdtype = weight_only_compute_dtype(x_dtype)
    return torch.float32 if cdtype == torch.bfloat16 and k % 16 else cdtype


def int4_cpu_kernel_group_size(group_size: int) -> Optional[int]:
    """The largest kernel group size that divides ``group_size`` (a per-channel block of K = 4096 runs
    as groups of 256 with repeated scales); None if the kernel cannot represent it."""
    return next((g for g in INT4_CPU_GROUP_SIZES if group_size % g == 0), None)


def int4_cpu_pack(offsets: torch.Tensor) -> torch.Tensor:
    """(N, K) integers in [0, 15] -> the aten CPU int4 format ((N, K // 2) uint8, channel-interleaved)."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(offsets.to(torch.int32).contiguous(), 1)


def int4_cpu_unpack(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of ``int4_cpu_pack``: (N, K) uint8 in [0, 15].

    The aten format is a permutation of nibbles that depends on the CPU's vector width, so it is
    learned here rather than hard-coded: packing the element indices 4 bits at a time tells, for each
    nibble of ``packed``, which (n, k) it came from. Costs ceil(log2(N*K) / 4) packs; meant for rare
    operations (dequantize, device moves, checkpoints), not for the matmul path.
    """
    index = torch.arange(n * k, dtype=torch.int64).reshape(n, k)
    source = torch.zeros(n * k, dtype=torch.int64)
    for shift in range(0, max(1, math.ceil(math.log2(max(n * k, 2)))), 4):
        digit_packed = int4_cpu_pack((index >> shift) & 0xF)
        source |= _nibbles_in_order(digit_packed).to(torch.int64) << shift
    values = torch.empty(n * k, dtype=torch.uint8, device=packed.device)
    values[source.to(packed.device)] = _nibbles_in_order(packed)
    return values.reshape(n, k)


def _nibbles_in_order(packed: torch.Tensor) -> torch.Tensor:
    """Flat uint8 nibbles: low then high nibble of each byte, bytes in memory order."""
    flat = packed.reshape(-1)
    return torch.stack([flat & 0xF, flat >> 4], dim=-1).reshape(-1)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous at a 64-byte aligned address: the aten int8 / int4 CPU kernels segfault on weights at
    other offsets (e.g. views into a safetensors buffer, or row slices); such weights are copied."""
    return t if t.is_contiguous() and t.data_ptr() % 64 == 0 else t.clone(memory_format=torch.contiguous_format)


def _int8_weight_only_mm(x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    if _int8_gemv_runs(x):
        return torch.ops.torchao.int8_weight_only_gemv_cpu(x, w_int8, scale)
    w_int8 = _aligned(w_int8)
    if x.shape[0] >= _DEQUANTIZE_MIN_ROWS and x.dtype in (torch.bfloat16, torch.float16):
        # prefill: the GEMV-style aten kernel falls behind a converted weight through the BLAS GEMM
        return (torch.nn.functional.linear(x, w_int8.to(x.dtype)) * scale.to(x.dtype)).to(x.dtype)
    cdtype = _int8pack_dtype(x.dtype, x.shape[-1])
    out = torch.ops.aten._weight_int8pack_mm(x.to(cdtype), w_int8, scale.to(cdtype))
    return out.to(x.dtype)


def _with_zeros(scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """(K // G, N, 2) (s, z) pairs: as given, or from scales only ((K // G, N, 1), z = 0)."""
    if scales_and_zeros.shape[-1] == 2:
        return scales_and_zeros
    return torch.cat([scales_and_zeros, torch.zeros_like(scales_and_zeros)], dim=-1)


def _int4_weight_only_mm(
    x: torch.Tensor, packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor
) -> torch.Tensor:
    if _bf16_int4_gemv_runs(x, packed.shape[0], scales_and_zeros.dtype):
        return torch.ops.torchao.int4_weight_only_gemv_cpu(x, packed, group_size, scales_and_zeros)
    cdtype = weight_only_compute_dtype(x.dtype)
    out = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(cdtype), _aligned(packed), group_size,
                                                     _with_zeros(scales_and_zeros).to(cdtype))
    return out.to(x.dtype)


def _use_small_m_path(m, k: int, out_dtype: torch.dtype) -> bool:
    """Concrete 1 < M < 8 with 16-bit output and a K the bf16 kernel handles (symbolic M: no)."""
    return (
        isinstance(m, int) and 1 < m < _INT_MM_MIN_ROWS and out_dtype != torch.float32
        and _int8pack_dtype(torch.bfloat16, k) == torch.bfloat16
    )


def _use_cpp_int8_path(m) -> bool:
    """Concrete M up to _CPP_INT8_MAX_ROWS (_AMX on AMX CPUs) with our C++ kernels built (symbolic M: no)."""
    most = _CPP_INT8_MAX_ROWS_AMX if CPU_HAS_AMX_BF16 else _CPP_INT8_MAX_ROWS
    return isinstance(m, int) and m <= most and cpp_kernels_available()


def _int8_dynamic_mm(
    x_int8: torch.Tensor, x_scale: torch.Tensor, w_int8: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    if _use_cpp_int8_path(x_int8.shape[0]):
        return torch.ops.torchao.int8_dynamic_int8_mm_cpu(x_int8, x_scale, w_int8, w_scale, out_dtype)
    if _use_small_m_path(x_int8.shape[0], x_int8.shape[1], out_dtype):
        return torch.ops.torchao.int8_dynamic_small_m_cpu(x_int8, x_scale, w_int8, w_scale, out_dtype)
    # plain aten, so that Inductor fuses the scaling epilogue. For M >= 2, W @ X.T with the (N, K) weight
    # as the contiguous left operand is 1.3-2.6x faster than X @ W.T on oneDNN CPUs (4096x4096, M = 2..128).
    # Not for M = 1 (or a symbolic M): Inductor then gives X.T a zero stride, which aten._int_mm misreads.
    m, k = x_int8.shape
    if isinstance(k, int) and k == 1:
        # aten._int_mm returns garbage for K = 1 (torch 2.13 CPU, any strides); the outer product is exact
        acc = x_int8.to(torch.float32) * w_int8.to(torch.float32).reshape(1, -1)
    elif isinstance(m, int) and m >= 2:
        acc = torch.ops.aten._int_mm(w_int8, x_int8.t()).t()
    else:
        acc = torch.ops.aten._int_mm(x_int8, w_int8.t())
    return (acc.to(torch.float32) * x_scale.reshape(-1, 1).to(torch.float32) * w_scale.to(torch.float32)).to(out_dtype)


@torch.library.custom_op("torchao::int8_weight_only_mm_cpu", mutates_args=())
def _int8_weight_only_op(x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return _int8_weight_only_mm(x, w_int8, scale)


@_int8_weight_only_op.register_fake
def _(x, w_int8, scale):
    return x.new_empty(x.shape[0], w_int8.shape[0])


@torch.library.custom_op("torchao::int4_weight_only_mm_cpu", mutates_args=())
def _int4_weight_only_op(
    x: torch.Tensor, packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor
) -> torch.Tensor:
    return _int4_weight_only_mm(x, packed, group_size, scales_and_zeros)


@_int4_weight_only_op.register_fake
def _(x, packed, group_size, scales_and_zeros):
    return x.new_empty(x.shape[0], packed.shape[0])


@torch.library.custom_op("torchao::int8_dynamic_small_m_cpu", mutates_args=())
def _int8_dynamic_small_m_op(
    x_int8: torch.Tensor, x_scale: torch.Tensor, w_int8: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    # |q| <= 128 is exact in bf16 and the kernel accumulates in fp32: int8 x int8 products, bf16 result
    acc = torch.ops.aten._weight_int8pack_mm(x_int8.to(torch.bfloat16), _aligned(w_int8), w_scale.to(torch.bfloat16))
    return (acc.to(torch.float32) * x_scale.reshape(-1, 1).to(torch.float32)).to(out_dtype)


@_int8_dynamic_small_m_op.register_fake
def _(x_int8, x_scale, w_int8, w_scale, out_dtype):
    return x_int8.new_empty(x_int8.shape[0], w_int8.shape[0], dtype=out_dtype)


_lib = torch.library.Library("torchao", "FRAGMENT")
_lib.define(
    "int8_dynamic_mm_cpu(Tensor x_int8, Tensor x_scale, Tensor w_int8, Tensor w_scale, ScalarType out_dtype) -> Tensor"
)
_lib.impl("int8_dynamic_mm_cpu", _int8_dynamic_mm, "CompositeImplicitAutograd")

# ---- ops whose CPU kernel is C++ (csrc/): defined here, implemented by the library once loaded --------
#: op name -> (schema arguments, fake: the output's shape and dtype[, schema returns: one Tensor if not given])
_CPP_OPS = {
    "int8_dynamic_int8_mm_cpu": (
        "Tensor x_int8, Tensor x_scale, Tensor w_int8, Tensor w_scale, ScalarType out_dtype",
        lambda x_int8, x_scale, w_int8, w_scale, out_dtype: x_int8.new_empty(
            x_int8.shape[0], w_int8.shape[0], dtype=out_dtype),
    ),
    "int8_weight_only_gemv_cpu": (
        "Tensor x, Tensor w_int8, Tensor w_scale",
        lambda x, w_int8, w_scale: x.new_empty(x.shape[0], w_int8.shape[0]),
    ),
    "int4_weight_only_gemv_cpu": (
        "Tensor x, Tensor packed, int group_size, Tensor scales_and_zeros",
        lambda x, packed, group_size, scales_and_zeros: x.new_empty(x.shape[0], packed.shape[0]),
    ),
    "int8_dynamic_int4_mm_cpu": (
        "Tensor x_int8, Tensor x_scale, Tensor? x_zero, Tensor packed, int group_size, Tensor scales_and_zeros, "
        "ScalarType out_dtype",
        lambda x_int8, x_scale, x_zero, packed, group_size, scales_and_zeros, out_dtype: x_int8.new_empty(
            x_int8.shape[0], packed.shape[0], dtype=out_dtype),
    ),
    "quantize_int8_per_token_cpu": (
        "Tensor x, bool symmetric",
        lambda x, symmetric: (x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32),
                              x.new_empty((0,) if symmetric else x.shape[:-1], dtype=torch.int32)),
        "(Tensor, Tensor, Tensor)",
    ),
}


def _load_then_call(name: str):
    """The op's kernel until the C++ library is loaded: load it (its CPU kernel then takes over, so later
    calls go straight to C++ without Python) and call again; e.g. in a process running an exported program."""

    def call(*args):
        if any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args):
            raise RuntimeError(f"torchao::{name} runs on CPU tensors, got "
                               f"{[a.device.type for a in args if isinstance(a, torch.Tensor)]}")
        if not cpp_kernels_available() or not torch._C._dispatch_has_kernel_for_dispatch_key(f"torchao::{name}", "CPU"):
            raise RuntimeError(f"torchao::{name} needs torchao's C++ CPU kernels, which did not build here "
                               "(see the warning above)")
        return getattr(torch.ops.torchao, name)(*args)

    return call


for _name, (_arguments, _fake, *_returns) in _CPP_OPS.items():
    _lib.define(f"{_name}({_arguments}) -> {_returns[0] if _returns else 'Tensor'}")
    _lib.impl(_name, _load_then_call(_name), "CompositeExplicitAutograd")
    torch.library.register_fake(f"torchao::{_name}", _fake, lib=_lib)


#: the C++ int8 x int4 kernel reads aten's AVX-512 int4 packing: blocks of this many output channels
_INT4_BLOCK_N = 64
#: and keeps one quantization group of transposed weights in a buffer of this many k
_INT4_MAX_KERNEL_GROUP = 256


def _probe_int4_packing_is_blocked_by_64() -> bool:
    """Whether aten packs int4 in the AVX-512 order the C++ kernels read (probed with a 64 x 2 weight; CPUs
    without AVX-512 get another order, and the aten path)."""
    n, k = torch.arange(_INT4_BLOCK_N).reshape(-1, 1), torch.arange(2).reshape(1, -1)
    q = (n * 5 + k * 3) % 16
    expected = (q[:32] | (q[32:] << 4)).t().reshape(-1).to(torch.uint8)  # per k: channel j | channel j + 32
    return torch.equal(int4_cpu_pack(q).reshape(-1), expected)


def _probe_cpu_has_avx512_bf16() -> bool:
    is_supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(is_supported and is_supported())


def _probe_cpu_has_amx_bf16() -> bool:
    """AMX tiles (Sapphire Rapids and later, which all have AMX-BF16) as the C++ kernels use them: not where
    TORCHAO_CPU_NO_AMX or TORCHAO_CPU_PORTABLE turns them off (csrc/amx.h reads the same variables)."""
    is_supported = getattr(torch.cpu, "_is_amx_tile_supported", None)
    turned_off = any(os.environ.get(name) is not None for name in ("TORCHAO_CPU_NO_AMX", "TORCHAO_CPU_PORTABLE"))
    return bool(is_supported and is_supported()) and _probe_cpu_has_avx512_bf16() and not turned_off


# Probed once at import, never while torch.compile traces (where the probe's aten calls would be fake)
INT4_PACKING_IS_BLOCKED_BY_64 = _probe_int4_packing_is_blocked_by_64()
CPU_HAS_AVX512_BF16 = _probe_cpu_has_avx512_bf16()
CPU_HAS_AMX_BF16 = _probe_cpu_has_amx_bf16()
#: the C++ ops run their AMX kernels from this many rows (kAmxMinRows*, csrc/amx_weight_gemm.h): float x int8 and
#: float x int4 weight-only, int8 x int4 (8da4w); the int4 ones up to AMX_FEW_ROWS rows with the weight's integers
#: exact (csrc/int4_amx_few_rows.cpp), from there on with the weight rounded to bf16 (csrc/bf16_int4_amx.cpp)
AMX_MIN_ROWS_INT8, AMX_MIN_ROWS_INT4, AMX_MIN_ROWS_INT8_INT4, AMX_FEW_ROWS = 3, 2, 4, 8
#: on AVX-512 BF16 CPUs without AMX, int4 weight-only from this many rows (K a multiple of 32) multiplies by the
#: weight dequantized to bf16 once per call (kAvx512Int4GemmMinRows, csrc/bf16_int4_gemm.cpp; the AMX path's
#: numerics): 2 cores of an AMD EPYC, bf16 x, 2048x5632 / 5632x2048 at M = 128: 0.89x / 0.82x -> 1.01x / 1.02x
#: bf16 F.linear
AVX512_INT4_GEMM_MIN_ROWS = 32


#: any number of rows, symbolic included
_ANY_ROWS = 1 << 62
#: (fewest 64-channel blocks, most rows) for the bf16 x int4 kernel, by width. From memory, 2 cores, group 128,
#: against aten._weight_int4pack_mm_for_cpu: 5632x2048, 2048x5632, 4096x4096 1.55-2.1x at every M from 1 to
#: 128; 256x2048 (4 blocks) 1.1-1.6x up to M = 4, 0.58-0.76x from M = 8
_GEMV_INT4_MAX_ROWS = ((16, _ANY_ROWS), (1, 4))
#: on AMX CPUs the op runs from AMX_MIN_ROWS_INT4 rows on AMX tiles (csrc/bf16_int4_amx.cpp), 1.1-1.5x bf16
#: F.linear for every width measured (256x2048 .. 11008x4096, M = 8..512; 256x2048 at M = 512: 0.82x), so any M
#: goes to it
_GEMV_INT4_MAX_ROWS_AMX = ((1, _ANY_ROWS),)


def _bf16_int4_gemv_runs(x: torch.Tensor, n, scales_and_zeros_dtype: torch.dtype) -> bool:
    """Whether int4 weight-only runs our bf16 x int4 C++ kernel: float32 / bfloat16 input, bfloat16 scales,
    aten's AVX-512 packing with N a multiple of 64, a CPU with AVX-512 BF16 (elsewhere its scalar path would be
    slower than aten), and M within _GEMV_INT4_MAX_ROWS (_AMX on AMX CPUs) for the number of 64-channel blocks or,
    without AMX, from AVX512_INT4_GEMM_MIN_ROWS rows for K a multiple of 32 (a symbolic M only where any M is)."""
    if not (isinstance(n, int) and n % _INT4_BLOCK_N == 0):
        return False
    limits = _GEMV_INT4_MAX_ROWS_AMX if CPU_HAS_AMX_BF16 else _GEMV_INT4_MAX_ROWS
    max_rows = next((rows for fewest, rows in limits if n // _INT4_BLOCK_N >= fewest), 0)
    m = x.shape[0]
    # the dequantizing GEMM (M >= AVX512_INT4_GEMM_MIN_ROWS) beats aten at every width: 256x2048, 512x2048,
    # 256x5632 at M = 32..512 1.5-2.3x aten's kernel
    gemm = (not CPU_HAS_AMX_BF16 and isinstance(m, int) and m >= AVX512_INT4_GEMM_MIN_ROWS
            and isinstance(x.shape[1], int) and x.shape[1] % 32 == 0)
    return (
        (max_rows == _ANY_ROWS or (isinstance(m, int) and m <= max_rows) or gemm)
        and x.dtype in (torch.float32, torch.bfloat16) and scales_and_zeros_dtype == torch.bfloat16
        and CPU_HAS_AVX512_BF16 and INT4_PACKING_IS_BLOCKED_BY_64 and cpp_kernels_available()
    )


def int8_dynamic_int4_runs(n: int, kernel_group_size: int, scales_and_zeros_dtype: torch.dtype) -> bool:
    """Whether ``int8_dynamic_int4_mm`` takes an int4 weight with ``n`` output channels: our C++ kernels built,
    aten's AVX-512 packing, N a multiple of 64, a kernel group of at most 256 and bfloat16 scales."""
    return (
        isinstance(n, int) and n % _INT4_BLOCK_N == 0 and kernel_group_size <= _INT4_MAX_KERNEL_GROUP
        and scales_and_zeros_dtype == torch.bfloat16 and INT4_PACKING_IS_BLOCKED_BY_64 and cpp_kernels_available()
    )


def int8_dynamic_int4_mm(
    x_int8: torch.Tensor, x_scale: torch.Tensor, x_zero: Optional[torch.Tensor], packed: torch.Tensor,
    group_size: int, scales_and_zeros: torch.Tensor, out_dtype: torch.dtype,
) -> torch.Tensor:
    """int8 activations x int4 weights with integer dot products (AVX-512 VNNI; a portable loop elsewhere):
    x_int8 (M, K) int8 with x = x_scale * (x_int8 - x_zero) per row (x_scale (M,) float, x_zero (M,) int or
    None for symmetric), packed (N, K / 2) uint8 in aten's int4 CPU format, scales_and_zeros
    (K / group_size, N, 2) bfloat16 (or (K / group_size, N, 1): scales, zeros 0) -> (M, N) ``out_dtype``,
    accumulated exactly in int32 per group and in fp32 across groups. Check ``int8_dynamic_int4_runs`` first."""
    return torch.ops.torchao.int8_dynamic_int4_mm_cpu(x_int8, x_scale, x_zero, packed, group_size, scales_and_zeros,
                                                     out_dtype)


def quantize_int8_per_token_runs(x: torch.Tensor) -> bool:
    """Whether ``quantize_int8_per_token`` takes ``x``: a non-empty float32 / bf16 / fp16 CPU tensor with K > 1
    (for K = 1 the primitives keep a (..., 1) qparam shape), in eager mode (compiled graphs keep the primitives,
    which Inductor fuses), no gradient wanted, our C++ kernels built."""
    return (
        x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and x.dim() >= 1
        and x.numel() > 0 and x.shape[-1] > 1 and not torch.compiler.is_compiling() and not (x.requires_grad and torch.is_grad_enabled())
        and cpp_kernels_available()
    )


def quantize_int8_per_token(x: torch.Tensor, symmetric: bool):
    """x (..., K) -> (q (..., K) int8, scale (...) float32, zero point (...) int32 or None for symmetric): the
    per-token int8 quantizers of qtensor/act_quant.py, the same numbers in one C++ pass per row
    (csrc/quantize_per_token.cpp; 512 x 4096 bf16: 7 ms through the primitives' aten ops). Check
    ``quantize_int8_per_token_runs`` first."""
    q, scale, zero = torch.ops.torchao.quantize_int8_per_token_cpu(x, symmetric)
    return q, scale, None if symmetric else zero


@torch.library.custom_op("torchao::int4_cpu_dequantize", mutates_args=())
def int4_cpu_dequantize(packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor, k: int) -> torch.Tensor:
    """The (N, K) float weight (scales_and_zeros.dtype) that ``int4_weight_only_mm`` multiplies with."""
    n = packed.shape[0]
    q = int4_cpu_unpack(packed, n, k).to(torch.float32).reshape(n, k // group_size, group_size)
    s, z = _with_zeros(scales_and_zeros).to(torch.float32).unbind(-1)  # (K // group_size, N) each
    w = (q - 8) * s.t().unsqueeze(-1) + z.t().unsqueeze(-1)
    return w.reshape(n, k).to(scales_and_zeros.dtype)


@int4_cpu_dequantize.register_fake
def _(packed, group_size, scales_and_zeros, k):
    return scales_and_zeros.new_empty(packed.shape[0], k)


# Gradients with respect to the activation (the weight is frozen): grad_x = grad_out @ W.
def _int8_weight_only_backward(ctx, grad):
    w = ctx.w_int8.to(torch.float32) * ctx.scale.to(torch.float32).reshape(-1, 1)
    return (grad.to(torch.float32) @ w).to(grad.dtype), None, None


def _int8_weight_only_setup(ctx, inputs, output):
    _, ctx.w_int8, ctx.scale = inputs


def _int4_weight_only_backward(ctx, grad):
    w = int4_cpu_dequantize(ctx.packed, ctx.group_size, ctx.scales_and_zeros, ctx.k)
    return (grad.to(torch.float32) @ w.to(torch.float32)).to(grad.dtype), None, None, None


def _int4_weight_only_setup(ctx, inputs, output):
    x, ctx.packed, ctx.group_size, ctx.scales_and_zeros = inputs
    ctx.k = x.shape[1]


_int8_weight_only_op.register_autograd(_int8_weight_only_backward, setup_context=_int8_weight_only_setup)
_int4_weight_only_op.register_autograd(_int4_weight_only_backward, setup_context=_int4_weight_only_setup)


def _int8_gemv_runs(x: torch.Tensor) -> bool:
    """Whether float x int8 weight-only runs our C++ kernel: concrete M up to _CPP_GEMV_MAX_ROWS, any M of
    bfloat16 x on AVX-512 BF16 CPUs, or any M of float32 / bfloat16 x on AMX CPUs (csrc/bf16_int8_amx.cpp from
    AMX_MIN_ROWS_INT8 rows), kernels built (a symbolic M takes the Python op, which asks again at run time)."""
    m = x.shape[0]
    amx = CPU_HAS_AMX_BF16 and x.dtype in (torch.float32, torch.bfloat16)
    bf16_tiles = CPU_HAS_AVX512_BF16 and x.dtype == torch.bfloat16
    return isinstance(m, int) and (m <= _CPP_GEMV_MAX_ROWS or amx or bf16_tiles) and cpp_kernels_available()


def _inference(x: torch.Tensor) -> bool:
    """No gradient wanted for ``x``: the C++ ops have no backward (the Python weight-only ops have one)."""
    return not (x.requires_grad and torch.is_grad_enabled())


def int8_weight_only_mm(x: torch.Tensor, w_int8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (M, K) float @ (w_int8 (N, K) int8 * scale (N,)).T -> (M, N) in x.dtype.

    Up to _CPP_GEMV_MAX_ROWS rows run our C++ kernel (csrc/float_int8_gemv.cpp: one row in float32, more with
    bf16 activations like aten's kernel, float32 sums), and every M of bf16 x on AVX-512 BF16 CPUs (from 32
    rows, K a multiple of 32, csrc/bf16_int8_gemm.cpp: the weight widened to bf16 once per call, the same
    numbers); on AMX CPUs every M of float32 / bf16 x does (from
    AMX_MIN_ROWS_INT8 rows on AMX tiles, csrc/bf16_int8_amx.cpp: bf16 x, exact products, float32 sums);
    elsewhere more rows run the aten kernels (see weight_only_compute_dtype). A concrete M calls the C++ op
    directly (no Python at run time); a symbolic M and gradients call torchao::int8_weight_only_mm_cpu, which
    makes the same choice at run time, so eager, compiled and exported programs (dynamic batch included) give
    equal results."""
    if _int8_gemv_runs(x) and _inference(x):
        return torch.ops.torchao.int8_weight_only_gemv_cpu(x, w_int8, scale.reshape(-1))
    return torch.ops.torchao.int8_weight_only_mm_cpu(x, w_int8, scale.reshape(-1))


def int4_weight_only_mm(
    x: torch.Tensor, packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor
) -> torch.Tensor:
    """x (M, K) float @ W.T with W[n, k] = (q - 8) * s + z from the aten CPU int4 format.

    packed: from ``int4_cpu_pack``; scales_and_zeros: (K // group_size, N, 2) float (s, z), or (..., 1): s;
    group_size in INT4_CPU_GROUP_SIZES. Returns (M, N) in x.dtype.

    Where ``_bf16_int4_gemv_runs`` says so, our C++ kernel (csrc/bf16_int4_gemv.cpp) runs it: bf16 activations
    as with aten's kernel, float32 sums, ~2x faster; on AMX CPUs from AMX_MIN_ROWS_INT4 rows on AMX tiles (up
    to AMX_FEW_ROWS rows csrc/int4_amx_few_rows.cpp, the same numerics; from there on csrc/bf16_int4_amx.cpp: the
    weight dequantized to bf16 as ``int4_cpu_dequantize`` rounds it, exact products, float32 sums); else the aten
    kernel. As for int8_weight_only_mm, the C++ op is called directly where the
    choice is known when tracing, else torchao::int4_weight_only_mm_cpu chooses at run time.
    """
    if _bf16_int4_gemv_runs(x, packed.shape[0], scales_and_zeros.dtype) and _inference(x):
        return torch.ops.torchao.int4_weight_only_gemv_cpu(x, packed, group_size, scales_and_zeros)
    return torch.ops.torchao.int4_weight_only_mm_cpu(x, packed, group_size, scales_and_zeros)


def int8_dynamic_mm(
    x_int8: torch.Tensor, x_scale: torch.Tensor, w_int8: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype
) -> torch.Tensor:
    """(x_int8 (M, K) @ w_int8 (N, K).T) * x_scale (M, 1) * w_scale (N,) -> (M, N) in out_dtype.

    Integer products accumulate in int32 (aten._int_mm), or for 1 < M < 8 with 16-bit outputs in fp32
    inside the bf16 weight-only kernel (exact integer inputs; result rounded to bf16).

    torch.compile gets the aten ops inlined (Inductor keeps CompositeImplicitAutograd custom ops whole,
    and would not fuse the epilogue); eager and torch.export get the named op."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return _int8_dynamic_mm(x_int8, x_scale, w_int8, w_scale.reshape(-1), out_dtype)
    return torch.ops.torchao.int8_dynamic_mm_cpu(x_int8, x_scale, w_int8, w_scale.reshape(-1), out_dtype)
