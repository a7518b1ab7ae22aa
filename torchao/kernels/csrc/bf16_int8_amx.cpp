// bfloat16 activations x int8 weights on AMX (weight-only int8 from kAmxMinRowsInt8 rows: prefill, batched decode).
//
//   x (M, K) bfloat16, w (N, K) int8 row-major, s (N,) float32
//   out[m, n] = s[n] * sum_k x[m, k] w[n, k]   (products exact: every int8 is a bfloat16; sums float32)
//
// The weights are the A operand: each task converts the int8 rows of up to 256 output channels, one chunk of K
// at a time, to bfloat16 in a buffer that stays in L2 (one widening per weight per call, whatever M is), and the
// tiles multiply it with the activations, packed once per call in AMX's pair order (x transposed: B[p][m] =
// x[m, 2p], x[m, 2p + 1]). The float32 results (channels x rows) are transposed, scaled and written by 16 x 16
// blocks. 4096 x 4096, 2 cores of a Xeon with AMX: 1.13-1.3x bf16 F.linear (oneDNN's AMX GEMM) at M = 8..512.

#include "amx.h"
#include "amx_weight_gemm.h"
#include "host_helpers.h"
#include "prefetch.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace {

constexpr int64_t kMaxUnitN = 256;  // output channels per task, at most
// Up to 16 rows (one row block: batched decode) the weights, read once, are the cost: tasks of at most 64
// channels widen up to 64 k-steps (2 KB of each weight row in one sequential run, 256 KB of bf16 in L2) at a time.
// 2048 x 2048 .. 5632 x 2048 at M = 8 from DRAM: 8.4-9.1 GB/s with 256 channels x 8 steps (256-byte runs),
// 10.1-10.7 GB/s with this.
constexpr int64_t kFewRowsMaxUnitN = 64;
constexpr int64_t kFewRowsChunkSteps = 64;

// The activations in AMX's pair order (OperandTiles of x transposed): tile (b, step) row p, lane r = (x[16 b + r, 2p],
// x[16 b + r, 2p + 1]) for the step's pairs p, zero past M and K.
TORCHAO_AVX512 void pair_block(const uint16_t* x, int64_t m, int64_t k, int64_t block, const OperandTiles& packed) {
  for (int64_t step = 0; step < packed.steps; ++step) {
    const int64_t t = step * kTileK;
    __m512i rows[16];
    for (int r = 0; r < 16; ++r) {
      const int64_t row = block * 16 + r;
      rows[r] = row < m ? _mm512_maskz_loadu_epi16(first32(k - t), x + row * k + t) : _mm512_setzero_si512();
    }
    transpose_16x16(rows);
    uint32_t* out = reinterpret_cast<uint32_t*>(packed.tile(block, step));
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(out + p * 16, rows[p]);
  }
}

void pair_rows(const uint16_t* x, int64_t m, int64_t k, const OperandTiles& packed) {
  at::parallel_for(0, packed.blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) pair_block(x, m, k, b, packed);
  });
}

// int8 rows [0, rows) of w (rows k apart), k-steps [step0, step0 + steps), as bfloat16 A tiles, row-major:
// out[r * stride + j] = w[r, 32 step0 + j] for j < 32 steps (zero past K and for rows >= rows)
TORCHAO_AVX512 void widen_weights(const int8_t* w, int64_t k, int64_t rows, int64_t padded_rows, int64_t step0,
                                  int64_t steps, int64_t stride, uint16_t* out) {
  const int64_t t0 = step0 * kTileK;
  for (int64_t r = 0; r < padded_rows; ++r) {
    uint16_t* dst = out + r * stride;
    if (r >= rows) {
      for (int64_t s = 0; s < steps; ++s) _mm512_storeu_si512(dst + s * kTileK, _mm512_setzero_si512());
      continue;
    }
    const int8_t* row = w + r * k + t0;
    if (r + 4 < rows)
      for (int64_t b = 0; b < steps * kTileK; b += 64)
        prefetch_to_l2(row + 4 * k + b);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t left = k - t0 - s * kTileK;
      _mm512_storeu_si512(dst + s * kTileK, (__m512i)widen_int8_bf16(row + s * kTileK, left));
    }
  }
}

// out[m, n0 + c] = s[n0 + c] * C[c][m] for channels c < rows and m < M, from the float32 tiles of acc
// (tile (channel block cb, row block mb) at acc + (cb * m_blocks + mb) * 256: rows = channels, columns = m).
// Per block of 16 rows, the tiles are transposed into ``rows_buffer`` (16 x padded rows float32, in L1), then
// each output row segment is written whole (whole cache lines: no read-for-ownership of half-written lines).
template <typename T>
TORCHAO_AVX512 void write_scaled_transposed(const float* acc, int64_t m_blocks, int64_t rows, const float* s, T* out,
                                            int64_t m, int64_t n, int64_t n0, float* rows_buffer) {
  const int64_t width = round_up(rows, 16);
  for (int64_t mb = 0; mb < m_blocks; ++mb) {
    for (int64_t cb = 0; cb * 16 < rows; ++cb) {
      const float* tile = acc + (cb * m_blocks + mb) * 256;
      __m512i block[16];
      for (int c = 0; c < 16; ++c) block[c] = _mm512_loadu_si512(tile + c * 16);
      transpose_16x16(block);
      const __m512 scale = _mm512_maskz_loadu_ps(first16(rows - cb * 16), s + n0 + cb * 16);
      for (int i = 0; i < 16; ++i)
        _mm512_storeu_ps(rows_buffer + i * width + cb * 16, _mm512_mul_ps(scale, _mm512_castsi512_ps(block[i])));
    }
    for (int64_t i = 0; i < std::min<int64_t>(16, m - mb * 16); ++i)
      for (int64_t c = 0; c < rows; c += 16)
        store16(out + (mb * 16 + i) * n + n0 + c, first16(rows - c), _mm512_loadu_ps(rows_buffer + i * width + c));
  }
}

template <typename T>
struct Problem {
  OperandTiles x;
  const int8_t* w;
  const float* s;
  T* out;
  int64_t m, k, n;
  int64_t unit;         // output channels per task, a multiple of 32
  int64_t chunk_steps;  // k-steps widened at a time
};

// output channels [n0, n0 + rows) for all rows
template <typename T>
TORCHAO_AMX void run_unit(const Problem<T>& p, int64_t n0, AlignedBuffer<uint16_t>& weights,
                          AlignedBuffer<float>& acc) {
  const int64_t rows = std::min(p.unit, p.n - n0), padded_rows = round_up(rows, 2 * kTileRows);
  const int64_t padded_m = round_up(p.m, kTileRows), m_blocks = padded_m / kTileRows;
  const int64_t k_steps = round_up(p.k, kTileK) / kTileK;
  const int64_t stride = p.chunk_steps * kTileK + 32;  // a row of the chunk and 64 bytes (rows 4 KB apart alias in L1)
  weights.reserve(padded_rows * stride);
  acc.reserve(padded_rows * padded_m + 16 * padded_rows);  // the tiles, then write_scaled_transposed's rows
  for (int64_t step0 = 0; step0 < k_steps; step0 += p.chunk_steps) {
    const int64_t steps = std::min(p.chunk_steps, k_steps - step0);
    widen_weights(p.w + n0 * p.k, p.k, rows, padded_rows, step0, steps, stride, weights.get());
    // each row block's B tiles (16 KB) serve all channel blocks from L1; the A tiles come from L2
    for (int64_t mb = 0; mb < m_blocks; mb += 2)
      for (int64_t cb = 0; cb < padded_rows / kTileRows; cb += 2) {
        const char* a[2] = {reinterpret_cast<const char*>(weights.get() + cb * kTileRows * stride),
                            reinterpret_cast<const char*>(weights.get() + (cb + 1) * kTileRows * stride)};
        float* c0 = acc.get() + (cb * m_blocks + mb) * 256;
        float* c1 = c0 + m_blocks * 256;
        if (mb + 1 < m_blocks) {
          const char* b[2] = {p.x.tile(mb, step0), p.x.tile(mb + 1, step0)};
          float* const c[2][2] = {{c0, c0 + 256}, {c1, c1 + 256}};
          tile_dots_2x2(a, stride * 2, 64, b, 64, 1024, steps, c, 64, step0 > 0);
        } else {
          const char* b[1] = {p.x.tile(mb, step0)};
          float* const c[2][1] = {{c0}, {c1}};
          tile_dots_2x1(a, stride * 2, 64, b, 64, 1024, steps, c, 64, step0 > 0);
        }
      }
  }
  write_scaled_transposed(acc.get(), m_blocks, rows, p.s, p.out, p.m, p.n, n0, acc.get() + padded_rows * padded_m);
}

}  // namespace

void int8_weight_gemm_amx(const uint16_t* x, const int8_t* w, const float* s, at::Tensor& out, int64_t m, int64_t k,
                          int64_t n) {
  thread_local AlignedBuffer<uint32_t> paired;
  const OperandTiles x_tiles(paired, m, k);
  pair_rows(x, m, k, x_tiles);
  const bool few_rows = m <= kTileRows;
  const int64_t unit = channels_per_task(n, 2 * kTileRows, few_rows ? kFewRowsMaxUnitN : kMaxUnitN);
  const int64_t chunk_steps = few_rows ? kFewRowsChunkSteps : kChunkSteps;
  with_output(out, "int8_weight_gemm_amx", [&](auto* typed) {
    const Problem<std::remove_pointer_t<decltype(typed)>> p{x_tiles, w, s, typed, m, k, n, unit, chunk_steps};
    for_each_unit(n, unit, [&](int64_t n0, AlignedBuffer<uint16_t>& weights, AlignedBuffer<float>& acc) {
      run_unit(p, n0, weights, acc);
    });
  });
  paired.shrink_to(kKeptBytes);
}
#else
void int8_weight_gemm_amx(const uint16_t*, const int8_t*, const float*, at::Tensor&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "int8_weight_gemm_amx: AMX kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
