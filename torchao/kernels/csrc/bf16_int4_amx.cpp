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
#include "int4_cpu_packing.h"

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

struct Weights {
  const uint8_t* packed;
  const uint16_t* sz;  // bfloat16 bits, (K / G, N, width)
  int64_t k, n, group, sz_width;
};

// Output channels [n0, n0 + rows) (whole 64-channel blocks of the packing), k-steps [step0, step0 + steps), as
// bfloat16 B tiles: tile (16-channel block c, step s) at out + (c * steps + s) * 512, pair row p, lane j =
// (w[n0 + 16 c + j, k], w[n0 + 16 c + j, k + 1]) for k = 32 (step0 + s) + 2p.
// Per 64-channel block and k the packing holds 32 bytes, byte j = channel j (low nibble) | channel j + 32 (high):
// 16 bytes widened to 32-bit lanes serve two 16-channel blocks; vpermps looks the nibble (the lane's low 4 bits)
// up in the table q - 8, one fma applies the group's scale and zero, and the k and k + 1 values are rounded to
// bfloat16 and interleaved into pairs.
TORCHAO_AVX512 void dequantize_weights(const Weights& w, int64_t n0, int64_t rows, int64_t step0, int64_t steps,
                                       uint16_t* out) {
  const __m512 minus8 = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  // 16-bit lane 2i <- lane i (the value at k), 2i + 1 <- lane 16 + i (at k + 1)
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t block = 0; block < rows / kInt4BlockN; ++block) {
    const int64_t first = n0 + block * kInt4BlockN;
    const uint8_t* data = w.packed + first * (w.k / 2);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t t0 = (step0 + s) * kTileK;
      __m512 scale[4], zero[4];
      int64_t group = -1;
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t t = t0 + 2 * p;
        if (t / w.group != group) {
          group = t / w.group;
          for (int c = 0; c < 4; ++c)
            load_group_scales(w.sz, w.sz_width, w.n, group, first + 16 * c, scale[c], zero[c]);
        }
        for (int half = 0; half < 2; ++half) {  // bytes 0-15: channels 0-15 and 32-47; bytes 16-31: 16-31, 48-63
          const auto bytes16 = [&](int64_t row) {
            return _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + row * 32 + 16 * half));
          };
          const __m512i even = _mm512_cvtepu8_epi32(bytes16(t));
          const __m512i odd = _mm512_cvtepu8_epi32(bytes16(t + 1));
          for (int nibble = 0; nibble < 2; ++nibble) {
            const int c = half + 2 * nibble;  // 16-channel block within the 64
            const __m512i e = nibble ? _mm512_srli_epi32(even, 4) : even, o = nibble ? _mm512_srli_epi32(odd, 4) : odd;
            const __m512 ve = _mm512_fmadd_ps(_mm512_permutexvar_ps(e, minus8), scale[c], zero[c]);
            const __m512 vo = _mm512_fmadd_ps(_mm512_permutexvar_ps(o, minus8), scale[c], zero[c]);
            const __m512i pairs = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(vo, ve));
            _mm512_storeu_si512(out + ((block * 4 + c) * steps + s) * 512 + p * 32, pairs);
          }
        }
      }
    }
  }
}

template <typename T>
struct Problem {
  OperandTiles x;
  Weights w;
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
