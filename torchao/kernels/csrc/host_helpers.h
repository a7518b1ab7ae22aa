// Host-side helpers shared by the C++ CPU ops: argument views and output writing without extra aten calls
// (each aten call costs microseconds of dispatch; a decode step runs ~150 of these ops).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "cpu_features.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

namespace torchao_cpp {

// ``t`` as a contiguous tensor of ``dtype``: itself when it already is one (no aten call), else converted
inline at::Tensor as_contiguous(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype && t.is_contiguous() ? t : t.to(dtype).contiguous();
}

// A float32 / bfloat16 / float16 tensor's values as float32, row-major (one pass, no aten call)
inline std::vector<float> to_float(const at::Tensor& t) {
  const auto c = t.contiguous();
  const int64_t count = c.numel();
  std::vector<float> values(count);
  switch (c.scalar_type()) {
    case at::kFloat: std::copy(c.data_ptr<float>(), c.data_ptr<float>() + count, values.begin()); break;
    case at::kBFloat16:
      std::copy(c.data_ptr<at::BFloat16>(), c.data_ptr<at::BFloat16>() + count, values.begin());
      break;
    case at::kHalf: std::copy(c.data_ptr<at::Half>(), c.data_ptr<at::Half>() + count, values.begin()); break;
    default: TORCH_CHECK(false, "torchao CPU kernels: float32, bfloat16 or float16 activations expected, got ",
                         c.scalar_type());
  }
  return values;
}

// A float32 / bfloat16 tensor's values as bfloat16, row-major: the tensor's own memory where it is contiguous
// bfloat16 (no copy: 4 MB at 512 x 4096), else rounded to nearest even (as Tensor.to) into a buffer. The
// tensor must outlive it; default-constructed: no values.
class Bfloat16Rows {
 public:
  Bfloat16Rows() = default;

  explicit Bfloat16Rows(const at::Tensor& t) : count_(t.numel()) {
    if (t.scalar_type() == at::kBFloat16 && t.is_contiguous()) {
      data_ = t.data_ptr<at::BFloat16>();
      return;
    }
    const auto c = t.contiguous();
    if (c.scalar_type() == at::kBFloat16) rounded_.assign(c.data_ptr<at::BFloat16>(), c.data_ptr<at::BFloat16>() + count_);
    else {
      TORCH_CHECK(c.scalar_type() == at::kFloat, "torchao CPU kernels: float32 or bfloat16 activations expected, got ",
                  c.scalar_type());
      rounded_.assign(c.data_ptr<float>(), c.data_ptr<float>() + count_);
    }
    data_ = rounded_.data();
  }

  Bfloat16Rows(const Bfloat16Rows&) = delete;
  Bfloat16Rows& operator=(const Bfloat16Rows&) = delete;

  const at::BFloat16* begin() const { return data_; }
  const at::BFloat16* end() const { return data_ + count_; }
  // the values' bits, or null when there are none
  const uint16_t* bits() const { return reinterpret_cast<const uint16_t*>(data_); }

 private:
  std::vector<at::BFloat16> rounded_;
  const at::BFloat16* data_ = nullptr;
  int64_t count_ = 0;
};

// A 64-byte aligned array of ``count`` T, uninitialized, that keeps its memory when shrunk (AMX tile rows and
// AVX-512 vectors that straddle cache lines cost two loads; malloc aligns to 16 bytes only)
template <typename T>
class AlignedBuffer {
 public:
  T* get() const { return data_.get(); }

  // at least ``count`` elements (old contents are not kept when it grows)
  T* reserve(int64_t count) {
    if (count > capacity_) {
      const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64;
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      TORCH_CHECK(data_ != nullptr, "torchao CPU kernels: could not allocate ", bytes, " bytes");
      capacity_ = count;
    }
    return data_.get();
  }

  // frees the memory if it holds more than ``bytes`` (a cache kept between calls stays small)
  void shrink_to(int64_t bytes) {
    if (capacity_ * static_cast<int64_t>(sizeof(T)) > bytes) {
      data_.reset();
      capacity_ = 0;
    }
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t capacity_ = 0;
};

// Per row and group of ``group`` consecutive k (``group`` divides K, or is K or more: one group a row): the sum of
// the row's values in k order as Sum (int32 for int8 values: exact; float for bfloat16), (M, max(K / group, 1))
// row-major (K = 0: one zero per row). No division per element (a 64-bit divide per k cost ~7 us a call at
// K = 2048, ~1 ms a decoded token of a 1.1 B model).
template <typename Sum, typename T>
inline std::vector<Sum> group_sums(const T* x, int64_t m, int64_t k, int64_t group) {
  const int64_t groups = std::max<int64_t>(k / group, 1), width = std::min(group, k);
  std::vector<Sum> sums(m * groups, Sum(0));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      Sum total(0);
      for (const T* v = x + i * k + g * width; v < x + i * k + (g + 1) * width; ++v) total += static_cast<Sum>(*v);
      sums[i * groups + g] = total;
    }
  return sums;
}

// How many weight rows of ``row_bytes`` a parallel task takes: tasks streaming at least ~64 KB of weights each
inline int64_t rows_per_task(int64_t row_bytes) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(row_bytes, 1));
}

// values[0, count) rounded to nearest even into bfloat16 / float16 (as static_cast does), 16 at a time where the
// CPU can
#ifdef TORCHAO_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void round_avx512(const float* values,
                                                                                        int64_t count,
                                                                                        at::BFloat16* out) {
  int64_t j = 0;
  for (; j + 16 <= count; j += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(values + j)));
  for (; j < count; ++j) out[j] = static_cast<at::BFloat16>(values[j]);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void round_avx512(const float* values,
                                                                                        int64_t count, at::Half* out) {
  int64_t j = 0;
  for (; j + 16 <= count; j += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j),
                        _mm512_cvtps_ph(_mm512_loadu_ps(values + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; j < count; ++j) out[j] = static_cast<at::Half>(values[j]);
}
#endif

template <typename T>
inline void round_values(const float* values, int64_t count, T* out) {
#ifdef TORCHAO_X86
  if (use_avx512_bf16()) {
    round_avx512(values, count, out);
    return;
  }
#endif
  for (int64_t j = 0; j < count; ++j) out[j] = static_cast<T>(values[j]);
}

// The (M, N) output of ``dtype``: kernels write float32 to ``values()``; for 16-bit outputs that is a scratch
// buffer whose columns [n0, n1) ``finish`` rounds into the output (call it in the thread that computed them).
class FloatOutput {
 public:
  FloatOutput(int64_t m, int64_t n, at::ScalarType dtype, const at::TensorOptions& options)
      : m_(m), n_(n), out_(at::empty({m, n}, options.dtype(dtype))) {
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
                "torchao CPU kernels: out_dtype float32, bfloat16 or float16 expected, got ", dtype);
    if (dtype != at::kFloat) scratch_.reserve(m * n);  // uninitialized: the kernels write every value
  }

  float* values() { return scratch_.get() ? scratch_.get() : out_.data_ptr<float>(); }

  void finish(int64_t n0, int64_t n1) {
    n1 = std::min(n1, n_);
    if (!scratch_.get() || n1 <= n0) return;
    if (out_.scalar_type() == at::kBFloat16) round_into(out_.data_ptr<at::BFloat16>(), n0, n1);
    else round_into(out_.data_ptr<at::Half>(), n0, n1);
  }

  at::Tensor tensor() const { return out_; }

  // run(begin, end) over [0, units) in parallel, each unit ``width`` output columns (the last may be narrower)
  // and each task at least
  // ``grain`` units; each task's columns are finished in the thread that computed them
  template <typename Run>
  void parallel_columns(int64_t units, int64_t width, int64_t grain, const Run& run) {
    at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
      run(begin, end);
      finish(begin * width, end * width);
    });
  }

 private:
  template <typename T>
  void round_into(T* typed, int64_t n0, int64_t n1) {
    for (int64_t i = 0; i < m_; ++i) round_values(scratch_.get() + i * n_ + n0, n1 - n0, typed + i * n_ + n0);
  }

  int64_t m_, n_;
  at::Tensor out_;
  AlignedBuffer<float> scratch_;
};

}  // namespace torchao_cpp
