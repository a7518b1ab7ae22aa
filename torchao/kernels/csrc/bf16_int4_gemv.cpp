// bfloat16 activations x int4 weights on CPU (int4 weight-only: decode, and prefill of wide layers), for aten's
// AVX-512 int4 packing, with bfloat16 dot products (AVX-512 BF16) and a portable scalar path of the same math.
// Rows go 4 at a time over each block of 64 channels, the weights unpacked in registers as they stream (an
// unpacked group kept in L1 for many rows measured slower: the dot products, not the unpacking, bound it).
//
// Inputs
//   x        (M, K) float32 or bfloat16, rounded to bfloat16 once (as the aten kernel does for float32)
//   packed, sz  aten's AVX-512 int4 packing and bfloat16 group scales (int4_cpu_packing.h):
//            w[n, k] = (q[n, k] - 8) * s + z
// Output (M, N) x.dtype:
//   out[m, n] = sum_g [ s * (D - 8 X) + z * X ],  D = sum_k q x,  X = sum_k x  over the group's k
// with products of bfloat16 values exact and sums in float32.
//
// The vector path turns each nibble q into the bfloat16 number 128 + q (bits 0x4300 | q: no conversion
// instruction) and accumulates (128 + q) x pairs with vdpbf16ps; D is that sum minus 128 X.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "amx.h"
#include "amx_weight_gemm.h"
#include "cpu_features.h"
#include "host_helpers.h"
#include "int4_bf16_weights.h"
#include "weight_gemm_avx512.h"
#include "int4_cpu_packing.h"
#include "prefetch.h"
#include "tiles.h"

#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using torchao_cpp::bf16_to_float;
constexpr int64_t kBlockN = torchao_cpp::kInt4BlockN;
constexpr int64_t kRows = 4;         // activation rows per pass over a block's weights

struct Problem {
  const uint16_t* x;     // (M, K) bfloat16 bits
  const float* xsum;     // (M, K / G): X per row and group
  const uint8_t* packed;
  const uint16_t* sz;    // bfloat16 bits
  float* out;
  int64_t m, k, n, group;
  int64_t sz_width;  // 2: (s, z) pairs; 1: scales only
};

void block_portable(const Problem& p, int64_t block) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const int64_t groups = p.k / p.group;
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t c = 0; c < kBlockN; ++c) {
      const int64_t n = block * kBlockN + c;
      float total = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        float d = 0.f;
        for (int64_t t = g * p.group; t < (g + 1) * p.group; ++t)
          d += static_cast<float>(torchao_cpp::int4_at(data, c, t)) * bf16_to_float(p.x[i * p.k + t]);
        const uint16_t* pair = p.sz + (g * p.n + n) * p.sz_width;
        const float x = p.xsum[i * groups + g];
        const float z = p.sz_width == 2 ? bf16_to_float(pair[1]) : 0.f;
        total += bf16_to_float(pair[0]) * (d - 8.f * x) + z * x;
      }
      p.out[i * p.n + n] = total;
    }
}

#ifdef TORCHAO_X86
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

#define AVX512_BF16_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vbmi")))

// acc[r][c] += the (k, k + 1) pairs of q[c] x row i + r's x[k], x[k + 1], for k = t
template <int R>
AVX512_BF16 inline void dot_pairs(const Problem& p, int64_t i, int64_t t, const __m512bh (&q)[4], __m512 (&acc)[R][4]) {
  for (int r = 0; r < R; ++r) {
    int32_t two;
    std::memcpy(&two, p.x + (i + r) * p.k + t, sizeof(two));
    const __m512bh x2 = (__m512bh)_mm512_set1_epi32(two);
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], q[c], x2);
  }
}

// total[r][c] += group g's result from its sums acc[r][c] = sum (128 + q) x over channels 16 c .. 16 c + 15 of the
// block: s (acc - 136 X) + z X
template <int R>
AVX512_BF16 inline void add_group(const Problem& p, int64_t block, int64_t i, int64_t g, const __m512 (&acc)[R][4],
                                  __m512 (&total)[R][4]) {
  const int64_t groups = p.k / p.group;
  __m512 s[4], z[4];
  for (int c = 0; c < 4; ++c)
    torchao_cpp::load_group_scales(p.sz, p.sz_width, p.n, g, block * kBlockN + c * 16, s[c], z[c]);
  for (int r = 0; r < R; ++r) {
    const float x = p.xsum[(i + r) * groups + g];
    const __m512 shift = _mm512_set1_ps(-136.f * x), xv = _mm512_set1_ps(x);
    for (int c = 0; c < 4; ++c)
      total[r][c] = _mm512_fmadd_ps(s[c], _mm512_add_ps(acc[r][c], shift), _mm512_fmadd_ps(z[c], xv, total[r][c]));
  }
}

template <int R>
AVX512_BF16 inline void store_rows(const Problem& p, int64_t block, int64_t i, const __m512 (&total)[R][4]) {
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(p.out + (i + r) * p.n + block * kBlockN + c * 16, total[r][c]);
}

// Rows [i, i + R) of one block over all groups, AVX-512 BF16 without VBMI. Per step of two k: the two 32-byte
// weight rows are interleaved byte-wise and widened to 16-bit lanes (one byte = the nibbles of channels j and
// j + 32), so each 32-bit lane holds one channel's pair (k, k + 1); the low and high nibbles become bfloat16
// 128 + q by one ternary-logic op each. The four accumulators hold channels {0-7, 16-23}, {8-15, 24-31}, and those
// + 32, put in order once per group.
template <int R>
AVX512_BF16 void rows_avx512(const Problem& p, int64_t block, int64_t i) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  __m512 total[R][4] = {};
  for (int64_t g = 0; g < p.k / p.group; ++g) {
    __m512 acc[R][4] = {};
    for (int64_t t = g * p.group; t < (g + 1) * p.group; t += 2) {
      const uint8_t* rows = data + t * 32;
      torchao_cpp::prefetch_stream(rows);
      const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows));
      const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 32));
      const __m512i lanes[2] = {_mm512_cvtepu8_epi16(_mm256_unpacklo_epi8(r0, r1)),
                                _mm512_cvtepu8_epi16(_mm256_unpackhi_epi8(r0, r1))};
      __m512bh q[4];
      for (int h = 0; h < 2; ++h) {
        q[h] = (__m512bh)torchao_cpp::nibbles_as_bf16(lanes[h], false);
        q[h + 2] = (__m512bh)torchao_cpp::nibbles_as_bf16(lanes[h], true);
      }
      dot_pairs<R>(p, i, t, q, acc);
    }
    for (int r = 0; r < R; ++r)
      for (int half = 0; half < 2; ++half) {  // natural order: 16 channels from the low, then the high halves
        const __m512 a = acc[r][half * 2], b = acc[r][half * 2 + 1];
        acc[r][half * 2] = _mm512_shuffle_f32x4(a, b, 0x44);
        acc[r][half * 2 + 1] = _mm512_shuffle_f32x4(a, b, 0xEE);
      }
    add_group<R>(p, block, i, g, acc, total);
  }
  store_rows<R>(p, block, i, total);
}

// The byte permutes of rows_avx512_vbmi: byte 4 j of lane j <- byte j (row k), byte 4 j + 2 <- byte 32 + j (row
// k + 1); the second: channels 16 ..
struct SpreadOrder {
  alignas(64) uint8_t bytes[2][64] = {};
  constexpr SpreadOrder() {
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 16; ++j) {
        bytes[h][4 * j] = static_cast<uint8_t>(16 * h + j);
        bytes[h][4 * j + 2] = static_cast<uint8_t>(32 + 16 * h + j);
      }
  }
};
constexpr SpreadOrder kSpreadOrder;

// The same with AVX-512 VBMI: one byte permute of the two k-steps' 64 bytes per 32 channels puts channel j's bytes
// at k and k + 1 into the low bytes of 32-bit lane j's halves, so the accumulators hold channels in order (24%
// fewer instructions a step; 2048 x 2048 from L2 25.0 against 23.6 GB/s on 2 cores).
template <int R>
AVX512_BF16_VBMI void rows_avx512_vbmi(const Problem& p, int64_t block, int64_t i) {
  const uint8_t* data = p.packed + block * kBlockN * (p.k / 2);
  const __m512i spread[2] = {_mm512_load_si512(kSpreadOrder.bytes[0]), _mm512_load_si512(kSpreadOrder.bytes[1])};
  __m512 total[R][4] = {};
  for (int64_t g = 0; g < p.k / p.group; ++g) {
    __m512 acc[R][4] = {};
    for (int64_t t = g * p.group; t < (g + 1) * p.group; t += 2) {
      const uint8_t* rows = data + t * 32;
      torchao_cpp::prefetch_stream(rows);
      const __m512i both = _mm512_loadu_si512(rows);
      __m512bh q[4];
      for (int h = 0; h < 2; ++h) {
        const __m512i lanes = _mm512_permutexvar_epi8(spread[h], both);
        q[h] = (__m512bh)torchao_cpp::nibbles_as_bf16(lanes, false);       // channels 16 h ..
        q[h + 2] = (__m512bh)torchao_cpp::nibbles_as_bf16(lanes, true);    // channels 32 + 16 h ..
      }
      dot_pairs<R>(p, i, t, q, acc);
    }
    add_group<R>(p, block, i, g, acc, total);
  }
  store_rows<R>(p, block, i, total);
}

void block_avx512(const Problem& p, int64_t block) {
  torchao_cpp::for_each_tile<kRows>(p.m, [&](auto rows, int64_t i) {
    if (torchao_cpp::use_avx512_bf16_vbmi()) rows_avx512_vbmi<decltype(rows)::value>(p, block, i);
    else rows_avx512<decltype(rows)::value>(p, block, i);
  });
}
#endif

void run_block(const Problem& p, int64_t block) {
#ifdef TORCHAO_X86
  if (torchao_cpp::use_avx512_bf16()) {
    block_avx512(p, block);
    return;
  }
#endif
  block_portable(p, block);
}

at::Tensor int4_weight_only_gemv(const at::Tensor& x, const at::Tensor& packed, int64_t group_size,
                                 const at::Tensor& sz) {
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "int4_weight_only_gemv: float32 or bfloat16 x (M, K) expected, got ", x.sizes(), " ", x.scalar_type());
  const int64_t m = x.size(0), k = x.size(1), n = packed.size(0);
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 2 && packed.size(1) * 2 == k,
              "int4_weight_only_gemv: packed (N, K / 2) uint8 expected for K = ", k, ", got ", packed.sizes());
  TORCH_CHECK(n % kBlockN == 0, "int4_weight_only_gemv: N = ", n, " is not a multiple of ", kBlockN);
  TORCH_CHECK(group_size > 0 && group_size % 2 == 0 && k % group_size == 0, "int4_weight_only_gemv: group_size ",
              group_size, " must be even and divide K = ", k);
  TORCH_CHECK(sz.scalar_type() == at::kBFloat16 && sz.dim() == 3 && sz.size(0) == k / group_size &&
                  sz.size(1) == n && (sz.size(2) == 2 || sz.size(2) == 1),
              "int4_weight_only_gemv: bfloat16 scales_and_zeros (K / group_size, N, 2) or scales (K / group_size, "
              "N, 1) expected, got ", sz.sizes(), " ", sz.scalar_type());
  const auto pc = packed.contiguous();
  const auto sc = sz.contiguous();
  const auto xc = x.contiguous();
  if (auto out = torchao_cpp::int4_matmul_amx({xc.data_ptr(), x.scalar_type(), nullptr, nullptr, m, k}, pc, sc,
                                              group_size, torchao_cpp::kAmxMinRowsInt4, x.options()))
    return *out;
  const torchao_cpp::Bfloat16Rows xb(x);
  const auto* scales = reinterpret_cast<const uint16_t*>(sc.data_ptr<at::BFloat16>());
  if (m >= torchao_cpp::kAvx512Int4GemmMinRows && k % torchao_cpp::kTileK == 0 && torchao_cpp::use_avx512_bf16()) {
    torchao_cpp::FloatOutput out(m, n, x.scalar_type(), x.options());
    torchao_cpp::int4_weight_gemm_avx512(xb.bits(), m,
                                         {pc.data_ptr<uint8_t>(), scales, k, n, group_size, sz.size(2)}, out);
    return out.tensor();
  }
  const std::vector<float> xsum = torchao_cpp::group_sums<float>(xb.begin(), m, k, group_size);
  torchao_cpp::FloatOutput out(m, n, x.scalar_type(), x.options());
  const Problem p{xb.bits(), xsum.data(), pc.data_ptr<uint8_t>(),
                  scales, out.values(), m, k, n, group_size, sz.size(2)};
  out.parallel_columns(n / kBlockN, kBlockN, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) run_block(p, b);
  });
  return out.tensor();
}

}  // namespace

// the schema is defined in torchao/kernels/cpu.py (with the fake and a loader for processes without this library)
TORCH_LIBRARY_IMPL(torchao, CPU, m) { m.impl("int4_weight_only_gemv_cpu", &int4_weight_only_gemv); }
