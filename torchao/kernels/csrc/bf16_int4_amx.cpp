// bfloat16 activations x int4 weights on AMX (weight-only int4 from kAmxMinRowsInt4 rows: prefill, batched decode),
// reading aten's AVX-512 int4 packing (int4_cpu_packing.h).
//
//   x (M, K) float32 / bfloat16, rounded to bfloat16, or int8 xq with zero points zx and scales a per row (8da4w:
//   x = a (xq - zx)); w[n, k] = (q[n, k] - 8) * s + z per group of K
//   out[m, n] = sum_k x[m, k] bf16(w[n, k]), or a[m] sum_k (xq[m, k] - zx[m]) bf16(w[n, k])   (float32 sums)
//
// The weights are dequantized to bfloat16 (rounded once, as int4_cpu_dequantize and F.linear on the dequantized
// weight do) into AMX's pair order, the B operand, one chunk of K at a time for up to 256 output channels per
// task (one unpacking per weight per call, whatever M is); the activations are the A operand, copied once per
// call into tiles. The float32 tiles hold rows x channels, written out row by row.

#include "amx.h"
#include "amx_weight_gemm.h"
#include "int4_bf16_weights.h"

#include <algorithm>
#include <cstdint>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace {

constexpr int64_t kMaxUnitN = 256;  // output channels per task, at most

// x rows as A tiles (OperandTiles of x): tile (b, step) row r = x[16 b + r, 32 step .. + 32) in bfloat16, zero
// past M
TORCHAO_AVX512 void copy_block(const Int4AmxActivations& x, int64_t block, const OperandTiles& tiles) {
  for (int64_t step = 0; step < tiles.steps; ++step) {
    char* tile = tiles.tile(block, step);
    for (int r = 0; r < 16; ++r) {
      const int64_t row = block * 16 + r;
      _mm512_storeu_si512(tile + r * 64, row < x.m ? bf16_row(x, row, step * kTileK) : _mm512_setzero_si512());
    }
  }
}

void copy_rows(const Int4AmxActivations& x, const OperandTiles& tiles) {
  at::parallel_for(0, tiles.blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) copy_block(x, b, tiles);
  });
}

template <typename T>
struct Problem {
  OperandTiles x;
  Int4Weights w;
  const float* row_scale;  // (M,) or null
  T* out;
  int64_t m, unit;  // unit: output channels per task, a multiple of 64
};

// out[m, n0 + c] = a[m] C[m][c] (a = row_scale, or 1) from the float32 tiles of acc (tile (row block mb, channel
// block cb) at acc + (mb * c_blocks + cb) * 256), row by row
template <typename T>
TORCHAO_AVX512 void write_rows(const Problem<T>& p, const float* acc, int64_t c_blocks, int64_t n0) {
  for (int64_t i = 0; i < p.m; ++i) {
    const float* row = acc + ((i / 16) * c_blocks * 16 + i % 16) * 16;
    const __m512 a = _mm512_set1_ps(p.row_scale != nullptr ? p.row_scale[i] : 1.f);
    for (int64_t cb = 0; cb < c_blocks; ++cb)
      store16(p.out + i * p.w.n + n0 + cb * 16, 0xFFFF, _mm512_mul_ps(a, _mm512_loadu_ps(row + cb * 256)));
  }
}

// output channels [n0, n0 + unit) for all rows
template <typename T>
TORCHAO_AMX void run_unit(const Problem<T>& p, int64_t n0, AlignedBuffer<uint16_t>& weights,
                          AlignedBuffer<float>& acc) {
  const int64_t rows = std::min(p.unit, p.w.n - n0), c_blocks = rows / kTileRows;
  const int64_t m_blocks = p.x.blocks, k_steps = p.x.steps;
  weights.reserve(c_blocks * kChunkSteps * 512);
  acc.reserve(m_blocks * c_blocks * 256);
  for (int64_t step0 = 0; step0 < k_steps; step0 += kChunkSteps) {
    const int64_t steps = std::min(kChunkSteps, k_steps - step0);
    dequantize_weights(p.w, n0, rows, step0, steps, weights.get());
    // each row block's A tiles (16 KB) serve all channel blocks from L1; the B tiles come from L2
    for (int64_t mb = 0; mb < m_blocks; mb += 2)
      for (int64_t cb = 0; cb < c_blocks; cb += 2) {
        const char* b[2] = {reinterpret_cast<const char*>(weights.get() + cb * steps * 512),
                            reinterpret_cast<const char*>(weights.get() + (cb + 1) * steps * 512)};
        float* c0 = acc.get() + (mb * c_blocks + cb) * 256;
        if (mb + 1 < m_blocks) {
          const char* a[2] = {p.x.tile(mb, step0), p.x.tile(mb + 1, step0)};
          float* const c[2][2] = {{c0, c0 + 256}, {c0 + c_blocks * 256, c0 + c_blocks * 256 + 256}};
          tile_dots_2x2(a, 64, 1024, b, 64, 1024, steps, c, 64, step0 > 0);
        } else {
          const char* a[1] = {p.x.tile(mb, step0)};
          float* const c[1][2] = {{c0, c0 + 256}};
          tile_dots_1x2(a, 64, 1024, b, 64, 1024, steps, c, 64, step0 > 0);
        }
      }
  }
  write_rows(p, acc.get(), c_blocks, n0);
}

}  // namespace

void int4_weight_gemm_amx(const Int4AmxActivations& x, const uint8_t* packed, const uint16_t* sz, int64_t group,
                          int64_t sz_width, at::Tensor& out) {
  const int64_t n = out.size(1);
  thread_local AlignedBuffer<uint32_t> x_buffer;
  const OperandTiles x_tiles(x_buffer, x.m, x.k);
  copy_rows(x, x_tiles);
  const int64_t unit = channels_per_task(n, kInt4BlockN, kMaxUnitN);
  with_output(out, "int4_weight_gemm_amx", [&](auto* typed) {
    const Problem<std::remove_pointer_t<decltype(typed)>> p{
        x_tiles, {packed, sz, x.k, n, group, sz_width}, x.row_scale, typed, x.m, unit};
    for_each_unit(n, unit, [&](int64_t n0, AlignedBuffer<uint16_t>& weights, AlignedBuffer<float>& acc) {
      run_unit(p, n0, weights, acc);
    });
  });
  x_buffer.shrink_to(kKeptBytes);
}
#else
void int4_weight_gemm_amx(const Int4AmxActivations&, const uint8_t*, const uint16_t*, int64_t, int64_t, at::Tensor&) {
  TORCH_CHECK(false, "int4_weight_gemm_amx: AMX kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
