// One interface over the C++ backends (AOTInductor package, TensorRT engine), mirroring the Python
// runners: open cheaply-validated artefact, prepare() for one input shape, then upload / run /
// download. The split lets `bench` time the device-only part (input resident on the device, output
// left there) separately from end-to-end (host buffer in, host buffer out, copies included).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"

namespace lseg {

// Times one region of device work. CUDA backends record events on their stream (no host clock in
// the measurement); CPU backends use std::chrono::steady_clock around synchronous work.
class DeviceTimer {
 public:
  virtual ~DeviceTimer() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual double elapsed_ms() = 0;  // waits for the stop event where needed
  virtual std::string clock() const = 0;
};

class SteadyTimer : public DeviceTimer {
 public:
  void start() override { t0_ = std::chrono::steady_clock::now(); }
  void stop() override { t1_ = std::chrono::steady_clock::now(); }
  double elapsed_ms() override { return std::chrono::duration<double, std::milli>(t1_ - t0_).count(); }
  std::string clock() const override { return "steady_clock"; }

 private:
  std::chrono::steady_clock::time_point t0_, t1_;
};

// What the host receives from `download`: float32 (default) or float16 (half the bytes to copy;
// fp16 keeps ~3 significant digits of the unit-norm features, inside the fp16 tolerance row).
enum class OutputDtype { kFloat32, kFloat16 };

inline const char* dtype_name(OutputDtype d) { return d == OutputDtype::kFloat16 ? "fp16" : "fp32"; }
inline size_t element_size(OutputDtype d) { return d == OutputDtype::kFloat16 ? 2 : 4; }

struct RunOptions {
  bool cuda_graph = true;  // CUDA packages: capture the model once, replay it (AOTI backend only)
  OutputDtype output_dtype = OutputDtype::kFloat32;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Before prepare(). The default (TensorRT) has no CUDA graph and float32 output only.
  virtual void configure(const RunOptions& options) {
    if (options.output_dtype != OutputDtype::kFloat32) {
      throw UserError(artefact() + ": --output-dtype fp16 is supported by the aoti backend only");
    }
  }
  virtual bool uses_cuda_graph() const { return false; }  // after prepare()
  virtual OutputDtype output_dtype() const { return OutputDtype::kFloat32; }

  virtual std::string kind() const = 0;       // "aoti" or "tensorrt"
  virtual std::string precision() const = 0;  // "fp32", "fp16", or what the artefact says
  virtual std::string device() const = 0;     // "cpu" or "cuda:0 (<name>)"
  virtual bool on_cuda() const = 0;
  virtual std::string artefact() const = 0;   // file path

  // The only input shape a static artefact accepts (AOTI packages), or nullopt (dynamic engines).
  virtual std::optional<std::vector<int64_t>> static_input_shape() const = 0;
  // Image normalisation stored in the artefact, if any (AOTI packages from package-aoti).
  virtual std::optional<std::array<float, 6>> mean_std() const { return std::nullopt; }

  // Allocates buffers for this (B,3,H,W) input; throws UserError if the artefact cannot take it.
  virtual void prepare(const std::vector<int64_t>& input_shape) = 0;
  virtual std::vector<int64_t> output_shape() const = 0;

  virtual void upload(const float* host_input) = 0;  // host -> device input buffer
  virtual void run() = 0;                            // enqueue the model on the device buffers
  // Device output -> host in output_dtype() (element_size() bytes each), waits for completion.
  virtual void download(void* host_output) = 0;
  // Page-locked host buffers the backend owns (input_shape float32, output_shape output_dtype),
  // where it has them (CUDA builds, CUDA packages): copies from/to them are asynchronous DMA, which
  // pageable memory cannot do. nullptr elsewhere; the caller then passes its own buffers.
  virtual float* host_input() { return nullptr; }
  virtual void* host_output() { return nullptr; }
  // Pipelined frames (copy of frame i overlapping the compute of frame i+1, as
  // runners/pipeline.py): wall ms per frame over `frames` frames from host_input() to host
  // output slots; a negative value where the backend has no such mode (CPU, TensorRT).
  virtual double stream_ms_per_frame(int /*frames*/) { return -1.0; }
  virtual void synchronize() = 0;
  virtual std::unique_ptr<DeviceTimer> make_timer() = 0;
};

std::unique_ptr<Backend> open_aoti(const std::string& path, int device_index);

// Built only with LSEG_WITH_TENSORRT; without it, throws UserError naming the CMake option.
std::unique_ptr<Backend> open_tensorrt(const std::string& path, int device_index, bool verbose);

bool tensorrt_compiled();
bool cuda_compiled();  // LSEG_WITH_CUDA: CUDA graphs, pinned buffers, stream mode
bool opencv_compiled();
std::string libtorch_version();
int cpu_threads();
void set_cpu_threads(int n);

}  // namespace lseg
