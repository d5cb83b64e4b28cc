// TensorRT 10+ backend: a serialized engine (`.trt`/`.engine`) with one input and one output.
//
// Deserialize with IRuntime, create one execution context, set the input shape by tensor name
// (dynamic engines: checked against optimisation profile 0 first), bind device buffers with
// setTensorAddress and launch with enqueueV3 on our own stream. Engine I/O may be float32 or
// float16; fp16 I/O is converted on the host so that callers always exchange float32.
//
// Compiled only when CMake finds TensorRT (LSEG_WITH_TENSORRT); otherwise `--engine` says how to
// enable it.
#include "backend.h"
#include "errors.h"

#ifdef LSEG_WITH_TENSORRT

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "npy.h"

namespace lseg {

namespace {

#define LSEG_CUDA_CHECK(expr)                                                                  \
  do {                                                                                         \
    cudaError_t status_ = (expr);                                                              \
    if (status_ != cudaSuccess) {                                                              \
      throw UserError(std::string("CUDA error in ") + #expr + ": " + cudaGetErrorString(status_)); \
    }                                                                                          \
  } while (0)

class TrtLogger : public nvinfer1::ILogger {
 public:
  explicit TrtLogger(bool verbose) : verbose_(verbose) {}
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) last_error_ = msg;
    // Errors reach the user as one line through the UserError that follows them; the full log
    // only with --verbose.
    if (verbose_) std::cerr << "[TensorRT] " << msg << "\n";
  }
  std::string last_error() const { return last_error_.empty() ? "no message" : first_line(last_error_); }

 private:
  bool verbose_;
  std::string last_error_;
};

// IEEE half <-> float, round to nearest even; own code so that the host side needs no cuda_fp16.h.
uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf / nan
  int32_t e = static_cast<int32_t>(exp) - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (e <= 0) {                                                  // subnormal or zero
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - e);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: fine
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) { mant <<= 1; --exp; }
      x = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

std::string dims_str(const nvinfer1::Dims& d) {
  std::vector<int64_t> v(d.d, d.d + d.nbDims);
  return shape_str(v);
}

size_t element_size(nvinfer1::DataType t) { return t == nvinfer1::DataType::kHALF ? 2 : 4; }

std::string dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "fp32";
    case nvinfer1::DataType::kHALF: return "fp16";
    case nvinfer1::DataType::kBF16: return "bf16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kBOOL: return "bool";
    default: return "other";
  }
}

class CudaEventTimer : public DeviceTimer {
 public:
  explicit CudaEventTimer(cudaStream_t stream) : stream_(stream) {
    LSEG_CUDA_CHECK(cudaEventCreate(&start_));
    LSEG_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~CudaEventTimer() override {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  void start() override { LSEG_CUDA_CHECK(cudaEventRecord(start_, stream_)); }
  void stop() override { LSEG_CUDA_CHECK(cudaEventRecord(stop_, stream_)); }
  double elapsed_ms() override {
    LSEG_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0.f;
    LSEG_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms;
  }
  std::string clock() const override { return "cuda events"; }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_{}, stop_{};
};

class TrtBackend : public Backend {
 public:
  TrtBackend(const std::string& path, int device_index, bool verbose) : path_(path), logger_(verbose) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(path + ": engine file not found or not readable");
    std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (blob.empty()) throw UserError(path + ": empty engine file");

    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw UserError(path + ": TensorRT engines need a CUDA device and none is available");
    }
    device_index_ = device_index < 0 ? 0 : device_index;
    if (device_index_ >= count) {
      throw UserError("--device-index " + std::to_string(device_index_) + " but only " + std::to_string(count) +
                      " CUDA device(s)");
    }
    LSEG_CUDA_CHECK(cudaSetDevice(device_index_));
    cudaDeviceProp prop{};
    LSEG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index_));
    device_name_ = prop.name;

    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw UserError("cannot create the TensorRT runtime: " + logger_.last_error());
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw UserError(path + ": not a TensorRT engine that TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                      std::to_string(NV_TENSORRT_MINOR) + " on this GPU can load (foreign, corrupt, or built "
                      "for another version/GPU; TensorRT said: " + logger_.last_error() + ")");
    }
    std::vector<std::string> inputs, outputs;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
    }
    if (inputs.size() != 1 || outputs.size() != 1) {
      throw UserError(path + ": expected an engine with 1 input and 1 output, it has " +
                      std::to_string(inputs.size()) + " inputs and " + std::to_string(outputs.size()) + " outputs");
    }
    in_name_ = inputs[0];
    out_name_ = outputs[0];
    in_type_ = engine_->getTensorDataType(in_name_.c_str());
    out_type_ = engine_->getTensorDataType(out_name_.c_str());
    for (auto [name, type] : {std::pair{in_name_, in_type_}, std::pair{out_name_, out_type_}}) {
      if (type != nvinfer1::DataType::kFLOAT && type != nvinfer1::DataType::kHALF) {
        throw UserError(path + ": tensor '" + name + "' is " + dtype_name(type) + "; lseg_cpp handles fp32/fp16 I/O");
      }
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw UserError(path + ": cannot create an execution context: " + logger_.last_error());
    LSEG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~TrtBackend() override {
    release_buffers();
    context_.reset();
    engine_.reset();
    runtime_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string kind() const override { return "tensorrt"; }
  std::string precision() const override { return "io-" + dtype_name(in_type_); }
  std::string device() const override { return "cuda:" + std::to_string(device_index_) + " (" + device_name_ + ")"; }
  bool on_cuda() const override { return true; }
  std::string artefact() const override { return path_; }

  std::optional<std::vector<int64_t>> static_input_shape() const override {
    const nvinfer1::Dims d = engine_->getTensorShape(in_name_.c_str());
    for (int i = 0; i < d.nbDims; ++i) {
      if (d.d[i] < 0) return std::nullopt;
    }
    return std::vector<int64_t>(d.d, d.d + d.nbDims);
  }

  void prepare(const std::vector<int64_t>& shape) override {
    const char* in = in_name_.c_str();
    const nvinfer1::Dims declared = engine_->getTensorShape(in);
    if (declared.nbDims != static_cast<int32_t>(shape.size())) {
      throw UserError(path_ + ": engine input '" + in_name_ + "' is " + dims_str(declared) + ", got " + shape_str(shape));
    }
    const nvinfer1::Dims lo = engine_->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMIN);
    const nvinfer1::Dims hi = engine_->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMAX);
    nvinfer1::Dims dims{};
    dims.nbDims = declared.nbDims;
    for (int i = 0; i < declared.nbDims; ++i) {
      dims.d[i] = shape[i];
      if (declared.d[i] >= 0 && declared.d[i] != shape[i]) {
        throw UserError(path_ + ": input shape " + shape_str(shape) + " does not fit the engine's input " +
                        dims_str(declared));
      }
      if (declared.d[i] < 0 && lo.nbDims == declared.nbDims && (shape[i] < lo.d[i] || shape[i] > hi.d[i])) {
        throw UserError(path_ + ": input shape " + shape_str(shape) + " is outside the engine's profile " +
                        dims_str(lo) + " .. " + dims_str(hi));
      }
    }
    if (!context_->setInputShape(in, dims)) {
      throw UserError(path_ + ": TensorRT refused input shape " + shape_str(shape) + ": " + logger_.last_error());
    }
    const nvinfer1::Dims od = context_->getTensorShape(out_name_.c_str());
    out_shape_.assign(od.d, od.d + od.nbDims);
    for (int64_t d : out_shape_) {
      if (d < 0) throw UserError(path_ + ": output shape unresolved after setting the input shape");
    }
    in_shape_ = shape;
    release_buffers();
    in_count_ = numel(in_shape_);
    out_count_ = numel(out_shape_);
    LSEG_CUDA_CHECK(cudaMalloc(&d_in_, in_count_ * element_size(in_type_)));
    LSEG_CUDA_CHECK(cudaMalloc(&d_out_, out_count_ * element_size(out_type_)));
    if (!context_->setTensorAddress(in, d_in_) || !context_->setTensorAddress(out_name_.c_str(), d_out_)) {
      throw UserError(path_ + ": cannot bind tensor addresses: " + logger_.last_error());
    }
    staging_in_.assign(in_type_ == nvinfer1::DataType::kHALF ? in_count_ : 0, 0);
    staging_out_.assign(out_type_ == nvinfer1::DataType::kHALF ? out_count_ : 0, 0);
  }

  std::vector<int64_t> output_shape() const override { return out_shape_; }

  void upload(const float* host) override {
    const void* src = host;
    if (in_type_ == nvinfer1::DataType::kHALF) {
      for (size_t i = 0; i < in_count_; ++i) staging_in_[i] = float_to_half(host[i]);
      src = staging_in_.data();
    }
    LSEG_CUDA_CHECK(cudaMemcpyAsync(d_in_, src, in_count_ * element_size(in_type_), cudaMemcpyHostToDevice, stream_));
  }

  void run() override {
    if (!context_->enqueueV3(stream_)) throw UserError(path_ + ": enqueueV3 failed: " + logger_.last_error());
  }

  void download(void* out) override {  // float32 only: configure() refuses --output-dtype fp16
    float* host = static_cast<float*>(out);
    void* dst = out_type_ == nvinfer1::DataType::kHALF ? static_cast<void*>(staging_out_.data()) : host;
    LSEG_CUDA_CHECK(cudaMemcpyAsync(dst, d_out_, out_count_ * element_size(out_type_), cudaMemcpyDeviceToHost, stream_));
    LSEG_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (out_type_ == nvinfer1::DataType::kHALF) {
      for (size_t i = 0; i < out_count_; ++i) host[i] = half_to_float(staging_out_[i]);
    }
  }

  void synchronize() override { LSEG_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  std::unique_ptr<DeviceTimer> make_timer() override { return std::make_unique<CudaEventTimer>(stream_); }

 private:
  static size_t numel(const std::vector<int64_t>& s) {
    size_t n = 1;
    for (int64_t d : s) n *= static_cast<size_t>(d);
    return n;
  }
  void release_buffers() {
    if (d_in_) cudaFree(d_in_);
    if (d_out_) cudaFree(d_out_);
    d_in_ = d_out_ = nullptr;
  }

  std::string path_;
  TrtLogger logger_;
  int device_index_ = 0;
  std::string device_name_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  std::string in_name_, out_name_;
  nvinfer1::DataType in_type_ = nvinfer1::DataType::kFLOAT, out_type_ = nvinfer1::DataType::kFLOAT;
  std::vector<int64_t> in_shape_, out_shape_;
  size_t in_count_ = 0, out_count_ = 0;
  void* d_in_ = nullptr;
  void* d_out_ = nullptr;
  std::vector<uint16_t> staging_in_, staging_out_;
};

}  // namespace

std::unique_ptr<Backend> open_tensorrt(const std::string& path, int device_index, bool verbose) {
  return std::make_unique<TrtBackend>(path, device_index, verbose);
}

bool tensorrt_compiled() { return true; }

}  // namespace lseg

#else  // !LSEG_WITH_TENSORRT

namespace lseg {

std::unique_ptr<Backend> open_tensorrt(const std::string& path, int, bool) {
  throw UserError(path + ": this lseg_cpp was built without TensorRT (CMake did not find NvInfer.h); "
                  "reconfigure with -DTensorRT_ROOT=/path/to/TensorRT -DLSEG_TENSORRT=ON");
}

bool tensorrt_compiled() { return false; }

}  // namespace lseg

#endif  // LSEG_WITH_TENSORRT
