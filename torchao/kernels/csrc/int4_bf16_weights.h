// The int4 weights of aten's AVX-512 packing (int4_cpu_packing.h) dequantized to bfloat16 pairs: the B operand
// of AMX tiles (bf16_int4_amx.cpp) and of AVX-512 BF16 dot products (bf16_int4_gemm.cpp), each weight rounded
// once, w = bf16((q - 8) * s + z), as int4_cpu_dequantize and F.linear on the dequantized weight have it.
#pragma once

#include "amx.h"
#include "host_helpers.h"
#include "int4_cpu_packing.h"

#include <cstdint>

namespace torchao_cpp {

// packed (N, K / 2), N a multiple of 64, and bfloat16 group scales (s, z) or s
struct Int4Weights {
  const uint8_t* packed;
  const uint16_t* sz;  // bfloat16 bits, (K / G, N, width)
  int64_t k, n, group, sz_width;
};

#ifdef TORCHAO_X86
// Output channels [n0, n0 + rows) (whole 64-channel blocks of the packing), k-steps [step0, step0 + steps), as
// bfloat16 B tiles: tile (16-channel block c, step s) at out + (c * steps + s) * 512, pair row p, lane j =
// (w[n0 + 16 c + j, k], w[n0 + 16 c + j, k + 1]) for k = 32 (step0 + s) + 2p.
// Per 64-channel block and k the packing holds 32 bytes, byte j = channel j (low nibble) | channel j + 32 (high):
// 16 bytes widened to 32-bit lanes serve two 16-channel blocks; vpermps looks the nibble (the lane's low 4 bits)
// up in the table q - 8, one fma applies the group's scale and zero, and the k and k + 1 values are rounded to
// bfloat16 and interleaved into pairs.
TORCHAO_AVX512 inline void dequantize_weights(const Int4Weights& w, int64_t n0, int64_t rows, int64_t step0,
                                              int64_t steps, uint16_t* out) {
  const __m512 minus8 = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  // 16-bit lane 2i <- lane i (the value at k), 2i + 1 <- lane 16 + i (at k + 1)
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t block = 0; block < rows / kInt4BlockN; ++block) {
    const int64_t first = n0 + block * kInt4BlockN;
    const uint8_t* data = w.packed + first * (w.k / 2);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t t0 = (step0 + s) * kTileK;
      __m512 scale[4], zero[4];
      int64_t group = -1;
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t t = t0 + 2 * p;
        if (t / w.group != group) {
          group = t / w.group;
          for (int c = 0; c < 4; ++c)
            load_group_scales(w.sz, w.sz_width, w.n, group, first + 16 * c, scale[c], zero[c]);
        }
        for (int half = 0; half < 2; ++half) {  // bytes 0-15: channels 0-15 and 32-47; bytes 16-31: 16-31, 48-63
          const auto bytes16 = [&](int64_t row) {
            return _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + row * 32 + 16 * half));
          };
          const __m512i even = _mm512_cvtepu8_epi32(bytes16(t));
          const __m512i odd = _mm512_cvtepu8_epi32(bytes16(t + 1));
          for (int nibble = 0; nibble < 2; ++nibble) {
            const int c = half + 2 * nibble;  // 16-channel block within the 64
            const __m512i e = nibble ? _mm512_srli_epi32(even, 4) : even, o = nibble ? _mm512_srli_epi32(odd, 4) : odd;
            const __m512 ve = _mm512_fmadd_ps(_mm512_permutexvar_ps(e, minus8), scale[c], zero[c]);
            const __m512 vo = _mm512_fmadd_ps(_mm512_permutexvar_ps(o, minus8), scale[c], zero[c]);
            const __m512i pairs = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(vo, ve));
            _mm512_storeu_si512(out + ((block * 4 + c) * steps + s) * 512 + p * 32, pairs);
          }
        }
      }
    }
  }
}

#endif

}  // namespace torchao_cpp
