// Host-side helpers shared by the C++ CPU ops: argument views and output writing without extra aten calls
// (each aten call costs microseconds of dispatch; a decode step runs ~150 of these ops).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
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
    case at::kBFloat16: std::copy(c.data_ptr<at::BFloat16>(), c.data_ptr<at::BFloat16>() + count, values.begin()); break;
    case at::kHalf: std::copy(c.data_ptr<at::Half>(), c.data_ptr<at::Half>() + count, values.begin()); break;
    default: TORCH_CHECK(false, "torchao CPU kernels: float32, bfloat16 or float16 activations expected, got ",
                         c.scalar_type());
  }
  return values;
}

// A float32 / bfloat16 tensor's values rounded to bfloat16 (to nearest even, as Tensor.to), row-major
inline std::vector<at::BFloat16> to_bfloat16(const at::Tensor& t) {
  const auto c = t.contiguous();
  const int64_t count = c.numel();
  if (c.scalar_type() == at::kBFloat16) return {c.data_ptr<at::BFloat16>(), c.data_ptr<at::BFloat16>() + count};
  TORCH_CHECK(c.scalar_type() == at::kFloat, "torchao CPU kernels: float32 or bfloat16 activations expected, got ",
              c.scalar_type());
  return {c.data_ptr<float>(), c.data_ptr<float>() + count};
}

// Per row and group of ``group`` consecutive k (``group`` divides K): the int32 sum of the row's int8 values,
// (M, max(K / group, 1)) row-major (K = 0: one zero per row)
inline std::vector<int32_t> group_sums(const int8_t* x, int64_t m, int64_t k, int64_t group) {
  const int64_t groups = std::max<int64_t>(k / group, 1);
  std::vector<int32_t> sums(m * groups, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t t = 0; t < k; ++t) sums[i * groups + t / group] += x[i * k + t];
  return sums;
}

// How many weight rows of ``row_bytes`` a parallel task takes: tasks streaming at least ~64 KB of weights each
inline int64_t rows_per_task(int64_t row_bytes) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(row_bytes, 1)); }

// The (M, N) output of ``dtype``: kernels write float32 to ``values()``; for 16-bit outputs that is a scratch
// buffer whose columns [n0, n1) ``finish`` rounds into the output (call it in the thread that computed them).
class FloatOutput {
 public:
  FloatOutput(int64_t m, int64_t n, at::ScalarType dtype, const at::TensorOptions& options)
      : m_(m), n_(n), out_(at::empty({m, n}, options.dtype(dtype))) {
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
                "torchao CPU kernels: out_dtype float32, bfloat16 or float16 expected, got ", dtype);
    if (dtype != at::kFloat) scratch_.resize(m * n);
  }

  float* values() { return scratch_.empty() ? out_.data_ptr<float>() : scratch_.data(); }

  void finish(int64_t n0, int64_t n1) {
    if (scratch_.empty()) return;
    if (out_.scalar_type() == at::kBFloat16) round_into(out_.data_ptr<at::BFloat16>(), n0, n1);
    else round_into(out_.data_ptr<at::Half>(), n0, n1);
  }

  at::Tensor tensor() const { return out_; }

  // run(begin, end) over [0, units) in parallel, each unit ``width`` output columns and each task at least
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
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = n0; j < n1; ++j) typed[i * n_ + j] = static_cast<T>(scratch_[i * n_ + j]);
  }

  int64_t m_, n_;
  at::Tensor out_;
  std::vector<float> scratch_;
};

}  // namespace torchao_cpp
