// bfloat16 activations x int4 weights for many rows (prefill) on AVX-512 BF16 CPUs without AMX: the int4
// weight-only op (bf16_int4_gemv.cpp) calls it from kAvx512Int4GemmMinRows rows on.
//
//   x (M, K) bfloat16, W[n, k] = bf16((q[n, k] - 8) * s + z) (int4_bf16_weights.h), K a multiple of 32
//   out[m, n] = sum_k x[m, k] W[n, k]   (products exact, float32 sums)
//
// pair_tile_gemm.h runs it, each 64-channel block dequantized once per call by dequantize_weights. The unpacking
// costs ~9 instructions per 32 weights per call whatever M is (~7% of the dot products at M = 128), where the
// register-unpacking kernel spends ~6 per 128 weights for every 4 rows (~37%).

#include "int4_bf16_weights.h"
#include "pair_tile_gemm.h"
#include "weight_gemm_avx512.h"

#include <cstdint>

namespace torchao_cpp {

#ifdef TORCHAO_X86
void int4_weight_gemm_avx512(const uint16_t* x, int64_t m, const Int4Weights& w, FloatOutput& out) {
  TORCH_CHECK(w.n % kInt4BlockN == 0, "int4_weight_gemm_avx512: N = ", w.n, " must be a multiple of ", kInt4BlockN);
  pair_tile_gemm_avx512(x, m, w.k, w.n, kInt4BlockN, w.n, nullptr,
                        [&](int64_t n0, int64_t channels, int64_t step0, int64_t steps, uint16_t* tiles) {
                          dequantize_weights(w, n0, channels, step0, steps, tiles);
                        },
                        out);
}
#else
void int4_weight_gemm_avx512(const uint16_t*, int64_t, const Int4Weights&, FloatOutput&) {
  TORCH_CHECK(false, "int4_weight_gemm_avx512: AVX-512 kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
