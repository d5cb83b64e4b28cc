// A Linear (and fc1 + bias + GELU) as one cuBLASLt call with an algorithm chosen per shape (issue 13,
// twelfth session; an experiment, see lt_linear.py for what it showed).
//
// The op makes the cublasLtMatmul call PyTorch's gemm_and_bias makes (fp32 compute, bias or GELU+bias
// epilogue), with the algorithm `choose` set for the shape, or the heuristic's first (what PyTorch runs).
// `lseg_lt::linear(x, weight, bias, gelu)` is registered for CUDA; lt_linear.py adds its fake
// implementation. The choices live in this process.
//
// On the GPU machine (torch 2.11+cu130, its g++), anything in an extension built there that formats with
// std::ostringstream crashed with a segmentation fault (runs 61-63), and so does every failing TORCH_CHECK,
// whose message c10::str formats that way (run 66: the test of `choose` with a malformed algorithm).
// Nothing here formats a string on the success path.
#include <torch/extension.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cublasLt.h>

#include <array>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

namespace {

void check(cublasStatus_t status, const char* what) {
  TORCH_CHECK(status == CUBLAS_STATUS_SUCCESS, "lseg_lt: ", what, " failed (cublasStatus ", int(status), ")");
}

// One handle per device, made on first use (cuBLASLt handles are not tied to a stream).
cublasLtHandle_t handle(int device) {
  static std::mutex lock;
  static std::map<int, cublasLtHandle_t> handles;
  std::lock_guard<std::mutex> guard(lock);
  auto found = handles.find(device);
  if (found != handles.end()) return found->second;
  cublasLtHandle_t created = nullptr;
  check(cublasLtCreate(&created), "cublasLtCreate");
  handles[device] = created;
  return created;
}

// m, n, k, gelu, dtype (0 fp16, 1 bf16), device
using Key = std::tuple<int64_t, int64_t, int64_t, bool, int, int>;

// out[m, n] = epilogue(x[m, k] @ w[n, k]^T + b[n]), in cuBLASLt's column-major terms
// D (n x m) = op(A) (n x k) * B (k x m) with A = w (k x n, ld k, transposed) and B = x (k x m, ld k).
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};  // the chosen one, else the heuristic's first
  size_t workspace = 0;
};

constexpr uint64_t kDefaultWorkspace = 1 << 20;  // PyTorch's cuBLASLt workspace (run 64: its pick = this one)

std::mutex& plans_lock() {
  static std::mutex lock;
  return lock;
}

std::map<Key, Plan>& plans() {
  static std::map<Key, Plan> table;
  return table;
}

int dtype_code(const at::ScalarType type) {
  TORCH_CHECK(type == at::kHalf || type == at::kBFloat16, "lseg_lt: fp16 or bf16 tensors only, got ", type);
  return type == at::kHalf ? 0 : 1;
}

std::vector<cublasLtMatmulHeuristicResult_t> heuristic(const Plan& plan, int device, uint64_t workspace, int count) {
  cublasLtMatmulPreference_t preference = nullptr;
  check(cublasLtMatmulPreferenceCreate(&preference), "MatmulPreferenceCreate");
  check(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                             sizeof(workspace)), "PREF_MAX_WORKSPACE_BYTES");
  std::vector<cublasLtMatmulHeuristicResult_t> found(static_cast<size_t>(count));
  int returned = 0;
  cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle(device), plan.op, plan.a, plan.b, plan.d, plan.d,
                                                         preference, count, found.data(), &returned);
  cublasLtMatmulPreferenceDestroy(preference);
  check(status, "MatmulAlgoGetHeuristic");
  std::vector<cublasLtMatmulHeuristicResult_t> usable;
  for (int i = 0; i < returned; ++i)
    if (found[i].state == CUBLAS_STATUS_SUCCESS) usable.push_back(found[i]);
  return usable;
}

// The descriptors of a shape, made once; the caller holds plans_lock().
Plan& plan_for(const Key& key) {
  auto found = plans().find(key);
  if (found != plans().end()) return found->second;
  auto [m, n, k, gelu, dtype, device] = key;
  Plan plan;
  cudaDataType_t data = dtype == 0 ? CUDA_R_16F : CUDA_R_16BF;
  check(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)), "TRANSA");
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)), "TRANSB");
  cublasLtEpilogue_t epilogue = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
        "EPILOGUE");
  check(cublasLtMatrixLayoutCreate(&plan.a, data, k, n, k), "layout A");
  check(cublasLtMatrixLayoutCreate(&plan.b, data, k, m, k), "layout B");
  check(cublasLtMatrixLayoutCreate(&plan.d, data, n, m, n), "layout D");
  auto first = heuristic(plan, device, kDefaultWorkspace, 1);
  TORCH_CHECK(!first.empty(), "lseg_lt: cuBLASLt has no algorithm for ", m, "x", n, "x", k);
  plan.algo = first[0].algo;
  plan.workspace = first[0].workspaceSize;
  return plans().emplace(key, plan).first->second;
}

Key key_of(int64_t m, int64_t n, int64_t k, bool gelu, const at::ScalarType type, int device) {
  return Key{m, n, k, gelu, dtype_code(type), device};
}

int current_device() {
  return static_cast<int>(c10::cuda::current_device());
}

}  // namespace

// The op: x (..., k) contiguous, weight (n, k) contiguous, bias (n) -> (..., n) in x's dtype.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, bool gelu) {
  TORCH_CHECK(x.is_cuda() && weight.is_cuda() && bias.is_cuda(), "lseg_lt::linear: CUDA tensors only");
  TORCH_CHECK(x.scalar_type() == weight.scalar_type() && x.scalar_type() == bias.scalar_type(),
              "lseg_lt::linear: x, weight and bias must share a dtype");
  TORCH_CHECK(weight.dim() == 2 && bias.dim() == 1 && bias.size(0) == weight.size(0), "lseg_lt::linear: shapes");
  const int64_t k = weight.size(1), n = weight.size(0);
  TORCH_CHECK(x.size(-1) == k, "lseg_lt::linear: x has ", x.size(-1), " features, weight ", k);
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto bc = bias.contiguous();
  const int64_t m = xc.numel() / k;
  auto sizes = xc.sizes().vec();
  sizes.back() = n;
  auto out = at::empty(sizes, xc.options());
  if (m == 0) return out;
  int device = current_device();
  // the bias pointer lives in the shared descriptor: the call is made under the lock too
  std::lock_guard<std::mutex> hold(plans_lock());
  Plan& plan = plan_for(key_of(m, n, k, gelu, xc.scalar_type(), device));
  const void* bias_ptr = bc.data_ptr();
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)),
        "BIAS_POINTER");
  auto space = at::empty({static_cast<int64_t>(plan.workspace > 0 ? plan.workspace : 1)},
                         xc.options().dtype(at::kByte));
  float one = 1.0f, zero = 0.0f;
  check(cublasLtMatmul(handle(device), plan.op, &one, wc.data_ptr(), plan.a, xc.data_ptr(), plan.b, &zero,
                       out.data_ptr(), plan.d, out.data_ptr(), plan.d, &plan.algo, space.data_ptr(), plan.workspace,
                       c10::cuda::getCurrentCUDAStream().stream()),
        "cublasLtMatmul");
  return out;
}

// Up to `count` candidates of the heuristic for a shape within `workspace` bytes: (the algorithm's 8 words
// as signed integers, the workspace it needs). The first is what PyTorch would run at that workspace.
std::vector<std::tuple<std::vector<int64_t>, int64_t>> candidates(int64_t m, int64_t n, int64_t k, bool gelu,
                                                                  const std::string& dtype, int64_t workspace,
                                                                  int64_t count) {
  at::ScalarType type = dtype == "bf16" ? at::kBFloat16 : at::kHalf;
  std::lock_guard<std::mutex> hold(plans_lock());
  int device = current_device();
  Plan& plan = plan_for(key_of(m, n, k, gelu, type, device));
  std::vector<std::tuple<std::vector<int64_t>, int64_t>> found;
  for (const auto& result : heuristic(plan, device, static_cast<uint64_t>(workspace), static_cast<int>(count))) {
    std::vector<int64_t> words;
    for (uint64_t word : result.algo.data) words.push_back(static_cast<int64_t>(word));
    found.emplace_back(words, static_cast<int64_t>(result.workspaceSize));
  }
  return found;
}

// Runs `words` (from `candidates`) for this shape from now on; cuBLASLt checks it first.
void choose(int64_t m, int64_t n, int64_t k, bool gelu, const std::string& dtype, std::vector<int64_t> words,
            int64_t workspace) {
  TORCH_CHECK(words.size() == 8, "lseg_lt: an algorithm is 8 words, got ", words.size());
  at::ScalarType type = dtype == "bf16" ? at::kBFloat16 : at::kHalf;
  std::lock_guard<std::mutex> hold(plans_lock());
  int device = current_device();
  Plan& plan = plan_for(key_of(m, n, k, gelu, type, device));
  cublasLtMatmulAlgo_t algo{};
  for (size_t i = 0; i < 8; ++i) algo.data[i] = static_cast<uint64_t>(words[i]);
  cublasLtMatmulHeuristicResult_t result{};
  check(cublasLtMatmulAlgoCheck(handle(device), plan.op, plan.a, plan.b, plan.d, plan.d, &algo, &result),
        "MatmulAlgoCheck (an algorithm from another shape, GPU or cuBLAS?)");
  TORCH_CHECK(static_cast<int64_t>(result.workspaceSize) <= workspace, "lseg_lt: the algorithm needs ",
              result.workspaceSize, " bytes of workspace, ", workspace, " given");
  plan.algo = algo;
  plan.workspace = static_cast<size_t>(workspace);
}

// Back to the heuristic's first algorithm for this shape (what PyTorch runs).
void forget(int64_t m, int64_t n, int64_t k, bool gelu, const std::string& dtype) {
  at::ScalarType type = dtype == "bf16" ? at::kBFloat16 : at::kHalf;
  std::lock_guard<std::mutex> hold(plans_lock());
  Key key = key_of(m, n, k, gelu, type, current_device());
  auto found = plans().find(key);
  if (found == plans().end()) return;
  Plan& plan = found->second;
  auto first = heuristic(plan, std::get<5>(key), kDefaultWorkspace, 1);
  plan.algo = first[0].algo;
  plan.workspace = first[0].workspaceSize;
}

TORCH_LIBRARY(lseg_lt, m) {
  m.def("linear(Tensor x, Tensor weight, Tensor bias, bool gelu) -> Tensor");
}

TORCH_LIBRARY_IMPL(lseg_lt, CUDA, m) {
  m.impl("linear", &linear);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("candidates", &candidates, "the heuristic's candidates for a shape");
  module.def("choose", &choose, "run this algorithm for a shape");
  module.def("forget", &forget, "back to the heuristic's first algorithm for a shape");
}
