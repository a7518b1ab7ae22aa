// Run-time choice between the AVX-512 (VNNI) kernels and their portable paths.
#pragma once

#include <cstdlib>

// TORCHAO_X86: x86-64, where the AVX-512 paths (and their intrinsics) are compiled
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define TORCHAO_X86 1
#endif

namespace torchao_cpp {

// Whether this CPU has AVX-512 F / BW / VL; TORCHAO_CPU_PORTABLE=1 (read once) forces the portable paths,
// which the tests compare against.
inline bool use_avx512() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool yes = std::getenv("TORCHAO_CPU_PORTABLE") == nullptr && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return yes;
#else
  return false;
#endif
}

// use_avx512() and AVX-512 VNNI (integer dot products)
inline bool use_vnni() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool yes = use_avx512() && __builtin_cpu_supports("avx512vnni");
  return yes;
#else
  return false;
#endif
}

// use_avx512() and AVX-512 BF16 (bfloat16 dot products)
inline bool use_avx512_bf16() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool yes = use_avx512() && __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}

// AVX-512 VBMI (byte permutes across the register) on this CPU; TORCHAO_CPU_NO_VBMI=1 turns it off (the tests
// compare both)
inline bool vbmi_allowed() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool yes = __builtin_cpu_supports("avx512vbmi") && std::getenv("TORCHAO_CPU_NO_VBMI") == nullptr;
  return yes;
#else
  return false;
#endif
}

// use_avx512_bf16() and VBMI
inline bool use_avx512_bf16_vbmi() { return use_avx512_bf16() && vbmi_allowed(); }

// use_vnni() and VBMI
inline bool use_vnni_vbmi() { return use_vnni() && vbmi_allowed(); }

}  // namespace torchao_cpp
