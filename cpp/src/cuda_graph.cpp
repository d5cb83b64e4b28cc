// CUDA graph, pinned buffers and pipelined stream for the AOTI backend (LSEG_WITH_CUDA builds only;
// see cuda_graph.h for why).
//
// Capture: libtorch's at::cuda::CUDAGraph, so that the caching allocator serves every allocation
// made during capture (AOTI's intermediate buffers, cuBLAS workspace, the output) from a private
// pool that stays reserved for replays; a raw cudaStreamBeginCapture would leave them to be reused.
// The capture uses cudaStreamCaptureModeRelaxed: a container loaded for threaded use queries and
// waits on its own "run finished" event when it picks a model instance (cudaEventQuery /
// cudaEventSynchronize), which the global mode forbids on the capturing thread. aoti_backend.cpp
// loads CUDA packages single-threaded (no such event), so the container can be captured more than
// once: the stream mode replays two graphs, each with its own pool and static output.
#include "cuda_graph.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <array>
#include <chrono>

#include "errors.h"

namespace lseg {

namespace {

// A plain CUDA event (owned); the timing flag only where elapsed time is read.
class Event {
 public:
  explicit Event(bool timing) {
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~Event() { C10_CUDA_CHECK_WARN(cudaEventDestroy(event_)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const c10::cuda::CUDAStream& stream) {
    C10_CUDA_CHECK(cudaEventRecord(event_, stream.stream()));
    recorded_ = true;
  }
  void block(const c10::cuda::CUDAStream& stream) const {  // the stream waits for the event
    if (recorded_) C10_CUDA_CHECK(cudaStreamWaitEvent(stream.stream(), event_, 0));
  }
  void synchronize() const {
    if (recorded_) C10_CUDA_CHECK(cudaEventSynchronize(event_));
  }
  float ms_since(const Event& start) const {
    float ms = 0;
    C10_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }

 private:
  cudaEvent_t event_ = nullptr;
  bool recorded_ = false;
};

class StreamTimer : public DeviceTimer {
 public:
  explicit StreamTimer(c10::cuda::CUDAStream stream) : stream_(stream), start_(true), stop_(true) {}
  void start() override { start_.record(stream_); }
  void stop() override { stop_.record(stream_); }
  double elapsed_ms() override {
    stop_.synchronize();
    return stop_.ms_since(start_);
  }
  std::string clock() const override { return "cuda events"; }

 private:
  c10::cuda::CUDAStream stream_;
  Event start_, stop_;
};

at::TensorOptions pinned(at::ScalarType dtype) {
  return at::TensorOptions().dtype(dtype).device(at::kCPU).pinned_memory(true);
}

class Session : public CudaSession {
 public:
  Session(c10::Device device, const std::vector<int64_t>& input_shape, const std::vector<int64_t>& output_shape,
          at::ScalarType out_dtype, bool graph, ModelCall call)
      : device_(device),
        output_shape_(output_shape),
        out_dtype_(out_dtype),
        call_(std::move(call)),
        // Not the default (legacy) stream: capture is illegal there, and a private stream keeps
        // the model's work ordered with its own copies only.
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())),
        copier_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {
    c10::cuda::CUDAStreamGuard guard(stream_);
    input_ = at::zeros(input_shape, at::TensorOptions().dtype(at::kFloat).device(device_));
    host_in_ = at::empty(input_shape, pinned(at::kFloat));
    host_out_ = at::empty(output_shape, pinned(out_dtype_));
    if (graph) {
      warm_up();
      capture(0);
      output_ = graph_out_[0];
    }
  }

  void upload(const float* host) override {
    c10::cuda::CUDAStreamGuard guard(stream_);
    const at::Tensor src = host == host_in_.data_ptr<float>()
                               ? host_in_
                               : at::from_blob(const_cast<float*>(host), input_.sizes(), at::kFloat);
    input_.copy_(src, /*non_blocking=*/true);  // DMA from pinned memory; a staged copy from pageable
  }

  void run() override {
    c10::cuda::CUDAStreamGuard guard(stream_);
    output_ = produce(0);
  }

  void download(void* host) override {
    c10::cuda::CUDAStreamGuard guard(stream_);
    at::Tensor dst = host == host_out_.data_ptr() ? host_out_ : at::from_blob(host, output_shape_, out_dtype_);
    dst.copy_(output_, /*non_blocking=*/true);
    stream_.synchronize();  // the one wait per call
  }

  float* host_input() override { return host_in_.data_ptr<float>(); }
  void* host_output() override { return host_out_.data_ptr(); }
  const at::Tensor& output() const override { return output_; }
  void synchronize() override { stream_.synchronize(); }
  std::unique_ptr<DeviceTimer> make_timer() override { return std::make_unique<StreamTimer>(stream_); }
  bool graph() const override { return graphs_[0] != nullptr; }

  // Like runners/pipeline.py: frame i is computed into output slot k = i%2, whose device -> host
  // copy then runs on the copy stream into pinned host slot k while the compute stream goes on with
  // frame i+1; slot k is computed again (frame i+2) only after that copy has left it. The host waits
  // for frame i's copy only after frame i+1 is queued. With graphs, slot k is the static output of
  // graph k (a second capture, made on the first call): no device-to-device copy out of one graph's
  // output, which cost 0.04 / 0.16 ms a frame at 520 / 910 px (run 39). Eager calls allocate a new
  // output per frame, held in its slot until its copy is done.
  double stream_ms_per_frame(int frames) override {
    c10::cuda::CUDAStreamGuard guard(stream_);
    if (!host_slot_[0].defined()) {
      for (auto& slot : host_slot_) slot = at::empty(output_shape_, pinned(out_dtype_));
      if (graphs_[0]) capture(1);
    }
    stream_.synchronize();
    copier_.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    int pending = -1;
    for (int i = 0; i < frames; ++i) {
      const int k = i % 2;
      upload(host_in_.data_ptr<float>());
      copied_[k].block(stream_);  // frame i-2's copy has left slot k
      dev_slot_[k] = produce(k);
      computed_[k].record(stream_);
      computed_[k].block(copier_);
      {
        c10::cuda::CUDAStreamGuard copy_guard(copier_);
        host_slot_[k].copy_(dev_slot_[k], /*non_blocking=*/true);
      }
      copied_[k].record(copier_);
      if (pending >= 0) copied_[pending].synchronize();  // frame i-1 is on the host
      pending = k;
    }
    if (pending >= 0) copied_[pending].synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / frames;
  }

 private:
  at::Tensor cast(const at::Tensor& out) const { return out.scalar_type() == out_dtype_ ? out : out.to(out_dtype_); }

  // Graph k's replay (its static output), or one eager call and the cast. On the model stream.
  at::Tensor produce(int k) {
    if (graphs_[k]) {
      graphs_[k]->replay();
      return graph_out_[k];
    }
    return cast(call_(input_));
  }

  void warm_up() {
    // On the model stream: the first calls load the kernels and constants and size the cuBLAS/cuDNN
    // workspaces, none of which may happen inside a capture.
    for (int i = 0; i < 2; ++i) output_ = cast(call_(input_));
    stream_.synchronize();
    output_ = at::Tensor();
  }

  // Captures one call (and the cast) as graph k, with a private memory pool: the pools are not
  // shared, so neither graph's replay can write into the other's static output.
  void capture(int k) {
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      graph->capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeRelaxed);
      graph_out_[k] = cast(call_(input_));  // allocated from the graph's pool: the static output
      graph->capture_end();
    } catch (const std::exception& exc) {
      cudaGraph_t partial = nullptr;
      cudaStreamEndCapture(stream_.stream(), &partial);  // leave the stream usable for the error path
      if (partial) cudaGraphDestroy(partial);
      (void)cudaGetLastError();
      graph_out_[k] = at::Tensor();
      throw UserError("CUDA graph capture of the AOTInductor run failed (" + first_line(exc.what()) +
                      "); rerun with --no-cuda-graph");
    }
    graph->replay();  // the captured call only recorded work; make the static output hold a result
    graphs_[k] = std::move(graph);
  }

  c10::Device device_;
  std::vector<int64_t> output_shape_;
  at::ScalarType out_dtype_;
  ModelCall call_;
  c10::cuda::CUDAStream stream_, copier_;
  at::Tensor input_, output_, host_in_, host_out_;
  std::array<std::unique_ptr<at::cuda::CUDAGraph>, 2> graphs_;  // [1]: captured for the stream mode
  std::array<at::Tensor, 2> graph_out_, dev_slot_, host_slot_;
  std::array<Event, 2> computed_{Event(false), Event(false)}, copied_{Event(false), Event(false)};
};

}  // namespace

std::unique_ptr<CudaSession> make_cuda_session(c10::Device device, const std::vector<int64_t>& input_shape,
                                               const std::vector<int64_t>& output_shape, at::ScalarType out_dtype,
                                               bool graph, ModelCall call) {
  return std::make_unique<Session>(device, input_shape, output_shape, out_dtype, graph, std::move(call));
}

}  // namespace lseg
