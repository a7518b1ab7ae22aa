// Splitting a range into tiles whose size is a compile-time constant (the kernels keep one register per row
// or channel of a tile, so each size is its own template instance).
#pragma once

#include <cstdint>
#include <type_traits>

namespace torchao_cpp {

template <int kSize, typename Body>
inline void last_tile(int64_t rest, int64_t start, Body& body) {
  if constexpr (kSize > 0) {
    if (rest == kSize) body(std::integral_constant<int, kSize>{}, start);
    else last_tile<kSize - 1>(rest, start, body);
  }
}

// body(std::integral_constant<int, size>, start) for consecutive tiles of [0, count): kTile-sized ones, then
// one of the remaining size (1 .. kTile - 1) if any
template <int kTile, typename Body>
inline void for_each_tile(int64_t count, Body body) {
  int64_t start = 0;
  for (; start + kTile <= count; start += kTile) body(std::integral_constant<int, kTile>{}, start);
  last_tile<kTile - 1>(count - start, start, body);
}

}  // namespace torchao_cpp
