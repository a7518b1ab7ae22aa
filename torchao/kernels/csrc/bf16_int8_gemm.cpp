// bfloat16 activations x int8 weights for many rows (prefill) on AVX-512 BF16 CPUs without AMX: the int8
// weight-only op (float_int8_gemv.cpp) calls it from kAvx512Int8GemmMinRows rows on.
//
//   x (M, K) bfloat16, w (N, K) int8 row-major, s (N,) float32, K a multiple of 32
//   out[m, n] = s[n] * sum_k x[m, k] w[n, k]   (products exact: every int8 is a bfloat16; float32 sums)
//
// pair_tile_gemm.h runs it. For each 16 channels and 32 k the weights are widened to bfloat16 (32 per channel:
// a vector of 16 (k, k + 1) pairs) and transposed as 16 x 16 32-bit lanes into pair tiles, ~11 instructions per
// 32 weights per call whatever M is.

#include "amx.h"
#include "pair_tile_gemm.h"
#include "weight_gemm_avx512.h"

#include <cstdint>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace {

// channels [n0, n0 + channels) (a multiple of 16), k-steps [step0, step0 + steps) of w (N, K) as pair tiles
// (pair_tile_gemm.h's layout)
TORCHAO_AVX512 void pair_tiles_int8(const int8_t* w, int64_t k, int64_t n0, int64_t channels, int64_t step0,
                                    int64_t steps, uint16_t* tiles) {
  for (int64_t c = 0; c < channels / 16; ++c) {
    const int8_t* rows = w + (n0 + 16 * c) * k;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t t = (step0 + s) * kTileK;
      __m512i pairs[16];
      for (int j = 0; j < 16; ++j) pairs[j] = (__m512i)widen_int8_bf16(rows + j * k + t, kTileK);
      transpose_16x16(pairs);
      uint16_t* tile = tiles + (c * steps + s) * 512;
      for (int p = 0; p < 16; ++p) _mm512_store_si512(tile + p * 32, pairs[p]);
    }
  }
}

}  // namespace

void int8_weight_gemm_avx512(const uint16_t* x, int64_t m, const int8_t* w, const float* s, int64_t k, int64_t n,
                             int64_t width, FloatOutput& out) {
  pair_tile_gemm_avx512(x, m, k, n, 16, width, s,
                        [&](int64_t n0, int64_t channels, int64_t step0, int64_t steps, uint16_t* tiles) {
                          pair_tiles_int8(w, k, n0, channels, step0, steps, tiles);
                        },
                        out);
}
#else
void int8_weight_gemm_avx512(const uint16_t*, int64_t, const int8_t*, const float*, int64_t, int64_t, int64_t,
                             FloatOutput&) {
  TORCH_CHECK(false, "int8_weight_gemm_avx512: AVX-512 kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
