// The AMX weight-only matmuls (bf16_int8_amx.cpp, bf16_int4_amx.cpp): bfloat16 activations times int8 / int4
// weights for many rows (prefill, batched decode), on CPUs where use_amx_bf16() holds. The weight-only ops of
// float_int8_gemv.cpp, bf16_int4_gemv.cpp and int4_int8act_gemm.cpp call them from kAmxMinRows* rows on.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace torchao_cpp {

// From this many rows the AMX kernels beat the AVX-512 ones (each weight is unpacked for a tile of 16 rows
// whatever M is, so their time hardly moves below 16 rows). 4096 x 4096, 2 cores of a Xeon with AMX, bf16 x,
// against bf16 F.linear: int8 AVX-512 1.48x / 1.23x / 1.03x / 0.71x at M = 2 / 3 / 4 / 6, AMX 1.41x at M = 8
// (0.93 ms); int4 AVX-512 1.59x / 1.15x at M = 4 / 6, AMX 1.66x at M = 8 (0.79 ms).
constexpr int64_t kAmxMinRowsInt8 = 3;
constexpr int64_t kAmxMinRowsInt4 = 4;
// int8 activations x int4 weights (8da4w, int4_int8act_gemm.cpp): VNNI 0.69 / 0.85 / 1.07 ms at M = 4 / 6 / 8,
// AMX 0.84 ms
constexpr int64_t kAmxMinRowsInt8Int4 = 6;


// out (M, N) float32 / bfloat16 / float16 = s[n] * sum_k x[m, k] w[n, k]: x (M, K) bfloat16 bits, w (N, K) int8
// row-major, s (N,) float32. Parallel over output channels.
void int8_weight_gemm_amx(const uint16_t* x, const int8_t* w, const float* s, at::Tensor& out, int64_t m, int64_t k,
                          int64_t n);

// The activations of int4_weight_gemm_amx, (M, K) row-major, K a multiple of 32: float32 / bfloat16 (rounded to
// bfloat16), or int8 xq standing for a[m] (xq - zx[m]) (zero: null for 0; row_scale: null for 1)
struct Int4AmxActivations {
  const void* data;
  at::ScalarType dtype;  // kFloat, kBFloat16 or kChar
  const int32_t* zero;
  const float* row_scale;
  int64_t m, k;
};

// out (M, N) float32 / bfloat16 / float16 = x @ W.T with W[n, k] = bf16((q - 8) * s + z) from aten's AVX-512 int4
// packing (packed (N, K / 2), N a multiple of 64) and bfloat16 group scales sz (K / group, N, sz_width: 2 (s, z)
// or 1 (s)).
void int4_weight_gemm_amx(const Int4AmxActivations& x, const uint8_t* packed, const uint16_t* sz, int64_t group,
                          int64_t sz_width, at::Tensor& out);

}  // namespace torchao_cpp
