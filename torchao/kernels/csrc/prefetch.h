// Software prefetch for weights that stream from memory once per call (decode: each weight byte read once).
// Into L2 (hint T1), 8 KB ahead: on a 2-core Xeon (AMX) slice, the M = 1 int4 kernel on 5632 x 2048 weights cycled
// from DRAM read 9.4 GB/s with L1 prefetches (T0) 4 KB ahead and 12.4 GB/s with L2 ones 8 KB ahead (means of 8
// runs; a plain read of the same bytes: 15.5 GB/s); T0 prefetches hold the L1 fill buffers the loads wait on.
#pragma once

#include "cpu_features.h"

#include <cstdint>

namespace torchao_cpp {

constexpr int64_t kStreamPrefetchBytes = 8192;

#ifdef TORCHAO_X86
// prefetch the cache line at ``at`` into L2
inline void prefetch_to_l2(const void* at) { _mm_prefetch(static_cast<const char*>(at), _MM_HINT_T1); }

// prefetch the cache line kStreamPrefetchBytes past ``at`` (call once per 64 bytes read)
inline void prefetch_stream(const void* at) { prefetch_to_l2(static_cast<const char*>(at) + kStreamPrefetchBytes); }
#endif

}  // namespace torchao_cpp
