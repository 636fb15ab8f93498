// The fused convolution's epilogue on the CPU: values = activation(values + residual), in place,
// on outputs the kernels have just written (still in cache), in float32 for float and half types
// (float64 for float64), through activation.h's one definition of each activation. The loops are
// compiled for AVX2 and AVX-512 too (MYCONV_SIMD_CLONES, chosen at load time) and vectorise:
// activation.h's float32 functions are branch-free.
#pragma once

#include <cstdint>
#include <type_traits>

#include "myconv/activation.h"
#include "myconv/cpu/simd_clones.h"

namespace myconv {
namespace cpu {
namespace epilogue_detail {

template <Activation kActivation, typename V, typename R, typename M>
MYCONV_SIMD_CLONES void rows(V* __restrict__ values, int64_t stride, const R* __restrict__ residual,
                             int64_t residual_stride, int64_t count, int64_t channels, M alpha) {
  for (int64_t r = 0; r < count; ++r) {
    V* __restrict__ const v = values + r * stride;
    if (residual != nullptr) {
      const R* __restrict__ const res = residual + r * residual_stride;
      for (int64_t c = 0; c < channels; ++c) {
        v[c] = static_cast<V>(activate<kActivation>(static_cast<M>(v[c]) + static_cast<M>(res[c]), alpha));
      }
    } else {
      for (int64_t c = 0; c < channels; ++c) v[c] = static_cast<V>(activate<kActivation>(static_cast<M>(v[c]), alpha));
    }
  }
}

}  // namespace epilogue_detail

// `count` rows of `channels` values, `stride` apart; residual rows `residual_stride` apart, or
// nullptr for none (residual and values do not overlap).
template <typename V, typename R>
void apply_epilogue(const Epilogue& e, V* values, int64_t stride, const R* residual, int64_t residual_stride,
                    int64_t count, int64_t channels) {
  using M = std::conditional_t<std::is_same_v<V, double>, double, float>;
  with_activation(e.activation, [&](auto kind) {
    epilogue_detail::rows<decltype(kind)::value>(values, stride, residual, residual_stride, count, channels,
                                                 static_cast<M>(e.alpha));
  });
}

}  // namespace cpu
}  // namespace myconv
