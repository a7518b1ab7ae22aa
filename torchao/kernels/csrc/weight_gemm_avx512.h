// The many-row weight-only GEMMs on AVX-512 BF16 CPUs without AMX (pair_tile_gemm.h): int4 (bf16_int4_gemm.cpp)
// and int8 (bf16_int8_gemm.cpp) weights dequantized to bfloat16 once per call, 6-row x 64-channel tiles.
#pragma once

#include "host_helpers.h"
#include "int4_bf16_weights.h"

#include <cstdint>

namespace torchao_cpp {

// From this many rows the int4 weight-only op, on AVX-512 BF16 CPUs without AMX, multiplies by the weight
// dequantized once per call (int4_weight_gemm_avx512) instead of unpacking it in registers for every 4 rows
// (bf16_int4_gemv.cpp); K must be a multiple of kTileK. 2 cores of an AMD EPYC (Zen 4), bf16 x, against bf16
// F.linear (5632x2048, 2048x5632, 2048x2048 as N x K): M = 32 1.02-1.20x, 64 0.98-1.10x, 128 0.93-1.02x, 512
// 0.96-0.99x, where the register-unpacking kernel gave 1.17-1.18x at M = 32 and 0.82-0.89x at M = 128.
constexpr int64_t kAvx512Int4GemmMinRows = 32;

// out (M, N) = x @ W.T for x (M, K) bfloat16 bits, W dequantized as in int4_bf16_weights.h; float32 sums
// (FloatOutput rounds 16-bit outputs). Parallel over output channels.
void int4_weight_gemm_avx512(const uint16_t* x, int64_t m, const Int4Weights& w, FloatOutput& out);

// From this many rows the int8 weight-only op (float_int8_gemv.cpp), on AVX-512 BF16 CPUs without AMX, runs
// int8_weight_gemm_avx512 for K a multiple of kTileK, instead of its 4-channel x 4-row dot-product tiles. 2 cores
// of an AMD EPYC (Zen 4), bf16 x, against bf16 F.linear (4096x4096, 11008x4096, 4096x11008 as N x K): M = 32
// 1.09-1.22x (the tiles: 1.09-1.25x), 48 1.07-1.22x (0.98-1.10x), 128 0.99-1.05x, 512 0.99-1.03x (the tiles, on
// the first two shapes: 0.86-0.88x and 0.72-0.78x).
constexpr int64_t kAvx512Int8GemmMinRows = 32;

// out columns [0, n) of (M, width) = s[c] * sum_k x[m, k] w[c, k] for x (M, K) bfloat16 bits, w (width, K) int8
// row-major (every int8 is exact in bfloat16), s (width,) float32; n a multiple of 16, K of kTileK; float32 sums.
// Parallel over output channels.
void int8_weight_gemm_avx512(const uint16_t* x, int64_t m, const int8_t* w, const float* s, int64_t k, int64_t n,
                             int64_t width, FloatOutput& out);

}  // namespace torchao_cpp
