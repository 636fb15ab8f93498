#include "myconv/cuda/engine.h"

#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

namespace myconv {
namespace cuda {

const char* kernel_name(ImplicitGemmKernel kernel) {
  switch (kernel) {
    case ImplicitGemmKernel::kSm80Half: return "sm80_f16";
    case ImplicitGemmKernel::kSm80BFloat16: return "sm80_bf16";
    case ImplicitGemmKernel::kSm80TF32: return "sm80_tf32";
    case ImplicitGemmKernel::kSm80Float32: return "sm80_3xtf32";
  }
  return "unknown";
}

const char* direction_name(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::kFprop: return "fprop";
    case ConvDirection::kDgrad: return "dgrad";
    case ConvDirection::kWgrad: return "wgrad";
  }
  return "unknown";
}

#ifdef MYCONV_WITH_CUTLASS
bool implicit_gemm_can_implement(ImplicitGemmKernel kernel, ConvDirection direction, const ImplicitGemmProblem& p) {
  switch (direction) {
    case ConvDirection::kFprop: return detail::fprop_can_implement(kernel, p);
    case ConvDirection::kDgrad: return detail::dgrad_can_implement(kernel, p);
    case ConvDirection::kWgrad: return detail::wgrad_can_implement(kernel, p);
  }
  return false;
}

const char* implicit_gemm_run(ImplicitGemmKernel kernel, ConvDirection direction, const ImplicitGemmProblem& p,
                              const ImplicitGemmOperands& operands, void* stream) {
  switch (direction) {
    case ConvDirection::kFprop: return detail::fprop(kernel, p, operands, stream);
    case ConvDirection::kDgrad: return detail::dgrad(kernel, p, operands, stream);
    case ConvDirection::kWgrad: return detail::wgrad(kernel, p, operands, stream);
  }
  return "unknown direction";
}
#endif

EngineRequest parse_engine_request(const char* value) {
  const std::string_view v = value ? value : "";
  if (v.empty() || v == "auto") return EngineRequest::kAuto;
  if (v == "im2row") return EngineRequest::kIm2row;
  if (v == "implicit_gemm") return EngineRequest::kImplicitGemm;
  TORCH_CHECK_VALUE(false, "MYCONV_CUDA_ENGINE must be auto, im2row or implicit_gemm (or unset), got \"", v, "\"");
}

EngineRequest engine_request_from_env() { return parse_engine_request(std::getenv("MYCONV_CUDA_ENGINE")); }

std::optional<ImplicitGemmProblem> implicit_gemm_problem(const Conv2dPlan& p) {
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const int64_t sizes[] = {p.batch, p.in_h, p.in_w, p.in_channels, p.out_channels, p.kernel_h, p.kernel_w,
                           p.out_h, p.out_w, p.pad_h.before, p.pad_w.before, p.stride_h, p.stride_w,
                           p.dilation_h, p.dilation_w, p.groups};
  for (const int64_t size : sizes) {
    if (size > kIntMax) return std::nullopt;
  }
  // CUTLASS's iterators form a tap's offset (h * W + w) * C, with h and w anywhere in the padded,
  // dilated window's reach, in int before widening: that reach times the channels must fit too.
  const int64_t reach_h = p.pad_h.before + p.in_h + p.pad_h.after + (p.kernel_h - 1) * p.dilation_h;
  const int64_t reach_w = p.pad_w.before + p.in_w + p.pad_w.after + (p.kernel_w - 1) * p.dilation_w;
  const int64_t channels = std::max(p.in_channels, p.out_channels);
  if (reach_h == 0 || reach_w == 0 || channels == 0) return std::nullopt;  // empty: no kernel runs
  if (reach_h > kIntMax / reach_w || reach_h * reach_w > kIntMax / channels) return std::nullopt;
  const auto i = [](int64_t v) { return static_cast<int>(v); };
  return ImplicitGemmProblem{i(p.batch),      i(p.in_h),         i(p.in_w),     i(p.in_channels),
                             i(p.out_channels), i(p.kernel_h),   i(p.kernel_w), i(p.out_h),
                             i(p.out_w),      i(p.pad_h.before), i(p.pad_w.before), i(p.stride_h),
                             i(p.stride_w),   i(p.dilation_h),   i(p.dilation_w), i(p.groups)};
}

std::optional<ImplicitGemmKernel> implicit_gemm_kernel_for(c10::ScalarType dtype, bool tf32, int arch) {
  if (arch < 80) return std::nullopt;
  switch (dtype) {
    case c10::kHalf: return ImplicitGemmKernel::kSm80Half;
    case c10::kBFloat16: return ImplicitGemmKernel::kSm80BFloat16;
    case c10::kFloat: return tf32 ? ImplicitGemmKernel::kSm80TF32 : ImplicitGemmKernel::kSm80Float32;
    default: return std::nullopt;
  }
}

EngineChoice choose_cuda_engine(const Conv2dPlan& plan, ConvDirection direction, c10::ScalarType dtype, bool tf32,
                                int arch, bool operands_aligned, EngineRequest request, CanImplement can_implement) {
  constexpr CudaEngine kIm2row = CudaEngine::kIm2row;
  if (request == EngineRequest::kAuto) {
    return {kIm2row, std::nullopt, "the default until the implicit GEMMs are proven on a GPU"};
  }
  if (request == EngineRequest::kIm2row) return {kIm2row, std::nullopt, "MYCONV_CUDA_ENGINE=im2row"};
  TORCH_CHECK(can_implement, "MYCONV_CUDA_ENGINE=implicit_gemm, but this build of myconv has no CUTLASS kernels "
              "(its CMake configure found no CUTLASS: pip install --no-deps -r requirements-cutlass.txt, then rebuild)");
  if (plan.is_depthwise()) return {kIm2row, std::nullopt, "depthwise convolutions run their own direct kernel"};
  const std::optional<ImplicitGemmKernel> kernel = implicit_gemm_kernel_for(dtype, tf32, arch);
  if (!kernel) {
    return {kIm2row, std::nullopt,
            arch < 80 ? "the implicit GEMMs need compute capability 8.0 or newer" : "float64 runs im2row + cuBLAS"};
  }
  if (!operands_aligned) return {kIm2row, std::nullopt, "an operand's data is not 16-byte aligned"};
  const std::optional<ImplicitGemmProblem> problem = implicit_gemm_problem(plan);
  if (!problem) return {kIm2row, std::nullopt, "a size is outside the implicit GEMMs' range (empty, or past int)"};
  if (!can_implement(*kernel, direction, *problem)) {
    return {kIm2row, std::nullopt,
            "CUTLASS cannot implement this shape (channel alignment, groups, size, or a dilated strided dgrad)"};
  }
  return {CudaEngine::kImplicitGemm, kernel, "MYCONV_CUDA_ENGINE=implicit_gemm"};
}

CanImplement compiled_can_implement() {
#ifdef MYCONV_WITH_CUTLASS
  return &implicit_gemm_can_implement;
#else
  return nullptr;
#endif
}

bool implicit_gemm_compiled() { return compiled_can_implement() != nullptr; }

namespace {

ConvDirection parse_direction(c10::string_view name) {
  for (const ConvDirection d : {ConvDirection::kFprop, ConvDirection::kDgrad, ConvDirection::kWgrad}) {
    if (name == direction_name(d)) return d;
  }
  TORCH_CHECK_VALUE(false, "myconv.cuda_engine: direction must be fprop, dgrad or wgrad, got \"", name, "\"");
}

// [engine, kernel ("" for im2row), reason] of one direction of a call with these sizes on a device of
// compute capability `arch`, with aligned operands, under this process's MYCONV_CUDA_ENGINE: asks
// CUTLASS's can_implement on the host, so tests check the benchmark's and the suites' shapes
// without a GPU.
std::vector<std::string> cuda_engine_of(at::IntArrayRef input_size, at::IntArrayRef filter_size,
                                        c10::ScalarType dtype, at::IntArrayRef stride, const PaddingSpec& padding,
                                        at::IntArrayRef dilation, int64_t arch, bool tf32, c10::string_view direction) {
  const Conv2dPlan plan = make_plan(check_conv2d_shapes<int64_t>(input_size, filter_size, stride, padding, dilation),
                                    stride, padding, dilation);
  const EngineChoice choice =
      choose_cuda_engine(plan, parse_direction(direction), dtype, tf32, static_cast<int>(arch),
                         /*operands_aligned=*/true, engine_request_from_env(), compiled_can_implement());
  return {choice.engine == CudaEngine::kImplicitGemm ? "implicit_gemm" : "im2row",
          choice.kernel ? kernel_name(*choice.kernel) : "", choice.reason};
}

std::vector<std::string> cuda_engine(at::IntArrayRef input_size, at::IntArrayRef filter_size, c10::ScalarType dtype,
                                     at::IntArrayRef stride, c10::string_view padding, at::IntArrayRef dilation,
                                     int64_t arch, bool tf32, c10::string_view direction) {
  return cuda_engine_of(input_size, filter_size, dtype, stride,
                        parse_padding_mode(std::string_view(padding.data(), padding.size())), dilation, arch, tf32,
                        direction);
}

std::vector<std::string> cuda_engine_explicit(at::IntArrayRef input_size, at::IntArrayRef filter_size,
                                              c10::ScalarType dtype, at::IntArrayRef stride, at::IntArrayRef padding,
                                              at::IntArrayRef dilation, int64_t arch, bool tf32,
                                              c10::string_view direction) {
  return cuda_engine_of(input_size, filter_size, dtype, stride, parse_explicit_padding(padding), dilation, arch, tf32,
                        direction);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(myconv, m) {
  m.def("cuda_engine(int[] input_size, int[] filter_size, ScalarType dtype, int[] stride, str padding, "
        "int[] dilation, int arch, bool tf32, str direction=\"fprop\") -> str[]",
        &cuda_engine);
  m.def("cuda_engine.explicit(int[] input_size, int[] filter_size, ScalarType dtype, int[] stride, int[] padding, "
        "int[] dilation, int arch, bool tf32, str direction=\"fprop\") -> str[]",
        &cuda_engine_explicit);
  m.def("cuda_implicit_gemm_compiled() -> bool", &implicit_gemm_compiled);
}

}  // namespace cuda
}  // namespace myconv
