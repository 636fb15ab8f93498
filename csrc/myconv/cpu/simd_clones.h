// The shipped build targets baseline x86-64; the depthwise loops (forward and gradients) are also
// compiled for x86-64-v3 (AVX2+FMA) and x86-64-v4 (AVX-512), and the loader picks by CPU
// features, not CPU model (GCC function multiversioning).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MYCONV_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MYCONV_SIMD_CLONES
#endif
