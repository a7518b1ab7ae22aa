// Per-token int8 quantization of activations on CPU (the dynamic-activation configs' input, eager mode), in two
// passes over each row instead of the primitives' dozen aten ops (512 x 4096 bf16: 7 ms there). The same numbers
// as torchao.qtensor.primitives for the two int8 per-token quantizers (qtensor/act_quant.py), in float32:
//
//   lo = min(min_k x, 0), hi = max(max_k x, 0)
//   symmetric  [-127, 127]: scale = max(max(-lo, hi) / 127, 1e-5), zero 0
//   asymmetric [-128, 127]: scale = max((hi - lo) / 255, 1e-5), zero = clamp(-128 - round(lo / scale), -128, 127)
//   q = clamp(round(x * (1 / scale)) + zero, qmin, qmax)   (round: to nearest even)
//
//   x (..., K) float32 / bfloat16 / float16 -> q (..., K) int8, scale (...) float32, zero (...) int32 (asymmetric;
//   symmetric: an empty tensor)

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_features.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

namespace {

constexpr float kEps = 1e-5f;

struct RowQParams {
  float scale, inverse;
  int32_t zero;
};

RowQParams qparams(float lo, float hi, bool symmetric) {
  lo = std::min(lo, 0.f);
  hi = std::max(hi, 0.f);
  RowQParams p{};
  if (symmetric) {
    p.scale = std::max(std::max(-lo, hi) / 127.f, kEps);
    p.zero = 0;
  } else {
    p.scale = std::max((hi - lo) / 255.f, kEps);
    p.zero = static_cast<int32_t>(std::clamp(-128.f - std::nearbyint(lo / p.scale), -128.f, 127.f));
  }
  p.inverse = 1.f / p.scale;
  return p;
}

template <typename T>
void row_portable(const T* x, int64_t k, bool symmetric, int8_t* q, float* scale, int32_t* zero) {
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t j = 0; j < k; ++j) {
    const float v = static_cast<float>(x[j]);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const RowQParams p = qparams(lo, hi, symmetric);
  const float qmin = symmetric ? -127.f : -128.f;
  for (int64_t j = 0; j < k; ++j)
    q[j] = static_cast<int8_t>(std::clamp(std::nearbyint(static_cast<float>(x[j]) * p.inverse) + p.zero, qmin, 127.f));
  *scale = p.scale;
  if (zero != nullptr) *zero = p.zero;
}

#ifdef TORCHAO_X86
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512 inline __m512 load16(const float* x, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, x); }
AVX512 inline __m512 load16(const at::BFloat16* x, __mmask16 mask) {
  const __m256i bits = _mm256_maskz_loadu_epi16(mask, x);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
AVX512 inline __m512 load16(const at::Half* x, __mmask16 mask) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, x));
}

template <typename T>
AVX512 void row_avx512(const T* x, int64_t k, bool symmetric, int8_t* q, float* scale, int32_t* zero) {
  __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < k; j += 16) {
    const __mmask16 mask = k - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - j)) - 1);
    const __m512 v = load16(x + j, mask);
    lo = _mm512_mask_min_ps(lo, mask, lo, v);
    hi = _mm512_mask_max_ps(hi, mask, hi, v);
  }
  const RowQParams p = qparams(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), symmetric);
  const __m512 inverse = _mm512_set1_ps(p.inverse), zp = _mm512_set1_ps(static_cast<float>(p.zero));
  const __m512 qmin = _mm512_set1_ps(symmetric ? -127.f : -128.f), qmax = _mm512_set1_ps(127.f);
  for (int64_t j = 0; j < k; j += 16) {
    const __mmask16 mask = k - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - j)) - 1);
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(load16(x + j, mask), inverse),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, zp), qmin), qmax);
    _mm_mask_storeu_epi8(q + j, mask, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(c)));
  }
  *scale = p.scale;
  if (zero != nullptr) *zero = p.zero;
}
#endif

template <typename T>
void quantize_rows(const at::Tensor& x, int64_t k, bool symmetric, at::Tensor& q, at::Tensor& scale, at::Tensor& zero) {
  const T* data = x.data_ptr<T>();
  int8_t* qd = q.data_ptr<int8_t>();
  float* sd = scale.data_ptr<float>();
  int32_t* zd = symmetric ? nullptr : zero.data_ptr<int32_t>();
  const int64_t rows = scale.numel();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
#ifdef TORCHAO_X86
      if (torchao_cpp::use_avx512()) {
        row_avx512(data + i * k, k, symmetric, qd + i * k, sd + i, zd == nullptr ? nullptr : zd + i);
        continue;
      }
#endif
      row_portable(data + i * k, k, symmetric, qd + i * k, sd + i, zd == nullptr ? nullptr : zd + i);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_int8_per_token(const at::Tensor& x, bool symmetric) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) > 0 &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf),
              "quantize_int8_per_token: float32 / bfloat16 / float16 x (..., K) with K > 0 expected, got ", x.sizes(),
              " ", x.scalar_type());
  const auto xc = x.contiguous();
  const int64_t k = x.size(-1);
  std::vector<int64_t> row_shape(x.sizes().begin(), x.sizes().end() - 1);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kChar));
  at::Tensor scale = at::empty(row_shape, x.options().dtype(at::kFloat));
  const auto int_options = x.options().dtype(at::kInt);
  at::Tensor zero = symmetric ? at::empty({0}, int_options) : at::empty(row_shape, int_options);
  switch (x.scalar_type()) {
    case at::kFloat: quantize_rows<float>(xc, k, symmetric, q, scale, zero); break;
    case at::kBFloat16: quantize_rows<at::BFloat16>(xc, k, symmetric, q, scale, zero); break;
    default: quantize_rows<at::Half>(xc, k, symmetric, q, scale, zero); break;
  }
  return {q, scale, zero};
}

}  // namespace

// the schema is defined in torchao/kernels/cpu.py (with the fake and a loader for processes without this library)
TORCH_LIBRARY_IMPL(torchao, CPU, m) { m.impl("quantize_int8_per_token_cpu", &quantize_int8_per_token); }
