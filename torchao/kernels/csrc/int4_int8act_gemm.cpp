// int8 activations x int4 weights on CPU (8da4w), for aten's AVX-512 int4 packing, with integer dot
// products (AVX-512 VNNI) and a portable scalar path of the same math.
//
// Inputs
//   xq       (M, K) int8     activations quantized per row: x[m, k] = a[m] * (xq[m, k] - zx[m])
//   a        (M,)   float32  activation scales;  zx (M,) int32 activation zero points (0: symmetric)
//   packed   (N, K / 2) uint8, aten._convert_weight_to_int4pack_for_cpu's AVX-512 order: blocks of 64 output
//            channels; per k of a block 32 bytes, low nibbles channels 0..31, high nibbles channels 32..63
//   sz       (K / G, N, 2) bfloat16 per group (scale s, zero z): w[n, k] = (q[n, k] - 8) * s + z; or
//            (K / G, N, 1): scales only, z = 0 (symmetric weights: 4.5 bits a weight at G = 32, not 5)
// Output (M, N) float32:
//   out[m, n] = a[m] * sum_g [ s * (D - zx Q - 8 X + 8 zx G) + z * (X - zx G) ]
// with, over the group's k: D = sum xq q, Q = sum q, X = sum xq (exact int32 sums), which is
// a[m] * sum_k (xq - zx) * w[n, k] in fp32 up to the order of the float additions over groups.
// On AMX CPUs, from kAmxMinRowsInt8Int4 rows: bf16_int4_amx.cpp, a[m] * sum_k (xq - zx) * bf16(w[n, k]) (the weight
// rounded to bfloat16, as in weight-only int4; xq - zx is exact in bfloat16), float32 sums.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "amx.h"
#include "amx_weight_gemm.h"
#include "cpu_features.h"
#include "host_helpers.h"
#include "prefetch.h"
#include "int4_cpu_packing.h"
#include "tiles.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <cstring>

namespace {

using torchao_cpp::bf16_to_float;
constexpr int64_t kBlockN = torchao_cpp::kInt4BlockN;

struct Problem {
  const int8_t* xq;
  const float* a;
  const int32_t* zx;
  const int32_t* xsum;  // (M, K / G): X per row and group
  const uint8_t* packed;
  const uint16_t* sz;  // bfloat16 bits
  float* out;
  int64_t m, k, n, group;
  int64_t sz_width;  // 2: (s, z) pairs; 1: scales only
  bool zero_x;       // every zx is 0 (symmetric activations)
};

// float epilogue of one group for one row and 16 consecutive channels (natural order)
inline float group_value(float s, float z, float d, float q, float x, float zx, float g) {
  return s * (d - zx * q - 8.f * x + 8.f * zx * g) + z * (x - zx * g);
}

void block_portable(const Problem& p, int64_t block) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const int64_t groups = p.k / p.group;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t c = 0; c < kBlockN; ++c) {
      const int64_t n = block * kBlockN + c;
      float total = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t d = 0, q = 0;
        for (int64_t t = g * p.group; t < (g + 1) * p.group; ++t) {
          const int32_t v = torchao_cpp::int4_at(data, c, t);
          d += v * p.xq[i * p.k + t];
          q += v;
        }
        const uint16_t* pair = p.sz + (g * p.n + n) * p.sz_width;
        const float z = p.sz_width == 2 ? bf16_to_float(pair[1]) : 0.f;
        total += group_value(bf16_to_float(pair[0]), z, static_cast<float>(d),
                             static_cast<float>(q), static_cast<float>(p.xsum[i * groups + g]),
                             static_cast<float>(p.zx[i]), static_cast<float>(p.group));
      }
      p.out[i * p.n + n] = p.a[i] * total;
    }
  }
}

#ifdef TORCHAO_X86
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))


// 8 int32 accumulators (4 low-nibble, 4 high-nibble vectors of 8 lanes) -> 4 x 16 channels in natural order.
// Lane l of vector v (low nibbles) holds channel (l < 4 ? 0 : 16) + 4 v + l % 4; high nibbles: + 32.
VNNI inline void to_natural(const __m256i acc[8], __m512 natural[4]) {
  const __m512i first = _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0);
  const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(4));
  for (int half = 0; half < 2; ++half) {
    const __m512i a = _mm512_inserti64x4(_mm512_castsi256_si512(acc[half * 4 + 0]), acc[half * 4 + 1], 1);
    const __m512i b = _mm512_inserti64x4(_mm512_castsi256_si512(acc[half * 4 + 2]), acc[half * 4 + 3], 1);
    natural[half * 2 + 0] = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(a, first, b));
    natural[half * 2 + 1] = _mm512_cvtepi32_ps(_mm512_permutex2var_epi32(a, second, b));
  }
}

// 4 k-rows of one block (4 x 32 bytes) -> 8 vectors of q (0..15) whose 32-bit lanes hold one channel's
// q at k .. k + 3: 4 x 4 byte transposes, then the low nibbles (vectors 0..3) and high nibbles (4..7)
VNNI inline void transpose_nibbles(const uint8_t* rows, __m256i q[8]) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows));
  const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 32));
  const __m256i r2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 64));
  const __m256i r3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 96));
  const __m256i lo01 = _mm256_unpacklo_epi8(r0, r1), hi01 = _mm256_unpackhi_epi8(r0, r1);
  const __m256i lo23 = _mm256_unpacklo_epi8(r2, r3), hi23 = _mm256_unpackhi_epi8(r2, r3);
  const __m256i bytes[4] = {_mm256_unpacklo_epi16(lo01, lo23), _mm256_unpackhi_epi16(lo01, lo23),
                            _mm256_unpacklo_epi16(hi01, hi23), _mm256_unpackhi_epi16(hi01, hi23)};
  for (int v = 0; v < 4; ++v) {
    q[v] = _mm256_and_si256(bytes[v], low);
    q[v + 4] = _mm256_and_si256(_mm256_srli_epi16(bytes[v], 4), low);
  }
}

VNNI inline void load_scales(const Problem& p, int64_t g, int64_t n, __m512& s, __m512& z) {
  torchao_cpp::load_group_scales(p.sz, p.sz_width, p.n, g, n, s, z);
}

// One row (decode): the transposed nibbles go straight into the dot products (no buffer), which keeps more
// weight loads in flight than the buffered path; 1.8x faster at M = 1 from memory. With a zero activation zero
// point (symmetric activations) the weight sums Q are not needed and not computed: half the dot products.
template <bool kZeroX>
VNNI void block_one_row_vnni(const Problem& p, int64_t block) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const int64_t groups = p.k / p.group;
  const __m256i ones = _mm256_set1_epi8(1);
  const float gf = static_cast<float>(p.group), zx = static_cast<float>(p.zx[0]);
  __m512 total[4];
  for (int c = 0; c < 4; ++c) total[c] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i dot[8], qsum[8];
    for (int v = 0; v < 8; ++v) dot[v] = qsum[v] = _mm256_setzero_si256();
    for (int64_t t = g * p.group; t < (g + 1) * p.group; t += 4) {
      const uint8_t* rows = data + t * 32;
      torchao_cpp::prefetch_stream(rows);
      torchao_cpp::prefetch_stream(rows + 64);
      __m256i q[8];
      transpose_nibbles(rows, q);
      int32_t four;
      std::memcpy(&four, p.xq + t, sizeof(four));
      const __m256i x4 = _mm256_set1_epi32(four);
      for (int v = 0; v < 8; ++v) {
        if (!kZeroX) qsum[v] = _mm256_dpbusd_epi32(qsum[v], q[v], ones);
        dot[v] = _mm256_dpbusd_epi32(dot[v], q[v], x4);
      }
    }
    __m512 qf[4], df[4];
    if (!kZeroX) to_natural(qsum, qf);
    to_natural(dot, df);
    const float xs = static_cast<float>(p.xsum[g]);
    const __m512 shift = _mm512_set1_ps(8.f * zx * gf - 8.f * xs), offset = _mm512_set1_ps(xs - zx * gf);
    for (int c = 0; c < 4; ++c) {
      __m512 s, z;
      load_scales(p, g, block * kBlockN + c * 16, s, z);
      const __m512 centered = kZeroX ? df[c] : _mm512_fnmadd_ps(_mm512_set1_ps(zx), qf[c], df[c]);
      const __m512 inner = _mm512_add_ps(centered, shift);
      total[c] = _mm512_fmadd_ps(s, inner, _mm512_fmadd_ps(z, offset, total[c]));
    }
  }
  for (int c = 0; c < 4; ++c)
    _mm512_storeu_ps(p.out + block * kBlockN + c * 16, _mm512_mul_ps(_mm512_set1_ps(p.a[0]), total[c]));
}

constexpr int64_t kMaxGroup = 256;

// every row's 64 output channels of the block = 0 (the many-row paths add each group into them)
inline void zero_block_output(const Problem& p, int64_t block) {
  for (int64_t i = 0; i < p.m; ++i) std::memset(p.out + i * p.n + block * kBlockN, 0, kBlockN * sizeof(float));
}

// acc += the 4-byte dot products of q (unsigned) and x (signed) per 32-bit lane (vpdpbusd). Inline assembly
// ties acc to one register: GCC 12 compiled the intrinsic in a 4 x 4 tile loop with two register copies per
// dot product (in and out of the loop-carried accumulator), half the instructions of the loop.
template <typename Vector>
VNNI inline void dpbusd(Vector& acc, Vector q, Vector x) {
  asm("vpdpbusd %[x], %[q], %[acc]" : [acc] "+v"(acc) : [q] "v"(q), [x] "v"(x));
}

// Rows [i, i + R) of one group from the transposed buffer (R rows share each buffer load): int32 dot
// products D by VNNI, then a * (s * (D - zx Q + 8 zx G - 8 X) + z * (X - zx G)) added to the output.
template <int R>
VNNI inline void rows_from_buffer(const Problem& p, int64_t block, int64_t g, int64_t i,
                                  const __m256i buffer[][8], const __m512 qf[4], const __m512 s[4],
                                  const __m512 z[4]) {
  const int64_t groups = p.k / p.group, steps = p.group / 4;
  const float gf = static_cast<float>(p.group);
  __m256i dot[R][8];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 8; ++v) dot[r][v] = _mm256_setzero_si256();
  for (int64_t step = 0; step < steps; ++step) {
    __m256i x4[R];
    for (int r = 0; r < R; ++r) {
      int32_t four;
      std::memcpy(&four, p.xq + (i + r) * p.k + g * p.group + step * 4, sizeof(four));
      x4[r] = _mm256_set1_epi32(four);
    }
    for (int v = 0; v < 8; ++v) {
      const __m256i q = _mm256_load_si256(&buffer[step][v]);
      for (int r = 0; r < R; ++r) dpbusd(dot[r][v], q, x4[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m512 df[4];
    to_natural(dot[r], df);
    const float xs = static_cast<float>(p.xsum[(i + r) * groups + g]), zx = static_cast<float>(p.zx[i + r]);
    const __m512 a = _mm512_set1_ps(p.a[i + r]);
    const __m512 shift = _mm512_set1_ps(8.f * zx * gf - 8.f * xs), offset = _mm512_set1_ps(xs - zx * gf);
    for (int c = 0; c < 4; ++c) {
      float* o = p.out + (i + r) * p.n + block * kBlockN + c * 16;
      const __m512 inner = _mm512_add_ps(_mm512_fnmadd_ps(_mm512_set1_ps(zx), qf[c], df[c]), shift);
      const __m512 value = _mm512_fmadd_ps(s[c], inner, _mm512_mul_ps(z[c], offset));
      _mm512_storeu_ps(o, _mm512_fmadd_ps(a, value, _mm512_loadu_ps(o)));
    }
  }
}

// One block of 64 channels for all rows. Per group: the weights' nibbles are transposed once (each 32-bit
// lane: one channel's q at k .. k + 3) into an L1 buffer with their sums Q, then every row's int32 dot
// products D come from that buffer by VNNI, and the float epilogue adds the group into the output.
VNNI void block_vnni(const Problem& p, int64_t block) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const int64_t groups = p.k / p.group, steps = p.group / 4;
  const __m256i ones = _mm256_set1_epi8(1);
  alignas(64) __m256i buffer[kMaxGroup / 4][8];
  zero_block_output(p, block);
  for (int64_t g = 0; g < groups; ++g) {
    __m256i qsum[8];
    for (int v = 0; v < 8; ++v) qsum[v] = _mm256_setzero_si256();
    for (int64_t step = 0; step < steps; ++step) {
      const uint8_t* rows = data + (g * p.group + step * 4) * 32;
      torchao_cpp::prefetch_stream(rows);
      torchao_cpp::prefetch_stream(rows + 64);
      transpose_nibbles(rows, buffer[step]);
      for (int v = 0; v < 8; ++v) qsum[v] = _mm256_dpbusd_epi32(qsum[v], buffer[step][v], ones);
    }
    __m512 qf[4], s[4], z[4];
    to_natural(qsum, qf);
    for (int c = 0; c < 4; ++c) load_scales(p, g, block * kBlockN + c * 16, s[c], z[c]);
    int64_t i = 0;
    for (; i + 2 <= p.m; i += 2) rows_from_buffer<2>(p, block, g, i, buffer, qf, s, z);
    if (i < p.m) rows_from_buffer<1>(p, block, g, i, buffer, qf, s, z);
  }
}

#define VNNI_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))

// The byte permutes of transpose_nibbles_vbmi: from the 128 bytes of 4 k-rows (32 bytes each), byte r of 32-bit
// lane j of output h is byte 32 r + 16 h + j (k-row r of channel 16 h + j's byte)
struct TransposeOrder {
  alignas(64) uint8_t bytes[2][64] = {};
  constexpr TransposeOrder() {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 16; ++j)
        for (int r = 0; r < 4; ++r) bytes[h][4 * j + r] = static_cast<uint8_t>(32 * r + 16 * h + j);
  }
};
constexpr TransposeOrder kTransposeOrder;

// 4 k-rows of one block (128 bytes) -> 4 vectors of q (0..15) in natural channel order: vector v's 32-bit lane j
// holds channel 16 v + j's q at k .. k + 3. Two byte permutes (AVX-512 VBMI), then the low nibbles (channels
// 0..31) and the high ones (32..63).
VNNI_VBMI inline void transpose_nibbles_vbmi(const uint8_t* rows, const __m512i order[2], __m512i q[4]) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i first = _mm512_loadu_si512(rows), second = _mm512_loadu_si512(rows + 64);
  for (int h = 0; h < 2; ++h) {
    const __m512i bytes = _mm512_permutex2var_epi8(first, order[h], second);
    q[h] = _mm512_and_si512(bytes, low);
    q[h + 2] = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low);
  }
}

// What a group adds for every row, per 16 channels in natural order: s, z - 8 s, and (asymmetric activations) Q
struct GroupTerms {
  __m512 s[4], shifted_z[4], q[4];
};

// Rows [i, i + R) of one group from the transposed buffer (natural order, R rows share each buffer load): int32
// dot products D by 512-bit VNNI, then out += a * (s * D' + (z - 8 s) * X') with D' = D - zx Q, X' = X - zx G
// (the same sum as group_value).
template <int R, bool kZeroX>
VNNI_VBMI inline void rows_from_natural_buffer(const Problem& p, int64_t block, int64_t g, int64_t i,
                                               const __m512i buffer[][4], const GroupTerms& terms) {
  const int64_t groups = p.k / p.group, steps = p.group / 4;
  __m512i dot[R][4];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) dot[r][v] = _mm512_setzero_si512();
  const int8_t* x = p.xq + i * p.k + g * p.group;
  for (int64_t step = 0; step < steps; ++step) {
    __m512i x4[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t four;
      std::memcpy(&four, x + r * p.k + step * 4, sizeof(four));
      x4[r] = _mm512_set1_epi32(four);
    }
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m512i q = _mm512_load_si512(&buffer[step][v]);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) dpbusd(dot[r][v], q, x4[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const float zx = static_cast<float>(p.zx[i + r]);
    const __m512 x_centered = _mm512_set1_ps(static_cast<float>(p.xsum[(i + r) * groups + g]) -
                                             zx * static_cast<float>(p.group));
    const __m512 a = _mm512_set1_ps(p.a[i + r]);
    float* o = p.out + (i + r) * p.n + block * kBlockN;
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      __m512 d = _mm512_cvtepi32_ps(dot[r][v]);
      if (!kZeroX) d = _mm512_fnmadd_ps(_mm512_set1_ps(zx), terms.q[v], d);
      const __m512 value = _mm512_fmadd_ps(terms.s[v], d, _mm512_mul_ps(terms.shifted_z[v], x_centered));
      _mm512_storeu_ps(o + 16 * v, _mm512_fmadd_ps(a, value, _mm512_loadu_ps(o + 16 * v)));
    }
  }
}

constexpr int kNaturalRows = 4;  // rows per pass over a group's buffer: 16 accumulators

// block_vnni with AVX-512 VBMI: the nibbles transposed straight into natural channel order (no reordering of the
// sums), 512-bit dot products, 4 rows a pass; the weight sums Q only for asymmetric activations.
template <bool kZeroX>
VNNI_VBMI void block_vnni_vbmi(const Problem& p, int64_t block) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const int64_t groups = p.k / p.group, steps = p.group / 4;
  const __m512i order[2] = {_mm512_load_si512(kTransposeOrder.bytes[0]), _mm512_load_si512(kTransposeOrder.bytes[1])};
  const __m512i ones = _mm512_set1_epi8(1);
  alignas(64) __m512i buffer[kMaxGroup / 4][4];
  zero_block_output(p, block);
  for (int64_t g = 0; g < groups; ++g) {
    __m512i qsum[4];
    for (int v = 0; v < 4; ++v) qsum[v] = _mm512_setzero_si512();
    for (int64_t step = 0; step < steps; ++step) {
      const uint8_t* rows = data + (g * p.group + step * 4) * 32;
      torchao_cpp::prefetch_stream(rows);
      torchao_cpp::prefetch_stream(rows + 64);
      transpose_nibbles_vbmi(rows, order, buffer[step]);
      if (!kZeroX)
        for (int v = 0; v < 4; ++v) qsum[v] = _mm512_dpbusd_epi32(qsum[v], buffer[step][v], ones);
    }
    GroupTerms terms;
    for (int v = 0; v < 4; ++v) {
      __m512 z;
      load_scales(p, g, block * kBlockN + v * 16, terms.s[v], z);
      terms.shifted_z[v] = _mm512_fnmadd_ps(_mm512_set1_ps(8.f), terms.s[v], z);
      terms.q[v] = _mm512_cvtepi32_ps(qsum[v]);
    }
    torchao_cpp::for_each_tile<kNaturalRows>(p.m, [&](auto rows, int64_t i) {
      rows_from_natural_buffer<decltype(rows)::value, kZeroX>(p, block, g, i, buffer, terms);
    });
  }
}
#endif

void run_block(const Problem& p, int64_t block) {
#ifdef TORCHAO_X86
  if (torchao_cpp::use_vnni() && p.m == 1) {
    if (p.zero_x) block_one_row_vnni<true>(p, block);
    else block_one_row_vnni<false>(p, block);
    return;
  }
  if (torchao_cpp::use_vnni_vbmi() && p.group <= kMaxGroup) {
    if (p.zero_x) block_vnni_vbmi<true>(p, block);
    else block_vnni_vbmi<false>(p, block);
    return;
  }
  if (torchao_cpp::use_vnni() && p.group <= kMaxGroup) {
    block_vnni(p, block);
    return;
  }
#endif
  block_portable(p, block);
}

at::Tensor int8_dynamic_int4_mm(const at::Tensor& xq, const at::Tensor& x_scale,
                                const std::optional<at::Tensor>& x_zero, const at::Tensor& packed, int64_t group_size,
                                const at::Tensor& sz, at::ScalarType out_dtype) {
  TORCH_CHECK(xq.dim() == 2 && xq.scalar_type() == at::kChar, "int8_dynamic_int4_mm: int8 xq (M, K) expected");
  const int64_t m = xq.size(0), k = xq.size(1), n = packed.size(0);
  const auto a = torchao_cpp::as_contiguous(x_scale, at::kFloat);
  const auto zx = x_zero.has_value() ? torchao_cpp::as_contiguous(*x_zero, at::kInt) : at::Tensor();
  TORCH_CHECK(a.numel() == m && (!zx.defined() || zx.numel() == m), "int8_dynamic_int4_mm: one activation scale "
              "(and zero point) per row expected, got ", a.numel(), " for ", m, " rows");
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 2 && packed.size(1) * 2 == k,
              "int8_dynamic_int4_mm: packed (N, K / 2) uint8 expected for K = ", k, ", got ", packed.sizes());
  TORCH_CHECK(n % kBlockN == 0, "int8_dynamic_int4_mm: N = ", n, " is not a multiple of ", kBlockN);
  TORCH_CHECK(group_size > 0 && group_size % 4 == 0 && k % group_size == 0, "int8_dynamic_int4_mm: group_size ",
              group_size, " must be a multiple of 4 dividing K = ", k);
  TORCH_CHECK(sz.scalar_type() == at::kBFloat16 && sz.dim() == 3 && sz.size(0) == k / group_size &&
                  sz.size(1) == n && (sz.size(2) == 2 || sz.size(2) == 1),
              "int8_dynamic_int4_mm: bfloat16 scales_and_zeros (K / group_size, N, 2) or scales (K / group_size, "
              "N, 1) expected, got ", sz.sizes());
  const auto xc = xq.contiguous();
  const auto pc = packed.contiguous();
  const auto sc = sz.contiguous();
  if (auto out = torchao_cpp::int4_matmul_amx(
          {xc.data_ptr(), at::kChar, zx.defined() ? zx.data_ptr<int32_t>() : nullptr, a.data_ptr<float>(), m, k}, pc,
          sc, group_size, torchao_cpp::kAmxMinRowsInt8Int4, xq.options().dtype(out_dtype)))
    return *out;
  const std::vector<int32_t> xsum = torchao_cpp::group_sums<int32_t>(xc.data_ptr<int8_t>(), m, k, group_size);
  const std::vector<int32_t> no_zero(zx.defined() ? 0 : m, 0);
  torchao_cpp::FloatOutput out(m, n, out_dtype, xq.options());
  const Problem p{xc.data_ptr<int8_t>(), a.data_ptr<float>(), zx.defined() ? zx.data_ptr<int32_t>() : no_zero.data(),
                  xsum.data(), pc.data_ptr<uint8_t>(), reinterpret_cast<const uint16_t*>(sc.data_ptr<at::BFloat16>()),
                  out.values(), m, k, n, group_size, sz.size(2),
                  !zx.defined() || std::all_of(zx.data_ptr<int32_t>(), zx.data_ptr<int32_t>() + m,
                                               [](int32_t v) { return v == 0; })};
  out.parallel_columns(n / kBlockN, kBlockN, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) run_block(p, b);
  });
  return out.tensor();
}

}  // namespace

// the schema is defined in torchao/kernels/cpu.py (with the fake and a loader for processes without this library)
TORCH_LIBRARY_IMPL(torchao, CPU, m) { m.impl("int8_dynamic_int4_mm_cpu", &int8_dynamic_int4_mm); }
