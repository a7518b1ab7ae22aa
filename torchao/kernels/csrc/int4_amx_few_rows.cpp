// Activations x int4 weights on AMX for few rows (up to kAmxFewRows: batched decode), for aten's AVX-512 int4
// packing, with the weight's integers exact (the dequantizing kernel of bf16_int4_amx.cpp spends most of its time
// unpacking at these sizes).
//
//   x     (M, K): float32 / bfloat16 rounded to bfloat16, or int8 xq - zx (exact in bfloat16), scale a per row
//   out[m, n] = a[m] * sum_g [ s C + (z - 136 s) X ],  over the group's k: C = sum x (128 + q), X = sum x
// B tiles hold the bfloat16 number 128 + q (nibbles_as_bf16, as in bf16_int4_gemv.cpp); each group's tile sums C
// are scaled in float32. For int8 activations C and X are exact integers (|xq - zx| <= 255, 128 + q <= 143,
// G <= 256: below 2^24), so the result is the exact integer dot product up to the float32 epilogue, as in the VNNI
// kernel.
// A and C tiles are M rows (one tile of rows), B tiles the 16 pair rows of one 32-k step; per 64-channel block
// of the packing, 16 bytes per k serve two 16-channel blocks (low and high nibbles), multiplied together.

#include "amx.h"
#include "amx_weight_gemm.h"
#include "int4_cpu_packing.h"
#include "prefetch.h"

#include <algorithm>
#include <cstdint>

namespace torchao_cpp {

#ifdef TORCHAO_X86
namespace {

struct Problem {
  const uint16_t* x;     // the rows' A tiles: step t at x + t * m * 32 (bfloat16 bits)
  const float* xsum;     // (M, K / G): X per row and group
  const uint8_t* packed;
  const uint16_t* sz;    // bfloat16 bits, (K / G, N, sz_width)
  const float* row_scale;
  int64_t m, k, n, group, sz_width;
};

// x as M-row A tiles (step-major) and its group sums X, float32 over the bfloat16 values
TORCHAO_AVX512 void prepare_rows(const Int4AmxActivations& x, int64_t group, uint16_t* tiles, float* xsum) {
  const int64_t groups = x.k / group;
  for (int64_t r = 0; r < x.m; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      __m512 sum = _mm512_setzero_ps();
      for (int64_t t = g * group / kTileK; t < (g + 1) * group / kTileK; ++t) {
        const __m512i values = bf16_row(x, r, t * kTileK);
        _mm512_storeu_si512(tiles + (t * x.m + r) * kTileK, values);
        sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(values, 16)));        // even k
        sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_and_si512(values, _mm512_set1_epi32(
                                                         static_cast<int>(0xFFFF0000u)))));  // odd k
      }
      xsum[r * groups + g] = _mm512_reduce_add_ps(sum);
    }
}

// The B tiles of the 32-k step from k = k0 for the two 16-channel blocks of half h of a 64-channel block: low
// nibbles (channels 16 h ..) into lo, high nibbles (channels 32 + 16 h ..) into hi
TORCHAO_AVX512 void unpack_step(const uint8_t* block_data, int64_t half, int64_t k0, uint16_t* lo, uint16_t* hi) {
  for (int64_t p = 0; p < 16; ++p) {
    const int64_t t = k0 + 2 * p;
    if (half == 0) prefetch_stream(block_data + t * 32);  // the second half reads the block again, from L2
    const __m128i even = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_data + t * 32 + 16 * half));
    const __m128i odd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_data + (t + 1) * 32 + 16 * half));
    // 16-bit lane 2j = channel j's byte at k, lane 2j + 1 at k + 1
    const __m256i interleaved = _mm256_set_m128i(_mm_unpackhi_epi8(even, odd), _mm_unpacklo_epi8(even, odd));
    const __m512i bytes = _mm512_cvtepu8_epi16(interleaved);
    _mm512_storeu_si512(lo + p * 32, nibbles_as_bf16(bytes, false));
    _mm512_storeu_si512(hi + p * 32, nibbles_as_bf16(bytes, true));
  }
}

// One group's epilogue for R rows: totals += s C + (z - 136 s) X, with C the group's two stored tile sums (lo at
// c, hi at c + 256)
template <int R>
TORCHAO_AVX512 inline void add_group(const Problem& p, int64_t g, int64_t n_lo, int64_t n_hi, const float* c,
                                     __m512 total_lo[R], __m512 total_hi[R]) {
  const int64_t groups = p.k / p.group;
  const __m512 offset = _mm512_set1_ps(-136.f);
  __m512 s_lo, z_lo, s_hi, z_hi;
  load_group_scales(p.sz, p.sz_width, p.n, g, n_lo, s_lo, z_lo);
  load_group_scales(p.sz, p.sz_width, p.n, g, n_hi, s_hi, z_hi);
  z_lo = _mm512_fmadd_ps(offset, s_lo, z_lo);  // z - 136 s
  z_hi = _mm512_fmadd_ps(offset, s_hi, z_hi);
  for (int r = 0; r < R; ++r) {
    const __m512 x = _mm512_set1_ps(p.xsum[r * groups + g]);
    const __m512 c_lo = _mm512_loadu_ps(c + r * 16), c_hi = _mm512_loadu_ps(c + 256 + r * 16);
    total_lo[r] = _mm512_fmadd_ps(s_lo, c_lo, _mm512_fmadd_ps(z_lo, x, total_lo[r]));
    total_hi[r] = _mm512_fmadd_ps(s_hi, c_hi, _mm512_fmadd_ps(z_hi, x, total_hi[r]));
  }
}

// Software-pipelined over the 32-k steps: while step t's tile dot products run, the vector units unpack step
// t + 1's B tiles (into the other of two buffers: b_tiles holds 2 x 2 tiles, so any group size stays in L1), and
// at a group's last step they add the previous group's stored sums (from the other of two C buffers, c_tiles
// 2 x 512 floats)
template <typename T, int R>
TORCHAO_AMX void half_block(const Problem& p, int64_t block, int64_t half, uint16_t* b_tiles, float* c_tiles,
                            T* out) {
  const uint8_t* data = p.packed + block * kInt4BlockN * (p.k / 2);
  const int64_t steps = p.group / kTileK, total_steps = p.k / kTileK, groups = p.k / p.group;
  const int64_t n_lo = block * kInt4BlockN + 16 * half, n_hi = n_lo + 32;
  const auto lo = [&](int64_t t) { return b_tiles + (t & 1) * 2 * 512; };
  const auto hi = [&](int64_t t) { return lo(t) + 512; };
  const auto sums = [&](int64_t g) { return c_tiles + (g & 1) * 512; };
  __m512 total_lo[R], total_hi[R];
  for (int r = 0; r < R; ++r) total_lo[r] = total_hi[r] = _mm512_setzero_ps();
  unpack_step(data, half, 0, lo(0), hi(0));
  for (int64_t t = 0; t < total_steps; ++t) {
    const int64_t g = t / steps, s = t % steps;
    if (s == 0) {
      _tile_zero(0);
      _tile_zero(1);
    }
    _tile_loadd(2, p.x + t * R * kTileK, 64);
    _tile_loadd(3, lo(t), 64);
    _tile_dpbf16ps(0, 2, 3);
    _tile_loadd(4, hi(t), 64);
    _tile_dpbf16ps(1, 2, 4);
    if (t + 1 < total_steps) unpack_step(data, half, (t + 1) * kTileK, lo(t + 1), hi(t + 1));
    if (s == steps - 1) {
      if (g > 0) add_group<R>(p, g - 1, n_lo, n_hi, sums(g - 1), total_lo, total_hi);
      _tile_stored(0, sums(g), 64);
      _tile_stored(1, sums(g) + 256, 64);
    }
  }
  add_group<R>(p, groups - 1, n_lo, n_hi, sums(groups - 1), total_lo, total_hi);
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_set1_ps(p.row_scale != nullptr ? p.row_scale[r] : 1.f);
    store16(out + r * p.n + n_lo, 0xFFFF, _mm512_mul_ps(a, total_lo[r]));
    store16(out + r * p.n + n_hi, 0xFFFF, _mm512_mul_ps(a, total_hi[r]));
  }
}

template <typename T, int R>
void run(const Problem& p, T* out) {
  at::parallel_for(0, p.n / kInt4BlockN, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedBuffer<uint16_t> b_tiles;
    thread_local AlignedBuffer<float> c_tiles;
    b_tiles.reserve(4 * 512);
    c_tiles.reserve(2 * 512);
    configure_tiles(R);
    for (int64_t block = begin; block < end; ++block)
      for (int64_t half = 0; half < 2; ++half) half_block<T, R>(p, block, half, b_tiles.get(), c_tiles.get(), out);
    release_tiles();
  });
}

template <typename T, int R = kAmxFewRows>
void run_rows(const Problem& p, T* out) {
  if constexpr (R > 1) {
    if (p.m < R) return run_rows<T, R - 1>(p, out);
  }
  run<T, R>(p, out);
}

}  // namespace

void int4_few_rows_amx(const Int4AmxActivations& x, const uint8_t* packed, const uint16_t* sz, int64_t group,
                       int64_t sz_width, at::Tensor& out) {
  TORCH_CHECK(x.m >= 1 && x.m <= kAmxFewRows && group % kTileK == 0 && x.k % group == 0,
              "int4_few_rows_amx: 1 to ", kAmxFewRows,
              " rows and a group of a multiple of 32 dividing K expected, got ",
              x.m, " rows, group ", group, ", K = ", x.k);
  thread_local AlignedBuffer<uint16_t> tiles;
  thread_local AlignedBuffer<float> xsum;
  prepare_rows(x, group, tiles.reserve(x.m * x.k), xsum.reserve(x.m * (x.k / group)));
  const Problem p{tiles.get(), xsum.get(), packed, sz, x.row_scale, x.m, x.k, out.size(1), group, sz_width};
  with_output(out, "int4_few_rows_amx", [&](auto* typed) { run_rows(p, typed); });
  tiles.shrink_to(kKeptBytes);
  xsum.shrink_to(kKeptBytes);
}
#else
void int4_few_rows_amx(const Int4AmxActivations&, const uint8_t*, const uint16_t*, int64_t, int64_t, at::Tensor&) {
  TORCH_CHECK(false, "int4_few_rows_amx: AMX kernels are x86-64 only");
}
#endif

}  // namespace torchao_cpp
