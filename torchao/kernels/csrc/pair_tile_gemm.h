// The many-row AVX-512 BF16 GEMM of the weight-only ops on CPUs without AMX (weight_gemm_avx512.h): bfloat16
// activations times a weight that a source dequantizes to bfloat16 once per call.
//
//   x (M, K) bfloat16 bits, K a multiple of 32; W (N, K) as the source makes it; s (N,) float32 or none (1)
//   out[m, n] = s[n] * sum_k x[m, k] W[n, k]   (products exact, float32 sums)
//
// The source fills, for output channels [n0, n0 + channels) (a multiple of 16) and k-steps [step0, step0 + steps)
// of 32, bfloat16 pair tiles: tile (16-channel block c, step s) at out + (c * steps + s) * 512, pair row p,
// lane j = (W[n0 + 16 c + j, k], W[n0 + 16 c + j, k + 1]) for k = 32 (step0 + s) + 2p. It runs a chunk of
// kGemmChunkSteps steps (2048 k; 256 KB for 64 channels, in L2) at a time; tiles of 6 rows x 64 channels
// (24 float32 accumulators) then run vdpbf16ps over the chunk, the weights loaded from L2 and the activations
// broadcast from memory. The float32 output holds the sums between chunks; the last chunk applies s. Tasks of
// at most 64 channels (2 cores of an AMD EPYC, Zen 4: chunks of 256 k with 256 channels a task measured
// 0.90-0.94x bf16 F.linear at M = 128 for int4 weights, these 1.0x).
#pragma once

#include "amx.h"
#include "host_helpers.h"
#include "tiles.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace pair_tile_gemm {

constexpr int kTileRows = 6;
constexpr int64_t kMaxUnitN = 64;  // output channels per task, at most
constexpr int64_t kGemmChunkSteps = 64;

struct Gemm {
  const uint16_t* x;  // (M, K) bfloat16 bits
  const float* s;     // (N,) or null
  float* out;         // (M, N)
  int64_t m, k, n;
};

// out rows [i, i + R), channels [first, first + 16 C) (+)= the products over the chunk's k = t0 .. of x and the
// pair tiles at ``tiles`` (C 16-channel blocks of ``steps`` steps); times s on the last chunk
template <int R, int C>
TORCHAO_AVX512 void tile_rows(const Gemm& p, const uint16_t* tiles, int64_t steps, int64_t first, int64_t t0,
                              int64_t i, bool accumulate, bool last) {
  const int64_t n = p.n, k = p.k;
  float* out = p.out + i * n + first;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = accumulate ? _mm512_loadu_ps(out + r * n + 16 * c) : _mm512_setzero_ps();
  const uint16_t* x = p.x + i * k + t0;
  for (int64_t pair = 0; pair < steps * 16; ++pair) {
    __m512bh w[C];
    for (int c = 0; c < C; ++c) w[c] = (__m512bh)_mm512_load_si512(tiles + c * steps * 512 + pair * 32);
    for (int r = 0; r < R; ++r) {
      int32_t two;
      std::memcpy(&two, x + r * k + 2 * pair, sizeof(two));
      const __m512bh x2 = (__m512bh)_mm512_set1_epi32(two);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], w[c], x2);
    }
  }
  if (last && p.s != nullptr)
    for (int c = 0; c < C; ++c) {
      const __m512 scale = _mm512_loadu_ps(p.s + first + 16 * c);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_mul_ps(acc[r][c], scale);
    }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + r * n + 16 * c, acc[r][c]);
}

// every row x output channels [n0, n0 + channels), channels a multiple of 16
template <typename Source>
TORCHAO_AVX512 void run_unit(const Gemm& p, const Source& source, int64_t n0, int64_t channels,
                             AlignedBuffer<uint16_t>& tiles) {
  const int64_t k_steps = p.k / kTileK;
  tiles.reserve(channels / 16 * kGemmChunkSteps * 512);
  for (int64_t step0 = 0; step0 < k_steps; step0 += kGemmChunkSteps) {
    const int64_t steps = std::min(kGemmChunkSteps, k_steps - step0);
    source(n0, channels, step0, steps, tiles.get());
    const bool last = step0 + steps == k_steps;
    // up to 4 16-channel blocks (64 channels) at a time, for all rows
    for_each_tile<4>(channels / 16, [&](auto blocks, int64_t block0) {
      for_each_tile<kTileRows>(p.m, [&](auto rows, int64_t i) {
        tile_rows<decltype(rows)::value, decltype(blocks)::value>(p, tiles.get() + block0 * steps * 512, steps,
                                                                  n0 + 16 * block0, step0 * kTileK, i, step0 > 0,
                                                                  last);
      });
    });
  }
}

}  // namespace pair_tile_gemm

// out columns [0, n) (n a multiple of ``multiple``, itself one of 16) of every row as above, in parallel tasks of
// whole multiples, finished (FloatOutput::finish) there; ``out`` may be wider (out.values() rows ``width`` apart). The source is called as
// source(n0, channels, step0, steps, uint16_t* tiles) from the tasks' threads.
template <typename Source>
void pair_tile_gemm_avx512(const uint16_t* x, int64_t m, int64_t k, int64_t n, int64_t multiple, int64_t width,
                           const float* s, const Source& source, FloatOutput& out) {
  TORCH_CHECK(k % kTileK == 0 && n % multiple == 0 && multiple % 16 == 0, "pair_tile_gemm_avx512: K = ", k,
              " must be a multiple of ", kTileK, " and N = ", n, " of ", multiple);
  const pair_tile_gemm::Gemm p{x, s, out.values(), m, k, width};
  const int64_t unit = channels_per_task(n, multiple, std::max(multiple, pair_tile_gemm::kMaxUnitN));
  // each unit's columns are rounded as soon as they are done, while they are in L2 (M = 512: 128 KB)
  at::parallel_for(0, (n + unit - 1) / unit, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedBuffer<uint16_t> tiles;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t channels = std::min(unit, n - u * unit);
      pair_tile_gemm::run_unit(p, source, u * unit, channels, tiles);
      out.finish(u * unit, u * unit + channels);
    }
    tiles.shrink_to(kKeptBytes);
  });
}
#endif

}  // namespace torchao_cpp
