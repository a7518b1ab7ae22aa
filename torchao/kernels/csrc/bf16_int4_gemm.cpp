// bfloat16 activations x int4 weights for many rows (prefill) on AVX-512 BF16 CPUs without AMX: the int4
// weight-only op (bf16_int4_gemv.cpp) calls it from kAvx512Int4GemmMinRows rows on.
//
//   x (M, K) bfloat16, W[n, k] = bf16((q[n, k] - 8) * s + z) (int4_bf16_weights.h), K a multiple of 32
//   out[m, n] = sum_k x[m, k] W[n, k]   (products exact, float32 sums)
//
// Each block of 64 output channels is dequantized once per call, a chunk of kGemmChunkSteps x 32 k (2048; 256 KB
// of bfloat16 pairs, in L2) at a time; tiles of 6 rows x 64 channels (24 float32 accumulators) then run
// vdpbf16ps over the chunk, the weights loaded from L2 and the activations broadcast from memory. The unpacking
// costs ~9 instructions per 32 weights per call whatever M is (~7% of the dot products at M = 128), where the
// register-unpacking kernel spends ~6 per 128 weights for every 4 rows (~37%). The float32 output holds the
// sums between chunks. Chunks of 256 k with 256 channels a task measured 0.90-0.94x bf16 F.linear at M = 128;
// these 1.0x (2 cores of an AMD EPYC, Zen 4).

#include "int4_bf16_weights.h"
#include "tiles.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace {

constexpr int kTileRowsAvx512 = 6;
constexpr int64_t kMaxUnitN = 64;  // output channels per task, at most
constexpr int64_t kGemmChunkSteps = 64;

struct Gemm {
  const uint16_t* x;  // (M, K) bfloat16 bits
  float* out;         // (M, N)
  Int4Weights w;
  int64_t m;
};

// out rows [i, i + R), channels [n0 + 64 block, + 64) (+)= the products over the chunk's k = t0 .. of x and the
// dequantized weights (the unit's 16-channel tiles of ``steps`` k-steps, dequantize_weights' order)
template <int R>
TORCHAO_AVX512 void tile_rows(const Gemm& p, const uint16_t* weights, int64_t steps, int64_t block, int64_t n0,
                              int64_t t0, int64_t i, bool accumulate) {
  const int64_t n = p.w.n, k = p.w.k;
  float* out = p.out + i * n + n0 + block * kInt4BlockN;
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = accumulate ? _mm512_loadu_ps(out + r * n + 16 * c) : _mm512_setzero_ps();
  const uint16_t* b = weights + block * 4 * steps * 512;
  const uint16_t* x = p.x + i * k + t0;
  for (int64_t pair = 0; pair < steps * 16; ++pair) {
    __m512bh w[4];
    for (int c = 0; c < 4; ++c) w[c] = (__m512bh)_mm512_load_si512(b + c * steps * 512 + pair * 32);
    for (int r = 0; r < R; ++r) {
      int32_t two;
      std::memcpy(&two, x + r * k + 2 * pair, sizeof(two));
      const __m512bh x2 = (__m512bh)_mm512_set1_epi32(two);
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], w[c], x2);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(out + r * n + 16 * c, acc[r][c]);
}

// every row x output channels [n0, n0 + channels)
TORCHAO_AVX512 void run_unit(const Gemm& p, int64_t n0, int64_t channels, AlignedBuffer<uint16_t>& weights) {
  const int64_t k_steps = p.w.k / kTileK;
  weights.reserve(channels / 16 * kGemmChunkSteps * 512);
  for (int64_t step0 = 0; step0 < k_steps; step0 += kGemmChunkSteps) {
    const int64_t steps = std::min(kGemmChunkSteps, k_steps - step0);
    dequantize_weights(p.w, n0, channels, step0, steps, weights.get());
    for (int64_t block = 0; block < channels / kInt4BlockN; ++block)
      for_each_tile<kTileRowsAvx512>(p.m, [&](auto rows, int64_t i) {
        tile_rows<decltype(rows)::value>(p, weights.get(), steps, block, n0, step0 * kTileK, i, step0 > 0);
      });
  }
}

}  // namespace

void int4_weight_gemm_avx512(const uint16_t* x, int64_t m, const Int4Weights& w, FloatOutput& out) {
  TORCH_CHECK(w.k % kTileK == 0 && w.n % kInt4BlockN == 0, "int4_weight_gemm_avx512: K = ", w.k,
              " must be a multiple of ", kTileK, " and N = ", w.n, " of ", kInt4BlockN);
  const Gemm p{x, out.values(), w, m};
  const int64_t unit = channels_per_task(w.n, kInt4BlockN, kMaxUnitN);
  out.parallel_columns((w.n + unit - 1) / unit, unit, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedBuffer<uint16_t> weights;
    for (int64_t u = begin; u < end; ++u) run_unit(p, u * unit, std::min(unit, w.n - u * unit), weights);
    weights.shrink_to(kKeptBytes);
  });
}
#else
void int4_weight_gemm_avx512(const uint16_t*, int64_t, const Int4Weights&, FloatOutput&) {
  TORCH_CHECK(false, "int4_weight_gemm_avx512: AVX-512 kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
