// AOTInductor backend: a `.pt2` package from `lseg-encoder package-aoti`, run through
// torch::inductor::AOTIModelPackageLoader. The package's `lseg.*` metadata gives the static input
// shape, precision, device and image normalisation; they are checked before the compiled library is
// loaded, so a wrong shape or a CUDA package on a CPU machine fails with one clear line.
//
// On CUDA, builds with LSEG_WITH_CUDA hand the run to a CudaSession (cuda_graph.cpp): CUDA-graph
// replay, pinned host buffers, fp16 cast on the device and a pipelined stream mode. Without it (a
// CPU libtorch) this file needs no CUDA headers and runs CUDA packages, if any, eagerly as before.
#include <ATen/Parallel.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/cuda.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <ATen/ATen.h>
#include <torch/version.h>

#include <fstream>
#include <sstream>
#include <unordered_map>

#include "backend.h"
#include "errors.h"
#include "npy.h"
#ifdef LSEG_WITH_CUDA
#include "cuda_graph.h"
#endif

namespace lseg {

namespace {

using Metadata = std::unordered_map<std::string, std::string>;

std::string meta_get(const Metadata& meta, const std::string& key) {
  auto it = meta.find(key);
  return it == meta.end() ? std::string() : it->second;
}

std::vector<double> parse_list(const std::string& text) {
  std::vector<double> values;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) values.push_back(std::stod(item));
  return values;
}

void check_is_zip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": package file not found or not readable");
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  if (!(magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)) {
    throw UserError(path + ": not an AOTInductor .pt2 package (not a zip archive)");
  }
}

// CUDA events through c10's device-generic Event, so this file needs no CUDA headers and builds
// against CPU-only libtorch too; the events are recorded on the current stream, which is the one
// AOTIModelPackageLoader::run uses when given no stream.
class C10EventTimer : public DeviceTimer {
 public:
  explicit C10EventTimer(c10::Device device)
      : device_(device),
        start_(device.type(), c10::EventFlag::BACKEND_DEFAULT),
        stop_(device.type(), c10::EventFlag::BACKEND_DEFAULT) {}
  void start() override { start_.record(stream()); }
  void stop() override { stop_.record(stream()); }
  double elapsed_ms() override {
    stop_.synchronize();
    return start_.elapsedTime(stop_);
  }
  std::string clock() const override { return "cuda events"; }

 private:
  c10::Stream stream() const { return c10::impl::VirtualGuardImpl(device_.type()).getStream(device_); }
  c10::Device device_;
  c10::Event start_, stop_;
};

class AOTIBackend : public Backend {
 public:
  AOTIBackend(const std::string& path, int device_index) : path_(path) {
    check_is_zip(path);
    try {
      meta_ = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
    } catch (const std::exception& exc) {
      throw UserError(path + ": not a readable AOTInductor package: " + first_line(exc.what()));
    }
    if (meta_get(meta_, "lseg.schema").empty()) {
      throw UserError(path + ": an AOTInductor package without lseg metadata (not written by "
                             "`lseg-encoder package-aoti`)");
    }
    if (meta_get(meta_, "lseg.schema") != "1") {
      throw UserError(path + ": lseg metadata schema " + meta_get(meta_, "lseg.schema") +
                      ", this lseg_cpp reads schema 1; re-package it");
    }
    try {
      for (double d : parse_list(meta_get(meta_, "lseg.input_shape"))) input_shape_.push_back(int64_t(d));
      for (double d : parse_list(meta_get(meta_, "lseg.output_shape"))) output_shape_.push_back(int64_t(d));
      auto mean = parse_list(meta_get(meta_, "lseg.mean"));
      auto std = parse_list(meta_get(meta_, "lseg.std"));
      if (mean.size() == 3 && std.size() == 3) {
        mean_std_ = std::array<float, 6>{float(mean[0]), float(mean[1]), float(mean[2]),
                                         float(std[0]), float(std[1]), float(std[2])};
      }
    } catch (const std::exception&) {
      throw UserError(path + ": malformed lseg metadata (input/output shape or mean/std)");
    }
    if (input_shape_.size() != 4 || output_shape_.size() != 4) {
      throw UserError(path + ": malformed lseg metadata (shapes are not 4-D)");
    }
    precision_ = meta_get(meta_, "lseg.precision");
    const std::string device_key = meta_get(meta_, "AOTI_DEVICE_KEY");
    if (device_key == "cuda") {
      if (!torch::cuda::is_available()) {
        throw UserError(path + ": the package was compiled for CUDA but no CUDA device is available to this "
                        "lseg_cpp (libtorch " + libtorch_version() + "); package it with --device cpu here");
      }
      device_ = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device_index < 0 ? 0 : device_index));
    } else if (device_key == "cpu" || device_key.empty()) {
      device_ = c10::Device(c10::kCPU);
    } else {
      throw UserError(path + ": the package targets device '" + device_key + "'; lseg_cpp runs cpu and cuda");
    }
    try {
      // lseg_cpp calls the model from one thread; single-threaded, the container records no "run
      // finished" event, so a CUDA package can be captured into more than one graph (cuda_graph.cpp)
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          path, "model", /*run_single_threaded=*/true, /*num_runners=*/1,
          device_.is_cuda() ? device_.index() : c10::DeviceIndex(-1));
    } catch (const std::exception& exc) {
      throw UserError(path + ": cannot load the AOTInductor package: " + first_line(exc.what()));
    }
  }

  void configure(const RunOptions& options) override { options_ = options; }
  OutputDtype output_dtype() const override { return options_.output_dtype; }
  bool uses_cuda_graph() const override {
#ifdef LSEG_WITH_CUDA
    return session_ && session_->graph();
#else
    return false;
#endif
  }

  std::string kind() const override { return "aoti"; }
  std::string precision() const override { return precision_.empty() ? "?" : precision_; }
  std::string device() const override {
    if (!device_.is_cuda()) return "cpu";
    return "cuda:" + std::to_string(device_.index());
  }
  bool on_cuda() const override { return device_.is_cuda(); }
  std::string artefact() const override { return path_; }
  std::optional<std::vector<int64_t>> static_input_shape() const override { return input_shape_; }
  std::optional<std::array<float, 6>> mean_std() const override { return mean_std_; }

  void prepare(const std::vector<int64_t>& shape) override {
    if (shape != input_shape_) {
      throw UserError(path_ + ": input shape " + shape_str(shape) + " does not match the package's static "
                      "input shape " + shape_str(input_shape_) + " (re-package with --static BxHxW)");
    }
#ifdef LSEG_WITH_CUDA
    if (device_.is_cuda()) {
      session_ = make_cuda_session(device_, input_shape_, output_shape_, out_scalar_type(), options_.cuda_graph,
                                   [this](const at::Tensor& x) { return call(x); });
      return;
    }
#endif
    auto options = at::TensorOptions().dtype(at::kFloat).device(device_);
    input_ = at::zeros(input_shape_, options);
  }
  std::vector<int64_t> output_shape() const override { return output_shape_; }

  void upload(const float* host) override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->upload(host);
#endif
    auto view = at::from_blob(const_cast<float*>(host), input_shape_, at::kFloat);
    if (device_.is_cuda()) {
      input_.copy_(view, /*non_blocking=*/false);
    } else {
      input_ = view;  // CPU: run straight from the caller's buffer (it outlives run()), as Python does
    }
  }

  void run() override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->run();
#endif
    output_ = call(input_);
  }

  void download(void* host) override {
#ifdef LSEG_WITH_CUDA
    if (session_) {
      check_output_shape(session_->output());
      return session_->download(host);
    }
#endif
    check_output_shape(output_);
    auto out = at::from_blob(host, output_shape_, out_scalar_type());
    out.copy_(output_);  // casts to fp16 where asked; device -> host copy waits for the model on CUDA
  }

  float* host_input() override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->host_input();
#endif
    return nullptr;
  }

  void* host_output() override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->host_output();
#endif
    return nullptr;
  }

  double stream_ms_per_frame(int frames) override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->stream_ms_per_frame(frames);
#endif
    (void)frames;
    return -1.0;
  }

  void synchronize() override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->synchronize();
#endif
    if (device_.is_cuda()) c10::impl::VirtualGuardImpl(device_.type()).synchronizeDevice(device_.index());
  }

  std::unique_ptr<DeviceTimer> make_timer() override {
#ifdef LSEG_WITH_CUDA
    if (session_) return session_->make_timer();
#endif
    if (device_.is_cuda()) return std::make_unique<C10EventTimer>(device_);
    return std::make_unique<SteadyTimer>();
  }

 private:
  at::ScalarType out_scalar_type() const {
    return options_.output_dtype == OutputDtype::kFloat16 ? at::kHalf : at::kFloat;
  }

  // One AOTI call on the current stream; its single output.
  at::Tensor call(const at::Tensor& input) {
    std::vector<at::Tensor> outputs;
    try {
      outputs = loader_->run({input});
    } catch (const std::exception& exc) {
      throw UserError(path_ + ": the package failed to run: " + first_line(exc.what()));
    }
    if (outputs.size() != 1) {
      throw UserError(path_ + ": the package returned " + std::to_string(outputs.size()) + " outputs, expected 1");
    }
    return std::move(outputs[0]);
  }

  void check_output_shape(const at::Tensor& output) const {
    if (output.sizes().vec() != output_shape_) {
      throw UserError(path_ + ": output shape " + shape_str(output.sizes().vec()) + " differs from the "
                      "metadata's " + shape_str(output_shape_) + " (corrupt package?)");
    }
  }

  std::string path_;
  RunOptions options_;
  Metadata meta_;
  std::vector<int64_t> input_shape_, output_shape_;
  std::optional<std::array<float, 6>> mean_std_;
  std::string precision_;
  c10::Device device_{c10::kCPU};
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  at::Tensor input_, output_;
#ifdef LSEG_WITH_CUDA
  std::unique_ptr<CudaSession> session_;  // CUDA packages
#endif
};

}  // namespace

std::unique_ptr<Backend> open_aoti(const std::string& path, int device_index) {
  return std::make_unique<AOTIBackend>(path, device_index);
}

std::string libtorch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

bool cuda_compiled() {
#ifdef LSEG_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cpu_threads() { return at::get_num_threads(); }

void set_cpu_threads(int n) { at::set_num_threads(n); }

}  // namespace lseg
