// What the AMX kernels share: whether this process may use AMX-BF16, the tile configuration, the layout of an
// operand's tiles, the bfloat16 tile dot products over a run of k-steps, the parallel loop over tasks of output
// channels, 16-lane output stores and a 16 x 16 transpose of 32-bit lanes.
//
// AMX (Intel Sapphire Rapids and later) multiplies 16 x 32 bfloat16 tiles into 16 x 16 float32 tiles:
// C[i][j] += sum_p A[i][2p] B[p][2j] + A[i][2p + 1] B[p][2j + 1], with A row-major (16 rows of 64 bytes) and B in
// pairs ("VNNI" order: row p holds, for each of 16 columns j, the two bfloat16 of k = 2p and 2p + 1). One
// instruction is 8192 multiply-adds; the products of bfloat16 values are exact and the sums float32.
// Every kernel here uses all 8 tiles as 16 rows x 64 bytes (the configuration is per thread: each task loads it
// and releases the tiles when done).
#pragma once

#include "cpu_features.h"
#include "host_helpers.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#ifdef TORCHAO_X86
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace torchao_cpp {

// bfloat16 values per tile row, and rows per tile
constexpr int64_t kTileK = 32;
constexpr int64_t kTileRows = 16;
// k-steps (of kTileK) per chunk of K: two operand tiles x 8 steps = 16 KB, so a row block's tiles for one chunk
// stay in L1 while it meets every channel block (measured: 8 steps 2.5 TFLOP/s a core, 16 steps 2.0)
constexpr int64_t kChunkSteps = 8;
// scratch buffers up to this size are kept per thread between calls (new memory costs a page fault per 4 KB)
constexpr int64_t kKeptBytes = 16 << 20;

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// output channels per task: N split evenly over the threads, in multiples of ``multiple``, at most ``most``
inline int64_t channels_per_task(int64_t n, int64_t multiple, int64_t most) {
  const int64_t threads = at::get_num_threads();
  return std::clamp<int64_t>(round_up((n + threads - 1) / threads, multiple), multiple, most);
}

// Tiles of a (rows x K) operand by chunks of kChunkSteps k-steps: within a chunk, for each block of 16 rows its
// k-steps' tiles one after the other (1 KB each), so that one chunk of all rows is contiguous (it stays in L2
// while a task's channels use it) and a tile is 16 rows of 64 bytes, 64 bytes apart.
struct OperandTiles {
  AlignedBuffer<uint32_t>& data;
  int64_t blocks, steps;

  OperandTiles(AlignedBuffer<uint32_t>& buffer, int64_t rows, int64_t k)
      : data(buffer), blocks(round_up(rows, kTileRows) / kTileRows), steps(round_up(k, kTileK) / kTileK) {
    data.reserve(blocks * steps * 256);
  }

  char* tile(int64_t block, int64_t step) const {
    const int64_t chunk = step / kChunkSteps, in_chunk = std::min(kChunkSteps, steps - chunk * kChunkSteps);
    const int64_t index = chunk * kChunkSteps * blocks + block * in_chunk + step % kChunkSteps;
    return reinterpret_cast<char*>(data.get() + index * 256);
  }
};

// use_avx512_bf16() and AMX-BF16 that the kernel lets this process use (asked once: Linux keeps the tile data
// state off until a process requests it)
inline bool use_amx_bf16() {
#ifdef TORCHAO_X86
  static const bool yes = [] {
    if (!use_avx512_bf16() || std::getenv("TORCHAO_CPU_NO_AMX") != nullptr || !__builtin_cpu_supports("amx-tile") ||
        !__builtin_cpu_supports("amx-bf16"))
      return false;
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return yes;
#else
  return false;
#endif
}

#ifdef TORCHAO_X86
#define TORCHAO_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define TORCHAO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// All 8 tiles as 64 bytes a row, 16 rows (tiles 0-2, the C and A tiles of tile_dots_1x2: ``first_rows``), for this
// thread (call before the tile instructions of a task)
TORCHAO_AMX inline void configure_tiles(int first_rows = 16) {
  struct alignas(64) Config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
  } config;
  std::memset(&config, 0, sizeof(config));
  config.palette = 1;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = t < 3 ? first_rows : 16;
  }
  // gcc's ldtilecfg intrinsic tells the compiler it reads 8 bytes only: without this barrier the stores above
  // are dropped
  __asm__ __volatile__("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

TORCHAO_AMX inline void release_tiles() { _tile_release(); }

inline __mmask16 first16(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << count) - 1);
}

inline __mmask32 first32(int64_t count) {
  return count >= 32 ? ~__mmask32(0) : count <= 0 ? __mmask32(0) : static_cast<__mmask32>((1u << count) - 1);
}

// 32 int8 weights from ``at`` (the first ``left`` of them, zeros after) as bfloat16 in k order (exact: every int8
// is a bfloat16); lane p of the 32-bit view = the pair (k = 2p, 2p + 1)
TORCHAO_AVX512 inline __m512bh widen_int8_bf16(const int8_t* at, int64_t left) {
  const __m512 low = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first16(left), at)));
  const __m512 high = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first16(left - 16), at + 16)));
  return _mm512_cvtne2ps_pbh(high, low);
}

// 16 float32 lanes (the first of ``valid``) stored as float32 / bfloat16 / float16 (rounded to nearest even)
TORCHAO_AVX512 inline void store16(float* at, __mmask16 valid, __m512 v) { _mm512_mask_storeu_ps(at, valid, v); }
TORCHAO_AVX512 inline void store16(at::BFloat16* at, __mmask16 valid, __m512 v) {
  _mm256_mask_storeu_epi16(at, valid, (__m256i)_mm512_cvtneps_pbh(v));
}
TORCHAO_AVX512 inline void store16(at::Half* at, __mmask16 valid, __m512 v) {
  _mm256_mask_storeu_epi16(at, valid, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// run_unit(n0, weights, acc) for n0 = 0, unit, 2 unit, ... < n, in parallel: each task configures the tiles,
// runs its units with scratch for the unpacked weights and the float32 tiles (kept per thread up to kKeptBytes),
// and releases the tiles
template <typename RunUnit>
void for_each_unit(int64_t n, int64_t unit, const RunUnit& run_unit) {
  at::parallel_for(0, (n + unit - 1) / unit, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedBuffer<uint16_t> weights;
    thread_local AlignedBuffer<float> acc;
    configure_tiles();
    for (int64_t u = begin; u < end; ++u) run_unit(u * unit, weights, acc);
    release_tiles();
    weights.shrink_to(kKeptBytes);
    acc.shrink_to(kKeptBytes);
  });
}

// f(typed pointer) for an (M, N) float32 / bfloat16 / float16 output tensor
template <typename F>
void with_output(at::Tensor& out, const char* op, const F& f) {
  switch (out.scalar_type()) {
    case at::kFloat: f(out.data_ptr<float>()); break;
    case at::kBFloat16: f(out.data_ptr<at::BFloat16>()); break;
    case at::kHalf: f(out.data_ptr<at::Half>()); break;
    default: TORCH_CHECK(false, op, ": float32, bfloat16 or float16 output expected, got ", out.scalar_type());
  }
}

// Tile dot products over ``steps`` k-steps of 32: C tiles (i, j) += A_i B_j with A_i at a[i] + step * a_step,
// B_j at b[j] + step * b_step (bytes), rows a_stride / b_stride bytes apart; C tiles (float32) at c[i][j],
// rows c_stride bytes apart, loaded first if ``accumulate`` else zero, and stored back. The tile numbers are
// written out (the instructions name them), one function per shape: 2 x 2 (C 0-3, A 4-5, B 6-7), 2 x 1 and
// 1 x 2.
TORCHAO_AMX inline void tile_dots_2x2(const char* const a[2], int64_t a_stride, int64_t a_step, const char* const b[2],
                                      int64_t b_stride, int64_t b_step, int64_t steps, float* const c[2][2],
                                      int64_t c_stride, bool accumulate) {
  if (accumulate) {
    _tile_loadd(0, c[0][0], c_stride);
    _tile_loadd(1, c[0][1], c_stride);
    _tile_loadd(2, c[1][0], c_stride);
    _tile_loadd(3, c[1][1], c_stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a[0] + s * a_step, a_stride);
    _tile_loadd(6, b[0] + s * b_step, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b[1] + s * b_step, b_stride);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a[1] + s * a_step, a_stride);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c[0][0], c_stride);
  _tile_stored(1, c[0][1], c_stride);
  _tile_stored(2, c[1][0], c_stride);
  _tile_stored(3, c[1][1], c_stride);
}

TORCHAO_AMX inline void tile_dots_2x1(const char* const a[2], int64_t a_stride, int64_t a_step, const char* const b[1],
                                      int64_t b_stride, int64_t b_step, int64_t steps, float* const c[2][1],
                                      int64_t c_stride, bool accumulate) {
  if (accumulate) {
    _tile_loadd(0, c[0][0], c_stride);
    _tile_loadd(1, c[1][0], c_stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
  }
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, b[0] + s * b_step, b_stride);
    _tile_loadd(2, a[0] + s * a_step, a_stride);
    _tile_dpbf16ps(0, 2, 4);
    _tile_loadd(3, a[1] + s * a_step, a_stride);
    _tile_dpbf16ps(1, 3, 4);
  }
  _tile_stored(0, c[0][0], c_stride);
  _tile_stored(1, c[1][0], c_stride);
}

TORCHAO_AMX inline void tile_dots_1x2(const char* const a[1], int64_t a_stride, int64_t a_step, const char* const b[2],
                                      int64_t b_stride, int64_t b_step, int64_t steps, float* const c[1][2],
                                      int64_t c_stride, bool accumulate) {
  if (accumulate) {
    _tile_loadd(0, c[0][0], c_stride);
    _tile_loadd(1, c[0][1], c_stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
  }
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(2, a[0] + s * a_step, a_stride);
    _tile_loadd(3, b[0] + s * b_step, b_stride);
    _tile_dpbf16ps(0, 2, 3);
    _tile_loadd(4, b[1] + s * b_step, b_stride);
    _tile_dpbf16ps(1, 2, 4);
  }
  _tile_stored(0, c[0][0], c_stride);
  _tile_stored(1, c[0][1], c_stride);
}

// r[i] lane j <- r[j] lane i, for 16 vectors of 16 32-bit lanes
TORCHAO_AVX512 inline void transpose_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // each 128-bit lane now holds a 4 x 4 block transposed; move the blocks: first across pairs of 128-bit lanes
  // of vectors 4 apart, then of vectors 8 apart
  for (int i = 0; i < 16; ++i) t[i] = r[i];
  for (int i = 0; i < 4; ++i) {
    for (int h = 0; h < 2; ++h) {
      const int lo = h * 8 + i, hi = h * 8 + i + 4;
      r[lo] = _mm512_shuffle_i32x4(t[lo], t[hi], 0x88);  // 128-bit lanes 0, 2 of each
      r[hi] = _mm512_shuffle_i32x4(t[lo], t[hi], 0xDD);  // lanes 1, 3
    }
  }
  for (int i = 0; i < 16; ++i) t[i] = r[i];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
  }
}
#endif

}  // namespace torchao_cpp
