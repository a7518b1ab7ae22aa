// What the int4 CPU kernels share about aten's AVX-512 int4 packing (aten._convert_weight_to_int4pack_for_cpu)
// and its bfloat16 group scales.
//   packed  (N, K / 2) uint8: blocks of 64 output channels; per k of a block 32 bytes, low nibbles channels
//           0..31, high nibbles channels 32..63
//   sz      (K / G, N, 2) bfloat16 per group (scale s, zero z): w[n, k] = (q[n, k] - 8) * s + z; or
//           (K / G, N, 1): scales only, z = 0
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace torchao_cpp {

constexpr int64_t kInt4BlockN = 64;

inline float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// nibble q[n, k] of the block starting at ``block_data`` (channel c of the block)
inline int32_t int4_at(const uint8_t* block_data, int64_t c, int64_t k) {
  const uint8_t byte = block_data[k * 32 + (c & 31)];
  return c < 32 ? (byte & 0xF) : (byte >> 4);
}

#if defined(__x86_64__) || defined(_M_X64)
// 16-bit lanes holding one packed byte each -> the bfloat16 numbers 128 + q of their low (high = false) or high
// nibbles: bits 0x4300 | q, one bit operation, no conversion
__attribute__((target("avx512f,avx512bw"))) inline __m512i nibbles_as_bf16(__m512i bytes, bool high) {
  const __m512i lanes = high ? _mm512_srli_epi16(bytes, 4) : bytes;
  // (a & b) | c = 0xEA
  return _mm512_ternarylogic_epi32(lanes, _mm512_set1_epi16(0x000F), _mm512_set1_epi16(0x4300), 0xEA);
}

// Group g's (s, z) of 16 consecutive channels from channel n (of n_total) as two float vectors: bfloat16 pairs
// (32-bit lane = s | z << 16), or scales only (width 1, z = 0)
__attribute__((target("avx512f"))) inline void load_group_scales(const uint16_t* sz, int64_t width,
                                                                  int64_t n_total, int64_t g, int64_t n, __m512& s,
                                                                  __m512& z) {
  const uint16_t* at = sz + (g * n_total + n) * width;
  if (width == 1) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
    s = _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
    z = _mm512_setzero_ps();
    return;
  }
  const __m512i pairs = _mm512_loadu_si512(at);
  s = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
  z = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
#endif

}  // namespace torchao_cpp
