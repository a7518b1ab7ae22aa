// The AMX weight-only matmuls (bf16_int8_amx.cpp, bf16_int4_amx.cpp): bfloat16 activations times int8 / int4
// weights for many rows (prefill, batched decode), on CPUs where use_amx_bf16() holds. The weight-only ops of
// float_int8_gemv.cpp, bf16_int4_gemv.cpp and int4_int8act_gemm.cpp call them from kAmxMinRows* rows on.
#pragma once

#include "amx.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace torchao_cpp {

// From this many rows the AMX kernels beat the AVX-512 ones (each weight is unpacked for a tile of 16 rows
// whatever M is, so their time hardly moves below 16 rows). 4096 x 4096, 2 cores of a Xeon with AMX, bf16 x,
// against bf16 F.linear: int8 AVX-512 1.48x / 1.23x / 1.03x / 0.71x at M = 2 / 3 / 4 / 6, AMX 1.41x at M = 8
// (0.93 ms); int4 (group 128) AVX-512 3.0x / 2.05x / 1.24x at M = 1 / 2 / 4, AMX (int4_few_rows_amx) 2.3x /
// 2.5x / 2.35x / 2.5x at M = 1 / 2 / 4 / 8.
constexpr int64_t kAmxMinRowsInt8 = 3;
constexpr int64_t kAmxMinRowsInt4 = 2;
// int8 activations x int4 weights (8da4w, group 32, int4_int8act_gemm.cpp): VNNI 2.4x / 2.0x / 1.6x / 1.3x at
// M = 2 / 3 / 4 / 5, AMX 1.95x / 1.9x / 1.8x / 1.8x
constexpr int64_t kAmxMinRowsInt8Int4 = 4;


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

#ifdef TORCHAO_X86
// Row ``row``'s 32 values from k = t as bfloat16: float32 / bfloat16 x rounded to bfloat16, int8 xq - zx exact (an
// integer of at most 255 in magnitude)
TORCHAO_AVX512 inline __m512i bf16_row(const Int4AmxActivations& x, int64_t row, int64_t t) {
  const int64_t at = row * x.k + t;
  switch (x.dtype) {
    case at::kBFloat16: return _mm512_loadu_si512(static_cast<const uint16_t*>(x.data) + at);
    case at::kFloat: {
      const float* f = static_cast<const float*>(x.data) + at;
      return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + 16), _mm512_loadu_ps(f));
    }
    default: {
      const int8_t* q = static_cast<const int8_t*>(x.data) + at;
      const __m512i zero = _mm512_set1_epi32(x.zero != nullptr ? x.zero[row] : 0);
      const auto widen = [&](const int8_t* bytes) TORCHAO_AVX512 {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
        return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(b), zero));
      };
      return (__m512i)_mm512_cvtne2ps_pbh(widen(q + 16), widen(q));
    }
  }
}
#endif

// out (M, N) float32 / bfloat16 / float16 = x @ W.T with W[n, k] = bf16((q - 8) * s + z) from aten's AVX-512 int4
// packing (packed (N, K / 2), N a multiple of 64) and bfloat16 group scales sz (K / group, N, sz_width: 2 (s, z)
// or 1 (s)).
void int4_weight_gemm_amx(const Int4AmxActivations& x, const uint8_t* packed, const uint16_t* sz, int64_t group,
                          int64_t sz_width, at::Tensor& out);

// At most this many rows take int4_few_rows_amx
constexpr int64_t kAmxFewRows = 8;

// The same product for M <= kAmxFewRows (batched decode) with the weight's integers exact, as the AVX-512 kernels
// have them: out[m, n] = a[m] sum_k x[m, k] w[n, k] (a: x.row_scale or 1), float32 sums; group a multiple of 32.
void int4_few_rows_amx(const Int4AmxActivations& x, const uint8_t* packed, const uint16_t* sz, int64_t group,
                       int64_t sz_width, at::Tensor& out);

// x @ W.T for int4 weights in aten's packing on AMX where this CPU has it and x has at least ``min_rows`` rows
// (up to kAmxFewRows: int4_few_rows_amx, where the group allows; more: int4_weight_gemm_amx), as an (M, N) tensor
// of ``out_options``; nothing where the caller's own kernel runs. packed and sz contiguous.
inline std::optional<at::Tensor> int4_matmul_amx(const Int4AmxActivations& x, const at::Tensor& packed,
                                                 const at::Tensor& sz, int64_t group, int64_t min_rows,
                                                 const at::TensorOptions& out_options) {
  if (x.m < min_rows || x.k % kTileK != 0 || !use_amx_bf16()) return std::nullopt;
  at::Tensor out = at::empty({x.m, packed.size(0)}, out_options);
  const auto* scales = reinterpret_cast<const uint16_t*>(sz.data_ptr<at::BFloat16>());
  const bool few = x.m <= kAmxFewRows && group % kTileK == 0;
  (few ? int4_few_rows_amx : int4_weight_gemm_amx)(x, packed.data_ptr<uint8_t>(), scales, group, sz.size(2), out);
  return out;
}

}  // namespace torchao_cpp
