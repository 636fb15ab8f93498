// How the CUDA entry points (conv2d_kernel.cu, conv2d_backward.cu) ask engine.h for a kernel and
// launch an implicit GEMM: the device's architecture, torch's TF32 setting and the operands'
// alignment go into the one engine choice.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cstdint>
#include <initializer_list>

#include "myconv/cuda/engine.h"
#include "myconv/cuda/gemm_policy.h"

namespace myconv {
namespace cuda {

// The engine for one direction of a call on `device_tensor`'s device; `operands` are the tensors
// the kernel reads and writes as they are (nullptr entries skipped; the KRSC filters are fresh
// allocations), whose data must be 16-byte aligned for the implicit GEMMs' vector accesses.
inline EngineChoice engine_for(const Conv2dPlan& plan, ConvDirection direction, const at::Tensor& device_tensor,
                               std::initializer_list<const at::Tensor*> operands) {
  bool aligned = true;
  for (const at::Tensor* t : operands) {
    if (t && reinterpret_cast<uintptr_t>(t->const_data_ptr()) % 16 != 0) aligned = false;
  }
  const cudaDeviceProp* device = at::cuda::getDeviceProperties(device_tensor.device().index());
  const c10::ScalarType dtype = device_tensor.scalar_type();
  return choose_cuda_engine(plan, direction, dtype, gemm_policy(dtype).tf32, device->major * 10 + device->minor,
                            aligned, engine_request_from_env(), compiled_can_implement());
}

#ifdef MYCONV_WITH_CUTLASS
// The filter in the KRSC layout CUTLASS reads: HWIO [KH, KW, Cg, O] -> [O, KH, KW, Cg], a cheap
// pass each call (never cached: a filter's contents may change without a version bump).
inline at::Tensor krsc_filter(const at::Tensor& hwio) { return hwio.permute({3, 0, 1, 2}).contiguous(); }

inline void run_implicit_gemm(const EngineChoice& engine, ConvDirection direction, const Conv2dPlan& plan,
                              const ImplicitGemmOperands& operands, const char* op) {
  const char* error = implicit_gemm_run(*engine.kernel, direction, *implicit_gemm_problem(plan), operands,
                                        at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(error == nullptr, op, ": the implicit-GEMM kernel ", kernel_name(*engine.kernel), " (",
              direction_name(direction), ") failed: ", error);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

}  // namespace cuda
}  // namespace myconv
