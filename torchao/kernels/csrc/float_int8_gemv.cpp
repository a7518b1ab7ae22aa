// Float activations x int8 weights on CPU for few rows (decode of int8 weight-only), AVX-512 with a portable
// path of the same math. The activations stay floating point: each weight is widened to float and multiplied
// with float32 accumulation.
//
//   x  (M, K) float32 / bfloat16 / float16
//   w  (N, K) int8 row-major, s (N,) float32: weight[n, k] = s[n] * w[n, k]
//   out (M, N) x.dtype = s[n] * sum_k x[m, k] * w[n, k]
// One row (or float16 x): float32 products (AVX-512 FMA), 4 rows per pass over the weights. More rows of
// float32 / bfloat16 x: x rounded to bfloat16 (as aten's int8 kernel does) and bfloat16 dot products (AVX-512
// BF16; every int8 is exact in bfloat16), twice the multiply-adds per instruction, in tiles of 4 channels x 4 rows
// (past 4 rows each tile's weights are converted to bfloat16 once per call and reused by every row tile); from
// kAvx512Int8GemmMinRows rows, K a multiple of 32, the pair-tile GEMM (bf16_int8_gemm.cpp) takes the first multiple
// of 16 channels.
// Weights stream from memory one sequential stream per thread with a software prefetch ahead of it
// (prefetch.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "amx.h"
#include "amx_weight_gemm.h"
#include "cpu_features.h"
#include "host_helpers.h"
#include "prefetch.h"
#include "tiles.h"
#include "weight_gemm_avx512.h"

#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kRows = 4;         // float32 path: activation rows per pass over a weight row
constexpr int64_t kRowsBf16 = 4;     // bfloat16 path: rows and output channels per tile
constexpr int64_t kChannelsBf16 = 4;

struct Problem {
  const float* x;      // (M, K) float32 (with xb: the bfloat16 values, or null where the BF16 path runs)
  const uint16_t* xb;  // (M, K) bfloat16 bits for the bfloat16 path, else null
  const int8_t* w;
  const float* s;
  float* out;
  int64_t m, k, n;
};

void channels_portable(const Problem& p, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t i = 0; i < p.m; ++i) {
      float dot = 0.f;
      for (int64_t t = 0; t < p.k; ++t) dot += p.x[i * p.k + t] * static_cast<float>(p.w[n * p.k + t]);
      p.out[i * p.n + n] = p.s[n] * dot;
    }
}

#ifdef TORCHAO_X86
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512 inline __m512 widen(__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)); }

// one output channel x rows [i, i + R): 4 independent accumulators per row over 64 weights a step (hides the
// FMA latency), then 16 weights a step with masks for the rest of K
template <int R>
AVX512 void tile_avx512(const Problem& p, int64_t n, int64_t i) {
  const int8_t* row = p.w + n * p.k;
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + 64 <= p.k; t += 64) {
    torchao_cpp::prefetch_stream(row + t);
    for (int j = 0; j < 4; ++j) {
      const __m512 wf = widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + t + 16 * j)));
      for (int r = 0; r < R; ++r)
        acc[r][j] = _mm512_fmadd_ps(wf, _mm512_loadu_ps(p.x + (i + r) * p.k + t + 16 * j), acc[r][j]);
    }
  }
  for (; t < p.k; t += 16) {
    const __mmask16 mask = p.k - t >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (p.k - t)) - 1);
    const __m512 wf = widen(_mm_maskz_loadu_epi8(mask, row + t));
    for (int r = 0; r < R; ++r)
      acc[r][0] = _mm512_fmadd_ps(wf, _mm512_maskz_loadu_ps(mask, p.x + (i + r) * p.k + t), acc[r][0]);
  }
  for (int r = 0; r < R; ++r) {
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3]));
    p.out[(i + r) * p.n + n] = p.s[n] * _mm512_reduce_add_ps(sum);
  }
}


// C output channels [n, n + C) x rows [i, i + R) by bfloat16 pairs: each weight vector serves R rows and each
// activation vector C channels (so the activations, read from L1 / L2, cost 1 / C of a load per product). The
// weights come from int8 memory (converted here), or, with ``wb``, from C rows of kpad bfloat16 values that
// convert_channels_bf16 made once for every row tile of the call.
template <int C, int R>
TORCHAO_AVX512 void tile_bf16(const Problem& p, int64_t n, int64_t i, const uint16_t* wb, int64_t kpad) {
  // fields in locals and fully unrolled tile loops: otherwise GCC keeps the accumulators on the stack
  const int64_t k = p.k;
  const uint16_t* x_rows = p.xb + i * k;
  const int8_t* w_rows = p.w + n * k;
  __m512 acc[C][R];
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[c][r] = _mm512_setzero_ps();
  for (int64_t t = 0; t < k; t += 32) {
    const int64_t left = k - t;
    const __mmask32 mask = left >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << left) - 1);
    __m512bh w[C];
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
      if (wb != nullptr) {
        w[c] = (__m512bh)_mm512_loadu_si512(wb + c * kpad + t);
      } else {
        const int8_t* row = w_rows + c * k + t;
        torchao_cpp::prefetch_stream(row);
        w[c] = torchao_cpp::widen_int8_bf16(row, left);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512bh x = (__m512bh)_mm512_maskz_loadu_epi16(mask, x_rows + r * k + t);
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[c][r] = _mm512_dpbf16_ps(acc[c][r], w[c], x);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) p.out[(i + r) * p.n + n + c] = p.s[n + c] * _mm512_reduce_add_ps(acc[c][r]);
}

// weight rows [n, n + channels) as bfloat16 into wb (channels x kpad, zeros after K; kpad a multiple of 32)
TORCHAO_AVX512 void convert_channels_bf16(const Problem& p, int64_t n, int64_t channels, uint16_t* wb, int64_t kpad) {
  for (int64_t c = 0; c < channels; ++c) {
    const int8_t* row = p.w + (n + c) * p.k;
    for (int64_t t = 0; t < kpad; t += 32) {
      torchao_cpp::prefetch_stream(row + t);
      _mm512_storeu_si512(wb + c * kpad + t, (__m512i)torchao_cpp::widen_int8_bf16(row + t, p.k - t));
    }
  }
}

// channels [n0, n1) x all rows in tiles of kChannelsBf16 x kRowsBf16. With more rows than one tile, each
// channel tile's weights are converted to bfloat16 once (into a per-thread buffer, L1 / L2 sized) instead of
// once per row tile (2 threads, AMD EPYC, register-resident tiles: 1.5-1.9x at M = 8 and 16 on 2048x2048,
// 2048x5632 and 5632x2048).
void run_channels_bf16(const Problem& p, int64_t n0, int64_t n1) {
  const bool convert_once = p.m > kRowsBf16;
  const int64_t kpad = (p.k + 31) / 32 * 32;
  thread_local std::vector<uint16_t> converted;
  if (convert_once) converted.resize(kChannelsBf16 * kpad);
  uint16_t* wb = convert_once ? converted.data() : nullptr;
  torchao_cpp::for_each_tile<kChannelsBf16>(n1 - n0, [&](auto channels, int64_t c) {
    if (convert_once) convert_channels_bf16(p, n0 + c, decltype(channels)::value, wb, kpad);
    torchao_cpp::for_each_tile<kRowsBf16>(p.m, [&](auto rows, int64_t i) {
      tile_bf16<decltype(channels)::value, decltype(rows)::value>(p, n0 + c, i, wb, kpad);
    });
  });
}

void channel_avx512(const Problem& p, int64_t n) {
  torchao_cpp::for_each_tile<kRows>(p.m, [&](auto rows, int64_t i) { tile_avx512<decltype(rows)::value>(p, n, i); });
}
#endif

void run_channels(const Problem& p, int64_t n0, int64_t n1) {
#ifdef TORCHAO_X86
  if (p.xb != nullptr && torchao_cpp::use_avx512_bf16()) {
    run_channels_bf16(p, n0, n1);
    return;
  }
  if (torchao_cpp::use_avx512()) {
    for (int64_t n = n0; n < n1; ++n) channel_avx512(p, n);
    return;
  }
#endif
  channels_portable(p, n0, n1);
}

at::Tensor int8_weight_only_gemv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_scale) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && w.scalar_type() == at::kChar && x.size(1) == w.size(1),
              "int8_weight_only_gemv: float x (M, K) and int8 w (N, K) expected, got ", x.sizes(), " ",
              x.scalar_type(), " and ", w.sizes(), " ", w.scalar_type());
  const int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  const auto s = torchao_cpp::as_contiguous(w_scale, at::kFloat);
  TORCH_CHECK(s.numel() == n, "int8_weight_only_gemv: one scale per output channel expected, got ", s.numel(),
              " for N = ", n);
  const bool float_or_bf16 = x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16;
  const auto wc = w.contiguous();
  if (float_or_bf16 && m >= torchao_cpp::kAmxMinRowsInt8 && torchao_cpp::use_amx_bf16()) {
    const auto xb = torchao_cpp::as_contiguous(x, at::kBFloat16);
    at::Tensor out = at::empty({m, n}, x.options());
    torchao_cpp::int8_weight_gemm_amx(reinterpret_cast<const uint16_t*>(xb.data_ptr<at::BFloat16>()),
                                      wc.data_ptr<int8_t>(), s.data_ptr<float>(), out, m, k, n);
    return out;
  }
  // the bfloat16 path for several rows of float32 / bfloat16 x; where it cannot run here (portable and AVX-512
  // without BF16 paths) a float32 copy of the same rounded values stands in, built only then
  const bool bf16 = m > 1 && float_or_bf16;
  const torchao_cpp::Bfloat16Rows xb = bf16 ? torchao_cpp::Bfloat16Rows(x) : torchao_cpp::Bfloat16Rows();
  const std::vector<float> xf = !bf16                          ? torchao_cpp::to_float(x)
                                : torchao_cpp::use_avx512_bf16() ? std::vector<float>()
                                                                 : std::vector<float>(xb.begin(), xb.end());
  torchao_cpp::FloatOutput out(m, n, x.scalar_type(), x.options());
  const Problem p{xf.data(), xb.bits(), wc.data_ptr<int8_t>(), s.data_ptr<float>(), out.values(), m, k, n};
  // many rows on AVX-512 BF16 CPUs: the pair-tile GEMM for the first multiple of 16 channels, the tiles above
  // for the rest
  const bool gemm = bf16 && m >= torchao_cpp::kAvx512Int8GemmMinRows && k % torchao_cpp::kTileK == 0 &&
                    torchao_cpp::use_avx512_bf16();
  const int64_t gemm_n = gemm ? n / 16 * 16 : 0;
  if (gemm_n > 0) torchao_cpp::int8_weight_gemm_avx512(p.xb, m, p.w, p.s, k, gemm_n, n, out);
  at::parallel_for(gemm_n, n, torchao_cpp::rows_per_task(k), [&](int64_t begin, int64_t end) {
    run_channels(p, begin, end);
    out.finish(begin, end);
  });
  return out.tensor();
}

}  // namespace

// the schema is defined in torchao/kernels/cpu.py (with the fake and a loader for processes without this library)
TORCH_LIBRARY_IMPL(torchao, CPU, m) { m.impl("int8_weight_only_gemv_cpu", &int8_weight_only_gemv); }
