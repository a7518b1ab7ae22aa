// int8 activations x int8 weights on CPU for few rows (decode of 8da8w / int8 dynamic), with integer dot
// products (AVX-512 VNNI) and a portable scalar path of the same math.
//
//   xq (M, K) int8, a (M,) float32: x[m, k] = a[m] * xq[m, k]   (symmetric per-token activations)
//   w  (N, K) int8 row-major, s (N,) float32: weight[n, k] = s[n] * w[n, k]
//   out (M, N) float32 = a[m] * s[n] * sum_k xq[m, k] w[n, k], the sum exact in int32.
// VNNI multiplies unsigned by signed bytes: the weights are read as w + 128 (one xor per 64 bytes) and
// 128 * sum_k xq[m, k] is subtracted afterwards. Weights stream from memory once per 4 rows of x.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_features.h"
#include "host_helpers.h"
#include "prefetch.h"
#include "tiles.h"

#include <cstdint>

namespace {

constexpr int64_t kRows = 4;         // activation rows per pass over a weight row

struct Problem {
  const int8_t* xq;
  const float* a;
  const int32_t* xsum;  // (M,) sum_k xq
  const int8_t* w;
  const float* s;
  float* out;
  int64_t m, k, n;
};

void channels_portable(const Problem& p, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t i = 0; i < p.m; ++i) {
      int32_t dot = 0;
      for (int64_t t = 0; t < p.k; ++t) dot += static_cast<int32_t>(p.xq[i * p.k + t]) * p.w[n * p.k + t];
      p.out[i * p.n + n] = p.a[i] * p.s[n] * static_cast<float>(dot);
    }
}

#ifdef TORCHAO_X86
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))


// one output channel x rows [i, i + R): the weight row streams from memory once (one sequential stream per
// thread with a software prefetch ahead of it: 1.1-1.9x faster than 4 interleaved channel streams)
template <int R>
VNNI void tile_vnni(const Problem& p, int64_t n, int64_t i) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const int8_t* row = p.w + n * p.k;
  __m512i acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  for (int64_t t = 0; t < p.k; t += 64) {
    const __mmask64 mask = p.k - t >= 64 ? ~__mmask64(0) : (__mmask64(1) << (p.k - t)) - 1;
    torchao_cpp::prefetch_stream(row + t);
    // masked-off bytes load as 0 and become 128, multiplied by the masked-off (zero) activations
    const __m512i wu = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, row + t), flip);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_dpbusd_epi32(acc[r], wu, _mm512_maskz_loadu_epi8(mask, p.xq + (i + r) * p.k + t));
  }
  for (int r = 0; r < R; ++r) {
    const int32_t dot = _mm512_reduce_add_epi32(acc[r]) - 128 * p.xsum[i + r];
    p.out[(i + r) * p.n + n] = p.a[i + r] * p.s[n] * static_cast<float>(dot);
  }
}

void channel_vnni(const Problem& p, int64_t n) {
  torchao_cpp::for_each_tile<kRows>(p.m, [&](auto rows, int64_t i) { tile_vnni<decltype(rows)::value>(p, n, i); });
}
#endif

void run_channels(const Problem& p, int64_t n0, int64_t n1) {
#ifdef TORCHAO_X86
  if (torchao_cpp::use_vnni()) {
    for (int64_t n = n0; n < n1; ++n) channel_vnni(p, n);
    return;
  }
#endif
  channels_portable(p, n0, n1);
}

at::Tensor int8_dynamic_int8_mm(const at::Tensor& xq, const at::Tensor& x_scale, const at::Tensor& w,
                                const at::Tensor& w_scale, at::ScalarType out_dtype) {
  TORCH_CHECK(xq.dim() == 2 && xq.scalar_type() == at::kChar && w.dim() == 2 && w.scalar_type() == at::kChar &&
                  xq.size(1) == w.size(1),
              "int8_dynamic_int8_mm: int8 xq (M, K) and int8 w (N, K) expected, got ", xq.sizes(), " and ",
              w.sizes());
  const int64_t m = xq.size(0), k = xq.size(1), n = w.size(0);
  const auto a = torchao_cpp::as_contiguous(x_scale, at::kFloat);
  const auto s = torchao_cpp::as_contiguous(w_scale, at::kFloat);
  TORCH_CHECK(a.numel() == m && s.numel() == n, "int8_dynamic_int8_mm: one scale per activation row and one per "
              "output channel expected, got ", a.numel(), " and ", s.numel(), " for ", m, " x ", n);
  const auto xc = xq.contiguous();
  const auto wc = w.contiguous();
  const std::vector<int32_t> xsum =
      torchao_cpp::group_sums<int32_t>(xc.data_ptr<int8_t>(), m, k, std::max<int64_t>(k, 1));
  torchao_cpp::FloatOutput out(m, n, out_dtype, xq.options());
  const Problem p{xc.data_ptr<int8_t>(), a.data_ptr<float>(), xsum.data(), wc.data_ptr<int8_t>(),
                  s.data_ptr<float>(), out.values(), m, k, n};
  out.parallel_columns(n, 1, torchao_cpp::rows_per_task(k), [&](int64_t begin, int64_t end) {
    run_channels(p, begin, end);
  });
  return out.tensor();
}

}  // namespace

// the schema is defined in torchao/kernels/cpu.py (with the fake and a loader for processes without this library)
TORCH_LIBRARY_IMPL(torchao, CPU, m) { m.impl("int8_dynamic_int8_mm_cpu", &int8_dynamic_int8_mm); }
