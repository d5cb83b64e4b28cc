// The CUDA side of the AOTI backend (built only with LSEG_WITH_CUDA, i.e. a libtorch with CUDA):
// CUDA-graph replay of the AOTInductor call, page-locked host buffers, and a pipelined stream mode.
//
// Why: the AOTI container launches ~300 kernels per forward from the host; on the H100 the launch
// gaps cost about 10 % at 520 px (C++ AOTI 3.75 ms vs Python torch.compile with CUDA graphs 3.44 ms).
// A graph replays them with one launch. Host copies through pageable memory are staged by the driver
// and cannot overlap anything; pinned buffers make them asynchronous DMA on the model's stream.
//
// This header includes no CUDA headers, so aoti_backend.cpp stays buildable against CPU libtorch.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <vector>

#include "backend.h"

namespace lseg {

// One model call on the current CUDA stream, returning the single output (the AOTI loader's run).
using ModelCall = std::function<at::Tensor(const at::Tensor& input)>;

class CudaSession {
 public:
  virtual ~CudaSession() = default;
  virtual void upload(const float* host) = 0;      // host -> static input, async on the model stream
  virtual void run() = 0;                          // replay (or eager call + cast), async
  virtual void download(void* host) = 0;           // output -> host in the output dtype, then waits
  virtual float* host_input() = 0;                 // pinned, input shape, float32
  virtual void* host_output() = 0;                 // pinned, output shape, output dtype
  virtual const at::Tensor& output() const = 0;    // device output of the last run()
  virtual void synchronize() = 0;                  // waits for the model stream
  virtual std::unique_ptr<DeviceTimer> make_timer() = 0;  // CUDA events on the model stream
  virtual double stream_ms_per_frame(int frames) = 0;
  virtual bool graph() const = 0;
};

// Allocates the static input (device), pinned host buffers and a side stream; with `graph`, runs
// `call` eagerly twice on that stream (loads kernels and constants, sizes the workspaces), then
// captures one call (and the cast to `out_dtype`) into a CUDA graph with its own memory pool; the
// first stream_ms_per_frame captures a second one, so that two frames have two static outputs.
// `call` must be repeatable under capture (a single-threaded AOTI loader). Throws UserError when a
// capture fails, naming --no-cuda-graph.
std::unique_ptr<CudaSession> make_cuda_session(c10::Device device, const std::vector<int64_t>& input_shape,
                                               const std::vector<int64_t>& output_shape, at::ScalarType out_dtype,
                                               bool graph, ModelCall call);

}  // namespace lseg
